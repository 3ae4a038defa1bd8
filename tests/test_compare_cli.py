"""``qbench compare`` end to end on the real model and images."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
from onnx import numpy_helper

from qbench.cli import main


def test_compare_candidate_file_names_first_problem_and_culprit(tmp_path, model_path, small_data_dir, capsys):
    model = onnx.load(str(model_path))
    conv = next(n for n in model.graph.node if n.name == "p2o.Conv.20")
    for t in model.graph.initializer:
        if t.name == conv.input[1]:
            t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    for n in model.graph.node:  # paddle exports weights as Constant nodes
        if n.op_type == "Constant" and n.output[0] == conv.input[1]:
            t = n.attribute[0].t
            t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    out = tmp_path / "cmp"
    rc = main(["compare", str(model_path), "--data", str(small_data_dir), "--candidate", str(bad), "--limit", "2",
               "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    frame = pd.read_csv(out / "tensors.csv")
    first = frame[frame["first_problem"]].iloc[0]
    assert first["node"] == "p2o.Conv.20"
    assert f"first problem: {first['tensor']}" in printed and "top culprits" in printed
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["meta"]["samples"] == 2 and doc["findings"][0]["kind"] == "first_problem"
    # the HTML report is written beside, and its path is the last stdout line (as qbench run)
    assert printed.strip().splitlines()[-1] == str(out / "index.html")
    report = json.loads((out / "results.json").read_text())
    assert report["candidates"][0]["meta"]["source"] == "another ONNX model (bad) run in ONNX Runtime CPU (not TensorRT)"
    assert "p2o.Conv.20" in (out / "index.html").read_text()


def test_compare_precision_int8_with_calibration(tmp_path, model_path, small_data_dir, capsys):
    out = tmp_path / "int8"
    rc = main(["compare", str(model_path), "--data", str(small_data_dir), "--precision", "int8", "--method", "minmax",
               "--limit", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    frame = pd.read_csv(out / "tensors.csv")
    assert frame["amax"].notna().sum() > 10 and np.isfinite(frame["cosine"]).all()
    assert "output sigmoid_0.tmp_0" in printed
    page = (out / "index.html").read_text()
    assert printed.strip().splitlines()[-1] == str(out / "index.html")
    assert "ONNX Runtime CPU simulation of INT8 (Q/DQ) (not TensorRT)" in page and (out / "ranges.csv").is_file()


def test_compare_bad_usage_is_one_line(tmp_path, model_path, small_data_dir, capsys):
    assert main(["compare", str(model_path), "--data", str(small_data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--candidate" in err and "--trt-outputs" in err
    assert main(["compare", str(model_path), "--precision", "fp16", "--engine", "x.engine"]) == 2
    assert "got 2: --precision, --engine" in capsys.readouterr().err
    assert main(["compare", str(model_path), "--data", str(small_data_dir), "--precision", "fp16", "--ranges", "x.json"]) == 2
    assert main(["compare", str(tmp_path / "missing.onnx"), "--precision", "fp16"]) == 2
    assert "not found" in capsys.readouterr().err
