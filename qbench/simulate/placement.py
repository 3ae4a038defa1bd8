"""Where INT8 quantization goes when TensorRT builds an implicitly quantized (calibrated) engine.

With a calibration cache every tensor has a dynamic range, and TensorRT picks, per fused layer, an
INT8 or a float kernel; a tensor is stored in INT8 only between layers that both run INT8. The
simulation puts Q/DQ exactly on the tensors that are then stored in INT8. The rules (each with its
source in docs/SIMULATION.md):

1. **Fusion first.** A Conv/ConvTranspose/Gemm/MatMul absorbs a following BatchNormalization, a
   residual Add (the other operand is read by the fused kernel), and a chain of pointwise
   activations (Relu, Clip, LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish, and x*sigmoid(x));
   tensors inside a fused layer are never materialised, so they are never quantized.
2. **Weighted layers and pooling run INT8**: their activation inputs are quantized per tensor,
   their weights per output channel (Conv axis 0, ConvTranspose 1, Gemm 0 with transB=1 else 1,
   MatMul with a constant right operand: the last axis).
3. **Concat inputs share the output's scale.** TensorRT removes a Concat by having each input's
   producer write into the output buffer, so in INT8 every input is quantized with the Concat
   output's range. A head concatenating pixel boxes (hundreds) with sigmoid scores (<= 1) thus
   rounds every score to zero (``concat_hazards`` names such a Concat).
4. **Network outputs are FP32** (TensorRT reformats them); a layer producing an output directly
   writes float unless it sits behind an INT8 Concat.
5. **Layers without INT8 kernels stay float** (Softmax, reductions, normalisations, Exp/Log/Div,
   ArgMax, TopK, ...): their inputs are not quantized on their account.

Modes: ``likely`` (default) applies rules 1-5 as TensorRT usually resolves them (a Concat runs INT8
when every input comes from an INT8-capable layer); ``worst`` quantizes every tensor with a range
wherever TensorRT *could* choose INT8: every fused-layer output produced by an INT8-capable layer,
network outputs included, and every Concat fed by at least one such layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from qbench.errors import QbenchError
from qbench.model import ModelGraph

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
RESIDUAL_OPS = ("Add",)
ACTIVATION_OPS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "PRelu", "Elu", "Selu")
# Layers with INT8 implementations in TensorRT, or format-agnostic data movement (shuffles, slices).
INT8_CAPABLE = set(WEIGHTED_OPS + POOLING_OPS + ACTIVATION_OPS) | {
    "Add", "Sub", "Mul", "BatchNormalization", "Concat", "Resize", "Upsample", "Reshape", "Transpose", "Flatten",
    "Squeeze", "Unsqueeze", "Slice", "Identity", "Pad", "DepthToSpace", "SpaceToDepth", "Split", "Max", "Min",
}
PLACEMENTS = ("likely", "worst")


@dataclass
class Int8Plan:
    """activations: tensor -> why it is quantized (graph order); weights: initializer -> axis (None
    for per-tensor); scale_from: tensor -> the tensor whose range gives its scale (Concat inputs ->
    the Concat output); fused: tensor -> name of the fused layer it is internal to."""

    activations: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int | None] = field(default_factory=dict)
    scale_from: dict[str, str] = field(default_factory=dict)
    concat_of: dict[str, str] = field(default_factory=dict)  # Concat input -> the Concat node's display name
    fused: dict[str, str] = field(default_factory=dict)
    placement: str = "likely"

    def range_tensor(self, name: str) -> str:
        return self.scale_from.get(name, name)


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


def fusion_groups(graph: ModelGraph) -> dict[str, str]:
    """Tensors internal to a fused layer -> the fused layer's name (its node names joined by ' + ',
    as TensorRT names fused layers). Rule 1 of the module docstring."""
    consumers = graph.consumers
    names = graph.node_names
    index = {id(n): i for i, n in enumerate(graph.model.graph.node)}
    outputs = set(graph.output_names)
    internal: dict[str, str] = {}
    for node in graph.model.graph.node:
        if node.op_type not in WEIGHTED_OPS or not node.output:
            continue
        members = [names[index[id(node)]]]
        inner: list[str] = []
        tensor = node.output[0]
        stage = 0  # 0: BN allowed, 1: residual Add allowed, 2: activations only
        while tensor not in outputs:
            users = consumers.get(tensor, [])
            nxt = None
            if len(users) == 1:
                nxt = users[0]
            elif len(users) == 2 and {u.op_type for u in users} == {"Sigmoid", "Mul"}:
                # x * sigmoid(x) (SiLU/Swish): one pointwise fusion
                sig = next(u for u in users if u.op_type == "Sigmoid")
                mul = next(u for u in users if u.op_type == "Mul")
                if sig.output[0] in mul.input and len(consumers.get(sig.output[0], [])) == 1:
                    inner += [tensor, sig.output[0]]
                    members += [names[index[id(sig)]], names[index[id(mul)]]]
                    tensor = mul.output[0]
                    stage = 2
                    continue
            if nxt is None:
                break
            op = nxt.op_type
            if op == "BatchNormalization" and stage == 0:
                stage = 1
            elif op in RESIDUAL_OPS and stage <= 1 and len([i for i in nxt.input if i]) == 2 and \
                    all(i not in graph.initializer_names for i in nxt.input):
                stage = 2
            elif op in ACTIVATION_OPS:
                stage = 2
            else:
                break
            inner.append(tensor)
            members.append(names[index[id(nxt)]])
            tensor = nxt.output[0]
        label = " + ".join(members)
        for t in inner:
            internal[t] = label
    return internal


def plan_int8(graph: ModelGraph, keep_tensors: set[str] = frozenset(), keep_nodes: set[int] = frozenset(),
              placement: str = "likely") -> Int8Plan:
    """``keep_nodes``: node indices (``resolve_keep_float``), so unnamed nodes can be kept too."""
    if placement not in PLACEMENTS:
        raise QbenchError(f"unknown INT8 placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    initializers = graph.initializer_names
    input_names = {i.name for i in graph.inputs if i.elem_type == onnx.TensorProto.FLOAT}
    types = graph.elem_types
    nodes = list(graph.model.graph.node)
    kept_outputs = {o for i in keep_nodes for o in nodes[i].output}
    internal = fusion_groups(graph)
    producer = graph.producer
    outputs = set(graph.output_names)
    plan = Int8Plan(placement=placement, fused=dict(internal))

    def is_activation(name: str) -> bool:
        if not name or name in initializers or name in keep_tensors or name in internal:
            return False
        return name in input_names or types.get(name) == onnx.TensorProto.FLOAT

    def int8_producer(name: str) -> bool:
        """The tensor comes from a layer that can write INT8 (or is a network input)."""
        if name in input_names:
            return True
        node = producer.get(name)
        return node is not None and node.op_type in INT8_CAPABLE and node.output[0] not in kept_outputs

    wanted: dict[str, str] = {}
    for index, node in enumerate(nodes):
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
                index_, axis = slot
                name = node.input[index_]
                if name in initializers and name not in keep_tensors:
                    if axis == -1:
                        axis = graph.initializer(name).ndim - 1
                    plan.weights.setdefault(name, axis)
        elif op in POOLING_OPS:
            if is_activation(node.input[0]):
                wanted.setdefault(node.input[0], f"{op} input")
        elif op in RESIDUAL_OPS:
            operands = [i for i in node.input if i and i not in initializers
                        and (i in input_names or types.get(i) == onnx.TensorProto.FLOAT)]
            if len(operands) < 2:
                continue  # a bias or scale add, not a residual connection
            # the operand from a weighted layer is fused with it (Conv + Add); the other is read in INT8
            from_weighted = [producer.get(i) is not None and producer[i].op_type in WEIGHTED_OPS for i in operands]
            chosen = [i for i, w in zip(operands, from_weighted) if not w] or operands[1:]
            for name in chosen:
                if is_activation(name):
                    wanted.setdefault(name, f"residual {op} input")
    if placement == "worst":
        for t in graph.tensors:
            if is_activation(t.name) and int8_producer(t.name) and t.name not in wanted:
                wanted[t.name] = f"{producer[t.name].op_type} output (could be INT8)"
    # Concat: inputs written into the output buffer, at the output's scale (rule 3)
    names = graph.node_names
    for index, node in enumerate(nodes):
        if node.op_type != "Concat" or index in keep_nodes or not node.output or node.output[0] in keep_tensors:
            continue
        out = node.output[0]
        if types.get(out) != onnx.TensorProto.FLOAT:
            continue
        inputs = [i for i in node.input if i and i not in initializers]
        capable = [int8_producer(i) for i in inputs]
        runs_int8 = all(capable) if placement == "likely" else any(capable)
        if not inputs or not runs_int8:
            continue
        for name in inputs:
            if name in keep_tensors or types.get(name, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT:
                continue
            wanted[name] = f"input of {names[index]} (Concat: shares its output's scale)"
            plan.scale_from[name] = out
            plan.concat_of[name] = names[index]
    if placement == "likely":
        # rule 4: outputs stay FP32 unless they are INT8 only because a Concat writes them
        for name in list(wanted):
            if name in outputs and name not in plan.scale_from:
                del wanted[name]
    order = [i.name for i in graph.inputs] + [t.name for t in graph.tensors]
    plan.activations = {name: wanted[name] for name in order if name in wanted}
    return plan


@dataclass
class ConcatHazard:
    """A Concat whose shared INT8 scale rounds one of its inputs (nearly) to zero."""

    concat: str
    tensor: str  # the input that collapses
    input_amax: float
    concat_amax: float

    @property
    def step(self) -> float:
        return self.concat_amax / 127.0

    def message(self) -> str:
        return (f"{self.concat} (Concat) quantizes its input {self.tensor!r} (max |x| {self.input_amax:.4g}) with the "
                f"scale of its output (amax {self.concat_amax:.4g}, step {self.step:.4g}): in INT8 TensorRT writes "
                f"Concat inputs into the output buffer, so every value below {self.step / 2:.4g} becomes 0. Fix: run "
                f"{self.concat} and its inputs' producers in FP32/FP16 (--keep-float {self.concat}; in TensorRT a layer "
                f"precision constraint with OBEY_PRECISION_CONSTRAINTS), or export the boxes and scores as separate "
                f"outputs instead of one concatenated tensor")


def concat_hazards(plan: Int8Plan, ranges, observed: dict[str, float] | None = None,
                   threshold: float = 0.5) -> list[ConcatHazard]:
    """Concat inputs whose own range is at most ``threshold`` INT8 steps of the shared scale (below
    half a step every value rounds to 0), largest scale mismatch first. ``observed``: max |x| per
    tensor when known (else the input's own calibrated range, or its histogram maximum)."""
    hazards = []
    for name, concat in plan.concat_of.items():
        out = plan.scale_from[name]
        if out not in ranges:
            continue
        concat_amax = float(ranges.amax(out))
        own = None
        if observed and name in observed:
            own = observed[name]
        elif name in ranges:
            entry = ranges[name]
            own = entry.summary.get("absmax", entry.amax) if entry.summary else entry.amax
        if own is None or concat_amax <= 0:
            continue
        if own <= threshold * concat_amax / 127.0:
            hazards.append(ConcatHazard(concat, name, float(own), concat_amax))
    return sorted(hazards, key=lambda h: h.input_amax / h.concat_amax)
