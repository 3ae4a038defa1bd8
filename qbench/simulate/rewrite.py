"""Graph surgery shared by the INT8 and FP16 builders: put a small chain of nodes on a tensor so
that, afterwards, the tensor's original name holds the simulated value (see ``naming``)."""

from __future__ import annotations

import onnx

from qbench.simulate import naming


class Rewriter:
    """Collects taps on tensors, then rewrites the model once in ``apply``.

    A tap on a node output ``t`` renames the producer's output to ``t::float`` and makes the chain
    write ``t``; a tap on a graph input ``x`` makes the chain write ``x::sim`` and points the
    consumers there; a tap on an initializer ``w`` renames it ``w::float`` and the chain writes
    ``w``. Nodes kept in float read the ``::float`` / original value instead of the chain's; they
    are given by their outputs (``keep_outputs``), since nodes may be unnamed.
    """

    def __init__(self, model: onnx.ModelProto, keep_outputs: set[str] = frozenset()):
        self.model = model
        self.keep_outputs = set(keep_outputs)
        graph = model.graph
        self.graph_inputs = {i.name for i in graph.input}
        self.initializers = {t.name: t for t in graph.initializer}
        self.producers = {out: n for n in graph.node for out in n.output if out}
        self.after: dict[str, list[onnx.NodeProto]] = {}
        self.front: list[onnx.NodeProto] = []
        self.new_initializers: list[onnx.TensorProto] = []
        self.renamed_outputs: dict[str, str] = {}
        self.kept_reads: dict[str, str] = {}
        self.input_reads: dict[str, str] = {}

    def tap(self, tensor: str) -> tuple[str, str]:
        """Return (source, target): the chain for ``tensor`` reads source and writes target."""
        if tensor in self.initializers:
            source = naming.float_name(tensor)
            self.initializers[tensor].name = source
            self.kept_reads[tensor] = source
            return source, tensor
        if tensor in self.producers:
            source = naming.float_name(tensor)
            self.renamed_outputs[tensor] = source
            self.kept_reads[tensor] = source
            return source, tensor
        if tensor in self.graph_inputs:
            target = tensor + naming.SIM
            self.input_reads[tensor] = target
            return tensor, target
        raise KeyError(tensor)

    def add_chain(self, tensor: str, nodes: list[onnx.NodeProto]) -> None:
        if tensor in self.producers:
            self.after.setdefault(tensor, []).extend(nodes)
        else:
            self.front.extend(nodes)

    def add_initializer(self, tensor: onnx.TensorProto) -> None:
        self.new_initializers.append(tensor)

    def apply(self) -> onnx.ModelProto:
        graph = self.model.graph
        original = {new: old for old, new in self.renamed_outputs.items()}
        nodes = list(self.front)
        for node in list(graph.node):
            kept = any(out in self.keep_outputs for out in node.output if out)
            reads = self.kept_reads if kept else self.input_reads
            for i, name in enumerate(node.input):
                if name in reads:
                    node.input[i] = reads[name]
            for i, name in enumerate(node.output):
                if name in self.renamed_outputs:
                    node.output[i] = self.renamed_outputs[name]
            nodes.append(node)
            for out in node.output:
                nodes.extend(self.after.pop(original.get(out, ""), ()))
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(self.new_initializers)
        self._drop_unused()
        return self.model

    def _drop_unused(self) -> None:
        """Remove float weights every consumer now reads through a chain, so the file holds
        each weight once (as int8 codes for INT8)."""
        graph = self.model.graph
        # If/Loop bodies may read outer weights by name (silero-vad's LSTM weights): they count too
        used = names_read(graph) | {o.name for o in graph.output}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        # old exporters list weights as graph inputs too; a tapped weight's name now belongs to
        # the chain's output, so that input entry must go
        stale = [i for i in graph.input if i.name in self.initializers and i.name in self.kept_reads]
        for vi in stale:
            graph.input.remove(vi)


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the nodes of ``graph`` read, including inside their subgraphs."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                names |= names_read(sub)
    return names
