"""Layer-wise capture from a TensorRT engine, for the comparator. Three modes, and the report must
say which one produced the data, because they measure different engines:

- "unfused": ``mark_unfused_tensors_as_debug_tensors`` (10.x and 11.x; Polygraphy's network loader
  keyword of that name). Keeps the deployed fusions, so the numbers are those of the engine you ship;
  but only tensors that survive fusion are emitted, under TensorRT's internal names (the inspector's),
  so some ONNX tensors have no match. The runner sets the context's ``unfused_tensors_debug_state``.
- "debug": ``mark_debug`` on the chosen ONNX tensors (Polygraphy's ``MarkDebug``), delivered through
  Polygraphy's TrtRunner debug listener under their ONNX names. TensorRT documents that marked debug
  tensors can prevent fusions across them.
- "outputs": the classic mode, every chosen tensor marked as a network output (Polygraphy's
  ``ModifyNetworkOutputs(outputs=MARK_ALL)``, which leaves loop bodies alone: TensorRT cannot mark a
  tensor inside a loop as an output). This changes the engine (fusions broken, extra copies, possibly
  other tactics and precisions): it shows where error appears, not exactly the error of the deployed
  engine.

What stays qbench's (Polygraphy has no notion of it): the plan of what was marked and the note the
report prints, and "every tensor" for debug mode (MarkDebug needs names), excluding network outputs.
Checked here under the real 10.16/11.4 bindings with a network double whose layers carry real
``trt.LayerType`` values (tests/trt). NEVER run: a real engine emitting debug tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qbench.tensorrt import polygraphy_backend

NOTES = {
    "none": "no layer-wise capture (network outputs only)",
    "unfused": "debug tensors of the unfused graph (mark_unfused_tensors_as_debug_tensors): deployed fusions kept; "
               "internal TensorRT names, fused tensors absent",
    "debug": "debug tensors (mark_debug + IDebugListener): ONNX names; TensorRT may skip fusions across marked tensors",
    "outputs": "every tensor marked as a network output: the engine differs from the deployed one (fusions broken)",
}


@dataclass
class CapturePlan:
    mode: str
    marked: list[str] = field(default_factory=list)
    note: str = ""


def plan_for_cached(mode: str) -> CapturePlan:
    return CapturePlan(mode, [], NOTES[mode] + " (engine from the engine cache)")


def _layer_outputs(network):
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            yield layer.get_output(j)


def _outputs(network) -> list[str]:
    return [network.get_output(i).name for i in range(network.num_outputs)]


def mark_network(network, mode: str, names: list[str] | None = None) -> CapturePlan:
    """Mark tensors of ``network`` for "debug" or "outputs" through Polygraphy's loaders; return what was
    marked ("unfused" is a network-creation flag, set by the builder's network loader)."""
    plan = CapturePlan(mode, [], NOTES[mode])
    if mode not in ("debug", "outputs"):
        return plan
    pg = polygraphy_backend.backend()
    wanted = set(names) if names else None
    originals = _outputs(network)
    if mode == "debug":
        chosen = [t.name for t in _layer_outputs(network)
                  if t.name not in originals and (wanted is None or t.name in wanted)]
        if chosen:
            polygraphy_backend.call(pg.MarkDebug((None, network), mark_debug=chosen), "cannot mark debug tensors")
        plan.marked = chosen
    else:
        kept = [network.get_output(i) for i in range(network.num_outputs)]
        polygraphy_backend.call(pg.ModifyNetworkOutputs((None, network), outputs=polygraphy_backend.mark_all()),
                                "cannot mark tensors as outputs")
        for i in reversed(range(network.num_outputs)):  # keep what was asked, and the model's outputs
            tensor = network.get_output(i)
            if wanted is not None and tensor.name not in wanted and tensor.name not in originals:
                network.unmark_output(tensor)
        for tensor in kept:  # Polygraphy re-marks layer outputs only (not constant or shape layers')
            if tensor.name not in _outputs(network):
                network.mark_output(tensor)
        plan.marked = [n for n in _outputs(network) if n not in originals]
    if wanted is not None:
        missing = wanted - set(plan.marked) - set(originals)
        if missing:
            plan.note += f"; {len(missing)} requested tensors not found in the TensorRT network (or inside a loop)"
    return plan
