"""The task judge wired into the product: `qbench run/compare --task`, verdicts and the
recommendation from the task result, results.json / CSV / HTML per-sample section, on real models
(ddddocr's character detector, the embedded PP-OCRv4 text detector and an ArgMax variant of it)."""

from __future__ import annotations

import json
import os
import re
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


# -- a text-free image: no false alarm -----------------------------------------------------------
@pytest.fixture(scope="module")
def document_ranges(tmp_path_factory, model_path, small_data_dir):
    """MinMax ranges of the embedded text detector, calibrated on document images (fast)."""
    cache = tmp_path_factory.mktemp("ranges") / "det.cache"
    proc = qbench("calibrate", model_path, "--data", small_data_dir, "--method", "minmax", "--cache", cache, "--limit", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cache


def _text_free_data(dest: Path) -> Path:
    """Two images without text (a blank page, a smooth colour gradient), preprocessed like calib_data."""
    from PIL import Image

    from conftest import DEFAULT_DATA

    (dest / "images").mkdir(parents=True)
    manifest = json.loads((DEFAULT_DATA / "manifest.json").read_text())
    manifest["inputs"]["x"]["size"] = [256, 256]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    Image.new("RGB", (256, 256), "white").save(dest / "images" / "blank.png")
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    grad = np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[:, None], (1, 256)), np.full((256, 256), 128, np.uint8)], -1)
    Image.fromarray(grad).save(dest / "images" / "gradient.png")
    return dest


