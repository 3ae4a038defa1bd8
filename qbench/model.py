"""Loading an ONNX model and answering questions about its graph.

Every later stage refers to tensors by their ONNX names, in graph (topological) order; this module is
the one place that computes that order and knows which node produces which tensor.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from qbench.errors import QbenchError

log = logging.getLogger("qbench")

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


@dataclass(frozen=True)
class TensorInfo:
    """One activation tensor: the node that produces it and its position in graph order."""

    name: str
    index: int
    node: str
    op_type: str
    elem_type: int | None
    is_output: bool = False


@dataclass
class InputSpec:
    name: str
    elem_type: int
    shape: tuple | None  # ints for fixed dims, strings or None for dynamic ones; None: unknown rank

    @property
    def dtype(self) -> np.dtype:
        return onnx.helper.tensor_dtype_to_np_dtype(self.elem_type)


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# serialized TensorRT engines seen in the wild begin with these tags (8.x "ptrt", 10.x "ftrt"); only
# consulted once the file has failed to parse as ONNX, so a wrong guess costs a less precise message
ENGINE_MAGIC = (b"ptrt", b"ftrt")


def _looks_like_engine(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return path.suffix.lower() in ENGINE_SUFFIXES or head in ENGINE_MAGIC


def load_model(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file, turning every failure into one clear line."""
    p = Path(path)
    if not p.exists():
        raise QbenchError(f"model file not found: {p}")
    if p.is_dir():
        raise QbenchError(f"expected an ONNX file, got a folder: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises several unrelated types for garbage input
        if _looks_like_engine(p):
            raise QbenchError(f"{p} looks like a TensorRT engine, not an ONNX model: give the ONNX model it was built "
                              "from (an engine is compared with: qbench compare MODEL.onnx --engine FILE)") from None
        raise QbenchError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    if not model.graph.node:
        raise QbenchError(f"{p} is not an ONNX model with a graph (no nodes found)")
    _check(p)
    return model


def _check(path: Path) -> None:
    """Run the ONNX checker, warning only.

    By path, because the checker refuses an in-memory proto over 2 GB (external data) with a
    ValueError; it can still refuse such a model by path (ValueError too), which is no reason to
    stop. Exporters often leave small spec violations (an output without a shape) that ONNX Runtime
    and TensorRT accept; refuse only what ONNX Runtime refuses (the runner says so in one line)."""
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("qbench: warning: %s does not pass the ONNX checker: %s", path, first)


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move tensor-valued Constant nodes into initializers.

    Exporters such as paddle2onnx emit weights as Constant nodes; quantizers and TensorRT's Q/DQ
    rules look for weights among initializers, so every stage works on this canonical form.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = []
    for node in out.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            out.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out


# The first ONNX IR version in which an initializer need not also be a graph input (ONNX 1.3, IR.md).
_IR_INITIALIZERS_OPTIONAL = 4


def weights_not_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop graph inputs that are initializers: the weights of IR 3 models (ONNX < 1.3, e.g. the
    model zoo's DenseNet-121 and Inception v2) must be listed as inputs too, which made every stage
    take them for run-time data (the Q/DQ model's new scales failed the checker, the FP16 rewrite
    refused the weights). TensorRT's ONNX parser imports such inputs as weights and qbench never
    feeds them, so they are weights here too; IR 3 models are raised to IR 4, which allows it."""
    stored = {t.name for t in model.graph.initializer}
    if not any(i.name in stored for i in model.graph.input):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [i for i in out.graph.input if i.name not in stored]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.ir_version = max(out.ir_version, _IR_INITIALIZERS_OPTIONAL)
    return out


def model_digest(model: onnx.ModelProto) -> str:
    try:
        return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:16]
    except ValueError:
        # protobuf cannot serialise a message over 2 GB: hash the graph without the weights, then
        # each weight on its own (same digest on every run, never the whole proto in one buffer)
        return _digest_in_parts(model)


def _digest_in_parts(model: onnx.ModelProto) -> str:
    h = hashlib.sha256()
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    del skeleton.graph.initializer[:]
    h.update(skeleton.SerializeToString(deterministic=True))
    for tensor in model.graph.initializer:
        h.update(tensor.SerializeToString(deterministic=True))
    return h.hexdigest()[:16]


@dataclass
class ModelGraph:
    """A canonicalised model plus the lookups every stage needs."""

    model: onnx.ModelProto
    name: str = "model"
    _typed: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_path(cls, path: str | Path) -> "ModelGraph":
        model = weights_not_inputs(constants_to_initializers(load_model(path)))
        return cls(model=model, name=Path(path).stem)

    @classmethod
    def from_proto(cls, model: onnx.ModelProto, name: str = "model") -> "ModelGraph":
        return cls(model=weights_not_inputs(constants_to_initializers(model)), name=name)

    @cached_property
    def digest(self) -> str:
        return model_digest(self.model)

    @cached_property
    def initializer_names(self) -> set[str]:
        return {t.name for t in self.model.graph.initializer}

    def initializer(self, name: str) -> np.ndarray:
        for t in self.model.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        raise KeyError(name)

    @cached_property
    def inputs(self) -> list[InputSpec]:
        specs = []
        for vi in self.model.graph.input:
            if vi.name in self.initializer_names:
                continue  # old exporters list weights as inputs too
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                specs.append(InputSpec(vi.name, tt.elem_type, None))  # unknown rank: nothing to check
                continue
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
            specs.append(InputSpec(vi.name, tt.elem_type, dims))
        return specs

    @cached_property
    def node_names(self) -> list[str]:
        """Display name of every node, by node index: its own name, or ``{op_type}_{index}`` for an
        unnamed node (suffixed until it clashes with no other name), so every stage and the user
        refer to a node by the same string."""
        nodes = self.model.graph.node
        taken = {n.name for n in nodes if n.name}
        names = []
        for index, node in enumerate(nodes):
            if node.name:
                names.append(node.name)
                continue
            name = base = f"{node.op_type}_{index}"
            suffix = 1
            while name in taken:
                name = f"{base}_{suffix}"
                suffix += 1
            taken.add(name)
            names.append(name)
        return names

    @cached_property
    def subgraph_node_count(self) -> int:
        """Nodes inside If/Loop/Scan bodies. qbench exposes, calibrates and simulates the main graph's
        tensors only, so work in these bodies stays in float in every candidate: callers warn."""
        def count(graph) -> int:
            total = 0
            for node in graph.node:
                for attr in node.attribute:
                    for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                        total += len(sub.node) + count(sub)
            return total

        return count(self.model.graph)

    @cached_property
    def output_names(self) -> list[str]:
        return [o.name for o in self.model.graph.output]

    @cached_property
    def elem_types(self) -> dict[str, int]:
        """Element type of every value, from shape inference (best effort on exotic graphs)."""
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model)
        except Exception:
            inferred = self.model
        types = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
        return types

    @cached_property
    def tensors(self) -> list[TensorInfo]:
        """Every activation produced by a node, in topological order (the graph's node order,
        which ONNX requires to be topological)."""
        outputs = set(self.output_names)
        infos = []
        for node_index, node in enumerate(self.model.graph.node):
            node_name = self.node_names[node_index]
            for out in node.output:
                if not out:
                    continue
                infos.append(TensorInfo(out, len(infos), node_name, node.op_type, self.elem_types.get(out), out in outputs))
        return infos

    @cached_property
    def float_tensors(self) -> list[TensorInfo]:
        """Activations worth calibrating and comparing: float-typed ones (unknown types are kept,
        since shape inference cannot type every custom op)."""
        return [t for t in self.tensors if t.elem_type is None or t.elem_type in FLOAT_TYPES]

    @cached_property
    def range_tensors(self) -> list[str]:
        """Tensors that need an INT8 range: float graph inputs (TensorRT caches include them) then
        every float activation, in graph order."""
        names = [spec.name for spec in self.inputs if spec.dtype.kind == "f"]
        seen = set(names)
        for info in self.float_tensors:
            if info.name not in seen:
                seen.add(info.name)
                names.append(info.name)
        return names

    @cached_property
    def producer(self) -> dict[str, onnx.NodeProto]:
        return {out: node for node in self.model.graph.node for out in node.output if out}

    @cached_property
    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        result: dict[str, list[onnx.NodeProto]] = {}
        for node in self.model.graph.node:
            for inp in node.input:
                if inp:
                    result.setdefault(inp, []).append(node)
        return result

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)
