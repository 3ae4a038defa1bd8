"""qbench check / diff / history: on hand-made results.json files (fast) and on real runs of the PP-OCR
classifier where a planted calibration fault must be caught (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from qbench.cli import main
from qbench.fleet.check import check_run
from qbench.fleet.diff import diff_runs, write_diff
from qbench.fleet.runs import load_run

CLASSIFIER = Path(__file__).parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _results(path: Path, cosine: float, tensors: dict[str, float], task: dict | None = None,
             verdict: str | None = None, model: str = "m") -> Path:
    """A results.json in the report format, with one int8 candidate."""
    verdict = verdict or ("pass" if cosine >= 0.99 else "fail")
    cand = {"precision": "int8", "meta": {}, "summary": {},
            "tensors": [{"tensor": t, "index": i, "op_type": "Conv", "cosine": c, "rel_l2": 1 - c,
                         "status": "ok" if c > 0.9 else "divergent"} for i, (t, c) in enumerate(tensors.items())]}
    if task:
        cand["task"] = task
    doc = {"format": "qbench-report/1", "model": model, "meta": {"generated_at": "t"},
           "recommendation": {"precision": "int8" if verdict == "pass" else "fp32",
                              "table": [{"precision": "int8", "output_cosine_min": cosine, "output_rel_l2_max": 0.01,
                                         "output_nonfinite": 0, "output_zero": 0, "problem_tensors": 0,
                                         "verdict": verdict}]},
           "candidates": [cand]}
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(doc))
    return path / "results.json"


def test_check_exit_codes_reason_and_junit(tmp_path, capsys):
    base = _results(tmp_path / "base", 0.998, {"conv": 0.999, "out": 0.998})
    same = _results(tmp_path / "same", 0.9979, {"conv": 0.999, "out": 0.9979})
    worse = _results(tmp_path / "worse", 0.95, {"conv": 0.999, "out": 0.95})
    junit = tmp_path / "junit.xml"
    assert main(["check", str(same), "--baseline", str(base), "--junit", str(junit)]) == 0
    assert capsys.readouterr().out.startswith("PASS: m:")
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "0"

    assert main(["check", str(worse), "--baseline", str(base), "--junit", str(junit)]) == 1
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("REGRESSION: m: int8: verdict fail (baseline pass)")
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = [c.find("failure").get("message") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) == 3  # verdict, cosine drop, recommendation moved up
    assert any("output_cosine_min dropped from 0.998 to 0.95" in m for m in failures)

    # a tolerance alone, without a baseline
    assert main(["check", str(same), "--min", "output_cosine_min=0.999"]) == 1
    assert "int8: output_cosine_min 0.9979 < 0.999" in capsys.readouterr().out
    # errors: exit 2 with one line, and a JUnit <error>
    assert main(["check", str(same), "--min", "task.top1=0.9", "--junit", str(junit)]) == 2
    assert "has no metric 'task.top1'" in capsys.readouterr().err
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert main(["check", str(same), "--min", "output_cosine_min"]) == 2


def test_the_task_metric_decides_when_the_judge_ran(tmp_path):
    task = {"task": "classify", "primary": "top1_agreement", "metrics": {"top1_agreement": 1.0, "cer": 0.0},
            "verdict": "pass", "reason": ""}
    base = load_run(_results(tmp_path / "a", 0.995, {"out": 0.995}, task))
    # the output cosine improved, but the task metric (what the user reads) dropped: a regression
    dropped = dict(task, metrics={"top1_agreement": 0.9, "cer": 0.0})
    run = load_run(_results(tmp_path / "b", 0.999, {"out": 0.999}, dropped))
    result = check_run(run, base)
    assert not result.passed and "task.top1_agreement dropped from 1 to 0.9" in result.reason()
    # a lower-is-better metric bounded from above
    rose = load_run(_results(tmp_path / "c", 0.999, {"out": 0.999}, dict(task, metrics={"top1_agreement": 1.0, "cer": 0.2})))
    assert check_run(rose, base).passed
    assert not check_run(rose, None, maxs={"task.cer": 0.1}).passed


def test_diff_lists_changes_and_escapes_names_on_the_page(tmp_path, capsys):
    evil = '<script>alert("x")</script>'
    a = _results(tmp_path / "a", 0.998, {"conv": 0.999, evil: 0.998, "gone": 0.99})
    b = _results(tmp_path / "b", 0.95, {"conv": 0.999, evil: 0.95, "new": 0.99})
    d = diff_runs(load_run(a), load_run(b))
    changes = dict(zip(d.tensors["tensor"], d.tensors["change"]))
    assert changes == {evil: "changed", "gone": "only in A", "new": "only in B"}  # conv did not move
    row = d.metrics.set_index("metric").loc["output_cosine_min"]
    assert row["changed"] and math.isclose(row["delta"], 0.95 - 0.998)
    page = write_diff(d, tmp_path / "diff").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert json.loads((tmp_path / "diff" / "diff.json").read_text())["tensors"][0]["tensor"] == evil
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "int8: verdict pass -> fail" in out and "1 tensor(s) changed" in out


@pytest.fixture(scope="module")
def classifier_runs(tmp_path_factory):
    """Three real runs of the orientation classifier, judged as a classifier against exact labels
    (text lines rendered upright = 0, rotated 180° = 1), into one store: a baseline, a clean rerun
    (the same ranges) and a planted regression (its calibration cache with every range shrunk 20-fold)."""
    from judge_fixtures import LINES, ppocr_line_tensor, render_line
    from qbench.pipeline import RunConfig, run_pipeline
    from qbench.ranges import Ranges

    root = tmp_path_factory.mktemp("fleet_runs")
    data = root / "data"
    data.mkdir()
    labels = {}
    for i, text in enumerate(LINES[:4]):
        img = render_line(text)
        np.save(data / f"line{i}.npy", ppocr_line_tensor(img.rotate(180) if i % 2 else img))
        labels[f"line{i}.npy"] = i % 2
    (data / "labels.json").write_text(json.dumps(labels))
    reports = root / "reports"

    def run(name, ranges=None):
        return run_pipeline(RunConfig(model=CLASSIFIER, data=data, out=reports / name, precisions=("int8",),
                                      method="minmax", ranges=ranges, fallback=False, progress=False, task="classify"),
                            echo=lambda _: None)

    base = run("base")
    clean = run("clean", reports / "base" / "calibration.cache")
    planted = Ranges.read(reports / "base" / "calibration.cache")
    for entry in planted.entries.values():
        entry.amax *= 0.05
    planted.write_trt_cache(root / "planted.cache")
    bad = run("planted", root / "planted.cache")
    return {"base": base, "clean": clean, "planted": bad, "store": reports / "qbench.sqlite", "reports": reports}


@pytest.mark.slow
def test_planted_regression_fails_the_gate_and_a_clean_rerun_passes(classifier_runs, tmp_path, capsys):
    runs, store = classifier_runs, str(classifier_runs["store"])
    # the clean rerun against the run recorded before it in the store
    assert main(["check", str(runs["clean"].results_json), "--baseline", "previous", "--store", store]) == 0
    assert capsys.readouterr().out.startswith("PASS: ch_ppocr_mobile_v2.0_cls_infer:")
    # the planted one against the baseline, given by store run id
    base_id = str(runs["base"].run_ids[0])
    junit = tmp_path / "junit.xml"
    assert main(["check", str(runs["planted"].results_json), "--baseline", base_id, "--store", store,
                 "--junit", str(junit)]) == 1
    line = capsys.readouterr().out.strip()
    # the judge's deciding metric (lower is better, as the task result says) caught it
    assert line.startswith("REGRESSION: ch_ppocr_mobile_v2.0_cls_infer: int8: task.accuracy_drop rose from 0 to ")
    assert "\n" not in line
    assert ET.parse(junit).getroot().find("testsuite").get("failures") != "0"
    # the same gate on store ids alone
    assert main(["check", str(runs["planted"].run_ids[0]), "--baseline", base_id, "--store", store]) == 1
    capsys.readouterr()

    # diff: the planted ranges moved the output and many tensors; the clean rerun moved nothing
    assert main(["diff", base_id, str(runs["planted"].results_json), "--store", store, "--out", str(tmp_path / "d")]) == 0
    text = capsys.readouterr().out
    assert "int8: task.accuracy_drop 0 -> " in text and "tensor(s) changed" in text
    assert main(["diff", base_id, str(runs["clean"].run_ids[0]), "--store", store]) == 0
    assert "no change beyond" in capsys.readouterr().out

    # history: three invocations, newest last, in every format
    assert main(["history", "--store", store, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [runs[k].run_ids[0] for k in ("base", "clean", "planted")]
    assert {r["task"] for r in rows} == {"classify"} and {r["deciding_metric"] for r in rows} == {"task.accuracy_drop"}
    assert rows[0]["value"] == rows[1]["value"] == 0 and rows[2]["value"] >= 0.25
    assert main(["history", "--store", store, "--format", "csv", "--model", "ch_ppocr_mobile_v2.0_cls_infer"]) == 0
    assert capsys.readouterr().out.count("\n") == 4
    assert main(["history", "--store", store, "--model", "nope"]) == 2
