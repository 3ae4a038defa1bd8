"""The judge's options on the command line (`--task`, `--labels`, `--task-option`, `--max-drop`,
`--min-agreement`, `--evaluator`): bad values are one error line before any work; labels beside
the data are found; a custom evaluator is judged like a built-in task; the demo judges its text
detector as a probability map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from judge_fixtures import LINES, ppocr_line_tensor, render_line

QBENCH = [sys.executable, "-m", "qbench"]
CLS_MODEL = Path(__file__).resolve().parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def qbench(*args):
    return subprocess.run([*QBENCH, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "bogus"], "unknown task 'bogus'"),
        (["--task-option", "no_equals_sign"], "--task-option takes KEY=VALUE"),
        (["--task", "segment", "--task-option", "not_an_option=1"], "unknown judge option"),
        (["--task", "segment", "--evaluator", "x.py:f"], "not both"),
        (["--labels", "absent.json"], "labels file not found"),
        (["--max-drop", "2"], "--max-drop must lie in [0, 1]"),
        (["--task", "detect", "--task-option", "layout=sideways"], "layout must be"),
    ],
)
def test_bad_judge_options_are_one_line_before_any_work(tmp_path, model_path, small_data_dir, args, message):
    proc = qbench("run", model_path, "--data", small_data_dir, "--out", tmp_path / "out", *args)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("qbench: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "calibrat" not in proc.stderr  # refused before calibration
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def orientation_data(tmp_path_factory):
    """Text lines rendered upright (class 0) and rotated by 180° (class 1), as PP-OCR's orientation
    classifier reads them, with labels.json beside them: labels exact by construction."""
    data = tmp_path_factory.mktemp("cls_data")
    labels = {}
    for i, text in enumerate(LINES[:4]):
        img = render_line(text)
        flipped = i % 2 == 1
        np.save(data / f"line{i}.npy", ppocr_line_tensor(img.rotate(180) if flipped else img))
        labels[f"line{i}.npy"] = int(flipped)
    (data / "labels.json").write_text(json.dumps(labels))
    return data


def test_labels_beside_the_data_are_used_for_classify(tmp_path, orientation_data):
    out = tmp_path / "out"
    proc = qbench("compare", CLS_MODEL, "--data", orientation_data, "--precision", "fp16", "--task", "classify",
                  "--no-replay", "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"labels: {orientation_data / 'labels.json'} (4 class label(s))" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["labels"] == str(orientation_data / "labels.json")
    task = results["candidates"][0]["task"]
    assert task["task"] == "classify" and task["primary"] == "accuracy_drop"
    # the labels reached the judge: each sample's label is the one written beside it
    assert [r["label"] for r in task["per_sample"]] == [0, 1, 0, 1]
    assert task["metrics"]["fp32_accuracy"] == np.mean([r["fp32_correct"] for r in task["per_sample"]])


EVALUATOR = '''
import numpy as np

def same_top1(ref, cand, feed, label):
    """1 when the candidate's top class is FP32's (one output: the class scores)."""
    (r,), (c,) = ref.values(), cand.values()
    return {"same_top1": bool(np.argmax(r) == np.argmax(c)), "max_prob_shift": float(np.abs(r - c).max())}

same_top1.tolerance = 0.5
'''


def test_custom_evaluator_is_judged_by_the_same_machinery(tmp_path, orientation_data):
    path = tmp_path / "my_eval.py"
    path.write_text(EVALUATOR)
    (tmp_path / "data").mkdir()
    for f in orientation_data.glob("*.npy"):  # no labels: the evaluator is judged against FP32 only
        (tmp_path / "data" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    proc = qbench("compare", CLS_MODEL, "--data", tmp_path / "data", "--precision", "fp16",
                  "--evaluator", f"{path}:same_top1", "--no-replay", "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    task = results["candidates"][0]["task"]
    assert task["primary"] == "same_top1" and task["metrics"]["same_top1"] == 1.0
    assert [r["same_top1"] for r in task["per_sample"]] == [1.0] * 4
    row = results["recommendation"]["table"][0]
    assert row["task_metric"] == "same_top1" and row["verdict"] in ("pass", "inconclusive")
    # a broken evaluator is one error line
    path.write_text("def same_top1(ref, cand, feed, label):\n    return 1 / 0\nsame_top1.tolerance = 0.5\n")
    proc = qbench("compare", CLS_MODEL, "--data", tmp_path / "data", "--precision", "fp16",
                  "--evaluator", f"{path}:same_top1", "--no-replay", "--quiet", "--out", tmp_path / "out2")
    assert proc.returncode != 0 and "ZeroDivisionError" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_judges_the_text_detector_as_a_probability_map(monkeypatch):
    """`qbench demo` runs the pipeline with task segment at threshold 0.3 unless --task is given."""
    import qbench.cli.run as run_cli
    from qbench.cli import cli

    seen = []

    def fake_pipeline(cfg, echo=print):
        seen.append(cfg)
        raise SystemExit(0)  # stop before any work: only the configuration is under test

    monkeypatch.setattr(run_cli, "run_pipeline", fake_pipeline)
    runner = CliRunner()
    runner.invoke(cli, ["demo"])
    runner.invoke(cli, ["demo", "--task", "generic"])
    runner.invoke(cli, ["run", "m.onnx", "--data", "d"])
    assert [(c.task, c.task_options) for c in seen] == [("segment", {"threshold": 0.3}), ("generic", {}), ("generic", {})]


def test_text_recognizer_with_text_labels_end_to_end(tmp_path):
    """ctc on rapidocr's PP-OCRv4 recognizer (charset from the model's metadata): rendered known
    strings, labels.json beside them; the per-sample table shows what FP32 and the candidate read."""
    import html
    import os

    from judge_fixtures import ppocr_line_tensor, render_line

    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    rec = Path(rapidocr.__file__).resolve().parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    texts = ["Quantization", "hello world 42"]
    data = tmp_path / "lines"
    data.mkdir()
    for i, text in enumerate(texts):
        np.save(data / f"line{i}.npy", ppocr_line_tensor(render_line(text), 48, 320))
    (data / "labels.json").write_text(json.dumps({f"line{i}.npy": t for i, t in enumerate(texts)}))
    out = tmp_path / "out"
    proc = qbench("compare", rec, "--data", data, "--precision", "fp16", "--task", "ctc", "--no-replay", "--quiet",
                  "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    task = results["candidates"][0]["task"]
    assert task["primary"] == "cer_increase" and [r["label"] for r in task["per_sample"]] == texts
    page = (out / "index.html").read_text()
    for row in task["per_sample"]:
        assert html.escape(row["fp32_text"]) in page and html.escape(row["cand_text"]) in page
    assert os.path.isfile(out / results["files"]["sample[fp16][1]"])
