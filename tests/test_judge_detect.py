"""detect on a real detector: ddddocr's YOLOX-style character detector (raw head [1, 3549, 6],
strides 8/16/32 on 416x416), with exact labels — characters drawn one by one with Pillow, their
boxes from Pillow's text metrics. No package found here ships an ultralytics YOLOv8/v11 ONNX model,
so the [B, 4+C, N] layout is tested on this detector's outputs decoded and transposed into that
layout (pixel xywh boxes then one class score = objectness x class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from judge_fixtures import bgr_tensor, int8_runner, render_chars, render_page
from qbench.judge import boxes as bx
from qbench.judge import make_judge
from qbench.judge.labels import Labels
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

ddddocr = pytest.importorskip("ddddocr")
DET = Path(ddddocr.__file__).parent / "common_det.onnx"
CLASS_BRANCH = ("784", "810", "836")  # inputs of the three class-score Convs (one per stride)


def test_nms_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    b = np.concatenate([xy, xy + rng.uniform(10, 60, (300, 2))], axis=1)
    s, c = rng.uniform(0, 1, 300), rng.integers(0, 3, 300)
    ours = bx.nms(b, s, c, 0.45, 1000)
    theirs = cv2.dnn.NMSBoxesBatched([[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in b],
                                     s.tolist(), c.tolist(), 0.0, 0.45)
    assert sorted(ours.tolist()) == sorted(np.asarray(theirs).ravel().tolist())


def test_average_precision_by_hand():
    # 2 ground-truth boxes; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall
    # 1/2, 1/2, 1 -> envelope 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    ap = bx.mean_average_precision(np.array([0.9, 0.8, 0.7]), np.zeros(3, int), np.array([True, False, True]),
                                   np.zeros(3, int), {0: np.array([2])})
    assert ap[0] == pytest.approx(5 / 6)


@pytest.fixture(scope="module")
def det_runs():
    graph = ModelGraph.from_path(DET)
    pages = [render_chars(["QUANT 42", "TensorRT"]), render_chars(["judge", "INT8 ok"], font_size=40)]
    names = ["chars1.png", "chars2.png", "blank.png"]
    feeds = [{"images": bgr_tensor(img)} for img, _ in pages] + [{"images": bgr_tensor(render_page([], size=(416, 416)))}]
    labels = Labels("boxes", {"chars1.png": pages[0][1], "chars2.png": pages[1][1], "blank.png": []})
    fp32 = OrtRunner(graph, capture=None)
    faulty = int8_runner(graph, feeds[:2], clip={t: 0.07 for t in CLASS_BRANCH})
    ref = [fp32.run(f) for f in feeds]
    cand = [faulty.run(f) for f in feeds]
    return graph, names, feeds, labels, ref, cand


def _judge(graph, names, feeds, ref, cand, options=None, labels=None):
    acc = make_judge("detect", graph, options, labels).start()
    for i in range(len(names)):
        acc.add(i, names[i], ref[i], cand[i], feeds[i])
    return acc.finish()


def test_int8_loses_detections_while_the_whole_output_cosine_stays_high(det_runs):
    graph, names, feeds, labels, ref, cand = det_runs
    r = np.concatenate([x["output"].ravel() for x in ref[:2]]).astype(np.float64)
    c = np.concatenate([x["output"].ravel() for x in cand[:2]]).astype(np.float64)
    assert r @ c / np.linalg.norm(r) / np.linalg.norm(c) > 0.99
    res = _judge(graph, names, feeds, ref, cand, {"strides": [8, 16, 32]})
    assert res.primary == "f1_vs_fp32" and res.metrics["f1_vs_fp32"] < 0.8
    assert res.metrics["candidate_detections"] < res.metrics["fp32_detections"]
    assert res.verdict == "fail" and res.reason.startswith("detection F1 vs FP32")
    # the text-free page: neither finds anything, which is agreement, not a false alarm
    blank = res.per_sample.set_index("name").loc["blank.png"]
    assert blank["fp32_dets"] == 0 and blank["cand_dets"] == 0 and blank["f1"] == 1.0
    assert res.worst(1)["name"].iloc[0] != "blank.png"


def test_identical_outputs_pass_and_raw_head_without_strides_says_so(det_runs):
    graph, names, feeds, labels, ref, cand = det_runs
    same = _judge(graph, names, feeds, ref, ref, {"strides": [8, 16, 32]})
    assert same.metrics["f1_vs_fp32"] == 1.0 and same.metrics["mean_iou"] == 1.0 and same.verdict == "pass"
    raw = _judge(graph, names, feeds, ref, cand)
    assert raw.primary == "score_recall_vs_fp32" and "score agreement" in raw.note and "strides" in raw.note
    assert raw.verdict == "fail" and raw.metrics["score_recall_vs_fp32"] < 0.5


def _as_v8(out: np.ndarray) -> np.ndarray:
    """The detector's raw head decoded (YOLOX rule, as ddddocr's own post-processing does) and laid
    out as ultralytics exports YOLOv8: [B, 4+C, N], pixel xywh then class scores."""
    rows = out[0].astype(np.float64)
    cells, strides = [], []
    for s in (8, 16, 32):
        n = 416 // s
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        cells.append(np.stack([xv, yv], 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    cells, strides = np.concatenate(cells), np.concatenate(strides)
    xywh = np.concatenate([(rows[:, :2] + cells) * strides, np.exp(rows[:, 2:4]) * strides], axis=1)
    score = rows[:, 4:5] * rows[:, 5:6]
    return np.concatenate([xywh, score], axis=1).T[None].astype(np.float32)


def test_ultralytics_layout_gives_the_same_judgement(det_runs):
    graph, names, feeds, labels, ref, cand = det_runs
    decoded = _judge(graph, names, feeds, ref, cand, {"strides": [8, 16, 32]})
    v8_ref = [{"output": _as_v8(x["output"])} for x in ref]
    v8_cand = [{"output": _as_v8(x["output"])} for x in cand]
    assert v8_ref[0]["output"].shape == (1, 5, 3549)
    v8 = _judge(graph, names, feeds, v8_ref, v8_cand, {"layout": "channels_first"})
    for key in ("fp32_detections", "candidate_detections", "matched"):
        assert v8.metrics[key] == decoded.metrics[key]
    assert v8.note == "" and v8.verdict == "fail"


def test_labels_give_map_and_its_drop(det_runs):
    graph, names, feeds, labels, ref, cand = det_runs
    same = _judge(graph, names, feeds, ref, ref, {"strides": [8, 16, 32]}, labels)
    assert same.metrics["fp32_map50"] > 0.7 and same.metrics["map50_drop"] == 0.0
    res = _judge(graph, names, feeds, ref, cand, {"strides": [8, 16, 32]}, labels)
    assert res.primary == "map50_drop" and res.metrics["map50"] < res.metrics["fp32_map50"] - 0.1
    assert res.verdict in ("fail", "inconclusive") and res.reason.startswith("mAP@0.5 drop")


def test_detections_for_drawing(det_runs):
    graph, names, feeds, labels, ref, cand = det_runs
    judge = make_judge("detect", graph, {"strides": [8, 16, 32]})
    (boxes, scores, classes), = judge.start().detections(ref[0]["output"], feeds[0])
    assert boxes.shape[1] == 4 and len(boxes) >= len(labels.get("chars1.png")) // 2
    assert np.all(scores >= 0.25) and np.all(boxes[:, 2] >= boxes[:, 0])
    assert make_judge("detect", graph).start().detections(ref[0]["output"], feeds[0]) is None
