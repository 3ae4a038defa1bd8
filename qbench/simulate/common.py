"""What both simulations share: the result type, opset handling and keep-float resolution."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import onnx

from qbench import atomic
from qbench.errors import QbenchError
from qbench.model import ModelGraph

# Per-channel DequantizeLinear (the ``axis`` attribute) arrived in opset 13; TensorRT's ONNX parser
# needs it for per-channel weights.
MIN_QDQ_OPSET = 13


@dataclass
class SimulatedModel:
    """A float32-in, float32-out ONNX model that reproduces one engine precision on the CPU.

    ``quantized``: activation tensors (node outputs, original names) whose value is simulated.
    ``quantized_inputs``: graph inputs whose value is simulated for their consumers (``x::sim``).
    ``weights``: initializers quantized (INT8) or rounded (FP16).
    ``kept_float`` / ``kept_nodes``: tensor and node names left in float32 on request.
    """

    model: onnx.ModelProto
    precision: str
    quantized: list[str] = field(default_factory=list)
    quantized_inputs: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    kept_nodes: list[str] = field(default_factory=list)
    source: str = "model"
    overflowed_weights: list[str] = field(default_factory=list)  # FP16: weights that became inf
    placement: str = ""  # INT8: "likely", "worst" or "as-built" (qbench.simulate.placement / asbuilt)
    shared_scale: dict = field(default_factory=dict)  # INT8: Concat input -> the Concat whose scale it takes
    scale_from: dict = field(default_factory=dict)  # INT8: Concat input -> the tensor whose range gives its scale
    fused: dict = field(default_factory=dict)  # INT8: tensor internal to a fused layer -> that layer's name
    # FP16: "likely" or "worst" (qbench.simulate.fp16), the layers accumulated in float16 and, in
    # words, what the simulation assumed the engine does (which BN folds into which layer...)
    mode: str = ""
    accumulated: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def graph(self, name: str | None = None) -> ModelGraph:
        return ModelGraph(self.model, name=name or f"{self.source}-{self.precision}")

    @classmethod
    def explicit(cls, graph: ModelGraph, model: onnx.ModelProto, precision: str, activations, weights, keep_tensors,
                 keep_nodes, assumptions: list[str]) -> "SimulatedModel":
        """An explicit-placement simulation (FP8, NVFP4): ``activations`` split into the node outputs
        and the graph inputs they are, the kept names as requested."""
        produced = {t.name for t in graph.tensors}
        return cls(model=model, precision=precision, quantized=[n for n in activations if n in produced],
                   quantized_inputs=[n for n in activations if n not in produced], weights=list(weights),
                   kept_float=sorted(keep_tensors), kept_nodes=kept_node_names(graph, keep_nodes), source=graph.name,
                   placement="explicit", assumptions=assumptions)

    def save(self, path) -> None:
        atomic.write_bytes(path, self.model.SerializeToString())


def as_graph(graph_or_model) -> ModelGraph:
    if isinstance(graph_or_model, ModelGraph):
        return graph_or_model
    if isinstance(graph_or_model, onnx.ModelProto):
        return ModelGraph.from_proto(graph_or_model)
    raise QbenchError(f"expected an ONNX model or ModelGraph, got {type(graph_or_model).__name__}")


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


# Ops whose signature or semantics changed in opset 13 (attributes became inputs, Softmax's axis
# rule): a model holding none of them is unchanged by raising its opset import from 11/12 to 13.
CHANGED_IN_OPSET_13 = {"Split", "Squeeze", "Unsqueeze", "ReduceSum", "Softmax", "LogSoftmax", "Hardmax"}


def passes_checker(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model)
        return True
    except onnx.checker.ValidationError:
        return False


def copy_at_opset(model: onnx.ModelProto, minimum: int) -> onnx.ModelProto:
    """A copy of ``model`` whose default-domain opset is at least ``minimum``.

    The version converter rewrites the ops whose signature changed. It refuses models the checker
    rejects, such as the one-node replay models whose inputs carry no shape (which ONNX Runtime
    runs fine); from opset 11 or 12 those still get a plain opset bump when no op in them changed.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    current = default_opset(out)
    if current >= minimum:
        return out
    try:
        converted = onnx.version_converter.convert_version(out, minimum)
        onnx.checker.check_model(converted)
        return converted
    except Exception as exc:  # the converter raises RuntimeError or ValidationError on odd graphs
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    changed = sorted({n.op_type for n in out.graph.node if n.domain in ("", "ai.onnx")} & CHANGED_IN_OPSET_13)
    if current < 11 or changed:
        raise QbenchError(f"cannot raise the model from opset {current} to {minimum} for Q/DQ ({reason})")
    for imp in out.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = minimum
    return out


def resolve_keep_float(graph: ModelGraph, keep_float) -> tuple[set[str], set[int]]:
    """Split user names into tensors and nodes (as node indices) to keep in float32; unknown names
    are an error. Nodes are known by ``graph.node_names``, the names the report shows, so an
    unnamed node is kept by its ``{op_type}_{index}`` name."""
    if isinstance(keep_float, str):
        keep_float = [keep_float]
    tensors: set[str] = set()
    nodes: set[int] = set()
    node_names: dict[str, list[int]] = {}
    for index, display in enumerate(graph.node_names):
        node_names.setdefault(display, []).append(index)  # a real name may be shared by several nodes
    known_tensors = {t.name for t in graph.tensors} | {i.name for i in graph.inputs} | graph.initializer_names
    unknown = []
    for name in keep_float or ():
        if name in known_tensors:
            tensors.add(name)
        elif name in node_names:
            nodes.update(node_names[name])
        else:
            unknown.append(name)
    if unknown:
        raise QbenchError(f"--keep-float: no tensor or node named {', '.join(map(repr, unknown))} in {graph.name}")
    return tensors, nodes


def kept_node_names(graph: ModelGraph, nodes: set[int]) -> list[str]:
    return sorted({graph.node_names[i] for i in nodes})


def kept_node_outputs(graph: ModelGraph, nodes: set[int]) -> set[str]:
    """The outputs of the kept nodes: they identify those nodes in a rewritten copy of the model,
    where node indices may have moved (the opset converter can insert nodes)."""
    return {out for i in nodes for out in graph.model.graph.node[i].output if out}


def finish(model: onnx.ModelProto, what: str, source: onnx.ModelProto) -> onnx.ModelProto:
    """Check the rewritten model (unless the source already failed the checker, as shapeless
    replay models do); a failure here is a qbench bug, but say which model it was."""
    if not passes_checker(source):
        return model
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise QbenchError(f"the {what} simulation model fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    return model


def warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)
