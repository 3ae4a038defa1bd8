"""FP8 (E4M3) simulation: an explicit float8 Q/DQ model, the form TensorRT builds FP8 engines from.

Format: OCP FP8 E4M3 (``float8e4m3fn`` in ONNX, opset 19): 4 exponent bits, 3 mantissa bits, no
infinities, largest finite value 448. ``QuantizeLinear`` to float8e4m3fn divides by the scale,
rounds to nearest even and saturates to +-448 (``saturate=1``, the default); ``DequantizeLinear``
multiplies back. ONNX Runtime's CPU kernels do exactly this (tests hold them equal to ml_dtypes'
rounding on real tensors), so the simulated value of ``x`` is ``e4m3(x / s) * s``.

Placement (docs/FORMATS.md cites each source): NVIDIA Model Optimizer quantizes the GEMM-like
layers for FP8 -- Conv, Gemm, MatMul, with the MatMuls between two activations (attention's Q*K^T
and P*V) included -- and leaves every other layer (Softmax, LayerNormalization, GELU, pooling,
Resize, ...) in the network's high precision. TensorRT runs a layer in FP8 only where Q/DQ surround
it (explicit quantization; FP8 has no implicit/calibrated path). So:

1. every activation input of a Conv/ConvTranspose/Gemm/MatMul gets per-tensor Q/DQ,
   ``scale = amax / 448``;
2. every constant weight of those layers is stored as float8e4m3fn codes with one scale per output
   channel (``scale_c = max|w_c| / 448``; axis as for INT8, ``qbench.simulate.placement.weight_slot``)
   followed by DequantizeLinear;
3. nothing else is quantized: other layers read and write float (the engine's FP16/BF16/FP32 for
   them is not simulated here, so their own rounding is not part of this candidate).

Scales: ``calibrator="max"`` (the default, as in Model Optimizer's FP8 recipes) takes the tensor's
observed max |x| from the calibration pass already made; ``"ranges"`` takes the run's calibrated amax
(entropy, percentile, ...) as it is.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import SimulatedModel, as_graph, copy_at_opset, finish, kept_node_outputs, resolve_keep_float
from qbench.simulate.placement import WEIGHTED_OPS, weight_slot
from qbench.simulate.rewrite import Rewriter

E4M3_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)  # 448
FP8_OPSET = 19  # QuantizeLinear/DequantizeLinear accept float8 types from opset 19
CALIBRATORS = ("max", "ranges")
MIN_SCALE = float(np.finfo(np.float32).tiny)  # an all-zero tensor: any positive scale keeps it zero


def to_e4m3(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to E4M3 (nearest even) with saturation at +-448, as QuantizeLinear(saturate=1)."""
    return np.clip(np.asarray(x, dtype=np.float32), -E4M3_MAX, E4M3_MAX).astype(ml_dtypes.float8_e4m3fn)


def fake_quantize(x: np.ndarray, scale) -> np.ndarray:
    """DQ(Q(x)) in numpy: the value an FP8 tensor with ``scale`` holds (the tests' oracle)."""
    return to_e4m3(np.asarray(x, dtype=np.float32) / scale).astype(np.float32) * np.float32(scale)


def observed_amax(ranges, name: str, calibrator: str = "max") -> float:
    """The amax an FP8 scale is made from: the observed max |x| of the calibration pass (``max``)
    or the run's calibrated amax (``ranges``). Falls back to the calibrated amax when the ranges
    carry no observation (a TensorRT cache read from disk)."""
    entry = ranges[name]
    amax = float(entry.amax)
    if calibrator == "max":
        seen = [abs(v) for v in (entry.observed_min, entry.observed_max) if v is not None]
        if seen:
            amax = max(seen)
        elif entry.summary and "absmax" in entry.summary:
            amax = float(entry.summary["absmax"])
    if not math.isfinite(amax) or amax < 0:
        raise QbenchError(f"range of {name!r} is {amax}, expected a finite amax >= 0")
    return amax


