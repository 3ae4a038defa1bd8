"""Finding an INT8 configuration that ships (docs/SEARCH.md).

    from qbench.search import find_int8, SearchOptions
    outcome = find_int8(graph, dataset, out="reports/model", options=SearchOptions(task="classify"))
    outcome.best.result.verdict, outcome.best.keep_float, outcome.folder  # <out>/int8-best
    outcome.rows(), outcome.sentence()  # recommendation rows and sentence

Stages, one module each: ``holdout`` (calibration / judging split), ``sweep`` (every calibrator and a
per-tensor best-of, judged), ``sensitivity`` (per-layer task-metric change, one gated model),
``mixed`` (smallest passing set kept in float), ``deploy`` (``int8-best/``), ``find`` (all of it).
"""

from qbench.search.find import MIXED, SENSITIVITY_MODES, SearchOptions, SearchOutcome, find_int8

__all__ = ["find_int8", "SearchOptions", "SearchOutcome", "MIXED", "SENSITIVITY_MODES"]
