"""FP16 simulation: every float activation and weight rounded through float16, in a float32 model.

Each float activation ``t`` becomes ``Cast(to=FLOAT16) -> Cast(to=FLOAT)`` of the producer's
output, so values above 65504 become inf, tiny ones flush to zero and the rest lose mantissa bits
exactly as in half precision. Weights are rounded once, offline, with numpy. Inputs and outputs
keep their float32 type; the graph output carries the rounded value.

Two modes, because what an FP16 engine does depends on choices the builder makes:

``likely`` (the default): what TensorRT documents for FP16 builds. BatchNormalization is folded
into the preceding Conv (or becomes one scale layer) in float32 before the weights are converted,
so its statistics are never rounded on their own; every op's arithmetic, reductions included,
stays in float32, as TensorRT's FP16 kernels accumulate in float32 in most layers. Each
SimulatedModel lists these folds in ``assumptions``.

``worst``: the engine (or an older TensorRT, or plain FP16 PyTorch/cuDNN) keeps the layers
unfolded and picks FP16-accumulating kernels. Every parameter is rounded as stored, BN statistics
and LayerNormalization's epsilon included (a running variance of 9.8e7 becomes inf, an epsilon of
1e-12 becomes 0), and the reductions of the Conv/MatMul/Gemm layers named in ``accumulate`` run in
float16: the reduction axis is cut into chunks of ``chunk`` products, each chunk's partial sum is
computed in float32 and rounded to float16, and the partials are added one by one with a rounding
after every addition. That is how a tensor-core MMA with a float16 accumulator proceeds (exact
products summed within one instruction, the accumulator rounded between instructions), so a
running sum that passes 65504 becomes inf here too, and the partials' rounding errors add up. The
chunks are carved by masking the weight, so any group, stride or dilation is reproduced exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import (SimulatedModel, as_graph, copy_at_opset, default_opset, finish, kept_node_names,
                                    kept_node_outputs, resolve_keep_float, warn)
from qbench.simulate.rewrite import Rewriter

MODES = ("likely", "worst")


@dataclass(frozen=True)
class HalfType:
    """The 16-bit float an activation or weight is rounded through: its ONNX type for the Cast, its
    numpy dtype for the weights rounded offline, the label used in messages and the suffix of the
    half tensor (``naming``). FP16 here; BF16 (qbench.simulate.bf16) reuses every rule with its own."""

    onnx_type: int
    dtype: object
    label: str
    suffix: str
    opset: int = 0  # the lowest opset whose Cast takes the type (bfloat16: 13)


FLOAT16 = HalfType(TensorProto.FLOAT16, np.float16, "FP16", naming.FP16)
# Inputs that carry sizes or coordinates rather than data: TensorRT computes them in float32 as
# shape tensors, so rounding them would simulate an error the engine does not make.
SHAPE_SLOTS = {"Resize": (1, 2, 3), "Upsample": (1,)}
# BatchNormalization's statistics are folded into the preceding layer (or into one scale and
# shift) in float32 before TensorRT converts weights to FP16; a running variance above 65504 is
# normal and must not become inf in the ``likely`` mode.
FOLDED_SLOTS = {"BatchNormalization": (1, 2, 3, 4)}
# Layers TensorRT fuses a following BatchNormalization into (its weights absorb the scale).
FOLD_TARGETS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ACCUMULATING_OPS = ("Conv", "MatMul", "Gemm")
# An fp16 tensor-core MMA (m16n8k16) sums 16 products per instruction; the largest layers would
# need hundreds of chunks, so at most MAX_CHUNKS are made and each then holds more products (the
# rounding between chunks, where overflow and most of the error arise, is kept).
CHUNK = 16
MAX_CHUNKS = 16
EPSILON_ATTR = {"BatchNormalization": "epsilon", "LayerNormalization": "epsilon",
                "InstanceNormalization": "epsilon", "GroupNormalization": "epsilon"}


def _slots(mode: str) -> dict:
    return SHAPE_SLOTS if mode == "worst" else {**SHAPE_SLOTS, **FOLDED_SLOTS}


def _is_unrounded_slot(name: str, graph: ModelGraph, slots: dict) -> bool:
    consumers = graph.consumers.get(name, [])
    if not consumers:
        return False
    return all(i in slots.get(n.op_type, ()) for n in consumers for i, x in enumerate(n.input) if x == name)


def fold_plan(graph: ModelGraph) -> list[tuple[str, str | None]]:
    """(BatchNormalization node, the node it folds into or None) for every BN of ``graph``: the
    producer of its input when that is a Conv/ConvTranspose/Gemm/MatMul read by nothing else,
    otherwise None (TensorRT then runs it as a standalone scale layer, still in float32)."""
    name_of = node_name_lookup(graph)
    plan = []
    for node in graph.model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        producer = graph.producer.get(node.input[0])
        target = None
        if producer is not None and producer.op_type in FOLD_TARGETS and len(graph.consumers.get(node.input[0], [])) == 1:
            target = name_of(producer)
        plan.append((name_of(node), target))
    return plan


def node_name_lookup(graph: ModelGraph):
    """node -> its display name (``graph.node_names``), keyed by the node's outputs, since protobuf
    hands out a new Python wrapper object on every access."""
    by_outputs = {tuple(n.output): graph.node_names[i] for i, n in enumerate(graph.model.graph.node)}
    return lambda node: by_outputs[tuple(node.output)]


def _assumptions(graph: ModelGraph, mode: str, accumulated: list[str], skipped: list[str],
                 half: HalfType = FLOAT16) -> list[str]:
    return [line.replace("FP16", half.label) for line in _fp16_assumptions(graph, mode, accumulated, skipped)]


def _fp16_assumptions(graph: ModelGraph, mode: str, accumulated: list[str], skipped: list[str]) -> list[str]:
    plan = fold_plan(graph)
    if mode == "likely":
        lines = [f"{bn} folded into {target} in FP32 (statistics not rounded)" if target else
                 f"{bn} run as a standalone FP32 scale layer (statistics not rounded)" for bn, target in plan]
        lines.append("every op accumulates in FP32; activations and weights are rounded to FP16")
        return lines
    lines = [f"{bn} unfolded: its statistics and epsilon rounded to FP16" for bn, _ in plan]
    if accumulated:
        lines.append(f"FP16 accumulation (chunks of >= {CHUNK} products, partial sums rounded) in: {', '.join(accumulated)}")
    for why in skipped:
        lines.append(f"FP32 accumulation kept: {why}")
    lines.append("every other op accumulates in FP32; all parameters rounded to FP16 as stored")
    return lines


def build_fp16_model(graph, keep_float=(), *, mode: str = "likely", accumulate=(), half: HalfType = FLOAT16) -> SimulatedModel:
    """Round every float32 activation and weight of a copy of ``graph`` through float16.

    ``keep_float``: tensor names left unrounded, or node names whose inputs are read unrounded
    and whose outputs are not rounded. ``mode``: ``likely`` or ``worst`` (module docstring).
    ``accumulate`` (worst mode): names of Conv/MatMul/Gemm nodes whose reduction runs in float16.
    ``half``: the 16-bit type rounded through (FLOAT16; qbench.simulate.bf16 passes BFLOAT16).
    """
    if mode not in MODES:
        raise QbenchError(f"FP16 mode must be one of {', '.join(MODES)}, not {mode!r}")
    if accumulate and mode != "worst":
        raise QbenchError("FP16 accumulation is simulated only in the worst mode")
    graph: ModelGraph = as_graph(graph)
    slots = _slots(mode)
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    model = copy_at_opset(graph.model, max(default_opset(graph.model), half.opset))
    kept_producers = kept_node_outputs(graph, keep_nodes)
    accumulated, skipped = [], []
    if mode == "worst":
        _round_epsilons(model, kept_producers, half)
        accumulated, skipped = _accumulate_in_half(model, graph, set(accumulate), kept_producers)
    rw = Rewriter(model, kept_producers)
    types = graph.elem_types

    inputs = [i.name for i in graph.inputs if i.elem_type == TensorProto.FLOAT]
    activations = [t.name for t in graph.tensors if types.get(t.name) == TensorProto.FLOAT]
    rounded = []
    for name in inputs + activations:
        if name in keep_tensors or name in kept_producers or _is_unrounded_slot(name, graph, slots):
            continue
        source, target = rw.tap(name)
        rounded_name = name + half.suffix
        rw.add_chain(name, [
            helper.make_node("Cast", [source], [rounded_name], name=f"{name}::CastTo{half.label}", to=half.onnx_type),
            helper.make_node("Cast", [rounded_name], [target], name=f"{name}::CastToFloat", to=TensorProto.FLOAT),
        ])
        rounded.append(name)

    # Weights are rounded in place (a Cast pair on a constant would be folded away by ONNX
    # Runtime anyway); nodes kept in float get their own unrounded copy.
    read_by_kept = {i for index in keep_nodes for i in graph.model.graph.node[index].input}
    weights, overflowed = [], []
    for tensor in model.graph.initializer:
        name = tensor.name
        if tensor.data_type != TensorProto.FLOAT or name in keep_tensors or _is_unrounded_slot(name, graph, slots):
            continue
        values = numpy_helper.to_array(tensor)
        if name in read_by_kept:
            rw.add_initializer(numpy_helper.from_array(values, naming.float_name(name)))
            rw.kept_reads[name] = naming.float_name(name)
        with np.errstate(over="ignore"):  # overflow to inf is what is being simulated
            through_half = values.astype(half.dtype).astype(np.float32)
        if not np.isfinite(through_half).all() and np.isfinite(values).all():
            overflowed.append(name)
        tensor.CopyFrom(numpy_helper.from_array(through_half, name))
        weights.append(name)

    if overflowed and mode == "likely":  # in the worst mode the overflow is the point (headroom names it)
        warn(f"{half.label}: {len(overflowed)} weight(s) exceed its largest value and become inf, first {overflowed[0]!r}")
    produced = {t.name for t in graph.tensors}
    sim = SimulatedModel(
        model=finish(rw.apply(), half.label, graph.model),
        precision=half.label.lower(),
        quantized=[n for n in rounded if n in produced],
        quantized_inputs=[n for n in rounded if n not in produced],
        weights=weights,
        kept_float=sorted(keep_tensors),
        kept_nodes=kept_node_names(graph, keep_nodes),
        source=graph.name,
        overflowed_weights=overflowed,
        mode=mode,
        accumulated=accumulated,
        assumptions=_assumptions(graph, mode, accumulated, skipped, half),
    )
    return sim


def _round_epsilons(model, kept_outputs: set[str], half: HalfType = FLOAT16) -> None:
    """Worst mode: a normalization's epsilon attribute is a parameter too (1e-12 flushes to 0)."""
    for node in model.graph.node:
        attr_name = EPSILON_ATTR.get(node.op_type)
        if attr_name is None or any(o in kept_outputs for o in node.output):
            continue
        for attr in node.attribute:
            if attr.name == attr_name:
                attr.f = float(np.float32(attr.f).astype(half.dtype))


