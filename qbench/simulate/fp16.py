"""FP16 simulation: every float activation and weight rounded through float16, in a float32 model.

Each float activation ``t`` becomes ``Cast(to=FLOAT16) -> Cast(to=FLOAT)`` of the producer's
output, so values above 65504 become inf, tiny ones flush to zero and the rest lose mantissa bits
exactly as in half precision, while the arithmetic of each op stays float32 (TensorRT's FP16
kernels also accumulate in float32 in most layers). Weights are rounded once, offline, with numpy.
Inputs and outputs keep their float32 type; the graph output carries the rounded value.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from qbench.model import ModelGraph
from qbench.simulate import naming
from qbench.simulate.common import (SimulatedModel, as_graph, copy_at_opset, default_opset, finish, kept_node_names,
                                    kept_node_outputs, resolve_keep_float, warn)
from qbench.simulate.rewrite import Rewriter

# Inputs that carry sizes or coordinates rather than data: TensorRT computes them in float32 as
# shape tensors, so rounding them would simulate an error the engine does not make.
SHAPE_SLOTS = {"Resize": (1, 2, 3), "Upsample": (1,)}
# BatchNormalization's statistics are folded into the preceding layer (or into one scale and
# shift) in float32 before TensorRT converts weights to FP16; a running variance above 65504 is
# normal and must not become inf here.
FOLDED_SLOTS = {"BatchNormalization": (1, 2, 3, 4)}
UNROUNDED_SLOTS = {**SHAPE_SLOTS, **FOLDED_SLOTS}


def _is_unrounded_slot(name: str, graph: ModelGraph) -> bool:
    consumers = graph.consumers.get(name, [])
    if not consumers:
        return False
    return all(i in UNROUNDED_SLOTS.get(n.op_type, ()) for n in consumers for i, x in enumerate(n.input) if x == name)


def build_fp16_model(graph, keep_float=()) -> SimulatedModel:
    """Round every float32 activation and weight of a copy of ``graph`` through float16.

    ``keep_float``: tensor names left unrounded, or node names whose inputs are read unrounded
    and whose outputs are not rounded.
    """
    graph: ModelGraph = as_graph(graph)
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    model = copy_at_opset(graph.model, default_opset(graph.model))
    kept_producers = kept_node_outputs(graph, keep_nodes)
    rw = Rewriter(model, kept_producers)
    types = graph.elem_types

    inputs = [i.name for i in graph.inputs if i.elem_type == TensorProto.FLOAT]
    activations = [t.name for t in graph.tensors if types.get(t.name) == TensorProto.FLOAT]
    rounded = []
    for name in inputs + activations:
        if name in keep_tensors or name in kept_producers or _is_unrounded_slot(name, graph):
            continue
        source, target = rw.tap(name)
        half = name + naming.FP16
        rw.add_chain(name, [
            helper.make_node("Cast", [source], [half], name=f"{name}::CastToFloat16", to=TensorProto.FLOAT16),
            helper.make_node("Cast", [half], [target], name=f"{name}::CastToFloat", to=TensorProto.FLOAT),
        ])
        rounded.append(name)

    # Weights are rounded in place (a Cast pair on a constant would be folded away by ONNX
    # Runtime anyway); nodes kept in float get their own unrounded copy.
    read_by_kept = {i for index in keep_nodes for i in graph.model.graph.node[index].input}
    weights, overflowed = [], []
    for tensor in model.graph.initializer:
        name = tensor.name
        if tensor.data_type != TensorProto.FLOAT or name in keep_tensors or _is_unrounded_slot(name, graph):
            continue
        values = numpy_helper.to_array(tensor)
        if name in read_by_kept:
            rw.add_initializer(numpy_helper.from_array(values, naming.float_name(name)))
            rw.kept_reads[name] = naming.float_name(name)
        with np.errstate(over="ignore"):  # overflow to inf is what is being simulated
            through_half = values.astype(np.float16).astype(np.float32)
        if not np.isfinite(through_half).all() and np.isfinite(values).all():
            overflowed.append(name)
        tensor.CopyFrom(numpy_helper.from_array(through_half, name))
        weights.append(name)

    if overflowed:
        warn(f"FP16: {len(overflowed)} weight(s) exceed 65504 and become inf, first {overflowed[0]!r}")
    produced = {t.name for t in graph.tensors}
    sim = SimulatedModel(
        model=finish(rw.apply(), "FP16", graph.model),
        precision="fp16",
        quantized=[n for n in rounded if n in produced],
        quantized_inputs=[n for n in rounded if n not in produced],
        weights=weights,
        kept_float=sorted(keep_tensors),
        kept_nodes=kept_node_names(graph, keep_nodes),
        source=graph.name,
        overflowed_weights=overflowed,
    )
    return sim
