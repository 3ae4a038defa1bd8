"""Mixed formats: every layer in a base format F except named layers, which run in a higher format H.

Definition. For a set of layers L (node names as ``graph.node_names`` shows them) the mixed model is

1. F's own simulation with L kept in float (``F.build(..., keep_float=[*keep_float, *L])``): every
   other layer reads exactly what it reads in F's model with those layers kept, so outside L the
   mixed model is F's model, node for node;
2. then, on that model, H's own builder applied to L only: each input of a layer in L (activation or
   weight) is first given a copy that only that layer reads (an ``Identity`` for an activation, a
   renamed initializer for a weight), and H's builder runs with every tensor kept in float except
   those copies and the layer's outputs. So a layer in L reads H's rounding (or H's Q/DQ) of the very
   float values it read in step 1, and writes H's rounding of its result (a BF16 or FP16 layer
   stores a BF16/FP16 output; an FP8 layer, as FP8's own placement, quantizes its inputs only).

Both steps are the formats' own builders, so nothing here re-implements a rounding rule: a layer in
H computes exactly what H's simulation of that layer alone computes on the same input (tested bit
for bit), and the deployable result is one explicit model of Q/DQ and Casts that ONNX Runtime runs.

Which H may serve a base is a column of the table (``Format.fallback`` in qbench.simulate.formats);
this module is handed the two rows and never names a format. The scale of an FP8 input copy is the
range of the tensor it copies (same calibration, same amax).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import SimulatedModel, as_graph, finish, resolve_keep_float

COPY = "::higher"  # the copy of a tensor that only one layer in the higher format reads


def mixed_name(base, higher) -> str:
    """The candidate name of a base format with layers in a higher one: ``<base>-<higher>``."""
    return f"{base.name}-{higher.name}"


def build_mixed_model(base, higher, graph, ranges, layers, keep_float=(), mode: str = "likely",
                      **options) -> SimulatedModel:
    """``base`` with ``layers`` in ``higher`` (two rows of the formats table; module docstring)."""
    if higher.name not in base.fallback:
        raise QbenchError(f"{higher.name} cannot hold layers of a {base.name} model; "
                          f"choose from {', '.join(base.fallback) or 'none'}")
    graph = as_graph(graph)
    layers = list(dict.fromkeys(layers))
    unknown = [n for n in layers if n not in set(graph.node_names)]
    if unknown:
        raise QbenchError(f"layers in {higher.name} must be node names of {graph.name}: no node {', '.join(map(repr, unknown))}")
    _, nodes = resolve_keep_float(graph, layers)
    base_sim = base.simulate(graph, ranges, [*keep_float, *layers], mode=mode, **options)
    model = base_sim.model
    if not nodes:
        return base_sim
    # the layers in the base model, found by their outputs: a tapped output was renamed ``t::float``
    # (the name ``t`` then belongs to the DequantizeLinear or Cast after it, not to the layer)
    produced = {o for n in model.graph.node for o in n.output if o}
    wanted = {}
    for index in sorted(nodes):
        for out in graph.model.graph.node[index].output:
            if out:
                wanted[naming.float_name(out) if naming.float_name(out) in produced else out] = index
    initializers = {t.name: t for t in model.graph.initializer}
    copies, aliases, outputs, new_nodes, new_inits = [], {}, [], [], []
    for node in model.graph.node:
        index = next((wanted[o] for o in node.output if o in wanted), None)
        if index is None:
            continue
        original = graph.model.graph.node[index]
        outputs += [o for o in node.output if o]
        for slot, name in enumerate(node.input):
            if not name or not _is_float(graph, original.input[slot] if slot < len(original.input) else name):
                continue
            copy = f"{name}{COPY}{index}"
            if copy in copies:  # the layer reads the same tensor twice (x·x): one copy serves both slots
                node.input[slot] = copy
                continue
            if name in initializers:
                new_inits.append(numpy_helper.from_array(numpy_helper.to_array(initializers[name]), copy))
            else:
                new_nodes.append((node, helper.make_node("Identity", [name], [copy], name=f"{copy}::Identity")))
                aliases[copy] = original.input[slot]  # an FP8 copy takes the range of what it copies
            node.input[slot] = copy
            copies.append(copy)
    for node, identity in new_nodes:  # each copy right before its layer (graph order stays topological)
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, identity)
    model.graph.initializer.extend(new_inits)
    inner = ModelGraph.from_proto(model)
    rounded = set(copies) | set(outputs)
    everything = {t.name for t in inner.tensors} | {i.name for i in inner.inputs} | inner.initializer_names
    keep = sorted(everything - rounded)
    local_ranges = _Aliased(ranges, aliases)
    higher_sim = higher.simulate(inner, local_ranges if ranges is not None else None, keep, mode=mode,
                                 inside_qdq=True, **{k: v for k, v in options.items() if k != "placement"})
    names = [graph.node_names[i] for i in sorted(nodes)]
    return replace(
        base_sim,
        model=finish(higher_sim.model, f"{base.label} with layers in {higher.label}", graph.model),
        precision=mixed_name(base, higher),
        kept_float=list(base_sim.kept_float),
        kept_nodes=[n for n in base_sim.kept_nodes if n not in names],
        assumptions=[*base_sim.assumptions,
                     f"{len(names)} layer(s) in {higher.label} instead ({', '.join(names)}): their inputs and weights "
                     f"through {higher.label}'s own simulation" + ("" if higher.needs_ranges else ", their outputs rounded")],
    )


def _is_float(graph: ModelGraph, name: str) -> bool:
    if name in graph.initializer_names:
        return graph.initializer(name).dtype == np.float32
    return graph.elem_types.get(name) == TensorProto.FLOAT or \
        name in {i.name for i in graph.inputs if i.elem_type == TensorProto.FLOAT}


class _Aliased:
    """The run's ranges, plus each copy answering with the range of the tensor it copies."""

    def __init__(self, ranges, aliases: dict):
        self.ranges, self.aliases = ranges, aliases

    def __contains__(self, name) -> bool:
        return self.aliases.get(name, name) in self.ranges

    def __getitem__(self, name):
        return self.ranges[self.aliases.get(name, name)]
