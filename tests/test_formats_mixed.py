"""Mixed formats (qbench.simulate.mixed_format) on the PP-OCRv4 recognizer: FP8 with named layers in
BF16/FP16, INT8 with named layers in FP8. A layer in the higher format must compute bit for bit what
that format's own simulation of the layer alone computes on the same input; every other node must be
the base format's model with those layers kept."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper, numpy_helper

from qbench.errors import QbenchError
from qbench.data import load_dataset
from qbench.model import ModelGraph
from qbench.pipeline import RunConfig, run_pipeline
from qbench.ranges import Ranges, TensorRange
from qbench.runners import OrtRunner
from qbench.search import format_mixed
from qbench.simulate import formats, naming
from qbench.simulate.formats import FORMATS
from qbench.simulate.mixed_format import COPY
from tests.conftest import DEFAULT_MODEL, make_small_data_dir
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
    # the layer's own output: ``o::float`` when the base format quantizes ``o`` after it (the base
    # model with the layers kept says which); the higher format's rounding then writes that name
    base_model = FORMATS[base].simulate(graph, ranges, keep_float=layers).model
    produced = {o for n in base_model.graph.node for o in n.output}

    def written(o):
        return naming.float_name(o) if naming.float_name(o) in produced else o
    capture = []
    for layer in layers:
        node = graph.model.graph.node[graph.node_names.index(layer)]
        capture += [written(o) for o in node.output] + [i for i in node.input if i not in graph.initializer_names]
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
            got = out[written(o)]
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
    # BF16/FP16 run wherever FP8 does; FP8 not wherever INT8 does, so int8-fp8 needs the run to ask for FP8
    assert all(format_mixed.usable(FORMATS["fp8"], FORMATS[h]) for h in FORMATS["fp8"].fallback)
    assert not format_mixed.usable(FORMATS["int8"], FORMATS["fp8"], ("int8", "fp16"))
    assert format_mixed.usable(FORMATS["int8"], FORMATS["fp8"], ("int8", "fp8"))
    # the default higher format is the row's first fallback
    assert FORMATS["fp8"].simulate(graph, ranges, higher_layers=layer).precision == "fp8-bf16"
    with pytest.raises(QbenchError, match="cannot hold layers"):
        FORMATS["fp8"].simulate(graph, ranges, higher="int8", higher_layers=layer)
    with pytest.raises(QbenchError, match="no node"):
        FORMATS["fp8"].simulate(graph, ranges, higher_layers=["no such layer"])
    monkeypatch.setitem(formats.FORMATS, "fp8", dataclasses.replace(FORMATS["fp8"], fallback=()))
    with pytest.raises(QbenchError, match="no higher format"):
        formats.FORMATS["fp8"].simulate(graph, ranges, higher_layers=layer)


def test_movable_layers_are_the_ones_both_formats_treat_and_culprits_rank_first(rec):  # noqa: F811
    graph, _feed, _ref, ranges = rec
    ops = {n: node.op_type for n, node in zip(graph.node_names, graph.model.graph.node)}
    movable = format_mixed.movable_layers(graph, FORMATS["int8"], FORMATS["fp8"], ranges)
    # INT8 also quantizes pooling/Add readers; the layers that can move are those reading what FP8
    # quantizes too: every Conv/MatMul INT8 quantizes, and fewer layers than INT8 has
    int8_readers = format_mixed.movable_layers(graph, FORMATS["int8"], FORMATS["int8"], ranges)
    gemms = [n for n in int8_readers if ops[n] in ("Conv", "MatMul", "Gemm")]
    assert gemms and set(gemms) <= set(movable) and len(int8_readers) > len(movable)
    assert "Shape" not in {ops[n] for n in movable}
    fp8_in_bf16 = format_mixed.movable_layers(graph, FORMATS["fp8"], FORMATS["bf16"], ranges)
    assert fp8_in_bf16 == format_mixed.movable_layers(graph, FORMATS["fp8"], FORMATS["fp8"], ranges)

    class Cmp:  # a comparison's tensor table: one culprit, one layer adding a large error
        def __init__(self, rows):
            self.tensors = pd.DataFrame(rows, columns=["tensor", "rel_l2", "culprit_rank"])
    nodes = {n: node for n, node in zip(graph.node_names, graph.model.graph.node)}
    a, b, c = fp8_in_bf16[3], fp8_in_bf16[5], fp8_in_bf16[7]
    rows = [(t, 0.01, np.nan) for n in fp8_in_bf16 for t in [*nodes[n].input, *nodes[n].output]]
    rows += [(nodes[b].output[0], 0.9, np.nan), (nodes[c].output[0], 0.5, 1.0)]
    ranked = format_mixed.rank_layers(graph, fp8_in_bf16, Cmp(rows))
    assert ranked[:2] == [c, b] and sorted(ranked) == sorted(fp8_in_bf16) and a in ranked


@pytest.mark.slow
def test_run_moves_the_detectors_depthwise_convs_to_bf16_and_ships_fp8_with_them(tmp_path):
    """The whole job on the embedded detector at 640x640 (page and text images, segment judge): FP8
    misses the judge's mask-IoU bar (its depthwise Convs, docs/FORMATS.md); the search moves the fewest
    ranked layers to BF16, the candidate ``fp8-bf16`` names them, and ``fp8-best/`` ships that model
    (float8 Q/DQ + BF16 Casts) because it ranks above FP8. The shipped file is the candidate, bit for bit."""
    data = make_small_data_dir(tmp_path / "data", size=640, count=2)
    lines = []
    cfg = RunConfig(model=DEFAULT_MODEL, data=data, out=tmp_path / "out", precisions=("fp8",), task="segment",
                    progress=False, fp16_mode="likely", store=tmp_path / "q.sqlite", max_float=16, search_time_s=240)
    outcome = run_pipeline(cfg, echo=lines.append)
    results = json.loads(outcome.results_json.read_text())
    by_name = {c["precision"]: c for c in results["candidates"]}
    assert list(by_name) == ["fp8", "fp8-bf16"]
    assert by_name["fp8"]["task"]["verdict"] != "pass"  # the premise: FP8 alone misses the bar
    assert "Mixed formats: FP8 with layers in BF16 (fp8-bf16)" in outcome.report.read_text()
    graph = ModelGraph.from_path(DEFAULT_MODEL)
    cand = by_name["fp8-bf16"]
    layers = cand["meta"]["higher_layers"]
    assert cand["meta"]["higher_format"] == "bf16" and 1 <= len(layers) <= 16 and set(layers) <= set(graph.node_names)
    assert cand["task"]["verdict"] == "pass", cand["task"]["reason"]
    groups = {n: next((a.i for a in node.attribute if a.name == "group"), 1)
              for n, node in zip(graph.node_names, graph.model.graph.node)}
    assert any(groups[n] > 1 for n in layers)  # a depthwise Conv is among the layers FP8 cannot hold
    folder = tmp_path / "out" / "fp8-best"
    verdict = json.loads((folder / "verdict.json").read_text())
    assert verdict["candidate"] == "fp8-bf16" and verdict["higher_layers"] == layers and verdict["verdict"] == "pass"
    assert "--bf16" in (folder / "trtexec_flags.txt").read_text() and "--fp8" in (folder / "trtexec_flags.txt").read_text()
    qdq = onnx.load(folder / "model_qdq.onnx")
    casts = [n for n in qdq.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.BFLOAT16]
    assert casts and any(t.data_type == onnx.TensorProto.FLOAT8E4M3FN for t in qdq.graph.initializer)
    feed = load_dataset(data, graph.inputs).sample(0)
    shipped = OrtRunner(qdq, name="shipped", capture=None, optimize=False).run(feed)
    sim = FORMATS["fp8"].simulate(graph, outcome.ranges, higher="bf16", higher_layers=layers)
    again = OrtRunner(sim.model, name="sim", capture=None, optimize=False).run(feed)
    for name, value in again.items():
        np.testing.assert_array_equal(shipped[name], value)


def test_a_layer_whose_output_fp8_quantizes_again_on_the_detector(graph, small_dataset):
    """The detector's Convs that feed another Conv: FP8 quantizes their output for the next layer,
    so in the base model the layer writes ``t::float`` and a DequantizeLinear writes ``t``; the layer
    (not the DequantizeLinear) must move to BF16, and still equal BF16's simulation of it alone."""
    feed = small_dataset.sample(0)
    ref = OrtRunner(graph, name="fp32", capture=[t.name for t in graph.float_tensors]).run(feed)
    ranges = Ranges({n: TensorRange(n, float(np.abs(v).max()), observed_min=float(v.min()), observed_max=float(v.max()))
                     for n, v in ref.items()} | {graph.inputs[0].name: TensorRange(graph.inputs[0].name, 3.0, observed_max=3.0)})
    feeds_conv = [name for name, node in zip(graph.node_names, graph.model.graph.node) if node.op_type == "Conv"
                  and any(c.op_type == "Conv" for c in graph.consumers.get(node.output[0], []))]
    assert feeds_conv
    sim, _ = _check_layer_in_higher(graph, feed, ranges, "fp8", "bf16", feeds_conv[:2])
    layer = graph.model.graph.node[graph.node_names.index(feeds_conv[0])]
    casts = [n for n in sim.model.graph.node if n.op_type == "Cast" and n.output[0] == layer.output[0] + "::float"]
    assert casts  # the layer's own output rounded, before the next layer's FP8 Q/DQ
