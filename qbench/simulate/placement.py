"""Where INT8 quantization goes: which activations get Q/DQ and which weights are quantized.

The rules follow TensorRT's explicit-quantization guidance and NVIDIA's own quantizers
(pytorch-quantization's default quantized modules, TensorRT Model Optimizer's ONNX placement):

- Weighted layers run INT8 kernels, so their activation input gets a per-tensor Q/DQ and their
  weight a per-output-channel one: Conv (weight axis 0), ConvTranspose (axis 1), Gemm (axis 0
  with transB=1, else 1), MatMul with a constant right operand (last axis).
- Pooling (MaxPool, AveragePool, GlobalAveragePool) has INT8 kernels in TensorRT and is
  quantized by pytorch-quantization by default; its input gets Q/DQ.
- A residual Add (two activation operands) gets Q/DQ on the operand that does not come straight
  from a weighted layer, so TensorRT can fuse "Conv + Add" into one INT8 kernel; the Conv operand
  stays float, as it would inside the fused kernel.
- Everything else (activations, elementwise ops with constants, Resize, Concat, normalisation)
  stays float: TensorRT moves Q/DQ across such ops itself, and quantizing them would add error
  an explicit-quantization engine does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from qbench.model import ModelGraph

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")
RESIDUAL_OPS = ("Add",)


@dataclass
class Int8Plan:
    """activations: tensor -> why it is quantized (graph order); weights: initializer -> axis
    (None for per-tensor)."""

    activations: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int | None] = field(default_factory=dict)


def weight_slot(node: onnx.NodeProto, initializers: set[str]) -> tuple[int, int | None] | None:
    """(input index, per-channel axis) of a weighted node's weight, or None if it has none."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        return 1, 0
    if node.op_type == "ConvTranspose":
        return 1, 1
    if node.op_type == "Gemm":
        return 1, 0 if attrs.get("transB", 0) else 1
    if node.op_type == "MatMul":
        if len(node.input) > 1 and node.input[1] in initializers:
            return 1, -1  # resolved to the last axis once the rank is known
        if node.input[0] in initializers:
            return 0, None
        return None
    return None


def plan_int8(graph: ModelGraph, keep_tensors: set[str] = frozenset(), keep_nodes: set[int] = frozenset()) -> Int8Plan:
    """``keep_nodes``: node indices (``resolve_keep_float``), so unnamed nodes can be kept too."""
    initializers = graph.initializer_names
    input_names = {i.name for i in graph.inputs if i.elem_type == onnx.TensorProto.FLOAT}
    types = graph.elem_types
    plan = Int8Plan()

    def is_activation(name: str) -> bool:
        if not name or name in initializers or name in keep_tensors:
            return False
        return name in input_names or types.get(name) == onnx.TensorProto.FLOAT

    wanted: dict[str, str] = {}
    for index, node in enumerate(graph.model.graph.node):
        if index in keep_nodes:
            continue
        op = node.op_type
        if op in WEIGHTED_OPS:
            slot = weight_slot(node, initializers)
            data_slots = [0, 1] if op == "MatMul" else [0]
            if op in ("Conv", "ConvTranspose", "Gemm") and slot is not None and node.input[1] not in initializers:
                data_slots = [0, 1]  # a computed weight is quantized like an activation
            for i in data_slots:
                if i < len(node.input) and is_activation(node.input[i]):
                    wanted.setdefault(node.input[i], f"{op} input")
            if slot is not None:
                index, axis = slot
                name = node.input[index]
                if name in initializers and name not in keep_tensors:
                    if axis == -1:
                        axis = graph.initializer(name).ndim - 1
                    plan.weights.setdefault(name, axis)
        elif op in POOLING_OPS:
            if is_activation(node.input[0]):
                wanted.setdefault(node.input[0], f"{op} input")
        elif op in RESIDUAL_OPS:
            operands = [i for i in node.input if is_activation(i)]
            if len(operands) < 2:
                continue  # a bias or scale add, not a residual connection
            from_weighted = [graph.producer.get(i) is not None and graph.producer[i].op_type in WEIGHTED_OPS for i in operands]
            chosen = [i for i, w in zip(operands, from_weighted) if not w] or operands[1:]
            for name in chosen:
                wanted.setdefault(name, f"residual {op} input")
    order = [i.name for i in graph.inputs] + [t.name for t in graph.tensors]
    plan.activations = {name: wanted[name] for name in order if name in wanted}
    return plan
