"""TensorRT-faithful calibration on the real models: the 1/16 threshold floor of 2048-bin histograms
whose range doubles, the guide's late-reallocation case and its warning, every calibrator from one
pass, cache headers per calibrator, and the provenance sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qbench.calibrate import (METHODS, TensorHistogram, calibrate, calibrate_many, collect, legacy_amax, mse_amax,
                              ranges_from_histograms)
from qbench.cli import main
from qbench.data import load_dataset
from qbench.model import ModelGraph
from textlines import CLASSIFIER, labelled_lines, write_npy_folder


@pytest.fixture(scope="module")
def classifier():
    return ModelGraph.from_path(CLASSIFIER)


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory):
    lines, _ = labelled_lines(8, seed=3)
    return write_npy_folder(tmp_path_factory.mktemp("lines"), lines)


def _floor_holds(ranges) -> list[str]:
    """Tensors whose entropy threshold is below 1/16 of their histogram's range."""
    return [n for n, e in ranges.entries.items()
            if e.summary.get("histogram_range", 0) > 0 and e.amax < e.summary["histogram_range"] / 16 * (1 - 1e-9)]


def test_entropy_threshold_floor_on_the_classifier(classifier, lines_dir):
    data = load_dataset(lines_dir, classifier.inputs)
    for batch_size in (1, len(data)):
        ranges = calibrate(classifier, data, method="entropy", batch_size=batch_size, progress=False)
        assert ranges.provenance["batch_size"] == batch_size and len(ranges) > 100
        assert _floor_holds(ranges) == [], batch_size
    # the bin-appending reproduction (the old default) does go below the floor at batch size 1
    appended = calibrate(classifier, data, method="entropy", batch_size=1, growth="append", progress=False)
    assert _floor_holds(appended)


@pytest.mark.slow
def test_entropy_threshold_floor_on_the_detector(graph, small_dataset):
    for batch_size in (1, len(small_dataset)):
        ranges = calibrate(graph, small_dataset, method="entropy", batch_size=batch_size, progress=False)
        assert _floor_holds(ranges) == [], batch_size


def test_default_batch_is_one_large_batch(classifier, lines_dir):
    ranges = calibrate(classifier, lines_dir, method="minmax", progress=False)
    assert ranges.provenance["batch_size"] == 8 and ranges.provenance["batches"] == 1


def test_late_reallocation_warns(classifier, lines_dir, tmp_path, capsys):
    # the guide's case: a batch late in calibration holds values far past the range of the early ones
    folder = tmp_path / "late"
    folder.mkdir()
    for i, path in enumerate(sorted(lines_dir.glob("*.npy"))):
        x = np.load(path)
        np.save(folder / path.name, x * (4.0 if i == 7 else 1.0))
    cache = tmp_path / "late.cache"
    rc = main(["calibrate", str(CLASSIFIER), "--data", str(folder), "--batch-size", "1", "--cache", str(cache), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "range doubled in the last quarter of the 8 calibration batches" in err and "'x'" in err
    sidecar = json.loads((tmp_path / "late.cache.provenance.json").read_text())
    assert sidecar["notes"] and sidecar["batch_size"] == 1
    # the same data in one batch: nothing to reallocate
    ranges = calibrate(classifier, folder, method="entropy", progress=False)
    assert ranges.notes == []
    hist = TensorHistogram("x")
    for scale in (1, 1, 1, 3):
        hist.update(np.linspace(-scale, scale, 1000, dtype=np.float32))
    assert hist.reallocations == [4] and len(hist.counts) == 2048 and hist.range == pytest.approx(4.0)
    assert hist.counts[1024:].sum() == 1000 * 3 // 6 or hist.counts[:1024].sum() > hist.counts[1024:].sum()


def test_all_calibrators_from_one_pass(classifier, lines_dir, monkeypatch):
    from qbench.runners.ort import OrtRunner

    runs = []
    original = OrtRunner.run
    monkeypatch.setattr(OrtRunner, "run", lambda self, feed: runs.append(1) or original(self, feed))
    every = calibrate_many(classifier, lines_dir, methods=METHODS, batch_size=2, progress=False)
    assert len(runs) == 4  # 8 samples in batches of 2: one ONNX Runtime pass
    assert set(every) == set(METHODS)
    headers = {m: r.header.split("-", 2)[2] for m, r in every.items()}
    assert headers == {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "legacy": "LegacyCalibration",
                       "percentile": "EntropyCalibration2", "mse": "EntropyCalibration2"}
    single = calibrate(classifier, lines_dir, method="entropy", batch_size=2, progress=False)
    assert {n: e.amax for n, e in single.entries.items()} == {n: e.amax for n, e in every["entropy"].entries.items()}
    for name, entry in every["minmax"].entries.items():
        assert every["percentile"][name].amax <= entry.amax + entry.summary["bin_width"] + 1e-9
        assert every["legacy"][name].amax <= entry.amax + 1e-9  # a quantile of per-batch maxima


def test_mse_amax_minimises_the_real_quantization_error():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.laplace(size=200_000), rng.laplace(size=50) * 40]).astype(np.float32)
    hist = TensorHistogram("t")
    hist.update(x)
    best = mse_amax(hist.counts, hist.width)

    def error(amax):
        step = amax / 127
        return float(np.mean((np.clip(np.round(x / step), -127, 127) * step - x) ** 2))

    grid = np.linspace(hist.amax / 100, hist.amax, 200)
    assert error(best) <= min(error(a) for a in grid) * 1.02  # the true optimum, to 2 %
    assert error(best) < 0.8 * error(hist.amax) and error(best) < 0.5 * error(hist.amax / 30)


