"""NVFP4 simulation: FP4 (E2M1) values with an FP8 (E4M3) scale per block of 16 and one FP32 scale
per tensor, on the inputs and weights of MatMul/Gemm layers -- without any FP4 kernel.

Format (NVIDIA's NVFP4, Blackwell): a tensor is cut into blocks of 16 consecutive values along the
reduction axis. With the per-tensor scale ``g = amax / (6 * 448)`` each block gets the E4M3 scale
``s = e4m3(max|block| / (6 * g))`` and each value the E2M1 code ``q = e2m1(x / (s * g))`` (nearest
even, saturated at +-6); the value the GEMM sees is ``q * s * g``. Weights are quantized offline;
activations dynamically (every block's scale from its own values at run time), with ``g`` from the
calibrated amax (max calibrator, as for FP8).

ONNX Runtime 1.32's CPU build has no FLOAT4E2M1 QuantizeLinear, DequantizeLinear or Cast kernel, so:

- weights are fake-quantized here with numpy and ml_dtypes.float4_e2m1fn and stored as a float32
  initializer holding exactly ``q * s * g``;
- activations go through an exact decomposition in standard ops: Reshape to rows of 16 (valid
  because the block axis is the last one and its length is a multiple of 16), ReduceMax(Abs) per row,
  the block scale through ``Cast(to=FLOAT8E4M3FN)`` (saturating, round to nearest even), and the
  E2M1 rounding as ``step * Round(|y| / step)`` with ``step`` = 0.5 below 2, 1 below 4, 2 up to 6:
  on each of those three ranges the E2M1 values are exactly the multiples of ``step``, ``|y|/step``
  is exact (a power-of-two step), and ONNX's Round rounds half to even, which is E2M1's tie rule
  (the even neighbour is the one with mantissa 0, an even multiple of the step). A test holds the
  decomposition equal to ml_dtypes on real tensors.

Placement: MatMul/Gemm layers with a constant weight (TensorRT runs FP4 only in GEMMs; Model
Optimizer's NVFP4 recipes quantize linear layers' inputs and weights); attention's matmuls between
two activations, Conv and everything else stay float. A reduction length that is not a multiple of
16 ends in a shorter block (an assumption about the engine's padding, said in the assumptions).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import SimulatedModel, as_graph, copy_at_opset, finish, kept_node_outputs, resolve_keep_float
from qbench.simulate.fp8 import E4M3_MAX, observed_amax, to_e4m3
from qbench.simulate.rewrite import Rewriter
from qbench.simulate.w4a16 import plan_w4

BLOCK = 16
E2M1_MAX = 6.0
NVFP4_OPSET = 19  # Cast to FLOAT8E4M3FN


def to_e2m1(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to E2M1 (nearest even), saturated at +-6, as float32 (ml_dtypes' rounding)."""
    return np.clip(np.asarray(x, np.float32), -E2M1_MAX, E2M1_MAX).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)


def global_scale(amax: float) -> float:
    return amax / (E2M1_MAX * E4M3_MAX) if amax > 0 else 1.0


def fake_quantize_blocks(x: np.ndarray, g: float) -> np.ndarray:
    """NVFP4 of ``x`` with blocks of 16 along its LAST axis and per-tensor scale ``g`` (the oracle of
    the ONNX decomposition, and the weights' offline rounding). A last axis that is not a multiple of
    16 ends in a shorter block (zero padding changes no block maximum and is cut off again)."""
    x = np.asarray(x, np.float32)
    k = x.shape[-1]
    pad = (-k) % BLOCK
    if pad:
        padded = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1)
        return fake_quantize_blocks(padded, g)[..., :k]
    rows = x.reshape(-1, BLOCK)
    g = np.float32(g)
    s = to_e4m3(np.abs(rows).max(axis=1, keepdims=True) / (np.float32(E2M1_MAX) * g)).astype(np.float32)
    scale = s * g
    safe = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    return (to_e2m1(rows / safe) * safe).reshape(x.shape)


def quantize_weight(w: np.ndarray, axis: int) -> np.ndarray:
    """A MatMul/Gemm weight in NVFP4 with blocks along its input-channel ``axis``, as float32 values."""
    moved = np.moveaxis(np.asarray(w, np.float32), axis, -1)
    g = global_scale(float(np.abs(moved).max(initial=0.0)))
    return np.moveaxis(fake_quantize_blocks(moved, g), -1, axis).astype(np.float32)


