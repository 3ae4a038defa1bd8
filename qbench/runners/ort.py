"""ONNX Runtime on the CPU: the FP32 reference, and the runner of every simulated precision."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx

from qbench.cpu import ort_threads
from qbench.errors import QbenchError
from qbench.model import ModelGraph


def expose_tensors(model: onnx.ModelProto, names: Iterable[str], elem_types: dict[str, int] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` where each tensor in ``names`` is also a graph output, so one run returns
    every intermediate activation (the model's own outputs stay first, in their order).

    A tensor whose element type is unknown is declared without a type: ONNX Runtime then takes the
    type it infers, where guessing FLOAT would make an int64 tensor fail the session load."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output}
    elem_types = elem_types or {}
    for name in names:
        if name in existing:
            continue
        existing.add(name)
        if name in elem_types:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_types[name], None))
        else:
            out.graph.output.append(onnx.ValueInfoProto(name=name))
    return out


class OrtRunner:
    """Runs a model in ONNX Runtime, optionally capturing intermediate tensors.

    ``capture``: "all" for every float activation, a list of tensor names, or None for outputs only.
    ``spinning``: let ORT's thread pool spin-wait for work (off: idle threads yield the CPU).
    ``arena``: ONNX Runtime's CPU memory arena (off: every allocation goes back to the system when freed).
    """

    def __init__(self, model: onnx.ModelProto | ModelGraph, name: str = "onnxruntime-fp32", capture="all",
                 optimize: bool = True, threads: int | None = None, spinning: bool = False,
                 arena: bool = True):
        import onnxruntime as ort

        graph = model if isinstance(model, ModelGraph) else ModelGraph(model)
        self.name = name
        self.graph = graph
        if capture == "all":
            names = [t.name for t in graph.float_tensors]
        elif capture is None:
            names = []
        else:
            names = list(capture)
        proto = expose_tensors(graph.model, names, graph.elem_types)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT warns about every exposed output otherwise
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        threads = ort_threads(threads)
        if threads:
            options.intra_op_num_threads = threads
        options.enable_cpu_mem_arena = arena
        if not spinning:
            # ORT's pool threads otherwise spin-wait between (and after) runs, burning the cores
            # that the caller's own work (the comparator's metrics, on another thread) needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise QbenchError(f"ONNX Runtime cannot load {graph.name}: {str(exc).splitlines()[0]}") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise QbenchError(f"{self.name}: no data for inputs {missing}")
        try:
            values = self.session.run(self.output_names, {n: feed[n] for n in self.input_names})
        except Exception as exc:
            raise QbenchError(f"{self.name}: ONNX Runtime failed: {str(exc).splitlines()[0]}") from None
        return dict(zip(self.output_names, values))
