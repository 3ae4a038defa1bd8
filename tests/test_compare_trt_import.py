"""``qbench compare --trt-outputs / --engine / --layer-info`` end to end through the real CLI.

The "TensorRT results" are real ONNX Runtime outputs of the default model on real samples, written
in trtexec's ``--exportOutput`` format and, through Polygraphy's own RunResults.save, in its
``--save-outputs`` format: identical values must compare as identical, planted errors must not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

OUTPUT = "sigmoid_0.tmp_0"
LAYERS = Path(__file__).parent / "data" / "trtexec" / "mobilenet.qat.layers.json"


@pytest.fixture(scope="module")
def npy_data(tmp_path_factory, small_dataset):
    """Two real 256x256 samples as .npy files (what a user fed trtexec with --loadInputs)."""
    root = tmp_path_factory.mktemp("npy_data")
    for i in range(2):
        np.save(root / f"x{i}.npy", small_dataset.sample(i)["x"])
    return root


@pytest.fixture(scope="module")
def reference_outputs(model_path, npy_data):
    """The model's outputs on those samples from a plain ONNX Runtime session (the real model run)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, {"x": np.load(p)}))) for p in sorted(npy_data.glob("*.npy"))]


def _trtexec_file(path: Path, outputs: dict) -> Path:
    # trtexec prints 6 significant digits per value
    doc = [{"name": n, "dimensions": "x".join(map(str, a.shape)), "values": [float(f"{v:.6g}") for v in a.ravel().tolist()]}
           for n, a in outputs.items()]
    path.write_text(json.dumps(doc))
    return path


def _polygraphy_file(path: Path, samples: list[dict]) -> Path:
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult

    results = RunResults()
    results["trt-runner-N0-01/01/25-00:00:00"] = [IterationResult(s, runner_name="trt-runner") for s in samples]
    results.save(str(path))
    return path


def _qbench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qbench", "compare", *map(str, args), "--quiet"],
                          capture_output=True, text=True, timeout=120)


def _output_row(out: Path) -> pd.Series:
    frame = pd.read_csv(out / "tensors.csv")
    return frame[frame["tensor"] == OUTPUT].iloc[0]


