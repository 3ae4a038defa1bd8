"""Intervals that never overclaim (issue 21, item 4): every metric of every task, measured on 8
identical samples where the candidate equals FP32, has an interval of non-zero width (or none, and
then it cannot pass); units counted (characters, boxes) bound what identical samples can show."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto

from qbench.judge import load_labels, make_judge
from qbench.judge.verdict import Evidence, decide
from tests.test_judge_core import tiny_graph

N = 8  # identical samples


def _judge_identical(task, graph, make_sample, options=None, labels=None):
    acc = make_judge(task, graph, options, labels).start()
    for i in range(N):
        outputs = make_sample()
        acc.add(i, f"s{i}", outputs, {k: v.copy() for k, v in outputs.items()}, {})
    return acc.finish()


def _check(result):
    if result.interval is None:
        assert result.verdict != "pass", result.reason
    else:
        lo, hi = result.interval
        assert hi > lo, f"{result.task} {result.primary}: zero-width interval {result.interval} ({result.reason})"
    json.dumps(result.to_dict(), allow_nan=False)


def _detect_head():
    head = np.zeros((1, 6, 200), np.float32)     # [B, 4+C, N], C = 2, boxes in pixels
    head[0, 0:4, :] = [[50], [50], [20], [20]]
    head[0, 0, :3] = [40, 120, 200]
    head[0, 4, :3] = 0.9                          # three confident objects of class 0
    return {"y": head}


def _labels(tmp_path, mapping):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps(mapping))
    return load_labels(p, [f"s{i}" for i in range(N)])


@pytest.mark.parametrize("task,shape,make", [
    ("generic", [1, 3, 8, 8], lambda: {"y": np.linspace(0, 1, 192, dtype=np.float32).reshape(1, 3, 8, 8)}),
    ("classify", [1, 5], lambda: {"y": np.arange(5, dtype=np.float32)[None]}),
    ("detect", [1, 6, 200], _detect_head),
    ("segment", [1, 1, 16, 16], lambda: {"y": np.tile(np.linspace(0, 1, 16, dtype=np.float32), (1, 1, 16, 1))}),
    ("segment", [1, 3, 16, 16], lambda: {"y": np.tile(np.arange(3, dtype=np.float32)[None, :, None, None], (1, 1, 16, 16))}),
    ("ctc", [1, 12, 8], lambda: {"y": np.eye(8, dtype=np.float32)[[1, 0, 2, 0, 3, 3, 0, 4, 0, 5, 6, 7]][None]}),
    ("embedding", [1, 32], lambda: {"y": np.linspace(-1, 1, 32, dtype=np.float32)[None]}),
])
def test_no_zero_width_interval_from_identical_samples(task, shape, make):
    _check(_judge_identical(task, tiny_graph({"y": (TensorProto.FLOAT, shape)}), make))


def test_detect_scores_mode_and_map_drop_with_labels_keep_a_width(tmp_path):
    g = tiny_graph({"y": (TensorProto.FLOAT, [1, 6, 200])})
    boxes = [[30, 40, 50, 60, 0], [110, 40, 130, 60, 0], [190, 40, 210, 60, 0]]
    res = _judge_identical("detect", g, _detect_head, labels=_labels(tmp_path, {f"s{i}": boxes for i in range(N)}))
    assert res.primary == "map50_drop" and res.metrics["map50_drop"] == 0.0
    _check(res)
    # 24 boxes found alike by both: the drop's interval is the box-level bound, about +-0.09
    assert res.verdict == "inconclusive" and res.interval[1] > 0.02


def test_cer_increase_on_160_identical_characters_is_not_proof(tmp_path):
    """The issue's case: 8 held-out lines, 160 characters, no change -> not a pass at max_drop 0.01."""
    charset = tmp_path / "chars.txt"
    charset.write_text("\n".join("abcdefghijklmnopqrst"))
    g = tiny_graph({"y": (TensorProto.FLOAT, [1, 40, 21])})
    text = "abcdefghijklmnopqrst"  # 20 characters per line, 8 lines = 160 characters
    path = [k + 1 for k in range(20) for _ in (0, 1)]
    steps = np.zeros((1, 40, 21), np.float32)
    for t, k in enumerate(path):
        steps[0, t, k if t % 2 == 0 else 0] = 1.0

    res = _judge_identical("ctc", g, lambda: {"y": steps.copy()}, {"charset": str(charset)},
                           _labels(tmp_path, {f"s{i}": text for i in range(N)}))
    assert res.primary == "cer_increase" and res.metrics["cer_increase"] == 0.0
    assert res.metrics["fp32_cer"] == 0.0  # the labels are read exactly
    _check(res)
    lo, hi = res.interval
    assert hi > 0.01 and res.verdict == "inconclusive", res.reason


@pytest.mark.parametrize("values,can_pass", [([1.0] * N, True), ([0.97] * N, True), ([3.0] * N, False)])
def test_custom_means_without_spread(values, can_pass, tmp_path):
    """A custom 0/1 metric is a share (Wilson); a mean in [0, 1] gets a Wilson bound; an unbounded
    mean with the same value on every sample has no interval and does not pass."""
    src = tmp_path / "ev.py"
    src.write_text("VALUES = iter(%r)\n"
                   "def f(ref, cand, feed, label):\n    return {'m': next(VALUES)}\n" % (values,))
    g = tiny_graph({"y": (TensorProto.FLOAT, [1, 4])})
    res = _judge_identical(f"{src}:f", g, lambda: {"y": np.ones((1, 4), np.float32)}, {"tolerance": 0.5})
    _check(res)
    assert (res.interval is not None) == can_pass


def test_decide_refuses_a_point_interval():
    ev = Evidence("interval", n=8, interval=(0.0, 0.0))
    d = decide("mAP drop", 0.0, 0.02, False, ev, "max_drop")
    assert d.interval is None and d.verdict == "inconclusive" and "no interval" in d.reason
