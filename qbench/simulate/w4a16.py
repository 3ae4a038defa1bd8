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
from qbench.simulate.rewrite import Rewriter

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


def int4_weight_model(graph, keep_float=(), *, block: int = BLOCK):
    """(ModelProto with the blockwise INT4 DequantizeLinear on every planned weight, the plan): the
    model TensorRT builds W4A16 from (activations float, converted by the FP16 flag)."""
    if block < 2:
        raise QbenchError(f"INT4 block size must be at least 2, not {block}")
    graph = as_graph(graph)
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_w4(graph, keep_tensors, keep_nodes)
    if not plan:
        return graph.model, plan
    model = copy_at_opset(graph.model, INT4_OPSET)
    rw = Rewriter(model)
    for name, axis in plan.items():
        codes, scale = block_codes(graph.initializer(name), axis, block)
        _, target = rw.tap(name)
        codes_name, scale_name = name + naming.INT4, name + naming.SCALE
        rw.add_initializer(helper.make_tensor(codes_name, TensorProto.INT4, list(codes.shape), codes.reshape(-1).tolist()))
        rw.add_initializer(numpy_helper.from_array(scale, scale_name))
        rw.add_chain(name, [helper.make_node("DequantizeLinear", [codes_name, scale_name], [target],
                                             name=f"{name}::DequantizeLinear", axis=axis, block_size=block)])
    model = rw.apply()
    # the float originals (``w::float``) are read by nothing once every reader takes the DQ output
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model, plan


def build_w4a16_model(graph, keep_float=(), *, block: int = BLOCK) -> SimulatedModel:
    """INT4 blockwise weights on MatMul/Gemm, then FP16 rounding of the rest (module docstring)."""
    graph = as_graph(graph)
    model, plan = int4_weight_model(graph, keep_float, block=block)
    source = ModelGraph.from_proto(model, name=graph.name) if plan else graph
    # the INT4 chains' outputs are float activations of the new model: FP16 rounds them as the
    # engine's FP16 DequantizeLinear does; the nodes kept in float are kept there too
    sim = build_fp16_model(source, keep_float=keep_float, mode="likely")
    sim.precision = "w4a16"
    sim.source = graph.name
    sim.weights = list(plan) + [w for w in sim.weights if w not in plan and not w.endswith(naming.SCALE)]
    sim.quantized = [n for n in sim.quantized if n not in plan]
    sim.assumptions = [f"INT4 weights (blocks of {block} along the input channels, scale max/7 in FP16) on "
                       f"{len(plan)} MatMul/Gemm weight(s); Conv and every activation in FP16"] + list(sim.assumptions)
    return sim
