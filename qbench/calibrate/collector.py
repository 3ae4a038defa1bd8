"""Run the model over the calibration batches with every float activation exposed, and fold each
batch into per-tensor histograms while the next batch runs, so memory stays that of two batches
whatever the sample count.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable

import numpy as np

from qbench.calibrate.histogram import GROWTH, MAX_BINS, NUM_BINS, TensorHistogram
from qbench.cpu import cpu_threads
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.runners import OrtRunner


def calibration_tensors(graph: ModelGraph) -> list[str]:
    """Tensors that get a range (``ModelGraph.range_tensors``, shared with ``Ranges.check_against``)."""
    return list(graph.range_tensors)


class HistogramCollector:
    """Accumulates one ``TensorHistogram`` per tensor from ``{name: array}`` batches."""

    def __init__(self, names: Iterable[str], num_bins: int = NUM_BINS, max_bins: int = MAX_BINS,
                 threads: int | None = None, growth: str = "double"):
        if num_bins < 2:
            raise QbenchError(f"a histogram needs at least 2 bins, not {num_bins}")
        if growth not in GROWTH:
            raise QbenchError(f"unknown histogram growth {growth!r}; choose one of {', '.join(GROWTH)}")
        self.histograms = {n: TensorHistogram(n, num_bins, max(max_bins, num_bins), growth) for n in names}
        self.samples = 0
        self.batches = 0
        # numba kernels release the GIL: tensors are folded in parallel threads
        self._pool = ThreadPoolExecutor(max_workers=threads or cpu_threads())

    def add(self, values: dict[str, np.ndarray], batch_samples: int) -> None:
        for f in self.submit(values, batch_samples):
            f.result()

    def submit(self, values: dict[str, np.ndarray], batch_samples: int) -> list[Future]:
        """Start folding one batch and return at once; the caller must wait for these futures before
        it submits the next batch (a histogram takes its batches in order, one at a time)."""
        work = [(self.histograms[n], a) for n, a in values.items()
                if n in self.histograms and isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size]
        work.sort(key=lambda item: -item[1].size)  # big tensors first balances the threads
        futures = [self._pool.submit(h.update, a, batch_samples) for h, a in work]
        self.samples += batch_samples
        self.batches += 1
        return futures

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def collect(graph: ModelGraph, batches: Iterable[dict[str, np.ndarray]], *, num_bins: int = NUM_BINS,
            max_bins: int = MAX_BINS, threads: int | None = None, progress: bool = True,
            total: int | None = None, growth: str = "double") -> HistogramCollector:
    """One ONNX Runtime pass over ``batches``; returns the filled collector."""
    names = calibration_tensors(graph)
    collector = HistogramCollector(names, num_bins, max_bins, threads, growth)
    # no spin-waiting in ORT's pool (OrtRunner's default): the histogram threads need those cores
    runner = calibration_runner(graph)
    bar = _progress(total, progress)
    pending: list[Future] = []
    try:
        for feed in batches:
            # batch i is folded while ONNX Runtime computes batch i+1: at most two batches alive
            outputs = runner.run(feed)
            n = _batch_size(feed)
            outputs.update({k: v for k, v in feed.items() if k in collector.histograms})
            for f in pending:
                f.result()
            pending = collector.submit(outputs, n)
            del outputs
            if bar is not None:
                bar.update(n)
        for f in pending:
            f.result()
    finally:
        for f in pending:
            f.cancel()
        if bar is not None:
            bar.close()
        collector.close()
    if collector.samples == 0:
        raise QbenchError("no calibration samples: the data folder yielded no batches")
    return collector


def calibration_runner(graph: ModelGraph) -> OrtRunner:
    """The session calibration runs: every float activation exposed (the benchmark times it alone).
    No memory arena: two batches of activations are alive at once, in an order that varies with the
    fold threads, and ONNX Runtime's arena, which never shrinks, fragmented under that: peak RSS grew
    with the sample count (PP-OCRv4 det at 640x640: 1417 MB at 16 images, 1588 MB at 128, 1687 MB at
    256, so about 1 MB per image). Without it 1414 MB at 16 and 1516 MB at 256 (benchmarks/README.md),
    for about 5 % more time."""
    return OrtRunner(graph, name="calibration", capture="all", arena=False)


def late_reallocations(histograms: dict[str, TensorHistogram], batches: int) -> dict[str, list[int]]:
    """Tensors whose histogram range grew in the last quarter of ``batches`` (TensorRT's guide warns
    that such a tensor ends with most of its data in the lower bins): name -> those batch numbers."""
    if batches < 4:
        return {}  # with so few batches every batch is a large share of the data
    first_late = batches - max(1, batches // 4) + 1  # 1-based: the first batch of the last quarter
    late = {}
    for name, hist in histograms.items():
        hits = [b for b in hist.reallocations if b >= first_late]
        if hits:
            late[name] = hits
    return late


def _batch_size(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()))
    return int(first.shape[0]) if first.ndim else 1


def _progress(total: int | None, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="calibrating", unit="sample", leave=False)
