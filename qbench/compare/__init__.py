"""Layer-by-layer comparison of a reference run and a candidate run, and the diagnosis of where the
error is born (see ``comparator`` for the flow, ``replay`` for introduced vs inherited).

Entry points: ``compare_runs`` for any two runners; ``compare_precision`` (FP32 vs simulated INT8 or
FP16 of the same model) and ``compare_models`` (FP32 vs another ONNX file) build the runners.
"""

from qbench.compare.comparator import compare_runs
from qbench.compare.diagnose import Thresholds
from qbench.compare.entry import compare_models, compare_precision
from qbench.compare.result import Comparison

__all__ = ["compare_runs", "compare_precision", "compare_models", "Comparison", "Thresholds"]
