"""The INT8 models the search builds: the deployable Q/DQ model, and one gated model for sensitivity.

``gated_model`` is the economical part of the sensitivity step. Instead of building and loading one
Q/DQ model per variant (2 x layers models), it builds ONE model where every quantized layer reads
its quantized inputs and weights through a gate, a scalar graph input ``g``:

    x_layer = x + g * (dq(q(x)) - x)

g = 1 gives exactly the Q/DQ value that layer reads in ``build_int8_model``; g = 0 the float value,
which is what ``build_int8_model(keep_float=[layer])`` gives it. Any mix of layers kept in float is
then one set of feeds to the same ONNX Runtime session, and FP32, full INT8, "only this layer
quantized" and "only this layer in float" are all runs of one session on the cached judging batch.
A layer (the unit of the sensitivity chart and of ``keep_float``) is a node that reads a quantized
activation or weight: a Conv with its input and weight (TensorRT fuses it with its bias and
activation), a pooling node, a residual Add, or any other reader of a Q/DQ tensor.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qbench.simulate import build_int8_model
from qbench.simulate.common import MIN_QDQ_OPSET, copy_at_opset, kept_node_outputs, resolve_keep_float
from qbench.simulate.placement import plan_int8
from qbench.simulate.qdq import activation_scale, quantize_weight

GATE = "qbench_gate::"
PLACEMENT = "likely"  # TensorRT's usual Q/DQ choices (qbench.simulate.placement)


def int8_model(graph, ranges, keep_float=()):
    """The explicit Q/DQ model (``qbench.simulate.build_int8_model``) as an ONNX ModelProto."""
    return build_int8_model(graph, ranges, keep_float=keep_float, placement=PLACEMENT).model


def quantized_layers(graph, keep_float=()) -> list[str]:
    """Display names (``graph.node_names``) of the nodes that read a quantized activation or weight,
    in graph order; ``keep_float`` (the user's own names) are left out."""
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_int8(graph, keep_tensors, keep_nodes, PLACEMENT)
    quantized = set(plan.activations) | set(plan.weights)
    names = []
    for index, node in enumerate(graph.model.graph.node):
        if index not in keep_nodes and any(i in quantized for i in node.input):
            names.append(graph.node_names[index])
    return list(dict.fromkeys(names))


def gated_model(graph, ranges, keep_float=(), only=None, rest: str = "quantized"):
    """(model, layers): the gated model of the module docstring and its layer names (gate i feeds
    layer i, input ``GATE + str(i)``). ``only``: gate just these layers; every other quantized layer
    is fixed, reading its Q/DQ values (``rest="quantized"``, as with gate 1) or its float values
    (``rest="float"``, gate 0), so the model carries no gating arithmetic for layers not varied."""
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_int8(graph, keep_tensors, keep_nodes, PLACEMENT)
    quantized = set(plan.activations) | set(plan.weights)
    # nodes are found again in the (possibly opset-converted) copy by their outputs
    by_output = {}
    for index, node in enumerate(graph.model.graph.node):
        if index in keep_nodes or not any(i in quantized for i in node.input):
            continue
        by_output[next(o for o in node.output if o) if any(node.output) else f"#{index}"] = graph.node_names[index]
    kept_outputs = kept_node_outputs(graph, keep_nodes)
    model = copy_at_opset(graph.model, MIN_QDQ_OPSET)
    g = model.graph
    new_nodes, inits = [], []
    for name in plan.activations:
        scale = np.array(activation_scale(plan.range_tensor(name), ranges), dtype=np.float32)
        inits += [numpy_helper.from_array(scale, f"{name}::gs"), numpy_helper.from_array(np.array(0, np.int8), f"{name}::gz")]
        new_nodes += [helper.make_node("QuantizeLinear", [name, f"{name}::gs", f"{name}::gz"], [f"{name}::gq"]),
                      helper.make_node("DequantizeLinear", [f"{name}::gq", f"{name}::gs", f"{name}::gz"], [f"{name}::gdq"])]
    for name, axis in plan.weights.items():
        codes, scale = quantize_weight(graph.initializer(name), axis)
        inits += [numpy_helper.from_array(codes, f"{name}::gc"), numpy_helper.from_array(scale, f"{name}::gs"),
                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}::gz")]
        attrs = {} if axis is None else {"axis": axis}
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}::gc", f"{name}::gs", f"{name}::gz"],
                                          [f"{name}::gdq"], **attrs))
    layers: list[str] = []
    gate_of: dict[str, int] = {}
    body = []
    for node in g.node:
        key = next((o for o in node.output if o), None)
        layer = by_output.get(key) if key and key not in kept_outputs else None
        if layer is not None and only is not None and layer not in only and any(i in quantized for i in node.input):
            if rest == "quantized":
                for slot, name in enumerate(node.input):
                    if name in quantized:
                        node.input[slot] = f"{name}::gdq"
        elif layer is not None and any(i in quantized for i in node.input):
            if layer not in gate_of:
                gate_of[layer] = len(layers)
                layers.append(layer)
            gate = f"{GATE}{gate_of[layer]}"
            for slot, name in enumerate(node.input):
                if name not in quantized:
                    continue
                tag = f"{name}::g{gate_of[layer]}"
                body += [helper.make_node("Sub", [f"{name}::gdq", name], [tag + "d"]),
                         helper.make_node("Mul", [gate, tag + "d"], [tag + "m"]),
                         helper.make_node("Add", [name, tag + "m"], [tag])]
                node.input[slot] = tag
        body.append(node)
    del g.node[:]
    g.node.extend(new_nodes + body)
    g.initializer.extend(inits)
    for i in range(len(layers)):
        g.input.append(helper.make_tensor_value_info(f"{GATE}{i}", TensorProto.FLOAT, []))
    _topological(g)
    return model, layers


def _topological(g) -> None:
    """Order nodes so each comes after the producers of its inputs (the Q/DQ nodes were put first,
    ahead of the producers of the tensors they read)."""
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # inputs from outer scopes (subgraphs) or a cycle: keep order
            ordered += rest
            break
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del g.node[:]
    g.node.extend(copies)
