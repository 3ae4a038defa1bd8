"""As-built simulation: the precisions and fusions a real engine chose, reproduced on the CPU.

Input: the engine's layer table -- trtexec ``--exportLayerInfo`` with ``--profilingVerbosity=detailed``,
or TensorRT's engine-inspector JSON (the same document; Polygraphy's inspection reads it from the same
inspector) -- parsed by ``qbench.artifacts.layer_info``. Every engine tensor that carries an ONNX
tensor's name is simulated in the precision the engine stored it in: INT8 gets Q/DQ with the range from
the calibration ranges, FP16 is rounded through float16, FP32 is left alone. Tensors missing from the
table were fused away inside one kernel and stay float. A layer whose ``Weights`` are ``Int8`` gets its
ONNX weights quantized per output channel; ``Half`` weights are rounded to float16. A ``Reformat`` layer
that turns a network input into INT8 (its output named by TensorRT, not by ONNX) quantizes that input.

``audit_precisions`` compares what the user asked (tensors/nodes kept in float, or per-layer
precisions) with what the engine ran, naming each ignored constraint and the fused layer responsible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from onnx import helper, numpy_helper

from qbench.artifacts.layer_info import fused_nodes, precision_of, tensor_formats
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.ranges import Ranges
from qbench.simulate import naming
from qbench.simulate.common import MIN_QDQ_OPSET, SimulatedModel, as_graph, copy_at_opset, finish
from qbench.simulate.placement import weight_slot
from qbench.simulate.qdq import activation_scale, quantize_weight
from qbench.simulate.rewrite import Rewriter

_HALF = ("half", "fp16", "float16")


@dataclass
class AsBuiltPlan:
    """tensor -> engine precision ("int8", "fp16", "fp32"), for the ONNX tensors the engine stores;
    weights: initializer -> ("int8", axis) or ("fp16", None); layer_of: ONNX node name -> engine layer."""

    tensors: dict[str, str] = field(default_factory=dict)
    weights: dict[str, tuple] = field(default_factory=dict)
    layer_of: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # engine tensors with no ONNX counterpart


def member_nodes(layer: dict) -> list[str]:
    """The ONNX node names a layer holds, with TensorRT's pointwise wrappers unwrapped:
    'PWN(PWN(Sigmoid_3), Mul_4)' -> ['Sigmoid_3', 'Mul_4']."""
    names = []
    for part in fused_nodes(layer):
        if part.startswith("PWN("):
            names += [p for p in re.split(r"[(),\s]+", part) if p and p != "PWN"]
        else:
            names.append(part)
    return names


def plan_as_built(graph: ModelGraph, info: dict) -> AsBuiltPlan:
    formats = tensor_formats(info)
    known = {t.name for t in graph.tensors} | {i.name for i in graph.inputs}
    plan = AsBuiltPlan()
    nodes_by_name = {n.name: n for n in graph.model.graph.node if n.name}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        members = member_nodes(layer)
        for member in members:
            plan.layer_of[member] = layer.get("Name", "")
        weights = layer.get("Weights")
        wtype = str(weights.get("Type", "")).lower() if isinstance(weights, dict) else ""
        if wtype:
            for member in members:
                node = nodes_by_name.get(member)
                slot = weight_slot(node, graph.initializer_names) if node is not None else None
                if slot is None:
                    continue
                index, axis = slot
                name = node.input[index]
                if name not in graph.initializer_names:
                    continue
                if wtype == "int8":
                    plan.weights[name] = ("int8", graph.initializer(name).ndim - 1 if axis == -1 else axis)
                elif wtype in _HALF:
                    plan.weights[name] = ("fp16", None)
        # a Reformat of a network input into INT8 (QDQ origin): the input is read quantized
        if layer.get("LayerType") == "Reformat":
            ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
            if len(ins) == 1 and len(outs) == 1 and ins[0].get("Name") in known and outs[0].get("Name") not in known:
                if formats.get(outs[0]["Name"], {}).get("precision") == "int8":
                    plan.tensors[ins[0]["Name"]] = "int8"
    for name, fmt in formats.items():
        if name not in known:
            plan.unknown.append(name)
            continue
        if fmt["precision"] in ("int8", "fp16"):
            plan.tensors[name] = fmt["precision"]
        else:
            plan.tensors.setdefault(name, fmt["precision"] or "fp32")
    return plan


def build_as_built_model(graph, ranges: Ranges | None, info: dict) -> SimulatedModel:
    """The engine's own precisions as a Q/DQ + float16-rounding ONNX model (see the module docstring).
    ``ranges`` must cover every tensor the engine stores in INT8."""
    graph = as_graph(graph)
    plan = plan_as_built(graph, info)
    int8 = [n for n, p in plan.tensors.items() if p == "int8"]
    missing = [n for n in int8 if ranges is None or n not in ranges]
    if missing:
        raise QbenchError(f"the engine stores {missing[0]!r} in INT8 but the ranges have no entry for it"
                          f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: pass the engine's calibration cache")
    model = copy_at_opset(graph.model, MIN_QDQ_OPSET)
    rw = Rewriter(model)
    order = [i.name for i in graph.inputs] + [t.name for t in graph.tensors]
    for name in order:
        precision = plan.tensors.get(name)
        if precision not in ("int8", "fp16"):
            continue
        source, target = rw.tap(name)
        rw.add_chain(name, _chain(name, source, target, precision, ranges, rw))
    for name, (precision, axis) in plan.weights.items():
        _, target = rw.tap(name)
        if precision == "int8":
            codes, scale = quantize_weight(graph.initializer(name), axis)
            rw.add_initializer(numpy_helper.from_array(codes, name + naming.INT8))
            rw.add_initializer(numpy_helper.from_array(scale, name + naming.SCALE))
            rw.add_initializer(numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), name + naming.ZERO_POINT))
            attrs = {} if axis is None else {"axis": axis}
            rw.add_chain(name, [helper.make_node("DequantizeLinear", [name + naming.INT8, name + naming.SCALE, name + naming.ZERO_POINT],
                                                 [target], name=f"{name}::DequantizeLinear", **attrs)])
        else:
            rw.add_initializer(numpy_helper.from_array(graph.initializer(name).astype(np.float16), name + naming.FP16))
            rw.add_chain(name, [helper.make_node("Cast", [name + naming.FP16], [target], name=f"{name}::Cast", to=1)])
    model = finish(rw.apply(), "as-built", graph.model)
    produced = {t.name for t in graph.tensors}
    simulated = [n for n in order if plan.tensors.get(n) in ("int8", "fp16")]
    return SimulatedModel(model=model, precision="as-built", quantized=[n for n in simulated if n in produced],
                          quantized_inputs=[n for n in simulated if n not in produced], weights=list(plan.weights),
                          source=graph.name, placement="as-built")


def _chain(name, source, target, precision, ranges, rw):
    if precision == "fp16":
        half = name + naming.FP16
        return [helper.make_node("Cast", [source], [half], name=f"{name}::CastFp16", to=10),
                helper.make_node("Cast", [half], [target], name=f"{name}::CastFp32", to=1)]
    scale_name, zp_name, codes = name + naming.SCALE, name + naming.ZERO_POINT, name + naming.INT8
    rw.add_initializer(numpy_helper.from_array(np.array(activation_scale(name, ranges), dtype=np.float32), scale_name))
    rw.add_initializer(numpy_helper.from_array(np.array(0, dtype=np.int8), zp_name))
    return [helper.make_node("QuantizeLinear", [source, scale_name, zp_name], [codes], name=f"{name}::QuantizeLinear"),
            helper.make_node("DequantizeLinear", [codes, scale_name, zp_name], [target], name=f"{name}::DequantizeLinear")]


@dataclass
class IgnoredConstraint:
    requested: str  # the tensor or node the user constrained
    wanted: str  # the precision asked for
    actual: str  # what the engine used
    layer: str  # the engine layer responsible (a fused layer names every ONNX node it holds)

    def message(self) -> str:
        fused = f"; it was fused into {self.layer!r}" if " + " in self.layer else ""
        return (f"{self.requested}: asked for {self.wanted}, the engine ran {self.actual} in layer {self.layer!r}{fused} "
                f"(TensorRT treats layer precisions as hints unless the build sets OBEY_PRECISION_CONSTRAINTS)")


def audit_precisions(graph, info: dict, keep_float=(), layer_precisions: dict[str, str] | None = None) -> list[IgnoredConstraint]:
    """Requested vs actual: every ``keep_float`` tensor/node (wanted FP32, or FP16 accepted as float)
    and every ``layer_precisions`` entry (ONNX node or tensor name -> "fp32"/"fp16"/"int8") that the
    engine did not honour, with the engine layer responsible."""
    graph = as_graph(graph)
    plan = plan_as_built(graph, info)
    formats = tensor_formats(info)
    wanted = {name: "float" for name in keep_float}
    wanted.update({k: v.lower() for k, v in (layer_precisions or {}).items()})
    node_outputs = {n.name: [o for o in n.output if o] for n in graph.model.graph.node if n.name}
    ignored = []
    for name, want in wanted.items():
        if name in node_outputs:
            layer = plan.layer_of.get(name)
            if layer is None:
                continue  # not in the table (a trimmed table, or the node was removed as a no-op)
            actual = _layer_precision(info, layer)
        else:
            fmt = formats.get(name)
            if fmt is None:
                continue  # fused away: no storage precision to compare
            actual, layer = fmt["precision"], fmt["layer"] or "(network input)"
        if not actual:
            continue
        honoured = actual in ("fp32", "fp16") if want == "float" else actual == want
        if not honoured:
            ignored.append(IgnoredConstraint(name, "FP32/FP16" if want == "float" else want.upper(), actual.upper(), layer))
    return ignored


def _layer_precision(info: dict, layer_name: str) -> str:
    for layer in info.get("Layers", []):
        if isinstance(layer, dict) and layer.get("Name") == layer_name:
            weights = layer.get("Weights")
            if isinstance(weights, dict) and str(weights.get("Type", "")).lower() == "int8":
                return "int8"

            outs = [precision_of(o.get("Format/Datatype", "")) for o in layer.get("Outputs") or []]
            return next((p for p in outs if p), "")
    return ""
