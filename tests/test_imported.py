"""Importers of TensorRT results made elsewhere (trtexec and Polygraphy JSON); no TensorRT needed."""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from qbench.errors import QbenchError
from qbench.runners.base import Runner
from qbench.runners.imported import (ImportedRunner, decode_polygraphy_array, load_polygraphy_outputs,
                                     load_trtexec_layer_info, load_trtexec_outputs, load_trtexec_profile)

DATA = Path(__file__).parent / "data" / "trtexec"


def test_trtexec_outputs_shapes_values_and_bare_nonfinite():
    out = load_trtexec_outputs(DATA / "outputs.sample0.json")
    assert list(out) == ["sigmoid_0.tmp_0", "scores"]
    assert out["sigmoid_0.tmp_0"].shape == (1, 1, 2, 3) and out["sigmoid_0.tmp_0"].dtype == np.float32
    assert out["sigmoid_0.tmp_0"][0, 0, 1, 2] == pytest.approx(0.75)
    s = out["scores"]
    assert s[0, 1] == -2.25 and np.isnan(s[1, 0]) and s[1, 1] == -np.inf


def test_trtexec_outputs_wrong_count_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "y", "dimensions": "2x3", "values": [1, 2, 3]}]))
    with pytest.raises(QbenchError, match=r"3 values for dimensions 2x3 \(6 expected\)"):
        load_trtexec_outputs(bad)
    bad.write_text("{not json")
    with pytest.raises(QbenchError, match="invalid JSON"):
        load_trtexec_outputs(bad)


def test_trtexec_layer_info_precision_and_fusions():
    frame = load_trtexec_layer_info(DATA / "mobilenet.qat.layers.json")
    assert len(frame) == 4
    first, conv, to_fp16, fused_add = frame.to_dict("records")
    assert first["type"] == "Reformat" and first["precision"] == "int8" and first["input_precision"] == "fp32"
    assert conv["type"] == "CaskConvolution" and conv["precision"] == "int8"
    assert conv["onnx_nodes"].split(", ") == ["features.0.0.weight", "QuantizeLinear_8", "Conv_12", "PWN(Clip_16)"]
    assert to_fp16["precision"] == "fp16" and to_fp16["input_precision"] == "int8"
    assert fused_add["fused"] == 4 and fused_add["inputs"] == "447, 410"


def test_trtexec_profile():
    frame = load_trtexec_profile(DATA / "mobilenet.qat.profile.json")
    assert frame.attrs["iterations"] == 4216
    assert len(frame) == 6
    assert frame.iloc[0]["layer"] == "QuantizeLinear_2" and frame.iloc[0]["average_ms"] == pytest.approx(0.0122041)
    with pytest.raises(QbenchError, match="exportProfile"):
        load_trtexec_profile(DATA / "outputs.sample0.json")


def _polygraphy_file(tmp_path, runs):
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult

    results = RunResults()
    for name, samples in runs.items():
        results[name] = [IterationResult(s, runner_name=name) for s in samples]
    path = tmp_path / "outputs.json"
    results.save(str(path))
    return path


def test_polygraphy_real_format_roundtrip(tmp_path):
    a0 = np.random.default_rng(0).standard_normal((1, 2, 3)).astype(np.float16)
    a1 = np.arange(6, dtype=np.int64).reshape(2, 3)
    path = _polygraphy_file(tmp_path, {"trt-runner-N0": [{"y": a0}, {"y": a0 * 2}], "onnxrt-runner-N0": [{"y": a1}]})
    runs = load_polygraphy_outputs(path)
    assert set(runs) == {"trt-runner-N0", "onnxrt-runner-N0"}
    assert runs["trt-runner-N0"][1]["y"].dtype == np.float16
    np.testing.assert_array_equal(runs["trt-runner-N0"][1]["y"], a0 * 2)
    np.testing.assert_array_equal(runs["onnxrt-runner-N0"][0]["y"], a1)
    runner = ImportedRunner.from_polygraphy(path)  # picks the one TensorRT runner
    assert isinstance(runner, Runner) and runner.name == "trt-runner-N0 (polygraphy)" and len(runner) == 2
    np.testing.assert_array_equal(runner.run({"x": None})["y"], a0)
    np.testing.assert_array_equal(runner.run({"x": None})["y"], a0 * 2)
    with pytest.raises(QbenchError, match="only 2 were imported"):
        runner.run({})


def test_polygraphy_refuses_pickled_payloads(tmp_path):
    pickled = base64.b64encode(pickle.dumps(np.arange(3))).decode()
    with pytest.raises(QbenchError, match="not .npy/.npz data"):
        decode_polygraphy_array({"array": pickled, "polygraphy_class": "ndarray"})
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # an object array needs unpickling
    with pytest.raises(QbenchError, match="needs unpickling"):
        decode_polygraphy_array({"array": base64.b64encode(buf.getvalue()).decode()})
    doc = {"lst": [["trt", [{"outputs": {"y": {"tensor": "AAAA", "polygraphy_class": "Tensor"}}}]]],
           "polygraphy_class": "RunResults"}
    path = tmp_path / "torch.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(QbenchError, match="torch tensors"):
        load_polygraphy_outputs(path)


def test_imported_trtexec_runner_from_folder(tmp_path):
    for i in range(2):
        (tmp_path / f"out{i}.json").write_text(json.dumps([{"name": "y", "dimensions": "2", "values": [i, i + 0.5]}]))
    runner = ImportedRunner.from_trtexec(tmp_path)
    assert len(runner) == 2
    assert runner.run({})["y"].tolist() == [0.0, 0.5]
    assert runner.run({})["y"].tolist() == [1.0, 1.5]


def test_malformed_imported_results_are_one_clear_error(tmp_path):
    import base64
    import json

    import pytest

    from qbench.errors import QbenchError
    from qbench.runners.imported import decode_polygraphy_array, load_trtexec_outputs

    bad_values = tmp_path / "bad.json"
    bad_values.write_text(json.dumps([{"name": "y", "dimensions": "2", "values": ["a", "b"]}]))
    with pytest.raises(QbenchError, match="not a flat list of numbers"):
        load_trtexec_outputs(bad_values)
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps([{"name": "y", "dimensions": "2", "values": [[1], [2, 3]]}]))
    with pytest.raises(QbenchError, match="not a flat list of numbers"):
        load_trtexec_outputs(ragged)
    corrupt_zip = base64.b64encode(b"PK\x03\x04garbage").decode()
    with pytest.raises(QbenchError, match="corrupt|malformed"):
        decode_polygraphy_array({"array": corrupt_zip})
