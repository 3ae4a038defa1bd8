"""The main job end to end on the real embedded model and images, through the real CLI."""

from __future__ import annotations

import html
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qbench.ranges import Ranges

QBENCH = [sys.executable, "-m", "qbench"]


def qbench(*args, cwd=None):
    return subprocess.run([*QBENCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, model_path, small_data_dir):
    out = tmp_path_factory.mktemp("run") / "report"
    proc = qbench("run", model_path, "--data", small_data_dir, "--out", out, "--method", "entropy")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_run_prints_report_path_last(demo_run):
    out, proc = demo_run
    last = proc.stdout.strip().splitlines()[-1]
    assert Path(last) == out / "index.html" and Path(last).is_file()
    assert "Traceback" not in proc.stderr


def test_every_stage_left_its_artefact(demo_run, graph):
    out, _ = demo_run
    ranges = Ranges.read(out / "calibration.cache")
    float_names = {t.name for t in graph.float_tensors} | {i.name for i in graph.inputs}
    assert set(ranges.entries) == float_names  # calibration covered every activation and the input
    assert Ranges.read(out / "ranges.json").entries.keys() == ranges.entries.keys()
    results = json.loads((out / "results.json").read_text())
    assert results["recommendation"]["precision"] in ("int8", "fp16", "fp32")
    for precision in ("int8", "fp16"):
        frame = pd.read_csv(out / precision / "tensors.csv")
        assert len(frame) + len(json.loads((out / precision / "comparison.json").read_text()).get("unmatched", [])) >= len(graph.float_tensors)
        assert list(frame["index"]) == sorted(frame["index"])  # graph order
        for column in ("max_abs_err", "cosine", "ref_zero_frac", "cand_zero_frac", "status"):
            assert column in frame


def test_simulations_really_change_the_numbers(demo_run):
    out, _ = demo_run
    int8 = pd.read_csv(out / "int8" / "tensors.csv")
    fp16 = pd.read_csv(out / "fp16" / "tensors.csv")
    out8 = int8[int8["is_output"]].iloc[0]
    out16 = fp16[fp16["is_output"]].iloc[0]
    # INT8 must perturb the output more than FP16, and neither may be an identity copy of FP32
    assert out8["max_abs_err"] > out16["max_abs_err"] > 0
    assert 0.9 < out8["cosine"] < 1.0  # over all samples; single images without text can do worse


def test_report_lists_every_tensor_in_graph_order(demo_run, graph):
    out, _ = demo_run
    page = (out / "index.html").read_text()
    frame = pd.read_csv(out / "int8" / "tensors.csv")
    positions = []
    start = 0
    for name in frame["tensor"]:
        pos = page.find(html.escape(name), start)
        assert pos >= 0, name
        positions.append(pos)
        start = pos
    assert positions == sorted(positions)


def test_run_is_recorded_in_sqlite(demo_run):
    out, _ = demo_run
    db = out.parent / "qbench.sqlite"
    with sqlite3.connect(db) as con:
        (count,) = con.execute("select count(*) from runs").fetchone()
    candidates = json.loads((out / "results.json").read_text())["candidates"]
    assert count == len(candidates) >= 2  # one run per candidate (int8, fp16, and int8-mixed when searched)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp, model, data: ["run", tmp / "absent.onnx", "--data", data], "not found"),
        (lambda tmp, model, data: ["run", _write(tmp / "junk.onnx", b"\x08\x01junk"), "--data", data], "ONNX"),
        (lambda tmp, model, data: ["run", model, "--data", _mkdir(tmp / "empty")], "no samples"),
        (lambda tmp, model, data: ["run", model, "--data", data, "--ranges", _write(tmp / "c.cache", b"garbage\n")], "cache"),
        (lambda tmp, model, data: ["run", model, "--data", data, "--bogus-option"], "No such option"),
    ],
)
def test_user_errors_are_one_line(tmp_path, model_path, small_data_dir, make_args, message):
    proc = qbench(*make_args(tmp_path, model_path, small_data_dir), "--out", tmp_path / "out")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("qbench: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "index.html").exists()


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, model_path, small_data_dir):
    a_file = _write(tmp_path / "report", b"keep me")
    proc = qbench("run", model_path, "--data", small_data_dir, "--out", a_file)
    assert proc.returncode != 0 and "qbench: error: cannot write into" in proc.stderr
    assert "calibrat" not in proc.stderr  # refused before the calibration pass
    assert a_file.read_bytes() == b"keep me"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_model_with_several_outputs(tmp_path, model_path, small_data_dir, graph):
    """A detector with several heads: every output is compared, judged and reported as an output."""
    import onnx

    from qbench.pipeline import RunConfig, run_pipeline

    model = onnx.load(str(model_path))
    extra = graph.tensors[len(graph.tensors) // 2].name
    model.graph.output.append(onnx.helper.make_tensor_value_info(extra, onnx.TensorProto.FLOAT, None))
    two_heads = tmp_path / "two_heads.onnx"
    onnx.save(model, str(two_heads))
    outcome = run_pipeline(RunConfig(model=two_heads, data=small_data_dir, out=tmp_path / "rep", compare_limit=1,
                                     calib_limit=2, progress=False, fallback=False, fp16_mode="likely"), echo=lambda _: None)
    for precision, comparison in outcome.comparisons.items():
        outputs = comparison.tensors[comparison.tensors["is_output"]]
        assert set(outputs["tensor"]) == {extra, "sigmoid_0.tmp_0"}, precision
    table = outcome.recommendation.table
    # the two candidates and the search's shipped INT8 (one answer: int8-best is a row of the table)
    assert set(table["precision"]) == {"int8", "fp16", "int8-best"}
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert extra in json.dumps(results["candidates"])
