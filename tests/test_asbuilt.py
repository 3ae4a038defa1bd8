"""As-built simulation from real trtexec --exportLayerInfo output (tests/data/trtexec): every tensor
the engine stores gets the engine's precision, fused-away tensors stay float, and the audit names the
fused layer that ignored a requested precision."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qbench.artifacts import parse_layer_info, tensor_formats
from qbench.model import ModelGraph
from qbench.ranges import Ranges, TensorRange
from qbench.runners import OrtRunner
from qbench.simulate.asbuilt import audit_precisions, build_as_built_model, plan_as_built

LAYERS = Path(__file__).parent / "data" / "trtexec" / "mobilenet.qat.layers.json"


def _mobilenet_fragment():
    """The float ONNX nodes and tensors the trimmed layer table names (MobileNetV2's first conv and a
    residual block), with random weights: input1 -> [QuantizeLinear_2] 317 -> Conv_12 -> Clip_16 -> 334;
    399 -> Conv_94 -> 410; 447 -> Conv_142 (+ Add_144 with 410) -> 459."""
    rng = np.random.default_rng(0)
    w = lambda name, shape: numpy_helper.from_array((rng.normal(size=shape) * 0.2).astype(np.float32), name)
    nodes = [
        helper.make_node("Identity", ["input1"], ["317"], name="QuantizeLinear_2"),
        helper.make_node("Conv", ["317", "features.0.0.weight"], ["333"], name="Conv_12", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["333", "zero", "six"], ["334"], name="Clip_16"),
        helper.make_node("Conv", ["399", "features.2.conv.2.weight"], ["410"], name="Conv_94"),
        helper.make_node("Conv", ["447", "features.3.conv.2.weight"], ["458"], name="Conv_142"),
        helper.make_node("Add", ["458", "410"], ["459"], name="Add_144"),
    ]
    inits = [w("features.0.0.weight", (32, 3, 3, 3)), w("features.2.conv.2.weight", (24, 96, 1, 1)),
             w("features.3.conv.2.weight", (24, 144, 1, 1)), numpy_helper.from_array(np.array(0, np.float32), "zero"),
             numpy_helper.from_array(np.array(6, np.float32), "six")]
    inputs = [helper.make_tensor_value_info("input1", TensorProto.FLOAT, [1, 3, 16, 16]),
              helper.make_tensor_value_info("399", TensorProto.FLOAT, [1, 96, 8, 8]),
              helper.make_tensor_value_info("447", TensorProto.FLOAT, [1, 144, 8, 8])]
    outputs = [helper.make_tensor_value_info("334", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("459", TensorProto.FLOAT, None)]
    model = helper.make_model(helper.make_graph(nodes, "mobilenet_fragment", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ModelGraph.from_proto(model, name="mobilenet-fragment")


def _engine_precisions_by_hand():
    """Read straight from the file, independently of qbench's parser: tensor -> precision word."""
    doc = json.loads(LAYERS.read_text())
    found = {}
    for layer in doc["Layers"]:
        for t in layer["Inputs"] + layer["Outputs"]:
            found[t["Name"]] = re.search(r"(Int8|FP16|FP32)", t["Format/Datatype"]).group(1).lower().replace("fp", "fp")
    return found


def test_as_built_reproduces_the_engine_precisions():
    graph = _mobilenet_fragment()
    info = parse_layer_info(LAYERS.read_text())
    by_hand = _engine_precisions_by_hand()
    plan = plan_as_built(graph, info)
    for name, precision in by_hand.items():
        assert plan.tensors[name] == precision, name
    assert "333" not in plan.tensors and "458" not in plan.tensors  # fused inside Conv_12 / Conv_142 + Add_144
    assert plan.layer_of["Clip_16"] == plan.layer_of["Conv_12"]  # PWN(Clip_16) is part of the conv layer
    assert {w: p for w, (p, _) in plan.weights.items()} == {k: "int8" for k in
                                                           ("features.0.0.weight", "features.2.conv.2.weight", "features.3.conv.2.weight")}
    ranges = Ranges({n: TensorRange(n, 6.0) for n in ("input1", "317", "334", "399", "447", "410", "459")})
    sim = build_as_built_model(graph, ranges, info)
    ops = {n.name: n.op_type for n in sim.model.graph.node}
    int8 = sorted(n for n, p in by_hand.items() if p == "int8")
    fp16 = sorted(n for n, p in by_hand.items() if p == "fp16")
    assert sorted(n[: -len("::QuantizeLinear")] for n in ops if n.endswith("::QuantizeLinear")) == int8
    assert sorted(n[: -len("::CastFp16")] for n in ops if n.endswith("::CastFp16")) == fp16
    assert sim.placement == "as-built" and "333" not in sim.quantized
    rng = np.random.default_rng(1)
    feed = {"input1": rng.uniform(-3, 3, (1, 3, 16, 16)).astype(np.float32),
            "399": rng.uniform(0, 6, (1, 96, 8, 8)).astype(np.float32), "447": rng.uniform(0, 6, (1, 144, 8, 8)).astype(np.float32)}
    got = OrtRunner(ModelGraph(sim.model, name="asbuilt"), capture=["410", "334"]).run(feed)
    assert np.array_equal(got["410"], got["410"].astype(np.float16).astype(np.float32))  # stored in FP16
    step = 6.0 / 127
    assert np.allclose(got["334"] / step, np.round(got["334"] / step), atol=1e-3)  # stored in INT8


def test_audit_names_the_fused_layer_that_ignored_a_constraint():
    graph = _mobilenet_fragment()
    info = parse_layer_info(LAYERS.read_text())
    ignored = audit_precisions(graph, info, keep_float=["Clip_16", "334", "410"], layer_precisions={"Conv_94": "int8"})
    by_name = {i.requested: i for i in ignored}
    assert set(by_name) == {"Clip_16", "334"}  # 410 is FP16 (float) and Conv_94 ran INT8 as asked
    assert by_name["Clip_16"].layer == "features.0.0.weight + QuantizeLinear_8 + Conv_12 + PWN(Clip_16)"
    assert "fused into" in by_name["Clip_16"].message() and by_name["334"].actual == "INT8"


def test_as_built_needs_ranges_for_int8_tensors():
    graph = _mobilenet_fragment()
    with pytest.raises(Exception, match="INT8 but the ranges have no entry"):
        build_as_built_model(graph, Ranges({}), parse_layer_info(LAYERS.read_text()))
    assert tensor_formats(parse_layer_info(LAYERS.read_text()))["410"]["precision"] == "fp16"


def test_cli_simulate_as_built_prints_the_audit(tmp_path, capsys):
    import onnx

    from qbench.cli import main

    graph = _mobilenet_fragment()
    onnx.save(graph.model, tmp_path / "fragment.onnx")
    Ranges({n: TensorRange(n, 6.0) for n in ("input1", "317", "334", "399", "447", "410", "459", "333", "458")}).write_json(tmp_path / "r.json")
    rc = main(["simulate", str(tmp_path / "fragment.onnx"), "--precision", "int8", "--ranges", str(tmp_path / "r.json"),
               "--layer-info", str(LAYERS), "--keep-float", "Clip_16", "-o", str(tmp_path / "asbuilt.onnx")])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "asbuilt.onnx").is_file()
    assert "Clip_16: asked for FP32/FP16, the engine ran INT8" in err and "fused into" in err