def _chain(name: str, source: str, target: str, g: float, rw: Rewriter, k: int) -> list:
    """The exact NVFP4 decomposition of ``source`` (last axis of length ``k``) into ``target``
    (module docstring); a ``k`` that is not a multiple of 16 is zero-padded to one and cut back."""
    p = f"{name}::nvfp4"
    pad = (-k) % BLOCK
    consts = {"rows": np.array([-1, BLOCK], np.int64), "axes": np.array([1], np.int64),
              "k": np.array([-1, k], np.int64), "kp": np.array([-1, k + pad], np.int64),
              "pads": np.array([0, 0, 0, pad], np.int64), "start": np.array([0], np.int64),
              "end": np.array([k], np.int64), "axis1": np.array([1], np.int64), "g6": np.array(E2M1_MAX * g, np.float32),
              "g": np.array(g, np.float32), "one": np.array(1, np.float32), "zero": np.array(0, np.float32),
              "two": np.array(2, np.float32), "four": np.array(4, np.float32), "six": np.array(E2M1_MAX, np.float32),
              "half": np.array(0.5, np.float32)}
    for key, value in consts.items():
        rw.add_initializer(numpy_helper.from_array(value, f"{p}::{key}"))
    c = lambda key: f"{p}::{key}"  # noqa: E731
    n = lambda op, ins, out, **kw: helper.make_node(op, ins, [c(out)], name=c(out), **kw)  # noqa: E731
    head = [n("Shape", [source], "shape"), n("Reshape", [source, c("k")], "x2")]
    if pad:
        head.append(n("Pad", [c("x2"), c("pads")], "x2p"))
    head.append(n("Reshape", [c("x2p" if pad else "x2"), c("rows")], "x"))
    tail = [n("Reshape", [c("dq"), c("kp")], "back")]
    if pad:
        tail.append(n("Slice", [c("back"), c("start"), c("end"), c("axis1")], "cut"))
    tail.append(helper.make_node("Reshape", [c("cut" if pad else "back"), c("shape")], [target], name=f"{p}::out"))
    return head + [
        n("Abs", [c("x")], "ax"),
        n("ReduceMax", [c("ax"), c("axes")], "amax", keepdims=1),  # opset 18+: axes is an input
        n("Div", [c("amax"), c("g6")], "sraw"),
        n("Cast", [c("sraw")], "s8", to=TensorProto.FLOAT8E4M3FN),
        n("Cast", [c("s8")], "s", to=TensorProto.FLOAT),
        n("Mul", [c("s"), c("g")], "scale"),
        n("Equal", [c("scale"), c("zero")], "is0"),
        n("Where", [c("is0"), c("one"), c("scale")], "safe"),
        n("Div", [c("x"), c("safe")], "y"),
        n("Abs", [c("y")], "ay"),
        n("Min", [c("ay"), c("six")], "a"),
        n("Less", [c("a"), c("two")], "lt2"),
        n("Less", [c("a"), c("four")], "lt4"),
        n("Where", [c("lt4"), c("one"), c("two")], "step24"),
        n("Where", [c("lt2"), c("half"), c("step24")], "step"),
        n("Div", [c("a"), c("step")], "units"),
        n("Round", [c("units")], "runits"),
        n("Mul", [c("runits"), c("step")], "q"),
        n("Sign", [c("y")], "sign"),
        n("Mul", [c("q"), c("sign")], "sq"),
        n("Mul", [c("sq"), c("safe")], "dq"),
    ] + tail


def build_nvfp4_model(graph, ranges, keep_float=()) -> SimulatedModel:
    """NVFP4 on the MatMul/Gemm layers with constant weights (module docstring)."""
    graph: ModelGraph = as_graph(graph)
    if ranges is None:
        raise QbenchError("an NVFP4 simulation needs activation ranges (its per-tensor scales): calibrate, or give --ranges")
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    weights = plan_w4(graph, keep_tensors, keep_nodes)
    skipped, activations = [], {}
    nodes = {n.input[1]: n for n in graph.model.graph.node if len(n.input) > 1 and n.input[1] in weights}
    for name, axis in list(weights.items()):
        node = nodes[name]
        k = graph.initializer(name).shape[axis]
        x = node.input[0]
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        if trans_a or x in graph.initializer_names:
            skipped.append(f"{node.name or name}: its activation is transposed or constant")
            del weights[name]
            continue
        if k % BLOCK:
            skipped.append(f"{node.name or name}: reduction length {k} ends in a block of {k % BLOCK} (kept, zero-padded)")
        if x not in keep_tensors:
            activations.setdefault(x, k)
    missing = [n for n in activations if n not in ranges]
    if missing:
        raise QbenchError(f"no range for tensor {missing[0]!r}: calibrate this model, or keep it in float with --keep-float")
    model = copy_at_opset(graph.model, NVFP4_OPSET)
    rw = Rewriter(model, kept_node_outputs(graph, keep_nodes))
    for name in activations:
        amax = observed_amax(ranges, name, "max")
        if not math.isfinite(amax):
            raise QbenchError(f"range of {name!r} is {amax}")
        source, target = rw.tap(name)
        rw.add_chain(name, _chain(name, source, target, global_scale(amax), rw, activations[name]))
    for name, axis in weights.items():
        _, target = rw.tap(name)
        fq = name + naming.FP4
        rw.add_initializer(numpy_helper.from_array(quantize_weight(graph.initializer(name), axis), fq))
        rw.add_chain(name, [helper.make_node("Identity", [fq], [target], name=f"{name}::NVFP4")])
    return SimulatedModel.explicit(
        graph, finish(rw.apply(), "NVFP4", graph.model), "nvfp4", activations, weights, keep_tensors,
        keep_nodes, [f"NVFP4 (E2M1, E4M3 scale per 16 values, FP32 scale per tensor) on {len(weights)} MatMul/Gemm "
                     "layer(s): weights offline, activations with dynamic block scales; everything else in FP32"]
                    + [f"layout: {why}" for why in skipped])
