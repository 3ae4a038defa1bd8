"""Choosing the output a task reads and describing graph outputs (shape, element type) for the
adapters and the auto guess."""

from __future__ import annotations

import numpy as np
import onnx

from qbench.errors import QbenchError


def output_specs(graph) -> list[tuple[str, tuple | None, int]]:
    """(name, shape with ints or None for dynamic dims, ONNX element type) of every graph output."""
    specs = []
    for vi in graph.model.graph.output:
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        elem = tt.elem_type or graph.elem_types.get(vi.name, 0)
        specs.append((vi.name, shape, elem))
    return specs


def is_float_type(elem: int) -> bool:
    return elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def pick_output(graph, option: str | None, task: str, want=None) -> str:
    """The output named by option, else the first output for which want(name, shape, elem) holds
    (else the first output)."""
    names = list(graph.output_names)
    if option:
        if option not in names:
            raise QbenchError(f"{task}: the model has no output {option!r}; its outputs are {names}")
        return option
    if want is not None:
        for name, shape, elem in output_specs(graph):
            if want(name, shape, elem):
                return name
    return names[0]


def metadata(graph) -> dict:
    return {p.key: p.value for p in graph.model.metadata_props}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):  # rows of -inf (NaN scores) give NaN
        x = x - np.max(x, axis=axis, keepdims=True)
        e = np.exp(x)
        return e / np.sum(e, axis=axis, keepdims=True)


def looks_like_probabilities(x: np.ndarray, axis: int = -1) -> bool:
    """True when every row is non-negative and sums to 1 (a softmax was already applied)."""
    if x.size == 0 or np.min(x) < -1e-6 or np.max(x) > 1 + 1e-6:
        return False
    return bool(np.allclose(np.sum(x, axis=axis), 1.0, atol=1e-3))
