"""The HTML accuracy report, with results.json, per-tensor CSVs and plot images beside it.

``write_report(out_dir, model_name, candidates, ranges=None, meta=None, extra_sections=())``
"""

from qbench.report.candidate import CandidateResult
from qbench.report.writer import ExtraSection, write_report

__all__ = ["CandidateResult", "ExtraSection", "write_report"]
