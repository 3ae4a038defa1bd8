"""Implicit-INT8 placement: fusion, Concat shared scales, FP32 outputs, likely/worst modes; on a real
detector whose head concatenates pixel boxes with sigmoid scores (tests/detector.py), the simulation
zeroes the scores as users report of TensorRT, and the diagnosis names the Concat."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qbench.model import ModelGraph
from qbench.ranges import Ranges, TensorRange
from qbench.runners import OrtRunner
from qbench.simulate import build_int8_model
from qbench.simulate.placement import concat_hazards, fusion_groups, plan_int8


def _ranges(values: dict[str, float]) -> Ranges:
    return Ranges({n: TensorRange(n, a) for n, a in values.items()})


def _tiny_head():
    """x -> Conv -> Relu -> (Conv -> boxes*100) ++ (Conv -> Sigmoid -> scores) -> Concat -> out."""
    rng = np.random.default_rng(0)
    w = lambda name, shape: numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv_boxes"),
        helper.make_node("Mul", ["c1", "hundred"], ["boxes"], name="to_pixels"),
        helper.make_node("Conv", ["r0", "w2"], ["c2"], name="conv_scores"),
        helper.make_node("Sigmoid", ["c2"], ["scores"], name="sigmoid"),
        helper.make_node("Concat", ["boxes", "scores"], ["out"], name="head_concat", axis=1),
    ]
    inits = [w("w0", (4, 3, 1, 1)), w("w1", (4, 4, 1, 1)), w("w2", (2, 4, 1, 1)),
             numpy_helper.from_array(np.array(100.0, np.float32), "hundred")]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ModelGraph.from_proto(model, name="head")


def test_fusion_keeps_conv_activation_internal_and_concat_shares_the_output_scale():
    graph = _tiny_head()
    fused = fusion_groups(graph)
    assert fused["c0"] == "conv0 + relu0" and fused["c2"] == "conv_scores + sigmoid"
    plan = plan_int8(graph)
    assert "c0" not in plan.activations and "r0" in plan.activations  # fused internal vs layer boundary
    assert plan.scale_from == {"boxes": "out", "scores": "out"} and plan.concat_of["scores"] == "head_concat"
    assert "out" not in plan.activations  # network output: FP32
    ranges = _ranges({"x": 3, "r0": 5, "c1": 4, "boxes": 400, "scores": 1.0, "out": 400, "c2": 5})
    sim = build_int8_model(graph, ranges)
    assert sim.shared_scale == {"boxes": "head_concat", "scores": "head_concat"} and sim.placement == "likely"
    scales = {i.name: numpy_helper.to_array(i) for i in sim.model.graph.initializer}
    assert float(scales["scores::scale"]) == pytest.approx(400 / 127)  # the Concat's scale, not the sigmoid's own
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32)
    out = OrtRunner(ModelGraph(sim.model, name="int8")).run({"x": x})["out"]
    assert np.all(out[:, 4:] == 0) and np.any(out[:, :4] != 0)  # every score rounds to 0
    hazards = concat_hazards(plan, ranges)
    assert [h.concat for h in hazards] == ["head_concat"] and hazards[0].tensor == "scores"
    assert "--keep-float head_concat" in hazards[0].message()
    kept = build_int8_model(graph, ranges, keep_float=["head_concat"])
    assert not kept.shared_scale
    out = OrtRunner(ModelGraph(kept.model, name="kept")).run({"x": x})["out"]
    assert np.any(out[:, 4:] != 0)


def test_worst_mode_quantizes_more_than_likely():
    graph = _tiny_head()
    likely, worst = plan_int8(graph, placement="likely"), plan_int8(graph, placement="worst")
    assert set(likely.activations) < set(worst.activations)
    assert "boxes" in worst.activations and "c1" in worst.activations  # Conv output before the Mul: could be INT8
    with pytest.raises(Exception, match="placement"):
        plan_int8(graph, placement="bogus")


@pytest.mark.slow
def test_real_detector_head_concat_zeroes_the_scores(tmp_path_factory, request, calib_dir):
    from detector import HEAD_CONCAT, decoded_head, detector_data, fetch_detector

    from qbench.calibrate import calibrate_many
    from qbench.data import load_dataset

    raw = onnx.load(fetch_detector(request.config.cache.mkdir("ddddocr_det")))
    graph = ModelGraph.from_proto(decoded_head(raw), name="yolox-decoded")
    data = detector_data(tmp_path_factory.mktemp("det_data"), calib_dir / "images", count=3)
    dataset = load_dataset(data, graph.inputs)
    every = calibrate_many(graph, dataset, methods=("entropy", "minmax"), progress=False)
    feed = dataset.sample(0)
    reference = OrtRunner(graph).run(feed)["output"]
    assert reference[0, 4:].max() > 0.05 and reference[0, :4].max() > 100  # real scores, pixel boxes
    for method, ranges in every.items():
        sim = build_int8_model(graph, ranges)
        assert sim.shared_scale.get("decode/scores") == HEAD_CONCAT
        out = OrtRunner(ModelGraph(sim.model, name="int8")).run(feed)["output"]
        assert np.all(out[0, 4:] == 0), method  # all-zero class scores, as users report of TensorRT
        hazards = concat_hazards(plan_int8(graph), ranges)
        assert hazards[0].concat == HEAD_CONCAT and hazards[0].tensor == "decode/scores"
        fixed = build_int8_model(graph, ranges, keep_float=sorted({h.concat for h in hazards}))
        out = OrtRunner(ModelGraph(fixed.model, name="fixed")).run(feed)["output"]
        # the advice works: the class scores are back (the rest is ordinary INT8 error)
        assert np.corrcoef(out[0, 5], reference[0, 5])[0, 1] > 0.9, method
    # the comparison's diagnosis blames the Concat, not the Sigmoid, and says how to fix it
    from qbench.compare.entry import compare_precision

    cmp = compare_precision(graph, dataset, "int8", every["entropy"], limit=1, progress=False, max_replay=4)
    culprits = [f for f in cmp.findings if f["kind"] in ("shared_scale", "culprit")]
    assert culprits[0]["kind"] == "shared_scale" and culprits[0]["node"] == HEAD_CONCAT, [f["message"] for f in culprits]
    assert culprits[0]["tensor"] == "decode/scores" and culprits[0]["severity"] == "error"
    assert f"--keep-float {HEAD_CONCAT}" in culprits[0]["message"] and "minmax" in culprits[0]["message"]
    assert not any(f["kind"] == "culprit" and f["tensor"] == "decode/scores" for f in cmp.findings)


def test_cli_simulate_worst_placement_warns_about_the_concat(tmp_path, capsys):
    from qbench.cli import main

    graph = _tiny_head()
    onnx.save(graph.model, tmp_path / "head.onnx")
    _ranges({"x": 3, "r0": 5, "c1": 4, "boxes": 400, "scores": 1.0, "out": 400, "c2": 5, "c0": 5}).write_json(tmp_path / "r.json")
    rc = main(["simulate", str(tmp_path / "head.onnx"), "--precision", "int8", "--ranges", str(tmp_path / "r.json"),
               "--placement", "worst", "-o", str(tmp_path / "worst.onnx")])
    captured = capsys.readouterr()
    assert rc == 0 and "head_concat (Concat) quantizes its input 'scores'" in captured.err


def test_run_names_the_concat_on_console_and_in_the_report(tmp_path):
    import json

    from qbench.pipeline import RunConfig, run_pipeline

    graph = _tiny_head()
    graph.model.graph.node[-1].name = "head_concat<b>"  # a model-supplied name the report must escape
    onnx.save(graph.model, tmp_path / "head.onnx")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        np.save(data / f"s{i}.npy", rng.normal(size=(1, 3, 4, 4)).astype(np.float32))
    lines = []
    run_pipeline(RunConfig(model=tmp_path / "head.onnx", data=data, out=tmp_path / "out", precisions=("int8",),
                           fallback=False, progress=False), echo=lines.append)
    assert any("head_concat<b> (Concat) quantizes its input 'scores'" in line for line in lines)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "head_concat<b>" in json.dumps(results)
    # the comparison's findings blame the Concat, and the HTML report lists that finding, escaped
    findings = [f for c in results["candidates"] for f in c["findings"] if f["kind"] == "shared_scale"]
    assert findings and findings[0]["node"] == "head_concat<b>" and findings[0]["tensor"] == "scores"
    page = next((tmp_path / "out").glob("*.html")).read_text()
    assert "--keep-float head_concat&lt;b&gt;" in page and "head_concat<b>" not in page
    assert (tmp_path / "out" / "calibration.cache.provenance.json").is_file()


def test_run_says_when_likely_and_worst_placements_disagree(tmp_path):
    from qbench.calibrate import calibrate
    from qbench.pipeline import RunConfig, run_pipeline

    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"),
             helper.make_node("Mul", ["c0", "two"], ["m"], name="scale"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w1"], ["out"], name="conv1")]
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w0"),
             numpy_helper.from_array(rng.normal(size=(2, 4, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    model = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                                                [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4, 4])], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        np.save(data / f"s{i}.npy", rng.normal(size=(1, 3, 4, 4)).astype(np.float32))
    graph = ModelGraph.from_path(tmp_path / "m.onnx")
    assert "c0" in plan_int8(graph, placement="worst").activations and "c0" not in plan_int8(graph).activations
    # a broken range on the Conv output that only the worst placement quantizes
    ranges = calibrate(graph, data, method="minmax", progress=False).with_override("c0", 1e-4)
    ranges.write_json(tmp_path / "r.json")
    lines = []
    run_pipeline(RunConfig(model=tmp_path / "m.onnx", data=data, out=tmp_path / "out", precisions=("int8",), fallback=False,
                           progress=False, ranges=tmp_path / "r.json", placement="both"), echo=lines.append)
    # three samples cannot make the likely placement a pass (the judge calls it inconclusive), but the
    # worst placement fails outright: the verdicts differ and the run says so
    assert any("with TensorRT's likely INT8 placement but fails with the worst one" in line for line in lines)
