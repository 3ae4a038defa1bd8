"""Layer-by-layer comparison of a reference run and a candidate run, and the diagnosis of where the
error is born (see ``comparator`` for the flow, ``replay`` for introduced vs inherited).

Entry points: ``compare_runs`` for any two runners; ``compare_precision`` (FP32 vs simulated INT8 or
FP16 of the same model), ``compare_models`` (FP32 vs another ONNX file), ``compare_imported``
(FP32 vs TensorRT results saved by trtexec or Polygraphy elsewhere) and ``compare_engine`` (FP32 vs a
TensorRT engine, where TensorRT exists) build the runners. ``stream.compare_together`` runs several
of them in one pass over the samples, the FP32 reference once per sample.
"""

from qbench.compare.comparator import compare_runs
from qbench.compare.diagnose import Thresholds
from qbench.compare.entry import compare_engine, compare_imported, compare_models, compare_precision, load_trt_results
from qbench.compare.result import Comparison

__all__ = ["compare_runs", "compare_precision", "compare_models", "compare_imported", "compare_engine",
           "load_trt_results", "Comparison", "Thresholds"]
