"""Ready-made comparisons: the FP32 model against its own simulated precision, or against another
ONNX file. They only build runners and hand them to ``compare_runs``."""

from __future__ import annotations

from qbench.compare.comparator import compare_runs
from qbench.compare.result import Comparison
from qbench.errors import QbenchError
from qbench.model import ModelGraph

PRECISIONS = ("int8", "fp16")


def compare_precision(graph: ModelGraph, dataset, precision: str, ranges=None, *, keep_float=(), **kwargs) -> Comparison:
    """FP32 ``graph`` vs its INT8 (needs ``ranges``) or FP16 simulation in ONNX Runtime."""
    from qbench.runners import OrtRunner
    from qbench.simulate import build_fp16_model, build_int8_model

    if precision not in PRECISIONS:
        raise QbenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8":
        if ranges is None:
            raise QbenchError("an INT8 comparison needs ranges: give a ranges file or a calibration method")
        sim = build_int8_model(graph, ranges, keep_float=keep_float)
    else:
        sim = build_fp16_model(graph, keep_float=keep_float)
    names = [t.name for t in graph.float_tensors]
    reference = OrtRunner(graph, name="fp32")
    # ORT would fuse Q/DQ into its own int8 kernels, which refuse extreme scales (a planted or broken
    # range); unoptimised, the model computes exactly the DQ(Q(x)) values the convention promises
    candidate = OrtRunner(sim.model, name=f"{precision} (simulated)", capture=names, optimize=False)
    return compare_runs(graph, reference, candidate, dataset, candidate_model=sim.model, precision=precision,
                        ranges=ranges if precision == "int8" else None,
                        quantized=list(sim.quantized) + list(sim.quantized_inputs) if precision == "int8" else None, **kwargs)


def compare_models(graph: ModelGraph, candidate: ModelGraph, dataset, **kwargs) -> Comparison:
    """FP32 ``graph`` vs another ONNX model (e.g. an edited or externally quantized copy), tensor by
    tensor under the names the two share."""
    from qbench.runners import OrtRunner

    names = [t.name for t in graph.float_tensors]
    present = {t.name for t in candidate.tensors} | {i.name for i in candidate.inputs}
    reference = OrtRunner(graph, name=graph.name)
    cand = OrtRunner(candidate, name=f"{candidate.name} (candidate)", capture=[n for n in names if n in present], optimize=False)
    return compare_runs(graph, reference, cand, dataset, candidate_model=candidate.model, **kwargs)