# -- FP16 accumulation ------------------------------------------------------------------------------
def _accumulate_in_half(model, graph: ModelGraph, names: set[str], kept_outputs: set[str]):
    """Replace each named Conv/MatMul/Gemm by its float16-accumulating chain (same output name)."""
    if not names:
        return [], []
    unknown = sorted(names - set(graph.node_names))
    if unknown:
        raise QbenchError(f"FP16 accumulation: no node named {', '.join(map(repr, unknown))} in {graph.name}")
    display = {tuple(n.output): graph.node_names[i] for i, n in enumerate(graph.model.graph.node)}
    inits = {t.name: t for t in model.graph.initializer}
    done, skipped, nodes = [], [], []
    for node in model.graph.node:
        name = display.get(tuple(node.output))
        if name not in names:
            nodes.append(node)
            continue
        chain, why = None, ""
        if any(o in kept_outputs for o in node.output):
            why = f"{name} is kept in float"
        elif node.op_type not in ACCUMULATING_OPS:
            why = f"{name} is a {node.op_type}, not a Conv/MatMul/Gemm"
        elif len(node.input) < 2 or node.input[1] not in inits:
            why = f"{name}: its weight is computed at run time"
        else:
            chain = _half_chain(node, name, inits, model)
            if chain is None:
                why = f"{name}: an unsupported form ({node.op_type} with this weight or bias layout)"
        if chain is None:
            skipped.append(why)
            nodes.append(node)
        else:
            nodes.extend(chain)
            done.append(name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return done, skipped


def _attr(node, key, default):
    for a in node.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def _half_chain(node, name: str, inits: dict, model) -> list | None:
    """Nodes computing ``node``'s output with a float16 accumulator, or None if its form is not
    supported. The weight is split by masks along its reduction axes: chunk j computes the partial
    sum over its share of the products (float32, then rounded), and the running sum is rounded
    after each addition; the bias is added last, like a GEMM epilogue."""
    weight = numpy_helper.to_array(inits[node.input[1]])
    op = node.op_type
    bias_input = node.input[2] if len(node.input) > 2 and node.input[2] else None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op == "Conv":
        reduce_shape = weight.shape[1:]  # (C_in/group, kh, kw...): one output channel's products
        expand = lambda m: m.reshape((1,) + reduce_shape)  # noqa: E731
    elif op == "MatMul" and weight.ndim == 2:
        reduce_shape = weight.shape[:1]
        expand = lambda m: m.reshape(-1, 1)  # noqa: E731
    elif op == "Gemm" and weight.ndim == 2:
        trans_b = int(attrs.get("transB", 0))
        reduce_shape = weight.shape[1:] if trans_b else weight.shape[:1]
        expand = (lambda m: m.reshape(1, -1)) if trans_b else (lambda m: m.reshape(-1, 1))
        if bias_input is not None and bias_input not in inits:
            return None
    else:
        return None
    k = int(np.prod(reduce_shape))
    size = max(CHUNK, math.ceil(k / MAX_CHUNKS))
    n_chunks = math.ceil(k / size)
    prefix = f"{name}::acc16"
    chain, running = [], None

    def rounded(src: str, tag: str) -> str:
        half, back = f"{prefix}::{tag}::h", f"{prefix}::{tag}::f"
        chain.append(helper.make_node("Cast", [src], [half], name=half, to=TensorProto.FLOAT16))
        chain.append(helper.make_node("Cast", [half], [back], name=back, to=TensorProto.FLOAT))
        return back

    out = node.output[0]
    for j in range(n_chunks):
        mask = np.zeros(k, dtype=np.float32)
        mask[j * size:(j + 1) * size] = 1
        w_j = (weight * expand(mask.reshape(reduce_shape) if op == "Conv" else mask)).astype(np.float32)
        w_name = f"{prefix}::w{j}"
        model.graph.initializer.append(numpy_helper.from_array(w_j, w_name))
        partial = f"{prefix}::p{j}"
        if op == "Gemm":
            gemm_attrs = {key: v for key, v in attrs.items() if key in ("alpha", "transA", "transB")}
            chain.append(helper.make_node("Gemm", [node.input[0], w_name], [partial], name=partial, **gemm_attrs))
        else:
            chain.append(helper.make_node(op, [node.input[0], w_name], [partial], name=partial, **attrs))
        part = rounded(partial, f"p{j}")
        if running is None:
            running = part
        else:
            total = f"{prefix}::s{j}"
            chain.append(helper.make_node("Add", [running, part], [total], name=total))
            running = rounded(total, f"s{j}")
    if bias_input is not None:
        bias = bias_input
        if op == "Conv":
            b = numpy_helper.to_array(inits[bias_input]).astype(np.float32)
            bias = f"{prefix}::bias"
            model.graph.initializer.append(numpy_helper.from_array(b.reshape((1, -1) + (1,) * (weight.ndim - 2)), bias))
        elif op == "Gemm":
            beta = float(attrs.get("beta", 1.0))
            c = numpy_helper.to_array(inits[bias_input]).astype(np.float32) * np.float32(beta)
            bias = f"{prefix}::bias"
            model.graph.initializer.append(numpy_helper.from_array(c, bias))
        chain.append(helper.make_node("Add", [running, bias], [out], name=f"{prefix}::bias_add"))
    else:
        chain.append(helper.make_node("Identity", [running], [out], name=f"{prefix}::out"))
    return chain
