"""The task judge wired into the product: `qbench run/compare --task`, verdicts and the
recommendation from the task result, results.json / CSV / HTML per-sample section, on real models
(ddddocr's character detector, the embedded PP-OCRv4 text detector and an ArgMax variant of it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from judge_models import argmax_segmenter, decoded_detector, text_images

QBENCH = [sys.executable, "-m", "qbench"]


def qbench(*args, cwd=None):
    return subprocess.run([*QBENCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def strict_json(path: Path):
    """results.json parsed with NaN/Infinity refused: standard JSON only."""
    def reject(name):
        raise AssertionError(f"{path} holds the non-standard JSON constant {name}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def row_of(results: dict, precision: str) -> dict:
    return next(r for r in results["recommendation"]["table"] if r["precision"] == precision)


# -- a detector whose INT8 loses detections while its output cosine stays above 0.99 ---------------
@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detector")
    model = decoded_detector(tmp)
    data = text_images(tmp / "data", [["ABC 123 xyz", "QBENCH 42"], ["Hello world", "INT8 judge"]])
    out = tmp / "report"
    proc = qbench("run", model, "--data", data, "--out", out, "--task", "detect", "--precision", "int8",
                  "--no-fallback", "--task-option", "score_threshold=0.3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_detector_losing_detections_fails_on_the_task_metric_despite_cosine(detector_run):
    out, proc = detector_run
    results = strict_json(out / "results.json")
    row = row_of(results, "int8")
    # the old verdict would pass: the whole-output cosine (worst sample) is above 0.99 ...
    assert row["output_cosine_min"] > 0.99
    # ... but INT8 loses detections, and the task verdict says so, naming its metric
    assert row["verdict"] == "fail", row
    assert row["task"] == "detect" and row["task_metric"] == "f1_vs_fp32"
    assert "F1" in row["why"] and row["task_value"] < 0.9
    task = results["candidates"][0]["task"]
    assert task["metrics"]["candidate_detections"] < task["metrics"]["fp32_detections"]
    assert results["recommendation"]["precision"] == "fp32"
    assert "FAIL" in proc.stderr and "detection F1" in proc.stderr


@pytest.mark.slow
def test_results_json_and_csv_carry_task_metrics_per_candidate_and_sample(detector_run):
    out, _ = detector_run
    results = strict_json(out / "results.json")
    for row in results["recommendation"]["table"]:
        assert {"precision", "verdict", "task", "task_metric", "task_value"} <= set(row)
    cand = results["candidates"][0]
    per_sample = cand["task"]["per_sample"]
    assert [r["name"] for r in per_sample] == ["s0.npy", "s1.npy"]
    assert all({"f1", "recall", "fp32_dets", "cand_dets"} <= set(r) for r in per_sample)
    csv = pd.read_csv(out / results["files"]["task[int8]"])
    assert list(csv["name"]) == ["s0.npy", "s1.npy"]
    assert np.allclose(csv["f1"], [r["f1"] for r in per_sample])
    # the comparison folder keeps the task result too, and reads back
    from qbench.compare.result import Comparison

    back = Comparison.load(out / "int8")
    assert back.task.verdict == "fail" and back.task.primary == "f1_vs_fp32"
    assert list(back.task.worst(1)["name"]) == [min(per_sample, key=lambda r: r["f1"])["name"]]
