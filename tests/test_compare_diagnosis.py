"""Layer-by-layer comparison and diagnosis on the real model, real data and real ONNX Runtime:
planted faults must be found exactly where they were planted, and blamed on the right node."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qbench.compare import Comparison, Thresholds, compare_models, compare_precision, compare_runs
from qbench.model import ModelGraph
from qbench.runners import OrtRunner


@pytest.fixture(scope="module")
def int8_ranges(graph, small_dataset):
    from qbench.calibrate import calibrate

    return calibrate(graph, small_dataset, method="entropy", progress=False)


@pytest.fixture(scope="module")
def baseline(graph, small_dataset, int8_ranges):
    return compare_precision(graph, small_dataset, "int8", int8_ranges, progress=False)


@pytest.fixture(scope="module")
def strict(baseline):
    """Thresholds just outside what correct INT8 does on these samples, so any extra fault shows."""
    t = baseline.tensors
    return Thresholds(min_cosine=float(t["cosine"].min()) - 0.05, max_rel_l2=float(t["rel_l2"].max()) + 0.1)


def _scaled_weight_copy(graph: ModelGraph, node_name: str, factor: float) -> ModelGraph:
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    node = next(n for n in model.graph.node if n.name == node_name)
    for t in model.graph.initializer:
        if t.name == node.input[1]:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))
    return ModelGraph(model, name=f"{node_name}-x{factor}")


def _flagged(cmp: Comparison):
    return cmp.tensors[cmp.tensors["status"] != "ok"]


def test_baseline_int8_frame_has_agreed_columns(baseline, graph):
    t = baseline.tensors
    for col in ("index", "tensor", "node", "op_type", "is_output", "shape", "samples", "max_abs_err", "mean_abs_err",
                "rel_l2", "cosine", "cosine_min", "sqnr_db", "ref_zero_frac", "cand_zero_frac", "ref_nan", "ref_inf",
                "cand_nan", "cand_inf", "ref_min", "ref_max", "cand_min", "cand_max", "amax", "int8_saturated_frac",
                "int8_zero_frac", "status", "first_problem", "origin", "isolated_cosine", "isolated_rel_l2", "culprit_rank"):
        assert col in t.columns, col
    assert list(t["tensor"]) == [x.name for x in graph.float_tensors]  # graph order, nothing lost
    assert (t["samples"] == 4).all()
    assert len(baseline.per_sample) == 4 * len(t)
    quantized = t[t["amax"].notna()]
    assert len(quantized) > 10 and (quantized["int8_saturated_frac"] >= 0).all()
    # INT8 changes values but the simulation is not broken: nothing is exact, nothing is lost
    assert (t["max_abs_err"] > 0).any() and t["cosine"].min() > 0.5


def test_planted_tiny_range_is_first_problem_and_introduced(graph, small_dataset, int8_ranges, strict):
    from qbench.simulate import build_int8_model

    # the pooled input of a squeeze-excitation Conv in the backbone's middle: its error reaches far
    planted = "p2o.GlobalAveragePool.1"
    assert planted in build_int8_model(graph, int8_ranges).quantized
    cmp = compare_precision(graph, small_dataset, "int8", int8_ranges.with_override(planted, 1e-30),
                            thresholds=strict, progress=False)
    flagged = _flagged(cmp)
    assert flagged.iloc[0]["tensor"] == planted
    assert cmp.first_problem["tensor"] == planted
    assert cmp.tensors["first_problem"].sum() == 1 and bool(cmp.row(planted)["first_problem"])
    row = cmp.row(planted)
    assert row["origin"] == "introduced" and row["culprit_rank"] == 1
    downstream = cmp.tensors[(cmp.tensors["index"] > row["index"]) & (cmp.tensors["origin"] != "")]
    assert len(downstream) >= 3
    assert (downstream["origin"] == "inherited").all()
    culprits = [f for f in cmp.findings if f["kind"] == "culprit"]
    assert culprits[0]["tensor"] == planted and culprits[0]["node"] == graph.tensor(planted).node


def test_int8_output_all_zero_is_reported_with_first_zero_tensor(graph, small_dataset, int8_ranges, strict):
    # the detector head up to its last ConvTranspose: a model whose output INT8 can wipe out
    head = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(graph.model)).extract_model(["x"], ["p2o.ConvTranspose.3"])
    truncated = ModelGraph.from_proto(head, name="det-head")
    # a range far too wide: every value of this Relu output rounds to the int8 code 0
    ranges = int8_ranges.with_override("batch_norm_1.tmp_4", 1e6)
    cmp = compare_precision(truncated, small_dataset, "int8", ranges, thresholds=strict, progress=False)
    out = cmp.row("p2o.ConvTranspose.3")
    assert out["is_output"] and out["status"] == "zero" and out["cand_zero_frac"] == 1.0 and out["ref_zero_frac"] < 1
    zero_findings = [f for f in cmp.findings if f["kind"] == "zero"]
    assert zero_findings[0]["tensor"] == "batch_norm_1.tmp_4" and zero_findings[0]["severity"] == "error"
    assert cmp.first_problem["tensor"] == "batch_norm_1.tmp_4"
    assert cmp.row("batch_norm_1.tmp_4")["int8_zero_frac"] == 1.0  # the why: every nonzero value rounds to 0
    assert cmp.row("batch_norm_1.tmp_4")["origin"] == "introduced"


def test_zeroed_conv_weights_in_a_candidate_model(graph, small_dataset):
    # p2o.Conv.37 has no bias: zero weights make its output exactly zero
    candidate = _scaled_weight_copy(graph, "p2o.Conv.37", 0.0)
    target = graph.model.graph.node[[n.name for n in graph.model.graph.node].index("p2o.Conv.37")].output[0]
    cmp = compare_models(graph, candidate, small_dataset, progress=False)
    first = cmp.first_problem
    assert first["tensor"] == target and first["op_type"] == "Conv"
    row = cmp.row(target)
    assert row["status"] == "zero" and row["origin"] == "introduced" and row["culprit_rank"] == 1
    assert row["isolated_cosine"] == 0.0
    before = cmp.tensors[cmp.tensors["index"] < row["index"]]
    # upstream only float rounding differs (the candidate runs unoptimised)
    assert (before["status"] == "ok").all() and before["cosine"].min() > 0.9999
    later = cmp.tensors[(cmp.tensors["index"] > row["index"]) & (cmp.tensors["origin"] != "")]
    assert len(later) and (later["origin"] == "inherited").all()
    assert cmp.meta["replay"]["replayed"] <= 20


def test_unmatched_tensors_are_listed_with_reason(graph, small_dataset):
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    old = relu.output[0]
    relu.output[0] = old + "_renamed"
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = old + "_renamed"
    cmp = compare_models(graph, ModelGraph(model, name="renamed"), small_dataset, limit=1, replay=False, progress=False)
    reasons = dict(cmp.unmatched)
    assert "not captured by candidate" in reasons[old]
    assert old not in set(cmp.tensors["tensor"])
    assert len(cmp.tensors) == len(graph.float_tensors) - 1
    assert cmp.first_problem is None  # same computation under another name: nothing diverges


def test_fp16_candidate_and_streamed_iterable(graph, small_dataset):
    cmp = compare_precision(graph, small_dataset, "fp16", limit=2, progress=False)
    t = cmp.tensors
    assert {"fp16_overflow", "fp16_nan", "fp16_flushed"} <= set(t.columns)
    assert (t["samples"] == 2).all() and (t["status"] == "ok").all()
    assert t["cosine"].min() > 0.99 and (t["max_abs_err"] > 0).any()

    # any runner pair and any iterable of feeds work; per-sample rows are kept per sample
    feeds = (small_dataset.sample(i) for i in range(len(small_dataset)))
    ref = OrtRunner(graph, name="a")
    same = OrtRunner(graph, name="b", optimize=False)
    cmp2 = compare_runs(graph, ref, same, feeds, limit=3, progress=False)
    assert set(cmp2.per_sample["sample"]) == {0, 1, 2}
    assert (cmp2.tensors["status"] == "ok").all() and cmp2.tensors["cosine"].min() > 0.9999
    assert cmp2.meta["replay"]["done"] is False


def test_save_and_load_round_trip(tmp_path, graph, small_dataset):
    cmp = compare_models(graph, _scaled_weight_copy(graph, "p2o.Conv.20", -1.0), small_dataset, limit=2, progress=False)
    paths = cmp.save(tmp_path / "out")
    text = paths["comparison"].read_text()
    doc = json.loads(text)  # standard JSON: no NaN literals
    assert "NaN" not in text and doc["format"] == "qbench-comparison/1"
    back = Comparison.load(tmp_path / "out")
    assert list(back.tensors["tensor"]) == list(cmp.tensors["tensor"])
    assert back.first_problem == cmp.first_problem
    import pandas as pd

    csv = pd.read_csv(paths["tensors"])
    assert list(csv.columns) == list(cmp.tensors.columns)
    ranked = csv[csv["culprit_rank"].notna()]
    assert len(ranked) >= 1 and math.isclose(ranked["culprit_rank"].min(), 1.0)


def test_replay_through_a_one_node_converter(graph, small_dataset):
    """The hook a TensorRT backend uses: a callable turning a one-node FP32 model into the candidate
    precision. Here it reproduces the candidate's fault (negated weights of one Conv)."""
    candidate = _scaled_weight_copy(graph, "p2o.Conv.20", -1.0)
    seen = []

    def make_candidate_model(one_node: onnx.ModelProto) -> onnx.ModelProto:
        node = one_node.graph.node[0]
        seen.append(node.name)
        if node.name == "p2o.Conv.20":
            return _scaled_weight_copy(ModelGraph(one_node), node.name, -1.0).model
        return one_node

    reference = OrtRunner(graph, name="fp32")
    cand = OrtRunner(candidate, name="negated")
    cmp = compare_runs(graph, reference, cand, small_dataset, limit=1, make_candidate_model=make_candidate_model,
                       max_replay=5, progress=False)
    assert cmp.meta["replay"]["method"] == "make_candidate_model" and len(seen) == 5
    assert cmp.culprits.iloc[0]["node"] == "p2o.Conv.20"
    assert cmp.first_problem["node"] == "p2o.Conv.20" and "introduces the error" in cmp.first_problem["message"]
    replayed = cmp.tensors[cmp.tensors["origin"] != ""]
    assert (replayed[replayed["node"] != "p2o.Conv.20"]["origin"] == "inherited").all()


def test_shared_scale_finding_blames_the_concat_only_when_its_scale_zeroes_the_input():
    import pandas as pd

    from qbench.compare.diagnose import shared_scale_findings

    base = {"index": 0, "node": "sig", "op_type": "Sigmoid", "is_output": False, "ref_min": 0.0, "ref_max": 0.8, "amax": 400.0}
    frame = pd.DataFrame([
        {**base, "tensor": "scores", "status": "zero", "int8_zero_frac": 1.0},
        {**base, "tensor": "other", "status": "divergent", "int8_zero_frac": 1.0},  # not a Concat input
        {**base, "tensor": "mild", "status": "divergent", "int8_zero_frac": 0.1},  # shared, but not zeroed
    ])
    found = shared_scale_findings(frame, {"scores": "cat<1>", "mild": "cat<1>"})
    assert [(f["tensor"], f["node"], f["op_type"], f["severity"]) for f in found] == [("scores", "cat<1>", "Concat", "error")]
    assert "max |x| 0.8" in found[0]["message"] and "amax 400" in found[0]["message"] and "100.0%" in found[0]["message"]
    assert "--keep-float cat<1>" in found[0]["message"]
    assert shared_scale_findings(frame, {}) == []