def test_legacy_quantile_and_regression():
    peaks = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert legacy_amax(peaks, 0.5, 1.0) == 3.0  # the median batch maximum
    assert legacy_amax(peaks, 1.0, 1.0) == 10.0
    assert 0 < legacy_amax(peaks, 0.5, 0.3) <= 10.0


def test_entropy_variants_measured_on_the_classifier(classifier, lines_dir):
    collector = collect(classifier, load_dataset(lines_dir, classifier.inputs).batches(8), progress=False)
    modelopt = ranges_from_histograms(collector.histograms, "entropy")
    gtc = ranges_from_histograms(collector.histograms, "entropy", entropy_variant="gtc")
    assert gtc.method == "entropy-gtc"
    steps = [abs(gtc[n].amax - e.amax) / e.summary["bin_width"] for n, e in modelopt.entries.items() if e.summary["bin_width"]]
    # the conventions move a threshold by half a bin at least, and agree on most tensors to a few bins
    assert min(steps) >= 0.5 - 1e-6 and np.median(steps) < 8


def test_provenance_sidecar_and_check_ranges(classifier, lines_dir, tmp_path, capsys, graph):
    ranges = calibrate(classifier, lines_dir, method="minmax", progress=False)
    cache = ranges.write_trt_cache(tmp_path / "cls.cache")
    sidecar = json.loads((tmp_path / "cls.cache.provenance.json").read_text())
    assert sidecar["model_digest"] == classifier.digest and sidecar["calibrator"] == "MinMaxCalibration"
    assert sidecar["batch_size"] == 8 and sidecar["samples"] == 8 and sidecar["data_digest"]
    assert {"qbench", "onnxruntime"} <= set(sidecar["versions"])
    from qbench.ranges import Ranges

    back = Ranges.read(cache, graph=classifier)
    assert back.provenance_warnings(classifier) == []
    assert any("another model" in w for w in back.provenance_warnings(graph))
    other = tmp_path / "other"
    write_npy_folder(other, labelled_lines(2, seed=9)[0])
    rc = main(["check-ranges", str(cache), "--model", str(CLASSIFIER), "--data", str(other), "--trt-version", "8601"])
    out = capsys.readouterr().out
    assert rc == 0 and "provenance:" in out and "other data" in out and "TensorRT 10.x, used with TensorRT 8.x" in out
    (tmp_path / "cls.cache.provenance.json").unlink()
    main(["check-ranges", str(cache), "--model", str(CLASSIFIER)])
    assert "no provenance sidecar" in capsys.readouterr().out