def _one_line_error(proc, *words):
    assert proc.returncode != 0 and proc.stderr.startswith("qbench: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def test_trtexec_outputs_identical_then_perturbed(tmp_path, model_path, npy_data, reference_outputs):
    files = [_trtexec_file(tmp_path / f"out.{i}.json", o) for i, o in enumerate(reference_outputs)]
    out = tmp_path / "same"
    proc = _qbench(model_path, "--data", npy_data, "--trt-outputs", files[0], "--trt-outputs", files[1], "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = Path(proc.stdout.strip().splitlines()[-1])
    assert report == out / "index.html" and report.is_file()
    row = _output_row(out)
    assert row["status"] == "ok" and row["cosine"] == pytest.approx(1.0, abs=1e-9) and row["samples"] == 2
    doc = json.loads((out / "results.json").read_text())
    cand = doc["candidates"][0]
    assert cand["meta"]["source"].startswith("imported TensorRT results (trtexec --exportOutput")
    assert cand["meta"]["replay"]["done"] is False and "no model to replay" in cand["meta"]["replay"]["reason"]
    reasons = {u["reason"] for u in cand["unmatched"]}
    assert reasons == {"not in the TensorRT results (fused away or not marked as output)"}
    page = report.read_text()
    assert "imported TensorRT results" in page and "a simulation, not TensorRT" not in page

    # plant an error in sample 1 only: a quarter of the map flipped, as a broken kernel would
    bad = {k: v.copy() for k, v in reference_outputs[1].items()}
    bad[OUTPUT][..., :64, :] = 1.0 - bad[OUTPUT][..., :64, :]
    _trtexec_file(files[1], bad)
    out2 = tmp_path / "planted"
    proc = _qbench(model_path, "--data", npy_data, "--trt-outputs", files[0], "--trt-outputs", files[1], "--out", out2)
    assert proc.returncode == 0, proc.stderr
    row = _output_row(out2)
    assert row["status"] == "divergent" and row["cosine_min"] < 0.9
    per_sample = json.loads((out2 / "comparison.json").read_text())["per_sample"]
    statuses = {r["sample"]: r["status"] for r in per_sample if r["tensor"] == OUTPUT}
    assert statuses == {0: "ok", 1: "divergent"}
    assert "culprit replay not done: imported TensorRT results" in proc.stdout


def test_polygraphy_outputs_with_layer_info(tmp_path, model_path, npy_data, reference_outputs):
    path = _polygraphy_file(tmp_path / "polygraphy.json", reference_outputs)
    # a model-supplied name with markup: it must reach the page escaped
    info = json.loads(LAYERS.read_text())
    info["Layers"][1]["Name"] = "<script>alert(1)</script> + Conv_12"
    info["Layers"][1].pop("Metadata", None)
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps(info))
    out = tmp_path / "poly"
    proc = _qbench(model_path, "--data", npy_data, "--trt-outputs", path, "--layer-info", layers, "--out", out)
    assert proc.returncode == 0, proc.stderr
    row = _output_row(out)
    assert row["status"] == "ok" and row["cosine"] == pytest.approx(1.0, abs=1e-6)
    page = (out / "index.html").read_text()
    assert "TensorRT engine layers" in page and "CaskConvolution" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    doc = json.loads((out / "results.json").read_text())
    assert doc["candidates"][0]["meta"]["source"].startswith("imported TensorRT results (Polygraphy --save-outputs")
    (section,) = doc["extra_sections"]
    assert section["title"] == "TensorRT engine layers" and len(section["rows"]) == len(info["Layers"])
    assert section["rows"][1]["precision"] == "int8" and section["rows"][1]["fused"] == 2


def test_polygraphy_planted_error_is_divergent(tmp_path, model_path, npy_data, reference_outputs):
    bad = [{k: v.copy() for k, v in s.items()} for s in reference_outputs]
    for s in bad:
        s[OUTPUT] = (s[OUTPUT] + np.random.default_rng(0).uniform(0, 1, s[OUTPUT].shape)).astype(np.float32)
    out = tmp_path / "poly-bad"
    proc = _qbench(model_path, "--data", npy_data, "--trt-outputs", _polygraphy_file(tmp_path / "p.json", bad), "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert _output_row(out)["status"] == "divergent" and (out / "index.html").is_file()


def test_wrong_sample_count_or_shape_is_one_line(tmp_path, model_path, npy_data, reference_outputs):
    one = _trtexec_file(tmp_path / "one.json", reference_outputs[0])
    _one_line_error(_qbench(model_path, "--data", npy_data, "--trt-outputs", one), "1 sample(s)", "--data has 2")
    small = [{OUTPUT: s[OUTPUT][..., :128, :128].copy()} for s in reference_outputs]
    _one_line_error(_qbench(model_path, "--data", npy_data, "--trt-outputs", _polygraphy_file(tmp_path / "s.json", small)),
                    "(1, 1, 128, 128)", "(1, 1, 256, 256)")
    renamed = _polygraphy_file(tmp_path / "r.json", [{"scores": s[OUTPUT]} for s in reference_outputs])
    _one_line_error(_qbench(model_path, "--data", npy_data, "--trt-outputs", renamed), "'scores'")
    _one_line_error(_qbench(model_path, "--trt-outputs", one), "needs --data")


def test_engine_without_tensorrt_is_one_line(tmp_path, model_path, small_data_dir):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    proc = _qbench(model_path, "--data", small_data_dir, "--engine", engine, "--out", tmp_path / "e")
    _one_line_error(proc, "TensorRT")
    assert not (tmp_path / "e").exists()