def weight_codes(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """E4M3 codes and float32 scales of a weight: per output channel along ``axis`` (per tensor
    when None), ``scale = max|w| / 448``, channels that are all zero get scale 1."""
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        amax = float(np.abs(w).max(initial=0.0))
        scale = np.array(amax / E4M3_MAX if amax > 0 else 1.0, dtype=np.float32)
        return to_e4m3(w / scale), scale
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=reduce, initial=0.0)
    scale = np.where(amax > 0, amax / E4M3_MAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return to_e4m3(w / scale.reshape(shape)), scale


def plan_fp8(graph: ModelGraph, keep_tensors=frozenset(), keep_nodes=frozenset()) -> tuple[dict[str, str], dict[str, int | None]]:
    """(activation tensor -> why, weight initializer -> per-channel axis): rules 1 and 2 of the module
    docstring, in graph order. Kept nodes and kept tensors get neither."""
    initializers = graph.initializer_names
    float_inputs = {i.name for i in graph.inputs if i.elem_type == TensorProto.FLOAT}
    types = graph.elem_types
    activations: dict[str, str] = {}
    weights: dict[str, int | None] = {}
    for index, node in enumerate(graph.model.graph.node):
        if index in keep_nodes or node.op_type not in WEIGHTED_OPS:
            continue
        slot = weight_slot(node, initializers)
        weight_index = slot[0] if slot is not None and node.input[slot[0]] in initializers else None
        data_slots = (0, 1) if node.op_type == "MatMul" else (0, 1) if weight_index is None else (0,)
        for i in data_slots:
            if i >= len(node.input) or i == weight_index:
                continue
            name = node.input[i]
            if name and name not in initializers and name not in keep_tensors and \
                    (name in float_inputs or types.get(name) == TensorProto.FLOAT):
                kind = "between activations" if node.op_type == "MatMul" and weight_index is None else "input"
                activations.setdefault(name, f"{node.op_type} {kind}")
        if weight_index is not None:
            name = node.input[weight_index]
            if name not in keep_tensors and graph.initializer(name).dtype == np.float32:
                axis = slot[1]
                if axis == -1:
                    axis = graph.initializer(name).ndim - 1
                weights.setdefault(name, axis)
    order = [i.name for i in graph.inputs] + [t.name for t in graph.tensors]
    return {n: activations[n] for n in order if n in activations}, weights


def build_fp8_model(graph, ranges, keep_float=(), calibrator: str = "max", inside_qdq: bool = False) -> SimulatedModel:
    """A copy of ``graph`` with float8 Q/DQ placed as TensorRT/Model Optimizer place them (module
    docstring). Every quantized activation needs a range in ``ranges``; a missing one is an error
    naming it (leaving it float would flatter the candidate). ``inside_qdq``: ``graph`` is already
    another format's Q/DQ model and FP8 goes on the tensors not kept (qbench.simulate.mixed_format)."""
    if calibrator not in CALIBRATORS:
        raise QbenchError(f"FP8 calibrator must be one of {', '.join(CALIBRATORS)}, not {calibrator!r}")
    graph = as_graph(graph)
    if not inside_qdq and any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.model.graph.node):
        raise QbenchError(f"{graph.name} already holds Q/DQ nodes; simulate FP8 from the float model")
    if ranges is None:
        raise QbenchError("an FP8 simulation needs activation ranges: calibrate, or give --ranges")
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    activations, weights = plan_fp8(graph, keep_tensors, keep_nodes)
    missing = [n for n in activations if n not in ranges]
    if missing:
        raise QbenchError(f"no range for tensor {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                          + ": calibrate this model, or keep it in float with --keep-float")
    model = copy_at_opset(graph.model, FP8_OPSET)
    rw = Rewriter(model, kept_node_outputs(graph, keep_nodes))
    for name in activations:
        scale = max(observed_amax(ranges, name, calibrator) / E4M3_MAX, MIN_SCALE)
        source, target = rw.tap(name)
        scale_name, zp_name, codes = name + naming.SCALE, name + naming.ZERO_POINT, name + naming.FP8
        rw.add_initializer(numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name))
        rw.add_initializer(helper.make_tensor(zp_name, TensorProto.FLOAT8E4M3FN, [], [0]))
        rw.add_chain(name, [
            helper.make_node("QuantizeLinear", [source, scale_name, zp_name], [codes], name=f"{name}::QuantizeLinear"),
            helper.make_node("DequantizeLinear", [codes, scale_name, zp_name], [target], name=f"{name}::DequantizeLinear"),
        ])
    for name, axis in weights.items():
        codes, scale = weight_codes(graph.initializer(name), axis)
        _, target = rw.tap(name)
        codes_name, scale_name, zp_name = name + naming.FP8, name + naming.SCALE, name + naming.ZERO_POINT
        rw.add_initializer(numpy_helper.from_array(codes, codes_name))
        rw.add_initializer(numpy_helper.from_array(scale, scale_name))
        rw.add_initializer(onnx.helper.make_tensor(zp_name, TensorProto.FLOAT8E4M3FN, list(scale.shape), [0] * int(scale.size)))
        attrs = {} if axis is None else {"axis": axis}
        rw.add_chain(name, [helper.make_node("DequantizeLinear", [codes_name, scale_name, zp_name], [target],
                                             name=f"{name}::DequantizeLinear", **attrs)])
    return SimulatedModel.explicit(
        graph, finish(rw.apply(), "FP8", graph.model), "fp8", activations, weights, keep_tensors,
        keep_nodes, [f"FP8 E4M3 Q/DQ on the inputs of {len(activations)} activation(s) of Conv/Gemm/MatMul layers "
                     f"(per tensor, amax by {calibrator}) and {len(weights)} weight(s) (per output channel); every "
                     "other layer left in FP32 (its FP16/BF16 rounding in the engine is not simulated)"])
