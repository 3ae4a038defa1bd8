"""ctc on the real PP-OCRv4 text recognizer shipped in rapidocr-onnxruntime (charset in the model's
metadata), with exact labels: known strings rendered with Pillow."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from judge_fixtures import int8_runner, ppocr_line_tensor, render_line
from qbench.errors import QbenchError
from qbench.judge import make_judge
from qbench.judge.ctc import edit_distance, greedy_paths
from qbench.judge.labels import Labels
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

rapidocr = pytest.importorskip("rapidocr_onnxruntime")
REC = os.path.join(os.path.dirname(rapidocr.__file__), "models", "ch_PP-OCRv4_rec_infer.onnx")
TEXTS = ["Quantization", "hello world 42", "TensorRT INT8", "judge verdict"]


def _levenshtein(a, b):
    """The textbook full-table recurrence, as an independent check of the row-wise version."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_edit_distance_and_greedy_decoding():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        assert edit_distance(a, b) == _levenshtein(a, b)
    # path 1 1 0 1 2 2 0 0 -> 1 1 2 (a blank separates the repeated 1)
    scores = np.eye(3)[[1, 1, 0, 1, 2, 2, 0, 0]][None]
    assert greedy_paths(scores, 0)[0].tolist() == [1, 1, 2]


@pytest.fixture(scope="module")
def rec_runs():
    graph = ModelGraph.from_path(REC)
    feeds = [{"x": ppocr_line_tensor(render_line(t), 48, 320)} for t in TEXTS]
    ref = [OrtRunner(graph, capture=None).run(f) for f in feeds]
    return graph, feeds, ref


def _judge(graph, feeds, ref, cand, labels=None, options=None):
    acc = make_judge("ctc", graph, options, labels).start()
    for i in range(len(feeds)):
        acc.add(i, f"line{i}.png", ref[i], cand[i], feeds[i])
    return acc.finish()


def test_fp32_reads_the_rendered_strings_and_labels_measure_cer(rec_runs):
    graph, feeds, ref = rec_runs
    labels = Labels("text", {f"line{i}.png": t for i, t in enumerate(TEXTS)})
    res = _judge(graph, feeds, ref, ref, labels)
    assert "model metadata 'character'" in res.note
    assert res.metrics["fp32_line_accuracy"] >= 0.75 and res.metrics["fp32_cer"] < 0.05
    assert res.metrics["cer_increase"] == 0.0 and res.primary == "cer_increase"


def test_int8_and_a_broken_candidate(rec_runs):
    graph, feeds, ref = rec_runs
    good = [int8_runner(graph, feeds[:2]).run(f) for f in feeds]
    res = _judge(graph, feeds, ref, good)
    assert res.primary == "line_agreement_vs_fp32" and res.metrics["cer_vs_fp32"] < 0.05
    assert res.verdict == "inconclusive" and res.more_samples > 10  # 4 lines cannot prove 95 %
    broken = [int8_runner(graph, feeds[:2], scale=0.2).run(f) for f in feeds]
    res = _judge(graph, feeds, ref, broken)
    assert res.metrics["line_agreement_vs_fp32"] == 0.0 and res.metrics["cer_vs_fp32"] > 0.5
    assert res.verdict == "fail" and res.reason.startswith("exact-line agreement")
    labels = Labels("text", {f"line{i}.png": t for i, t in enumerate(TEXTS)})
    res = _judge(graph, feeds, ref, broken, labels)
    assert res.metrics["cer_increase"] > 0.5 and res.verdict == "fail" and "CER increase" in res.reason


def test_charset_file_and_mismatch(rec_runs, tmp_path):
    graph, feeds, ref = rec_runs
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join("abc"), encoding="utf-8")
    with pytest.raises(QbenchError, match="charset has 3 entries"):
        _judge(graph, feeds[:1], ref[:1], ref[:1], options={"charset": str(keys)})
    with pytest.raises(QbenchError, match="charset file not found"):
        make_judge("ctc", graph, {"charset": str(tmp_path / "none.txt")})