@pytest.mark.slow
def test_text_free_images_raise_no_false_alarm(tmp_path, model_path, document_ranges):
    data = _text_free_data(tmp_path / "data")
    out = tmp_path / "out"
    proc = qbench("compare", model_path, "--data", data, "--precision", "int8", "--ranges", document_ranges,
                  "--task", "segment", "--no-replay", "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = strict_json(out / "results.json")
    task = results["candidates"][0]["task"]
    for row in task["per_sample"]:
        # neither map has a pixel above 0.3: two empty masks agree, whatever the cosine of the noise
        assert row["fp32_pixels"] == 0 and row["cand_pixels"] == 0, row
        assert row["mask_iou"] == 1.0 and row["false_alarm"] == 0
    assert task["metrics"]["false_alarms"] == 0
    assert row_of(results, "int8")["verdict"] != "fail"
    assert "verdict (segment)" in proc.stdout


# -- a model ending in ArgMax: pixel agreement, no NaN anywhere ---------------------------------------
@pytest.mark.slow
def test_argmax_model_is_guessed_and_judged_by_pixel_agreement_without_nan(tmp_path, model_path, small_data_dir):
    model = argmax_segmenter(model_path, tmp_path)
    out = tmp_path / "out"
    proc = qbench("run", model, "--data", small_data_dir, "--limit", "2", "--precision", "int8", "--no-fallback",
                  "--method", "minmax", "--task", "auto", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # --task auto guesses from the graph and says what and why
    assert "qbench: task: segment (guessed: " in proc.stderr and "ArgMax" in proc.stderr
    results = strict_json(out / "results.json")
    assert results["meta"]["task"] == "segment" and "ArgMax" in results["meta"]["task_note"]
    task = results["candidates"][0]["task"]
    assert task["primary"] == "pixel_agreement"
    assert 0.9 < task["metrics"]["pixel_agreement"] <= 1.0
    for row in task["per_sample"]:
        assert all(v is not None for v in row.values()), row  # null is how JSON writes NaN
    row = row_of(results, "int8")
    assert row["task_metric"] == "pixel_agreement" and row["task_value"] == task["metrics"]["pixel_agreement"]
    page = (out / "index.html").read_text(encoding="utf-8")
    page = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", page, flags=re.S))  # the text a reader sees
    for text in (page, proc.stderr, proc.stdout, (out / results["files"]["task[int8]"]).read_text()):
        assert not any(word.strip(".,;:()").lower() == "nan" for word in text.split()), "NaN shown"


# -- the HTML per-sample section -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_per_sample_section_renders_in_chromium(detector_run, tmp_path):
    from browser import open_page

    out, _ = detector_run
    with open_page(out / "index.html") as p:
        assert p.console_errors == [] and p.page_errors == [] and p.requests == []
        heading = p.page.inner_text("#cand-0-samples")
        assert heading.startswith("Worst samples by f1_vs_fp32") and "(2 of 2)" in heading
        names = p.page.eval_on_selector_all("#cand-0 table.per-sample tbody tr", "rs => rs.map(r => r.cells[1].textContent)")
        assert sorted(names) == ["s0.npy", "s1.npy"]
        pictures = p.page.eval_on_selector_all("#cand-0 .samples-grid img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(pictures) == 2 and all(w > 400 for w in pictures)
        assert "fail" in p.page.inner_text("#cand-0-task") and "detection F1" in p.page.inner_text("#cand-0 .task-box")
        # the recommendation table shows the task metric beside the (diagnostic) cosine
        table = p.page.inner_text("#verdict table.rec-table")
        assert "detect: f1_vs_fp32" in table
        p.page.locator("#cand-0-samples").scroll_into_view_if_needed()
        shot = Path(os.environ.get("QBENCH_SCREENSHOT_DIR", tmp_path)) / "samples.png"
        p.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # the worst sample's picture draws FP32's boxes (green) and none for INT8, which lost them all
    from PIL import Image

    from qbench.report.samples import CAND_COLOUR, REF_COLOUR

    results = strict_json(out / "results.json")
    pixels = np.asarray(Image.open(out / results["files"]["sample[int8][1]"]).convert("RGB")).reshape(-1, 3)
    assert (pixels == REF_COLOUR).all(axis=1).sum() > 200
    assert (pixels == CAND_COLOUR).all(axis=1).sum() == 0


@pytest.mark.browser
def test_sample_and_output_names_are_escaped_in_the_task_section(tmp_path):
    """Sample names come from data file names and output names from the model: both reach the
    per-sample table and the picture captions, escaped."""
    from browser import open_page

    from qbench.compare.marks import empty
    from qbench.compare.tap import SamplePicture
    from qbench.judge import TaskResult
    from qbench.report import CandidateResult, write_report

    evil = "<img src=x onerror=window.__pwned=1>"
    per_sample = pd.DataFrame({"sample": [0, 1], "name": [evil + ".png", "ok.png"], "f1": [0.25, 1.0]})
    task = TaskResult(task="detect", primary="f1_vs_fp32", metrics={"f1_vs_fp32": 0.6, evil: 1.0}, per_sample=per_sample,
                      verdict="fail", reason=f"detection F1 vs FP32 0.600 on {evil}", rank_column="f1")
    image = np.zeros((32, 32, 3), np.uint8)
    boxes = {**empty(), "boxes": np.array([[2.0, 2.0, 20.0, 20.0]]), "text": evil}
    pic = SamplePicture(0, evil + ".png", image, (32, 32), reference_marks=boxes, candidate_marks=empty())
    tensors = pd.DataFrame({"tensor": ["out"], "is_output": [True], "cosine": [0.999], "status": ["ok"]})
    page = write_report(tmp_path / "r", "m", [CandidateResult("int8", tensors, task=task, pictures=[pic])])
    html = page.read_text()
    assert "<img src=x" not in html
    with open_page(page) as p:
        assert p.page_errors == [] and p.page.evaluate("typeof window.__pwned") == "undefined"
        assert evil + ".png" in p.page.inner_text("#cand-0 table.per-sample")
        assert evil in p.page.inner_text("#cand-0 .task-box")  # in the reason and as a metric name
        assert len(p.page.query_selector_all("#cand-0 .samples-grid img")) == 1


# -- the outputs tap -------------------------------------------------------------------------------------
def test_tap_judges_every_sample_and_pictures_the_worst_even_beyond_its_memory_budget(monkeypatch, tmp_path):
    """With a budget that keeps one sample's picture only, the worst samples are still pictured
    (re-run one by one), and the judge saw every sample of the comparison, in order."""
    from judge_fixtures import LINES, ppocr_line_tensor, render_line

    from qbench.compare import tap
    from qbench.compare.entry import compare_precision
    from qbench.data import load_dataset
    from qbench.judge import make_judge
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(Path(__file__).resolve().parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    for i, text in enumerate(LINES[:5]):
        img = render_line(text)
        np.save(tmp_path / f"line{i}.npy", ppocr_line_tensor(img.rotate(180) if i % 2 else img))
    dataset = load_dataset(tmp_path, graph.inputs)
    monkeypatch.setattr(tap, "KEEP_BYTES", 1)
    cmp = compare_precision(graph, dataset, "fp16", judge=make_judge("classify", graph), replay=False, progress=False, pictures=3)
    assert list(cmp.task.per_sample["name"]) == [f"line{i}.npy" for i in range(5)]
    assert [p.index for p in cmp.pictures] == list(cmp.task.worst(3)["sample"])
    for pic in cmp.pictures:
        assert pic.image is not None and pic.image.shape[:2] == (48, 192)
        assert pic.reference_marks["text"].startswith("class ") and pic.candidate_marks["text"].startswith("class ")
        assert pic.reference == {} and pic.candidate == {}  # arrays dropped once marked
    assert cmp.meta["task"] == "classify" and cmp.meta["timing_s"]["task"] >= 0


def test_judging_outputs_alone_matches_the_judge_inside_the_comparison(tmp_path):
    """judge_precision (outputs only: how the fallback search's final candidate is judged) reaches
    the same task result as the judge fed by the comparator's tap."""
    from judge_fixtures import LINES, ppocr_line_tensor, render_line

    from qbench.compare.entry import compare_precision, judge_precision
    from qbench.data import load_dataset
    from qbench.judge import make_judge
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges, TensorRange

    graph = ModelGraph.from_path(Path(__file__).resolve().parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    for i, text in enumerate(LINES[:4]):
        img = render_line(text)
        np.save(tmp_path / f"line{i}.npy", ppocr_line_tensor(img.rotate(180) if i % 2 else img))
    dataset = load_dataset(tmp_path, graph.inputs)
    # a planted fault: every range at a quarter of its MinMax value, so INT8 does change the scores
    from qbench.calibrate import calibrate

    minmax = calibrate(graph, dataset, method="minmax", progress=False)
    ranges = Ranges({n: TensorRange(n, minmax.amax(n) / 4, method="minmax") for n in minmax.entries}, method="minmax")
    judge = make_judge("classify", graph)
    inside = compare_precision(graph, dataset, "int8", ranges, judge=judge, replay=False, progress=False).task
    alone, pictures = judge_precision(graph, dataset, "int8", ranges, judge, progress=False)
    assert alone.metrics == inside.metrics and alone.verdict == inside.verdict
    pd.testing.assert_frame_equal(alone.per_sample, inside.per_sample)
    assert len(pictures) == 4 and all(p.reference_marks for p in pictures)
    assert inside.metrics["max_prob_drop"] > 0  # the planted fault reached the outputs


def test_candidate_results_without_the_model_outputs_are_not_judged_but_said_so(tmp_path):
    """Imported TensorRT results may hold inner tensors but not the model's outputs: the judge has
    nothing to read, so there is no task verdict — a warning finding says so, and the row says the
    verdict came from the output tensors instead."""
    from judge_fixtures import LINES, ppocr_line_tensor, render_line

    from qbench.advise import recommend
    from qbench.compare.comparator import compare_runs
    from qbench.data import load_dataset
    from qbench.judge import make_judge
    from qbench.model import ModelGraph
    from qbench.report import CandidateResult
    from qbench.runners import OrtRunner

    graph = ModelGraph.from_path(Path(__file__).resolve().parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    for i, text in enumerate(LINES[:2]):
        np.save(tmp_path / f"line{i}.npy", ppocr_line_tensor(render_line(text)))
    dataset = load_dataset(tmp_path, graph.inputs)

    class InnerOnly:  # a real ORT run whose results were exported without the graph outputs
        name = "inner tensors only"

        def __init__(self):
            self.runner = OrtRunner(graph, name=self.name)

        def run(self, feed):
            return {k: v for k, v in self.runner.run(feed).items() if k not in graph.output_names}

    cmp = compare_runs(graph, OrtRunner(graph, name="fp32"), InnerOnly(), dataset, replay=False, progress=False,
                       judge=make_judge("classify", graph))
    assert cmp.task is None and cmp.pictures == []
    warning = [f for f in cmp.findings if f["kind"] == "task_unjudged"]
    assert len(warning) == 1 and "lack model output(s)" in warning[0]["message"]
    row = recommend([CandidateResult("trt", cmp.tensors, cmp.findings, task=cmp.task)]).table.iloc[0]
    assert row["judged_by"] == "output tensors (no task result)"
