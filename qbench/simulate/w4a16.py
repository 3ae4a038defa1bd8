"""W4A16 simulation: INT4 weights, blockwise, dequantized to FP16; FP16 activations.

The weight-only quantization TensorRT builds from ``DequantizeLinear`` on a MatMul/Gemm weight with
a ``block_size`` (opset 21, int4 codes): each block of ``block`` consecutive weights along the
input-channel (reduction) axis shares one scale, ``scale = max|w_block| / 7`` rounded to FP16 (the
scale's type is the DQ output's type, FP16 in a W4A16 engine), codes ``clip(rint(w / scale), -8, 7)``
(nearest even, as DequantizeLinear's inverse). The engine's DequantizeLinear writes FP16, so the
weight it multiplies by is ``code * scale`` rounded to FP16 (3 code bits times 11 scale bits can need
14): the simulation rounds the DQ output through FP16 like every other activation.

Placement: NVIDIA Model Optimizer's INT4 mode quantizes the weights of MatMul and Gemm only
(Conv stays FP16), activations stay FP16, and TensorRT's weight-only GEMM kernels read the INT4
weight and accumulate in FP32. So the candidate is the FP16 ``likely`` simulation
(qbench.simulate.fp16) of a model whose MatMul/Gemm weights went through INT4 first.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import SimulatedModel, as_graph, copy_at_opset, resolve_keep_float
from qbench.simulate.fp16 import build_fp16_model
from qbench.simulate.rewrite import Rewriter, names_read

INT4_MIN, INT4_MAX = -8, 7
INT4_OPSET = 21  # blockwise DequantizeLinear (block_size) and the int4 type arrive in opset 21
BLOCK = 128
WEIGHT_ONLY_OPS = ("MatMul", "Gemm")


def reduction_axis(node: onnx.NodeProto, weight_ndim: int) -> int | None:
    """The input-channel axis of a MatMul/Gemm weight (the axis its products are summed over)."""
    if node.op_type == "MatMul":
        return weight_ndim - 2 if weight_ndim >= 2 else None
    if node.op_type == "Gemm":
        trans_b = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "transB"), 0)
        return 1 if trans_b else 0
    return None


def block_codes(w: np.ndarray, axis: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """INT4 codes (int8 array holding -8..7) and float32 scales (FP16 values) of ``w``, blocks of
    ``block`` along ``axis``; the last block may be shorter. All-zero blocks get scale 1."""
    w = np.asarray(w, dtype=np.float32)
    moved = np.moveaxis(w, axis, 0)
    k = moved.shape[0]
    n_blocks = -(-k // block)
    pad = n_blocks * block - k
    padded = np.concatenate([moved, np.zeros((pad,) + moved.shape[1:], np.float32)]) if pad else moved
    blocks = padded.reshape((n_blocks, block) + moved.shape[1:])
    amax = np.abs(blocks).max(axis=1)
    scale = (amax / INT4_MAX).astype(np.float16).astype(np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(blocks / scale[:, None]), INT4_MIN, INT4_MAX).astype(np.int8)
    codes = codes.reshape((n_blocks * block,) + moved.shape[1:])[:k]
    return np.moveaxis(codes, 0, axis), np.moveaxis(scale, 0, axis)


def dequantize(codes: np.ndarray, scale: np.ndarray, axis: int, block: int = BLOCK) -> np.ndarray:
    """The weight DequantizeLinear(block_size) yields, in numpy (the tests' oracle)."""
    return codes.astype(np.float32) * np.repeat(scale, block, axis=axis).take(range(codes.shape[axis]), axis=axis)


def plan_w4(graph: ModelGraph, keep_tensors=frozenset(), keep_nodes=frozenset()) -> dict[str, int]:
    """Constant MatMul/Gemm weights (rank >= 2) -> their input-channel axis, kept ones excluded."""
    plan: dict[str, int] = {}
    inits = graph.initializer_names
    for index, node in enumerate(graph.model.graph.node):
        if index in keep_nodes or node.op_type not in WEIGHT_ONLY_OPS or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in inits or name in keep_tensors:
            continue
        w = graph.initializer(name)
        axis = reduction_axis(node, w.ndim)
        if w.dtype == np.float32 and w.ndim >= 2 and axis is not None:
            plan.setdefault(name, axis)
    return plan


ALPHAS = tuple(i / 10 for i in range(11))  # AWQ's grid of exponents; 0 is plain round-to-nearest


def awq_scale(w: np.ndarray, axis: int, mean_abs: np.ndarray, mean_sq: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, float]:
    """AWQ's activation-aware per-input-channel scale ``s`` of one weight (Lin et al., "AWQ:
    Activation-aware Weight Quantization", 2023): ``s = mean|x_k|^alpha`` (normalised to a geometric
    mean of 1), the weight quantized as ``Q(w * s) / s``, alpha picked from ``ALPHAS`` to minimise the
    layer's expected output error. The error uses only the per-channel second moments of the input
    (``sum_k E[x_k^2] * |row_k error|^2``, the diagonal of E[x x^T]), so the one statistics pass
    suffices; alpha = 0 (s = 1) is plain RTN, so the chosen scale is never worse on that measure.
    Returns (s along ``axis``, the alpha chosen)."""
    wk = np.moveaxis(np.asarray(w, np.float32), axis, 0)
    k = wk.shape[0]
    flat = wk.reshape(k, -1)
    base = np.maximum(np.asarray(mean_abs, np.float64).reshape(k), 1e-8)
    weight_of_row = np.asarray(mean_sq, np.float64).reshape(k, 1)
    best = (np.inf, np.ones(k, np.float32), 0.0)
    for alpha in ALPHAS:
        s = base ** alpha
        s = (s / np.exp(np.log(s).mean())).astype(np.float32)
        codes, scale = block_codes(flat * s[:, None], 0, block)
        approx = dequantize(codes, scale, 0, block) / s[:, None]
        err = float((weight_of_row * (approx - flat).astype(np.float64) ** 2).sum())
        if err < best[0]:
            best = (err, s, alpha)
    return best[1], best[2]


def awq_inputs(graph, keep_float=()) -> dict[str, str]:
    """Weight -> the activation its MatMul/Gemm reads: the tensors AWQ needs per-channel statistics of."""
    graph = as_graph(graph)
    plan = plan_w4(graph, *resolve_keep_float(graph, keep_float))
    return {n.input[1]: n.input[0] for n in graph.model.graph.node
            if n.op_type in WEIGHT_ONLY_OPS and len(n.input) > 1 and n.input[1] in plan and plan[n.input[1]] == reduction_axis(n, graph.initializer(n.input[1]).ndim)
            and n.input[0] not in graph.initializer_names and not (n.op_type == "Gemm" and any(a.name == "transA" and a.i for a in n.attribute))}


def int4_weight_model(graph, keep_float=(), *, block: int = BLOCK, channel_stats: dict | None = None):
    """(ModelProto with the blockwise INT4 DequantizeLinear on every planned weight, the plan): the
    model TensorRT builds W4A16 from (activations float, converted by the FP16 flag).

    ``channel_stats`` (AWQ, optional): activation name -> (mean |x_k|, mean x_k^2) over its last axis;
    each weight read by such an activation is quantized as ``Q(w * s)`` and its MatMul reads
    ``x * (1/s)`` through a new Mul (Model Optimizer's ONNX AWQ puts the same pre-quantization scale
    on the activation), ``s`` from ``awq_scale``."""
    if block < 2:
        raise QbenchError(f"INT4 block size must be at least 2, not {block}")
    graph = as_graph(graph)
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_w4(graph, keep_tensors, keep_nodes)
    if not plan:
        return graph.model, plan
    awq = {}
    for weight, act in (awq_inputs(graph, keep_float).items() if channel_stats else ()):
        if act in channel_stats:
            mean_abs, mean_sq = channel_stats[act]
            if np.size(mean_abs) == graph.initializer(weight).shape[plan[weight]]:
                awq[weight] = awq_scale(graph.initializer(weight), plan[weight], mean_abs, mean_sq, block)[0]
    model = copy_at_opset(graph.model, INT4_OPSET)
    rw = Rewriter(model)
    for name, axis in plan.items():
        w = graph.initializer(name)
        if name in awq:
            shape = [1] * w.ndim
            shape[axis] = -1
            w = w * awq[name].reshape(shape)
        codes, scale = block_codes(w, axis, block)
        _, target = rw.tap(name)
        codes_name, scale_name = name + naming.INT4, name + naming.SCALE
        rw.add_initializer(helper.make_tensor(codes_name, TensorProto.INT4, list(codes.shape), codes.reshape(-1).tolist()))
        rw.add_initializer(numpy_helper.from_array(scale, scale_name))
        rw.add_chain(name, [helper.make_node("DequantizeLinear", [codes_name, scale_name], [target],
                                             name=f"{name}::DequantizeLinear", axis=axis, block_size=block)])
    model = rw.apply()
    for weight, s in awq.items():  # x * (1/s) in front of the MatMul that reads Q(w * s)
        index = next(i for i, n in enumerate(model.graph.node) if n.op_type in WEIGHT_ONLY_OPS and len(n.input) > 1
                     and n.input[1] == weight)
        node = model.graph.node[index]
        inv, scaled = weight + "::awq_inv_scale", weight + "::awq_input"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        model.graph.node.insert(index, helper.make_node("Mul", [node.input[0], inv], [scaled], name=weight + "::AwqScale"))
        model.graph.node[index + 1].input[0] = scaled
    # the float originals (``w::float``) are read by nothing once every reader takes the DQ output;
    # weights an If/Loop body reads by name (openWakeWord's verifier head) are read, and stay
    used = names_read(model.graph)
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model, plan


def build_w4a16_model(graph, keep_float=(), *, block: int = BLOCK, channel_stats: dict | None = None) -> SimulatedModel:
    """INT4 blockwise weights on MatMul/Gemm, then FP16 rounding of the rest (module docstring);
    ``channel_stats``: AWQ's activation statistics (``int4_weight_model``), None for round-to-nearest."""
    graph = as_graph(graph)
    model, plan = int4_weight_model(graph, keep_float, block=block, channel_stats=channel_stats)
    source = ModelGraph.from_proto(model, name=graph.name) if plan else graph
    # the INT4 chains' outputs are float activations of the new model: FP16 rounds them as the
    # engine's FP16 DequantizeLinear does; the nodes kept in float are kept there too
    sim = build_fp16_model(source, keep_float=keep_float, mode="likely")
    sim.precision = "w4a16"
    sim.source = graph.name
    sim.weights = list(plan) + [w for w in sim.weights if w not in plan and not w.endswith(naming.SCALE)]
    sim.quantized = [n for n in sim.quantized if n not in plan]
    sim.assumptions = [f"INT4 weights ({'AWQ-scaled, ' if channel_stats else ''}blocks of {block} along the input channels, scale max/7 in FP16) on "
                       f"{len(plan)} MatMul/Gemm weight(s); Conv and every activation in FP16"] + list(sim.assumptions)
    return sim
