"""Latency and throughput of an engine: ``measure(runner, feed)`` times ``warmup + iterations`` calls
of the runner (``TrtRunner.time_ms``: Polygraphy's per-inference time, enqueue to stream synchronised,
outputs left on the device) and ``summarize`` turns the per-iteration milliseconds into median, mean and
percentiles, and throughput from the median. Polygraphy times on the host, so each figure includes the
launch overhead that CUDA events would leave out (docs/TENSORRT.md). Never run on real TensorRT;
``summarize`` is plain arithmetic and tested on the CPU.
"""

from __future__ import annotations

import numpy as np

from qbench.errors import QbenchError

PERCENTILES = (50, 90, 95, 99)


def summarize(times_ms, batch_size: int = 1) -> dict:
    t = np.asarray(list(times_ms), dtype=np.float64)
    if t.size == 0:
        raise QbenchError("no timed iterations")
    median = float(np.median(t))
    out = {"iterations": int(t.size), "batch_size": int(batch_size), "mean_ms": float(t.mean()),
           "min_ms": float(t.min()), "max_ms": float(t.max()), "median_ms": median}
    for p in PERCENTILES[1:]:
        out[f"p{p}_ms"] = float(np.percentile(t, p))
    out["throughput_per_s"] = batch_size * 1000.0 / median if median > 0 else float("inf")
    return out


def measure(runner, feed: dict, *, warmup: int = 20, iterations: int = 200) -> dict:
    if warmup < 0 or iterations < 1:
        raise QbenchError("warm-up must be >= 0 and iterations >= 1")
    batch = int(np.shape(next(iter(feed.values())))[0]) if feed else 1
    return summarize(runner.time_ms(feed, warmup=warmup, iterations=iterations), batch)
