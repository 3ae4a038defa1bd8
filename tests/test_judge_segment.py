"""segment on real models: the PP-OCRv4 text detector's probability map (rendered text, a text-free
page, a photo) and the same detector ending in ArgMax (an int64 class map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from judge_fixtures import db_tensor, int8_runner, render_page, with_argmax
from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL
from qbench.judge import make_judge
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

NAMES = ["text.png", "blank.png", "camera.png"]


@pytest.fixture(scope="module")
def db_runs():
    graph = ModelGraph.from_path(DEFAULT_MODEL)
    images = [render_page(["Quantization 42", "TensorRT INT8", "hello world"]), render_page([]),
              Image.open(Path(DEFAULT_DATA) / "images" / "camera.png").convert("RGB").resize((256, 256))]
    feeds = [{"x": db_tensor(img)} for img in images]
    ref = [OrtRunner(graph, capture=None).run(f) for f in feeds]
    cand = [int8_runner(graph, feeds[:1]).run(f) for f in feeds]
    return graph, feeds, ref, cand


def _judge(task, graph, feeds, ref, cand, options=None):
    acc = make_judge(task, graph, options).start()
    for i, (f, r, c) in enumerate(zip(feeds, ref, cand)):
        acc.add(i, NAMES[i], r, c, f)
    return acc.finish()


def test_probability_map_mask_iou_and_no_false_alarm_on_a_text_free_page(db_runs):
    graph, feeds, ref, cand = db_runs
    out = graph.output_names[0]
    assert int((ref[0][out] >= 0.3).sum()) > 1000 and int((ref[1][out] >= 0.3).sum()) == 0
    res = _judge("segment", graph, feeds, ref, cand)
    rows = res.per_sample.set_index("name")
    assert res.primary == "mask_iou" and 0.7 < rows.loc["text.png", "mask_iou"] < 1.0
    assert rows.loc["blank.png", "mask_iou"] == 1.0 and rows.loc["blank.png", "false_alarm"] == 0
    assert res.metrics["false_alarms"] == 0 and res.verdict in ("pass", "inconclusive")
    assert "mask IoU at threshold 0.3" in res.reason
    # a candidate that lights up part of the blank page is a false alarm, and the worst sample
    alarm = [dict(c) for c in cand]
    alarm[1] = {out: ref[1][out].copy()}
    alarm[1][out][..., 100:120, 100:140] = 0.9
    res = _judge("segment", graph, feeds, ref, alarm)
    assert res.metrics["false_alarms"] == 1 and "false alarm" in res.note
    assert res.worst(1)["name"].iloc[0] == "blank.png"


def test_argmax_model_pixel_agreement_without_nan(db_runs):
    graph, feeds, _, _ = db_runs
    argmax = with_argmax(graph)
    ref = [OrtRunner(argmax, capture=None).run(f) for f in feeds]
    cand = [int8_runner(argmax, feeds[:1]).run(f) for f in feeds]
    assert ref[0]["class_map"].dtype == np.int64 and ref[0]["class_map"].shape == (1, 256, 256)
    res = _judge("segment", argmax, feeds, ref, cand)
    assert res.primary == "pixel_agreement" and 0.95 < res.metrics["pixel_agreement"] < 1.0
    assert 0.5 < res.metrics["mean_iou"] < 1.0
    json.dumps(res.to_dict(), allow_nan=False)  # no NaN anywhere, not even before jsonsafe
    assert not res.per_sample.drop(columns=["name"]).isna().any().any()
    assert all(np.isfinite(v) for v in res.metrics.values())
    generic = _judge("generic", argmax, feeds, ref, cand)
    assert not generic.per_sample[["exact_agreement", "worst_error"]].isna().any().any()
    assert generic.per_sample["exact_agreement"].iloc[0] == pytest.approx(res.per_sample["pixel_agreement"].iloc[0])
