"""Calibration engine on the real model and images: faithfulness to NVIDIA's entropy reproduction
(fetched from its wheel at test time), streaming histograms, every method, several inputs, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qbench.calibrate import (HistogramCollector, TensorHistogram, calibrate, calibration_tensors, entropy_amax,
                              percentile_amax)
from qbench.cli import main
from qbench.ranges import Ranges
from qbench.runners.ort import OrtRunner


@pytest.fixture(scope="module")
def activations(graph, small_dataset):
    """Real activations of the 4 small images, one dict per image."""
    runner = OrtRunner(graph, capture=[t.name for t in graph.float_tensors])
    return [{**runner.run(feed), **feed} for feed in small_dataset.batches(1)]


@pytest.fixture(scope="module")
def entropy_ranges(graph, small_data_dir):
    return calibrate(graph, small_data_dir, method="entropy", batch_size=2, progress=False)


def _histogram(activations, name, num_bins, growth="append"):
    hist = TensorHistogram(name, num_bins=num_bins, growth=growth)
    for acts in activations:
        hist.update(acts[name])
    return hist


def test_entropy_threshold_agrees_with_nvidia_reproduction(graph, activations, entropy_oracle):
    _compute_amax_entropy = entropy_oracle
    # tensors of different kinds: the input, a clipped activation (zero spike), a conv output, the
    # sigmoid output; histograms built by streaming 4 images (so some have grown past their first range)
    names = ["x", "p2o.Clip.1", graph.float_tensors[0].name, graph.output_names[0]]
    names += [t.name for t in graph.float_tensors[40:200:40]]
    compared = 0
    for name in names:
        hist = _histogram(activations, name, num_bins=384)  # the reference is O(bins^2) in Python
        ref = float(_compute_amax_entropy(hist.counts.copy(), hist.edges, 8, False, 1, 128))
        ours = entropy_amax(hist.counts, hist.edges)
        assert abs(ours - ref) <= hist.width * (1 + 1e-9), (name, ours, ref, hist.width)
        compared += 1
    # synthetic shapes too: heavy tail with far outliers, and half exact zeros
    rng = np.random.default_rng(3)
    for x in (np.concatenate([rng.laplace(size=50_000), [60.0, -75.0]]), np.where(rng.random(50_000) < 0.5, 0, rng.normal(size=50_000))):
        hist = TensorHistogram("synthetic", num_bins=500, growth="append")
        hist.update(x.astype(np.float32))
        ref = float(_compute_amax_entropy(hist.counts.copy(), hist.edges, 8, False, 1, 128))
        assert abs(entropy_amax(hist.counts, hist.edges) - ref) <= hist.width * (1 + 1e-9)
        compared += 1
    assert compared == len(names) + 2


def test_entropy_clips_a_long_tail():
    rng = np.random.default_rng(0)
    hist = TensorHistogram("t")
    hist.update(rng.laplace(size=1_000_000).astype(np.float32))
    assert entropy_amax(hist.counts, hist.edges) < 0.85 * hist.amax  # dense tail: clipped


def test_streaming_histogram_is_exact_and_grows_with_same_width():
    rng = np.random.default_rng(1)
    first = rng.normal(size=10_000).astype(np.float32)
    second = (rng.normal(size=10_000) * 10).astype(np.float32)
    hist = TensorHistogram("t", num_bins=2048, max_bins=1 << 20, growth="append")
    hist.update(first)
    width = hist.width
    assert width == pytest.approx(np.abs(first).max() / 2048)
    hist.update(second)
    assert hist.width == width  # extended, not rescaled (modelopt's rule)
    assert len(hist.counts) == int(np.ceil(np.abs(second).max() / width))
    # each batch is binned with the bins it knew: the first batch's maximum sits in its last bin (torch.histc)
    idx = np.concatenate([np.minimum((np.abs(b).astype(np.float64) * (1.0 / width)).astype(np.int64), top - 1)
                          for b, top in ((first, 2048), (second, len(hist.counts)))])
    np.testing.assert_array_equal(hist.counts, np.bincount(idx, minlength=len(hist.counts)))
    assert hist.minimum == min(first.min(), second.min()) and hist.maximum == max(first.max(), second.max())


def test_bin_cap_merges_pairs_exactly():
    rng = np.random.default_rng(2)
    first = rng.random(5000).astype(np.float32)
    big = (rng.random(5000) * 20).astype(np.float32)
    capped = TensorHistogram("t", num_bins=256, max_bins=1024, growth="append")
    free = TensorHistogram("t", num_bins=256, max_bins=1 << 20, growth="append")
    for h in (capped, free):
        h.update(first)
        h.update(big)
    assert len(capped.counts) <= 1024 < len(free.counts)
    factor = int(round(capped.width / free.width))
    assert factor == 2 ** capped.merges
    padded = np.concatenate([free.counts, np.zeros(-len(free.counts) % factor, dtype=np.int64)])
    np.testing.assert_array_equal(capped.counts, padded.reshape(-1, factor).sum(axis=1)[: len(capped.counts)])


def test_calibrate_entropy_covers_every_float_tensor(graph, entropy_ranges, activations):
    assert list(entropy_ranges.entries) == calibration_tensors(graph)
    assert "x" in entropy_ranges  # TensorRT caches include the network input
    assert entropy_ranges.header.endswith("-EntropyCalibration2")
    for name, entry in entropy_ranges.entries.items():
        true_max = max(float(np.abs(a[name]).max()) for a in activations)
        assert entry.samples == 4
        assert entry.summary["absmax"] == pytest.approx(true_max, rel=1e-6)
        # TensorRT's search runs over the whole (doubled) histogram, so it may pick a threshold past the maximum
        assert 0 <= entry.amax <= entry.summary["histogram_range"] * (1 + 1e-9)
        assert entry.amax >= entry.summary["histogram_range"] / 16 * (1 - 1e-9) or entry.summary["histogram_range"] == 0
    clipped = sum(e.amax < 0.99 * e.summary["absmax"] for e in entropy_ranges.entries.values())
    assert clipped > len(entropy_ranges) // 4  # entropy clips the tails of many tensors


def test_minmax_is_exact_and_independent_of_batch_size(graph, small_data_dir, activations):
    one = calibrate(graph, small_data_dir, method="minmax", batch_size=1, progress=False)
    three = calibrate(graph, small_data_dir, method="minmax", batch_size=3, progress=False)
    for name, entry in one.entries.items():
        true_max = max(float(np.abs(a[name]).max()) for a in activations)
        assert entry.amax == pytest.approx(true_max, rel=1e-6)
        assert three[name].amax == entry.amax


def test_percentile_lies_between_entropy_floor_and_max(graph, small_dataset, activations):
    name = graph.float_tensors[10].name
    hist = _histogram(activations, name, 2048)
    p = percentile_amax(hist.counts, hist.edges, 99.0)
    values = np.concatenate([np.abs(a[name]).ravel() for a in activations])
    assert abs(p - np.percentile(values, 99.0)) <= 2 * hist.width
    ranges = calibrate(graph, small_dataset, method="percentile", percentile=99.0, progress=False)
    assert ranges[name].amax == pytest.approx(p)
    assert ranges.method == "percentile-99"


def _two_input_model(path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3, "h", "w"])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3, "h", "w"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Relu", ["sum"], ["relu"]),
             helper.make_node("Mul", ["relu", "a"], ["out"])]
    model = helper.make_model(helper.make_graph(nodes, "two_inputs", [a, b], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_several_inputs_and_dynamic_shapes(tmp_path):
    _two_input_model(tmp_path / "two.onnx")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    samples = []
    for i, (h, w) in enumerate([(8, 8), (16, 12), (5, 7)]):
        s = {"a": rng.normal(size=(1, 3, h, w)).astype(np.float32), "b": (3 * rng.normal(size=(1, 3, h, w))).astype(np.float32)}
        np.savez(data / f"s{i}.npz", **s)
        samples.append(s)
    ranges = calibrate(tmp_path / "two.onnx", data, method="minmax", progress=False)
    assert set(ranges.entries) == {"a", "b", "sum", "relu", "out"}
    expect = {"a": [s["a"] for s in samples], "b": [s["b"] for s in samples]}
    expect["sum"] = [s["a"] + s["b"] for s in samples]
    expect["out"] = [np.maximum(x, 0) * s["a"] for x, s in zip(expect["sum"], samples)]
    for name, arrays in expect.items():
        assert ranges[name].amax == pytest.approx(max(float(np.abs(x).max()) for x in arrays), rel=1e-6)
    assert ranges["a"].samples == 3


def test_cli_calibrate_writes_a_cache_that_fits_the_model(model_path, small_data_dir, tmp_path, capsys, graph):
    cache = tmp_path / "out.cache"
    rc = main(["calibrate", str(model_path), "--data", str(small_data_dir), "--method", "minmax", "--limit", "2",
               "--cache", str(cache), "--json", str(tmp_path / "out.json"), "--quiet", "--trt-version", "8601"])
    assert rc == 0
    assert cache.read_bytes().startswith(b"TRT-8601-MinMaxCalibration\n")
    ranges = Ranges.read(cache, graph=graph)
    assert Ranges.read(tmp_path / "out.json").to_trt_cache() == cache.read_bytes()
    assert ranges.check_against(graph).ok and len(ranges) == len(calibration_tensors(graph))


def test_cli_calibrate_bad_input_is_one_line(model_path, tmp_path, capsys):
    rc = main(["calibrate", str(model_path), "--data", str(tmp_path / "nowhere"), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "data folder not found" in err
    rc = main(["calibrate", str(model_path), "--data", str(tmp_path), "--method", "bogus"])
    assert rc != 0


def test_collector_ignores_tensors_it_was_not_asked_for():
    collector = HistogramCollector(["t"])
    collector.add({"t": np.ones(4, np.float32), "other": np.ones(3, np.float32), "ints": np.ones(2, np.int64)}, 1)
    collector.close()
    assert collector.histograms["t"].total == 4 and set(collector.histograms) == {"t"}


def test_nan_and_inf_are_counted_and_left_out_of_the_histogram():
    # several kernel chunks (16384 values), one of them all NaN/Inf, others with a few; an Inf must
    # neither grow the histogram nor land in a bin, a NaN never reaches the bin index
    rng = np.random.default_rng(5)
    first = rng.normal(size=70_000).astype(np.float32)
    second = (rng.normal(size=70_000) * 3).astype(np.float32)
    second[:5000] = 0.0
    second[5000] = -0.0
    dirty = [first.copy(), second.copy()]
    dirty[0][[3, 20_000, 69_999]] = [np.nan, np.inf, -np.inf]
    dirty[1][16_384:32_768] = np.where(np.arange(16_384) % 2, np.inf, np.nan)
    dirty[1][[40_000, 50_000]] = [-np.inf, np.nan]
    clean = [b[np.isfinite(b)] for b in dirty]
    want, got = (TensorHistogram("clean", num_bins=512, growth="append"),
                 TensorHistogram("dirty", num_bins=512, growth="append"))
    for c, d in zip(clean, dirty):
        want.update(c)
        got.update(d)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.width == want.width and len(got.counts) > 512  # the second batch grew it
    assert got.nonfinite == 3 + 16_384 + 2 and want.nonfinite == 0
    assert got.total == want.total == sum(len(c) for c in clean)
    assert got.zeros == want.zeros == sum(int((c == 0).sum()) for c in clean)
    finite = np.concatenate(clean)
    assert got.minimum == finite.min() and got.maximum == finite.max()
    # and the clean histogram is numpy's: each batch binned with the bins it knew
    width = want.width
    idx = np.concatenate([np.minimum((np.abs(b).astype(np.float64) * (1.0 / width)).astype(np.int64), top - 1)
                          for b, top in ((clean[0], 512), (clean[1], len(want.counts)))])
    np.testing.assert_array_equal(want.counts, np.bincount(idx, minlength=len(want.counts)))


def test_all_nonfinite_first_batch_waits_for_a_finite_one():
    hist = TensorHistogram("t", num_bins=64)
    hist.update(np.array([np.nan, np.inf, -np.inf] * 10_000, dtype=np.float32))
    assert hist.counts is None and hist.nonfinite == 30_000 and hist.total == 0
    x = np.linspace(-2, 3, 40_000, dtype=np.float32)
    hist.update(x)
    assert hist.counts.sum() == x.size and hist.minimum == -2 and hist.maximum == 3


def test_calibration_session_runs_without_onnx_runtime_memory_arena():
    """Two batches of activations alive at once fragment ORT's never-shrinking arena: peak RSS then
    grows with the sample count (benchmarks/bench_calibrate.py, 256 vs 16 samples)."""
    from qbench.calibrate.collector import calibration_runner
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(Path(__file__).parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert calibration_runner(graph).session.get_session_options().enable_cpu_mem_arena is False
    assert OrtRunner(graph, capture=None).session.get_session_options().enable_cpu_mem_arena is True
