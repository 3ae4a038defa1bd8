"""TensorRT calibration caches: real files from TensorRT parse and re-write byte-identically; caches
are checked against the model; every kind of bad cache gets one clear message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qbench.calibrate import calibrate
from qbench.cli import main
from qbench.errors import QbenchError
from qbench.ranges import Ranges, TensorRange, float_to_hex, hex_to_float

REAL = Path(__file__).parent / "data" / "trt_caches"
REAL_CACHES = sorted(REAL.glob("*.cache"))


@pytest.fixture(scope="module")
def our_ranges(graph, small_data_dir):
    return calibrate(graph, small_data_dir, method="entropy", limit=1, progress=False)


def test_real_caches_are_present():
    assert len(REAL_CACHES) >= 3 and (REAL / "SOURCES.md").exists()


@pytest.mark.parametrize("path", REAL_CACHES, ids=lambda p: p.stem)
def test_real_tensorrt_cache_round_trips_byte_identically(path, tmp_path):
    ranges = Ranges.read_trt_cache(path)
    assert ranges.to_trt_cache() == path.read_bytes()
    out = ranges.write_trt_cache(tmp_path / "again.cache")
    assert Ranges.read(out).to_trt_cache() == path.read_bytes()
    assert ranges.header == path.read_text().split("\n", 1)[0]


@pytest.mark.parametrize("path", REAL_CACHES, ids=lambda p: p.stem)
def test_real_tensorrt_cache_decodes_to_plausible_ranges(path):
    ranges = Ranges.read_trt_cache(path)
    amax = np.array([e.amax for e in ranges.entries.values()])
    assert len(ranges) > 50 and np.isfinite(amax).all()
    assert (amax > 1e-3).all() and (amax < 1e4).all()  # activations of real networks, not garbage
    assert 0.05 < np.median(amax) < 100
    line = path.read_text().split("\n")[1]
    name, hexbits = line.rsplit(": ", 1)
    assert ranges[name].scale == hex_to_float(hexbits) and ranges[name].amax == hex_to_float(hexbits) * 127


def test_trt10_cache_keeps_hash_order_and_internal_names():
    ranges = Ranges.read_trt_cache(REAL / "radioml_transformer_trt101000_entropy2.cache")
    assert ranges.header == "TRT-101000-EntropyCalibration2" and ranges.method == "EntropyCalibration2"
    names = list(ranges.entries)
    assert names[:3] == ["input", "/encoder/layers.0/Add_output_0", "ONNXTRT_Broadcast_191_output"]
    assert "onnx::MatMul_398_output" in ranges  # ':' inside a name


def test_our_cache_round_trips_byte_identically(our_ranges, tmp_path, graph):
    first = our_ranges.write_trt_cache(tmp_path / "a.cache").read_bytes()
    again = Ranges.read(tmp_path / "a.cache", graph=graph)
    assert again.write_trt_cache(tmp_path / "b.cache").read_bytes() == first
    for name, entry in our_ranges.entries.items():  # the cache stores float32 scales
        assert again[name].amax == pytest.approx(entry.amax, rel=1e-7)
    assert first.startswith(b"TRT-100300-EntropyCalibration2\nx: ") and first.endswith(b"\n")


def test_json_and_frame_keep_the_table(our_ranges, tmp_path):
    back = Ranges.read(our_ranges.write_json(tmp_path / "r.json"))
    assert back.to_trt_cache() == our_ranges.to_trt_cache()
    assert back["x"].summary == our_ranges["x"].summary and back["x"].samples == 1
    frame = our_ranges.to_frame()
    assert list(frame["tensor"]) == list(our_ranges.entries)
    for column in ("amax", "scale", "method", "samples", "summary_p99_99", "summary_zero_fraction", "summary_absmax"):
        assert column in frame.columns
    assert (frame["amax"] <= frame["summary_absmax"] * (1 + 1e-6) + frame["summary_bin_width"]).all()


def test_non_finite_values_survive_json(tmp_path):
    ranges = Ranges({"t": TensorRange("t", float("nan"))})
    back = Ranges.read(ranges.write_json(tmp_path / "n.json"))
    assert math.isnan(back["t"].amax)


def test_zero_and_nan_hex_decode():
    assert hex_to_float("0") == 0.0 and float_to_hex(0.0) == "0"
    assert math.isnan(hex_to_float("7fc00000")) and math.isinf(hex_to_float("7f800000"))


# -- bad caches: one clear line each ---------------------------------------------------------------
def _write(tmp_path, data: bytes) -> Path:
    p = tmp_path / "bad.cache"
    p.write_bytes(data)
    return p


def _error(path, graph) -> str:
    with pytest.raises(QbenchError) as info:
        Ranges.read(path, graph=graph)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_truncated_cache(our_ranges, tmp_path, graph):
    data = our_ranges.to_trt_cache()
    assert "truncated" in _error(_write(tmp_path, data[: len(data) // 2]), graph)  # cut mid-line
    cut_in_hex = data.rstrip(b"\n")[:-3]
    assert "truncated" in _error(_write(tmp_path, cut_in_hex), graph)


def test_wrong_header(our_ranges, tmp_path, graph):
    data = our_ranges.to_trt_cache().replace(b"TRT-100300-EntropyCalibration2", b"TensorRT cache v1", 1)
    assert "not a TensorRT calibration cache" in _error(_write(tmp_path, data), graph)
    assert "not a TensorRT calibration cache" in _error(_write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00"), graph)
    assert "not a TensorRT calibration cache" in _error(_write(tmp_path, b""), graph)


def test_foreign_model_cache(graph):
    message = _error(REAL / "retina_plate_trt8501_entropy2.cache", graph)
    assert "made for another model" in message and graph.name in message


def test_nan_negative_infinite_and_absurd_ranges(our_ranges, tmp_path, graph):
    name = list(our_ranges.entries)[5]
    for value, words in ((float("nan"), "NaN"), (-1.0, "negative"), (float("inf"), "infinite"), (1e9, "absurdly large")):
        bad = our_ranges.with_override(name, value)
        message = _error(bad.write_trt_cache(tmp_path / "bad.cache"), graph)
        assert words in message and name in message


def test_zero_and_missing_ranges_are_reported_not_hidden(our_ranges, graph):
    name = list(our_ranges.entries)[7]
    entries = dict(our_ranges.entries)
    del entries[list(entries)[3]]
    ranges = Ranges(entries).with_override(name, 0.0)
    check = ranges.check_against(graph)
    assert check.ok  # usable: TensorRT itself writes 0 for all-zero tensors
    notes = " | ".join(check.warnings)
    assert name in notes and "every value quantizes to 0" in notes and "have no range" in notes
    assert len(check.missing) == 1


def test_internal_tensorrt_names_are_not_unknown(graph):
    ranges = Ranges.read_trt_cache(REAL / "radioml_transformer_trt101000_entropy2.cache")
    check = ranges.check_against(graph)
    assert any(n.startswith("ONNXTRT_Broadcast") for n in check.internal)
    assert not any(n.startswith("ONNXTRT_") for n in check.unknown)


def test_duplicate_tensor_is_corrupt(tmp_path, graph):
    message = _error(_write(tmp_path, b"TRT-8601-EntropyCalibration2\nx: 3c010204\nx: 3c010204\n"), graph)
    assert "appears twice" in message


def test_cli_check_ranges(tmp_path, model_path, capsys):
    assert main(["check-ranges", str(REAL / "vgg16_trt8400_minmax.cache"), "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qbench: error: ") and "made for another model" in err and err.count("\n") == 1
