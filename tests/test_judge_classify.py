"""classify on the real PP-OCR orientation classifier, with exact labels: text lines rendered with
Pillow (class 0) and the same crops rotated by 180° (class 1)."""

from __future__ import annotations

import numpy as np
import pytest

from judge_fixtures import LINES, int8_runner, ppocr_line_tensor, render_line
from qbench.judge import make_judge
from qbench.judge.labels import Labels
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

CLS = "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.fixture(scope="module")
def cls_setup():
    graph = ModelGraph.from_path(CLS)
    samples = []
    for text in LINES[:4]:
        img = render_line(text)
        samples.append((f"{text}.png", {"x": ppocr_line_tensor(img)}, 0))
        samples.append((f"{text}_180.png", {"x": ppocr_line_tensor(img.rotate(180))}, 1))
    fp32 = OrtRunner(graph, capture=None)
    ref = [fp32.run(feed) for _, feed, _ in samples]
    return graph, samples, ref


def _judge(graph, samples, ref, cand, labels=None, options=None):
    acc = make_judge("classify", graph, options, labels).start()
    for i, ((name, feed, _), r, c) in enumerate(zip(samples, ref, cand)):
        acc.add(i, name, r, c, feed)
    return acc.finish()


def test_fp32_reads_the_rendered_orientation(cls_setup):
    graph, samples, ref = cls_setup
    out = graph.output_names[0]
    assert [int(np.argmax(r[out])) for r in ref] == [label for _, _, label in samples]


def test_int8_keeps_the_class_and_labels_give_accuracy(cls_setup):
    graph, samples, ref = cls_setup
    int8 = int8_runner(graph, [feed for _, feed, _ in samples[:2]])
    cand = [int8.run(feed) for _, feed, _ in samples]
    res = _judge(graph, samples, ref, cand)
    assert res.primary == "top1_agreement" and res.metrics["top1_agreement"] == 1.0
    # 8 of 8 agreeing cannot prove 99 % agreement: the honest verdict says how many more are needed
    assert res.verdict == "inconclusive" and res.more_samples > 100 and "top-1 agreement" in res.reason
    labels = Labels("class", {name: label for name, _, label in samples})
    res = _judge(graph, samples, ref, cand, labels, {"max_drop": 0.5})
    assert res.primary == "accuracy_drop" and res.metrics["accuracy"] == 1.0 and res.metrics["fp32_accuracy"] == 1.0
    assert res.verdict == "pass" and "accuracy drop" in res.reason


def test_flipped_candidate_fails_on_logits_too(cls_setup):
    graph, samples, ref = cls_setup
    out = graph.output_names[0]
    # a candidate that swaps the two class scores on every sample, given as logits (log-probabilities)
    cand = [{out: np.log(np.clip(r[out][:, ::-1], 1e-7, 1))} for r in ref]
    res = _judge(graph, samples, ref, cand)
    assert res.metrics["top1_agreement"] == 0.0 and res.verdict == "fail"
    assert res.worst(1)["prob_drop"].iloc[0] > 0.9
    labels = Labels("class", {name: label for name, _, label in samples})
    res = _judge(graph, samples, ref, cand, labels)
    assert res.metrics["accuracy_drop"] == 1.0 and res.verdict == "fail"
