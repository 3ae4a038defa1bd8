"""INT8 simulation: an explicit-quantization (Q/DQ) ONNX model built from the ranges table.

The same file is TensorRT's explicit-quantization input, so it keeps to TensorRT's Q/DQ rules:
opset >= 13, int8 with zero point 0, constant scales, per-tensor activations, per-channel weights
stored as int8 initializers followed by DequantizeLinear.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.ranges import INT8_MAX, Ranges
from qbench.simulate import naming
from qbench.simulate.common import MIN_QDQ_OPSET, SimulatedModel, as_graph, copy_at_opset, finish, kept_node_names, kept_node_outputs, resolve_keep_float
from qbench.simulate.placement import plan_int8
from qbench.simulate.rewrite import Rewriter

# A zero amax (a tensor that was all zeros during calibration) would give scale 0, which neither
# ONNX Runtime nor TensorRT accepts; the smallest normal float32 keeps zeros exactly zero.
MIN_SCALE = float(np.finfo(np.float32).tiny)


def activation_scale(name: str, ranges: Ranges) -> float:
    amax = float(ranges.amax(name))
    if not math.isfinite(amax) or amax < 0:
        raise QbenchError(f"range of {name!r} is {amax}, expected a finite amax >= 0")
    return max(amax / INT8_MAX, MIN_SCALE)


def quantize_weight(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes and scales: scale = max|w| / 127 per output channel (or per tensor).

    Channels that are all zero get scale 1 (any positive scale keeps them exactly zero)."""
    w = w.astype(np.float32)
    if axis is None:
        amax = np.abs(w).max(initial=0.0)
        scale = np.float32(amax / INT8_MAX if amax > 0 else 1.0)
        codes = np.clip(np.rint(w / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
        return codes, np.array(scale, dtype=np.float32)
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=reduce, initial=0.0)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(w / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scale


def build_int8_model(graph, ranges: Ranges, keep_float=(), placement: str = "likely") -> SimulatedModel:
    """Insert Q/DQ the way TensorRT runs INT8 layers (see ``placement``) into a copy of ``graph``.

    ``placement``: ``"likely"`` (TensorRT's usual choices) or ``"worst"`` (every tensor TensorRT could
    store in INT8); see ``qbench.simulate.placement``. A Concat's inputs get the Concat output's scale.

    ``keep_float``: tensor names (no Q/DQ on them) or node names (the node reads float inputs and
    float weights). Every activation that needs a range must have one in ``ranges``: a missing
    one is a QbenchError naming the tensor, because silently leaving it float would make the
    simulation look better than the engine.
    """
    graph: ModelGraph = as_graph(graph)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.model.graph.node):
        raise QbenchError(f"{graph.name} already holds Q/DQ nodes; simulate INT8 from the float model")
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_int8(graph, keep_tensors, keep_nodes, placement)
    missing = [plan.range_tensor(name) for name in plan.activations if plan.range_tensor(name) not in ranges]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise QbenchError(f"no INT8 range for tensor {missing[0]!r}{more}: calibrate this model, or keep it in float with --keep-float")

    model = copy_at_opset(graph.model, MIN_QDQ_OPSET)
    rw = Rewriter(model, kept_node_outputs(graph, keep_nodes))
    for name in plan.activations:
        scale = activation_scale(plan.range_tensor(name), ranges)
        source, target = rw.tap(name)
        scale_name, zp_name = name + naming.SCALE, name + naming.ZERO_POINT
        rw.add_initializer(numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name))
        rw.add_initializer(numpy_helper.from_array(np.array(0, dtype=np.int8), zp_name))
        codes = name + naming.INT8
        rw.add_chain(name, [
            helper.make_node("QuantizeLinear", [source, scale_name, zp_name], [codes], name=f"{name}::QuantizeLinear"),
            helper.make_node("DequantizeLinear", [codes, scale_name, zp_name], [target], name=f"{name}::DequantizeLinear"),
        ])
    for name, axis in plan.weights.items():
        codes, scale = quantize_weight(graph.initializer(name), axis)
        _, target = rw.tap(name)
        codes_name, scale_name, zp_name = name + naming.INT8, name + naming.SCALE, name + naming.ZERO_POINT
        rw.add_initializer(numpy_helper.from_array(codes, codes_name))
        rw.add_initializer(numpy_helper.from_array(scale, scale_name))
        rw.add_initializer(numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), zp_name))
        attrs = {} if axis is None else {"axis": axis}
        rw.add_chain(name, [helper.make_node("DequantizeLinear", [codes_name, scale_name, zp_name], [target],
                                             name=f"{name}::DequantizeLinear", **attrs)])
    model = finish(rw.apply(), "INT8", graph.model)
    produced = {t.name for t in graph.tensors}
    return SimulatedModel(
        model=model,
        precision="int8",
        quantized=[n for n in plan.activations if n in produced],
        quantized_inputs=[n for n in plan.activations if n not in produced],
        weights=list(plan.weights),
        kept_float=sorted(keep_tensors),
        kept_nodes=kept_node_names(graph, keep_nodes),
        source=graph.name,
        placement=placement,
        shared_scale={name: plan.concat_of[name] for name in plan.scale_from},
        scale_from=dict(plan.scale_from),
        fused=dict(plan.fused),
    )
