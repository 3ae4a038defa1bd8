"""Culprit replay: is a flagged tensor's error born in its own node, or inherited from upstream?

For a flagged tensor we run only the computation that produces it, in the candidate precision, on
the REFERENCE values of its inputs, and compare with the reference output. Large error there means
the node introduced it; a clean result means the error came in through its inputs.

Two ways to get that piece of candidate computation:
- ``extract_producer``: cut it out of the whole candidate model (a simulated model, or a candidate
  ONNX file): walk back from the tensor through the candidate's nodes until every input is a tensor
  the reference also has (or a constant). In a simulated model this takes the producer, its weight
  dequantization and the Q/DQ of the tensor itself, but not the Q/DQ of its inputs: those belong
  to the tensors that own them, which are judged on their own. So each rounding is blamed once.
- ``one_node_model`` + a user ``make_candidate_model`` callable (e.g. a TensorRT builder for one
  layer): the FP32 node alone, converted by the callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from qbench.compare.metrics import derive, pair_sums
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

# A walk-back that needs more nodes than this is not "one node" any more; refusing keeps a
# misnamed candidate from turning replay into a second full run.
MAX_EXTRACTED_NODES = 32


@dataclass
class ReplayResult:
    tensor: str
    isolated: dict | None  # derive() metrics plus the raw NaN/Inf counts; None when not replayed
    nodes: list[str]  # candidate nodes that were run
    note: str = ""  # why it was not replayed, when it was not


def _value_info(name: str, elem_type: int = onnx.TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, None)


def _small_model(source: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[str], output: str,
                 initializers: list[onnx.TensorProto], input_types: dict[str, int] | None = None) -> onnx.ModelProto:
    """``input_types``: element type of each input where known (else FLOAT); before a run,
    ``_typed_inputs`` sets them from the reference values actually fed."""
    types = input_types or {}
    inputs_vi = [_value_info(n, types.get(n, onnx.TensorProto.FLOAT)) for n in inputs]
    graph = helper.make_graph(nodes, f"replay_{output}", inputs_vi, [_value_info(output)], initializers)
    model = helper.make_model(graph, opset_imports=list(source.opset_import), producer_name="qbench-replay")
    model.ir_version = source.ir_version
    return model


class ModelIndex:
    """Lookups over a candidate model, built once for all the tensors replayed from it."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.producer = {out: node for node in model.graph.node for out in node.output if out}
        self.inits = {t.name: t for t in model.graph.initializer}
        self.order = {id(node): i for i, node in enumerate(model.graph.node)}


def extract_producer(model: onnx.ModelProto | ModelIndex, tensor: str, stop: set[str]) -> tuple[onnx.ModelProto, list[str]]:
    """The sub-model of ``model`` computing ``tensor`` from tensors in ``stop`` and constants, and
    the names of its inputs."""
    index = model if isinstance(model, ModelIndex) else ModelIndex(model)
    model, producer, inits, order = index.model, index.producer, index.inits, index.order
    if tensor not in producer:
        raise QbenchError(f"the candidate model has no node producing {tensor!r}")
    chosen: dict[int, onnx.NodeProto] = {}
    inputs: list[str] = []
    used_inits: dict[str, onnx.TensorProto] = {}
    pending = [tensor]
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name != tensor and name in stop:
            inputs.append(name)
            continue
        if name in inits:
            used_inits[name] = inits[name]
            continue
        node = producer.get(name)
        if node is None:
            inputs.append(name)  # a graph input of the candidate the reference does not name
            continue
        if id(node) not in chosen:
            chosen[id(node)] = node
            if len(chosen) > MAX_EXTRACTED_NODES:
                raise QbenchError(f"{tensor!r}: more than {MAX_EXTRACTED_NODES} candidate nodes lie between it and "
                                  "tensors the reference names; cannot replay it alone")
            pending.extend(node.input)
    nodes = sorted(chosen.values(), key=lambda n: order[id(n)])
    inputs = sorted(set(inputs))
    return _small_model(model, nodes, inputs, tensor, list(used_inits.values())), inputs


def one_node_model(graph: ModelGraph, node: onnx.NodeProto, tensor: str) -> tuple[onnx.ModelProto, list[str]]:
    """The FP32 reference node alone, as a model whose inputs are its activation inputs."""
    inits = {t.name: t for t in graph.model.graph.initializer}
    inputs = [i for i in dict.fromkeys(node.input) if i and i not in inits]
    used = [inits[i] for i in dict.fromkeys(node.input) if i in inits]
    single = onnx.NodeProto()
    single.CopyFrom(node)
    return _small_model(graph.model, [single], inputs, tensor, used, graph.elem_types), inputs


def run_isolated(model: onnx.ModelProto, feed: dict[str, np.ndarray], output: str) -> np.ndarray:
    runner = OrtRunner(model, name=f"replay {output}", capture=None, optimize=False, threads=1)
    return runner.run(feed)[output]


def _typed_inputs(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Declare each input with the dtype of the reference value fed to it, so that int64 indices
    and bool masks reach their nodes as they did in the reference run (fed uncast)."""
    for vi in model.graph.input:
        if vi.name in feed:
            vi.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(feed[vi.name].dtype)
    return model


def replay_tensor(tensor: str, ref_values: dict[str, np.ndarray], *, graph: ModelGraph,
                  candidate_model: onnx.ModelProto | ModelIndex | None = None,
                  make_candidate_model: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None) -> ReplayResult:
    """Run the candidate computation of ``tensor`` alone on reference inputs and measure its error."""
    try:
        if make_candidate_model is not None:
            fp32, inputs = one_node_model(graph, graph.producer[tensor], tensor)
            small = make_candidate_model(fp32)
        elif candidate_model is not None:
            stop = set(ref_values) | {i.name for i in graph.inputs}
            small, inputs = extract_producer(candidate_model, tensor, stop)
        else:
            return ReplayResult(tensor, None, [], "no candidate model to replay")
        missing = [i for i in inputs if i not in ref_values]
        if missing:
            return ReplayResult(tensor, None, [], f"reference did not capture input {missing[0]!r}")
        feed = {i: np.asarray(ref_values[i]) for i in inputs}
        out = run_isolated(_typed_inputs(small, feed), feed, tensor)
    except QbenchError as exc:
        return ReplayResult(tensor, None, [], str(exc))
    ref = ref_values[tensor]
    if np.shape(out) != np.shape(ref):
        return ReplayResult(tensor, None, [], f"isolated output shape {np.shape(out)} differs from reference {np.shape(ref)}")
    sums = pair_sums(ref, out)
    metrics = derive(sums)
    metrics.update({k: sums[k] for k in ("ref_nan", "ref_inf", "cand_nan", "cand_inf")})
    return ReplayResult(tensor, metrics, [n.name or n.op_type for n in small.graph.node])
