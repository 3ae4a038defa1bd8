"""The judge's verdict machinery: intervals against an independent oracle (scipy), verdicts and
their reasons, labels files, option handling, and the generic adapter."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qbench.errors import QbenchError
from qbench.judge import TASKS, TaskResult, load_labels, make_judge
from qbench.judge import intervals
from qbench.judge.verdict import Evidence, decide
from qbench.model import ModelGraph


def tiny_graph(outputs: dict, name="tiny") -> ModelGraph:
    """A one-Identity-per-output model: enough graph for the judge (names, shapes, types)."""
    inputs, nodes, outs = [], [], []
    for i, (out, (elem, shape)) in enumerate(outputs.items()):
        inputs.append(helper.make_tensor_value_info(f"in{i}", elem, shape))
        nodes.append(helper.make_node("Identity", [f"in{i}"], [out]))
        outs.append(helper.make_tensor_value_info(out, elem, shape))
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outs), opset_imports=[helper.make_opsetid("", 13)])
    return ModelGraph.from_proto(model, name)


def test_tasks_are_the_contracts():
    assert TASKS == ("auto", "generic", "classify", "detect", "segment", "ctc", "embedding", "stream")


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (31, 32), (16, 32), (1, 2), (97, 100)])
def test_wilson_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = intervals.wilson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_samples_needed_is_the_first_count_that_settles():
    total = intervals.wilson_samples_needed(1.0, 5, 0.95)
    assert intervals.wilson(total, total)[0] > 0.95            # settles at that count ...
    assert intervals.wilson(total - 2, total - 2)[0] <= 0.95   # ... (up to the search grid) not before
    assert intervals.wilson_samples_needed(0.95, 20, 0.95) is None


def test_paired_drop_interval_does_not_collapse_without_changes():
    lo, hi = intervals.paired_drop(0, 0, 32)
    assert lo < 0 < hi and hi > 0.01  # 32 unchanged samples cannot prove a drop below 1 %
    n = intervals.paired_drop_samples_needed(0, 0, 32, 0.01)
    assert intervals.paired_drop(0, 0, n)[1] < 0.01 <= intervals.paired_drop(0, 0, n * 0.9)[1]


def test_bootstrap_ratio_brackets_the_pooled_value_and_is_seeded():
    num, den = [3, 5, 0, 4], [4, 5, 2, 4]
    iv = intervals.bootstrap_ratio(num, den)
    assert iv[0] <= sum(num) / sum(den) <= iv[1]
    assert intervals.bootstrap_ratio(num, den) == iv
    assert intervals.bootstrap_ratio([1], [1]) is None


def test_decide_pass_fail_inconclusive_and_reason_names_metric():
    d = decide("top-1 agreement", 1.0, 0.9, True, Evidence("wilson", k=200, n=200), "min_agreement")
    assert d.verdict == "pass" and "top-1 agreement 1.000" in d.reason
    d = decide("top-1 agreement", 0.2, 0.9, True, Evidence("wilson", k=4, n=20), "min_agreement")
    assert d.verdict == "fail" and d.more_samples is None
    d = decide("top-1 agreement", 31 / 32, 0.99, True, Evidence("wilson", k=31, n=32), "min_agreement")
    assert d.verdict == "inconclusive" and d.more_samples > 0
    assert f"about {d.more_samples} more samples would settle it" in d.reason and "95% CI" in d.reason
    d = decide("CER", 0.5, 0.1, False, Evidence("ratio", num=(1,), den=(2,), n=1), "max_cer")
    assert d.verdict == "fail" and "one sample" in d.reason
    # one sample that meets the tolerance proves nothing: no pass without an interval
    d = decide("CER", 0.0, 0.1, False, Evidence("ratio", num=(0,), den=(20,), n=1), "max_cer")
    assert d.verdict == "inconclusive" and d.more_samples == 1
    # 400 of 400 pixels agree, but all in one image (the other had none): not a pass either
    d = decide("mask IoU", 1.0, 0.8, True, Evidence("ratio", num=(400, 0), den=(400, 0), n=2, counts=True), "min_agreement")
    assert d.verdict == "inconclusive" and "only 1 sample(s) had anything" in d.reason
    d = decide("mask IoU", 1.0, 0.8, True, Evidence("ratio", num=(400, 300), den=(400, 300), n=2, counts=True), "min_agreement")
    assert d.verdict == "pass"
    d = decide("top-1 agreement", 1.0, 0.5, True, Evidence("wilson", k=1, n=1), "min_agreement")
    assert d.verdict == "inconclusive" and d.interval is not None
    d = decide("CER", float("nan"), 0.1, False, Evidence("ratio"), "max_cer")
    assert d.verdict == "inconclusive"


def test_labels_file_kinds_matching_and_errors(tmp_path):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps({"a.png": 1, "sub/b.png": 0, "extra.png": 1}))
    labels = load_labels(p, ["/data/a.png", "b.png"])
    assert labels.kind == "class" and labels.get("/data/a.png") == 1 and labels.get("b.png") == 0
    assert load_labels(None, ["a.png"]) is None
    with pytest.raises(QbenchError, match="no label for 1 of 2"):
        load_labels(p, ["a.png", "c.png"])
    p.write_text(json.dumps({"a.png": 1, "b.png": "text"}))
    with pytest.raises(QbenchError, match="mixed kinds"):
        load_labels(p, ["a.png"])
    p.write_text(json.dumps({"a.png": [[0, 0, 10, 10, 0]], "b.png": []}))
    assert load_labels(p, ["a.png", "b.png"]).kind == "boxes"
    p.write_text(json.dumps({"a.png": [[10, 0, 0, 10, 0]]}))
    with pytest.raises(QbenchError, match="x2 < x1"):
        load_labels(p, ["a.png"])
    p.write_text("{not json")
    with pytest.raises(QbenchError, match="not a JSON labels file"):
        load_labels(p, ["a.png"])
    with pytest.raises(QbenchError, match="not found"):
        load_labels(tmp_path / "nope.json", ["a.png"])


def test_options_and_labels_are_checked(tmp_path):
    g = tiny_graph({"y": (TensorProto.FLOAT, [1, 3])})
    with pytest.raises(QbenchError, match="unknown judge option"):
        make_judge("generic", g, {"bogus": 1})
    with pytest.raises(QbenchError, match="unknown task"):
        make_judge("nonsense", g)
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"a": "some text"}))
    with pytest.raises(QbenchError, match="needs class labels"):
        make_judge("classify", g, None, load_labels(p, ["a"]))
    assert make_judge("generic", g, {"max_error": None}).options["max_error"] == 0.1


def test_generic_judges_each_channel_by_its_own_range():
    """A YOLOv8-like head: coordinates in the hundreds next to scores below 1. Halving the scores
    leaves the whole-tensor cosine at 0.99+ but fails the score channel."""
    rng = np.random.default_rng(0)
    head = np.concatenate([rng.uniform(0, 640, (1, 4, 400)), rng.uniform(0, 0.9, (1, 3, 400))], axis=1).astype(np.float32)
    bad = head.copy()
    bad[:, 4:] *= 0.5
    flat_cos = float(np.dot(head.ravel(), bad.ravel()) / np.linalg.norm(head) / np.linalg.norm(bad))
    assert flat_cos > 0.99
    g = tiny_graph({"out": (TensorProto.FLOAT, [1, 7, 400])})
    acc = make_judge("generic", g).start()
    for i in range(3):
        acc.add(i, f"s{i}", {"out": head}, {"out": bad}, {})
    res = acc.finish()
    assert res.verdict == "fail" and res.metrics["sample_agreement"] == 0.0
    assert res.per_sample["worst_slice"].str.startswith("out[ch ").all()
    assert int(res.per_sample["worst_slice"][0].split()[-1].rstrip("]")) >= 4
    assert "sample agreement" in res.reason


def test_generic_near_zero_slice_uses_absolute_floor_nan_and_integers():
    g = tiny_graph({"map": (TensorProto.FLOAT, [1, 1, 8, 8]), "cls": (TensorProto.INT64, [1, 8, 8])})
    quiet = np.full((1, 1, 8, 8), 1e-5, np.float32)
    noisy = quiet + np.float32(2e-5)  # noise far above the slice's own (zero) range, far below atol
    cls = np.zeros((1, 8, 8), np.int64)
    acc = make_judge("generic", g).start()
    acc.add(0, "empty", {"map": quiet, "cls": cls}, {"map": noisy, "cls": cls}, {})
    nan = noisy.copy()
    nan[0, 0, 0, 0] = np.nan
    acc.add(1, "nan", {"map": quiet, "cls": cls}, {"map": nan, "cls": cls}, {})
    flipped = cls.copy()
    flipped[0, :4] = 3
    acc.add(2, "flip", {"map": quiet, "cls": cls}, {"map": quiet, "cls": flipped}, {})
    res = acc.finish()
    ok = dict(zip(res.per_sample["name"], res.per_sample["agree"]))
    assert ok == {"empty": 1.0, "nan": 0.0, "flip": 0.0}
    assert res.per_sample.loc[2, "exact_agreement"] == pytest.approx(0.5)
    assert res.metrics["new_nonfinite"] == 1 and "NaN/Inf" in res.note
    d = res.to_dict()
    json.dumps(d)
    assert isinstance(res, TaskResult) and d["per_sample"][0]["name"] == "empty"
    assert list(res.worst(3)["name"]) == ["nan", "flip", "empty"]


@pytest.mark.parametrize("task,shape,elem", [
    ("classify", [1, 5], TensorProto.FLOAT),
    ("detect", [1, 6, 200], TensorProto.FLOAT),
    ("segment", [1, 1, 16, 16], TensorProto.FLOAT),
    ("segment", [1, 3, 16, 16], TensorProto.FLOAT),
    ("ctc", [1, 12, 8], TensorProto.FLOAT),
    ("embedding", [1, 32], TensorProto.FLOAT),
    ("generic", [1, 3, 16, 16], TensorProto.FLOAT),
])
def test_every_task_survives_an_all_nan_candidate(task, shape, elem):
    """A candidate that produced NaN everywhere (an FP16 overflow, say) is judged, not crashed on:
    it fails, and its result is valid JSON."""
    g = tiny_graph({"y": (elem, shape)})
    rng = np.random.default_rng(0)
    acc = make_judge(task, g).start()
    for i in range(4):
        ref = rng.uniform(0, 1, shape).astype(np.float32)
        if task == "detect":
            ref[:, :4] *= 300  # pixel boxes
            ref[:, 4:, :5] = 0.9  # a few confident detections
        acc.add(i, f"s{i}", {"y": ref}, {"y": np.full(shape, np.nan, np.float32)}, {})
    res = acc.finish()
    assert res.verdict == "fail" and res.reason
    json.dumps(res.to_dict(), allow_nan=False)


def test_classify_top5_and_auto_from_labels(tmp_path):
    g = tiny_graph({"logits": (TensorProto.FLOAT, [1, 10])})
    ref = np.arange(10, dtype=np.float32)[None]           # FP32 picks class 9
    second = ref.copy()
    second[0, 9] = 6.5                                      # class 9 falls to third place
    last = ref.copy()
    last[0, 9] = -1.0                                       # class 9 falls out of the top 5
    acc = make_judge("classify", g).start()
    for i, c in enumerate([ref, second, last]):
        acc.add(i, f"s{i}", {"logits": ref}, {"logits": c}, {})
    res = acc.finish()
    assert list(res.per_sample["top1_agreement"]) == [1.0, 0.0, 0.0]
    assert list(res.per_sample["top5_agreement"]) == [1.0, 1.0, 0.0]
    assert res.worst(1)["name"].iloc[0] == "s2"
    p = tmp_path / "labels.json"
    p.write_text(json.dumps({"s0": 9}))
    judge = make_judge("auto", tiny_graph({"y": (TensorProto.FLOAT, [1, 3, 8, 8])}), None, load_labels(p, ["s0"]))
    assert judge.task == "classify" and "class labels" in judge.note


@pytest.mark.parametrize("shape,task", [
    ([1, 84, 8400], "detect"),      # ultralytics YOLOv8/v11 export
    ([1, 25200, 85], "detect"),     # YOLOv5 decoded with objectness
    ([1, 1000], "classify"),        # ImageNet logits
    ([1, 7, 7, 7, 7], "generic"),   # nothing recognisable
])
def test_auto_guesses_common_layouts(shape, task):
    judge = make_judge("auto", tiny_graph({"y": (TensorProto.FLOAT, shape)}))
    assert judge.task == task and judge.note.startswith("auto:") and "'y'" in judge.note


def test_classify_binary_single_score():
    g = tiny_graph({"p": (TensorProto.FLOAT, [1, 1])})
    acc = make_judge("classify", g).start()
    for i, (r, c) in enumerate([(0.9, 0.7), (0.9, 0.4), (0.2, 0.1)]):
        acc.add(i, f"s{i}", {"p": np.array([[r]], np.float32)}, {"p": np.array([[c]], np.float32)}, {})
    assert list(acc.finish().per_sample["top1_agreement"]) == [1.0, 0.0, 1.0]


def test_a_saved_task_result_reads_back_whole_with_its_own_worst_order(tmp_path):
    """comparison.json keeps the judge's result; read back it is a TaskResult again. A classifier
    ranks its worst samples by probability drop (lower is better) while its primary metric, top-1
    agreement, is higher-is-better: the order must survive the round trip, as must NaN, inf, a
    sample file named "inf" and the interval."""
    import math

    import pandas as pd

    from qbench.compare.result import Comparison

    per_sample = pd.DataFrame({"sample": [0, 1, 2], "name": ["a.npy", "inf", "c.npy"],
                               "agree": [1.0, 0.0, 1.0], "prob_drop": [0.01, 0.40, float("nan")],
                               "margin": [float("inf"), 0.2, 0.3]})
    result = TaskResult("classify", "top1_agreement", {"top1_agreement": 2 / 3, "kl": float("nan")}, per_sample,
                        "inconclusive", "interval straddles", interval=(0.2, 0.95), more_samples=40, score=2 / 3,
                        tolerance=0.99, options={"topk": 5}, rank_column="prob_drop", rank_higher_is_better=False)
    comparison = Comparison(pd.DataFrame({"tensor": ["out"], "cosine": [1.0]}), pd.DataFrame(), task=result)
    comparison.save(tmp_path)
    back = Comparison.load(tmp_path).task
    assert isinstance(back, TaskResult)
    assert list(back.worst(3)["name"]) == list(result.worst(3)["name"]) == ["c.npy", "inf", "a.npy"]
    assert back.per_sample["name"].tolist() == ["a.npy", "inf", "c.npy"]  # a name stays a name
    assert math.isinf(back.per_sample["margin"][0]) and math.isnan(back.metrics["kl"])
    assert back.interval == (0.2, 0.95) and back.more_samples == 40 and back.tolerance == 0.99
    assert (back.verdict, back.primary, back.options, back.rank_higher_is_better) == \
        ("inconclusive", "top1_agreement", {"topk": 5}, False)
    assert back.to_dict() == result.to_dict()
