"""Calibration: per-tensor INT8 ranges from representative data, computed on the CPU the way
TensorRT's calibrators compute them, streamed one batch at a time.

``calibrate(model, data, method="entropy")`` returns a ``qbench.ranges.Ranges``; write it with
``.write_trt_cache(path)`` or ``.write_json(path)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.calibrate.collector import HistogramCollector, calibration_tensors, collect
from qbench.calibrate.entropy import entropy_amax, entropy_divergences
from qbench.calibrate.histogram import MAX_BINS, NUM_BINS, TensorHistogram
from qbench.calibrate.methods import DEFAULT_PERCENTILE, METHODS, TRT_ALGORITHM, amax_for, check_method, check_percentile, percentile_amax
from qbench.model import ModelGraph
from qbench.ranges import DEFAULT_TRT_VERSION, Ranges, TensorRange

__all__ = [
    "calibrate", "ranges_from_histograms", "collect", "calibration_tensors", "HistogramCollector", "TensorHistogram",
    "entropy_amax", "entropy_divergences", "percentile_amax", "amax_for", "METHODS", "NUM_BINS", "MAX_BINS",
]


def calibrate(model: str | Path | ModelGraph, data, *, method: str = "entropy", batch_size: int = 1,
              limit: int | None = None, percentile: float = DEFAULT_PERCENTILE, num_bins: int = NUM_BINS,
              max_bins: int = MAX_BINS, threads: int | None = None, progress: bool = True,
              trt_version: str = DEFAULT_TRT_VERSION) -> Ranges:
    """Ranges for every float tensor of ``model`` from the samples in ``data``.

    ``data``: a data folder (images + manifest.json, or .npy/.npz), a ``qbench.data.Dataset``, or an
    iterable of ``{input name: batch array}`` feeds (then ``batch_size``/``limit`` do not apply).
    """
    check_method(method)
    if method == "percentile":
        check_percentile(percentile)
    graph = model if isinstance(model, ModelGraph) else ModelGraph.from_path(model)
    batches, total = _batches(graph, data, batch_size, limit)
    collector = collect(graph, batches, num_bins=num_bins, max_bins=max_bins, threads=threads,
                        progress=progress, total=total)
    ranges = ranges_from_histograms(collector.histograms, method, percentile=percentile, trt_version=trt_version)
    ranges.model = graph.digest
    return ranges


def ranges_from_histograms(histograms: dict[str, TensorHistogram], method: str, *,
                           percentile: float = DEFAULT_PERCENTILE, trt_version: str = DEFAULT_TRT_VERSION) -> Ranges:
    check_method(method)
    label = f"percentile-{percentile:g}" if method == "percentile" else method
    entries = {}
    for name, hist in histograms.items():
        if hist.batches == 0:
            continue  # never produced (e.g. a non-float tensor at run time)
        amax = amax_for(hist, method, percentile)
        entries[name] = TensorRange(name, amax, method=label, samples=hist.samples,
                                    observed_min=hist.minimum if hist.total else None,
                                    observed_max=hist.maximum if hist.total else None, summary=hist.summary())
    return Ranges(entries, method=label, header=f"TRT-{trt_version}-{TRT_ALGORITHM[method]}")


def _batches(graph: ModelGraph, data, batch_size: int, limit: int | None):
    from qbench.data import Dataset, load_dataset

    if isinstance(data, (str, Path)):
        data = load_dataset(data, graph.inputs)
    if isinstance(data, Dataset):
        total = len(data) if limit is None else min(limit, len(data))
        return data.batches(batch_size, limit), total
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        return [data], None
    return iter(data), None
