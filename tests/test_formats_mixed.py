"""Mixed formats (qbench.simulate.mixed_format) on the PP-OCRv4 recognizer: FP8 with named layers in
BF16/FP16, INT8 with named layers in FP8. A layer in the higher format must compute bit for bit what
that format's own simulation of the layer alone computes on the same input; every other node must be
the base format's model with those layers kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.runners import OrtRunner
from qbench.simulate import formats, naming
from qbench.simulate.formats import FORMATS
from qbench.simulate.mixed_format import COPY
from tests.test_formats import rec  # noqa: F401 (the recognizer fixture: graph, one line, FP32 tensors, ranges)

pytestmark = pytest.mark.filterwarnings("ignore:FP16", "ignore:BF16")


def _layers(graph, op: str, grouped: bool | None = None, count: int = 2) -> list[str]:
    """The first ``count`` nodes of ``op`` (with grouped Conv only, or ungrouped only)."""
    out = []
    for name, node in zip(graph.node_names, graph.model.graph.node):
        if node.op_type != op:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if grouped is None or (group > 1) == grouped:
            out.append(name)
    return out[:count]


def _one_node(graph, name: str) -> onnx.ModelProto:
    """The layer ``name`` alone: its activation inputs are graph inputs, its weights initializers."""
    node = graph.model.graph.node[graph.node_names.index(name)]
    inits = [graph.model.graph.initializer[[t.name for t in graph.model.graph.initializer].index(i)]
             for i in node.input if i in graph.initializer_names]
    inputs = [helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, None) for i in node.input
              if i and i not in graph.initializer_names]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in node.output]
    one = helper.make_graph([node], "one", inputs, outputs, inits)
    return helper.make_model(one, opset_imports=graph.model.opset_import)


def _check_layer_in_higher(graph, feed, ranges, base: str, higher: str, layers: list[str]):
    sim = FORMATS[base].simulate(graph, ranges, higher=higher, higher_layers=layers)
    assert sim.precision == f"{base}-{higher}"
    nodes = {n.name: n for n in sim.model.graph.node}
    capture = []
    for layer in layers:
        node = graph.model.graph.node[graph.node_names.index(layer)]
        capture += [o for o in node.output] + [i for i in node.input if i not in graph.initializer_names]
    # what each layer reads before the higher format's rounding: the copy's float source
    copies = [n for n in sim.model.graph.node if n.op_type == "Identity" and COPY in n.output[0]]
    sources = [c.input[0] for c in copies]
    out = OrtRunner(sim.model, name="mixed", capture=list(dict.fromkeys(capture + sources)), optimize=False).run(feed)
    checked = 0
    for layer in layers:
        node = graph.model.graph.node[graph.node_names.index(layer)]
        acts = [i for i in node.input if i and i not in graph.initializer_names]
        # the float value the layer's copy was made from, in the mixed model
        feeds = {}
        for a in acts:
            # (the higher format may have renamed the Identity's output ``copy::float``)
            copy = next(c for c in copies if c.output[0].startswith(a) and naming.original_name(c.output[0]).endswith(
                COPY + str(graph.node_names.index(layer))))
            feeds[a] = out[copy.input[0]]
        one = ModelGraph.from_proto(_one_node(graph, layer))
        alone = FORMATS[higher].simulate(one, ranges)
        expected = OrtRunner(alone.model, name="alone", capture=list(node.output), optimize=False).run(feeds)
        for o in node.output:
            got = out[o]
            np.testing.assert_array_equal(got, expected[o])
            checked += 1
    assert checked == len(layers)
    return sim, nodes


@pytest.mark.parametrize("higher", ["bf16", "fp16"])
def test_fp8_with_layers_in_half_is_that_format_on_those_layers_and_fp8_elsewhere(rec, higher):  # noqa: F811
    graph, feed, _ref, ranges = rec
    layers = _layers(graph, "Conv", grouped=True, count=1) + _layers(graph, "MatMul", count=1)
    sim, _ = _check_layer_in_higher(graph, feed, ranges, "fp8", higher, layers)
    # the rest: every node of FP8-with-these-layers-kept is in the mixed model, unchanged
    kept = FORMATS["fp8"].simulate(graph, ranges, keep_float=layers).model
    mixed = {tuple(n.output): n for n in sim.model.graph.node}
    layer_outputs = {o for l in layers for o in graph.model.graph.node[graph.node_names.index(l)].output}
    inits = {t.name: t for t in sim.model.graph.initializer}
    for node in kept.graph.node:
        if set(node.output) & (layer_outputs | {o + "::float" for o in layer_outputs}):
            continue
        if node.op_type == "Constant" and tuple(node.output) not in mixed:
            # the higher format's builder stored the constant as an initializer: same name, same value
            value = numpy_helper.to_array(node.attribute[0].t)
            np.testing.assert_array_equal(numpy_helper.to_array(inits[node.output[0]]), value)
            continue
        assert mixed[tuple(node.output)] == node, node.name
    layer_reads = {i for l in layers for i in graph.model.graph.node[graph.node_names.index(l)].input}
    for t in kept.graph.initializer:
        if t.name in inits:
            assert inits[t.name] == t
        else:  # only the layers read it, and they now read their own copy
            assert t.name in layer_reads
    # the rounding is real: the layer's output differs from the FP8-with-it-in-float model's
    plain = OrtRunner(kept, name="kept", capture=[o for o in layer_outputs], optimize=False).run(feed)
    again = OrtRunner(sim.model, name="mixed", capture=[o for o in layer_outputs], optimize=False).run(feed)
    assert any(not np.array_equal(plain[o], again[o]) for o in layer_outputs)


def test_int8_with_layers_in_fp8_are_fp8_qdq_of_those_layers(rec):  # noqa: F811
    graph, feed, _ref, ranges = rec
    layers = _layers(graph, "Conv", grouped=False, count=2)
    sim, _ = _check_layer_in_higher(graph, feed, ranges, "int8", "fp8", layers)
    types = {t.data_type for t in sim.model.graph.initializer}
    assert onnx.TensorProto.FLOAT8E4M3FN in types and onnx.TensorProto.INT8 in types
    onnx.checker.check_model(sim.model)


def test_no_layers_is_the_base_format(rec):  # noqa: F811
    graph, _feed, _ref, ranges = rec
    assert FORMATS["fp8"].simulate(graph, ranges, higher_layers=()).model == FORMATS["fp8"].simulate(graph, ranges).model


def test_the_fallback_column_decides_which_higher_format_is_allowed(rec, monkeypatch):  # noqa: F811
    graph, _feed, _ref, ranges = rec
    layer = _layers(graph, "Conv", count=1)
    assert FORMATS["fp8"].fallback[:1] == ("bf16",) and "fp16" in FORMATS["fp8"].fallback
    assert FORMATS["int8"].fallback == ("fp8",)
    # the default higher format is the row's first fallback
    assert FORMATS["fp8"].simulate(graph, ranges, higher_layers=layer).precision == "fp8-bf16"
    with pytest.raises(QbenchError, match="cannot hold layers"):
        FORMATS["fp8"].simulate(graph, ranges, higher="int8", higher_layers=layer)
    with pytest.raises(QbenchError, match="no node"):
        FORMATS["fp8"].simulate(graph, ranges, higher_layers=["no such layer"])
    monkeypatch.setitem(formats.FORMATS, "fp8", dataclasses.replace(FORMATS["fp8"], fallback=()))
    with pytest.raises(QbenchError, match="no higher format"):
        formats.FORMATS["fp8"].simulate(graph, ranges, higher_layers=layer)
