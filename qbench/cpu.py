"""How many threads one qbench process may use: ``QBENCH_THREADS`` when set, else every core.

A sweep runs several cells at once, each in its own process; if every cell also used every core
(ONNX Runtime's intra-op pool, the histogram and comparison threads), J cells would run J x cores
threads on the cores and lose time to switching and cache thrashing (measured: a 2-cell pool on
2 cores ran each cell 1.7x slower than alone). The sweep's workers therefore set ``QBENCH_THREADS``
to their share of the cores, and every thread pool and ONNX Runtime session in qbench asks here.
"""

from __future__ import annotations

import os

ENV = "QBENCH_THREADS"


def cpu_threads() -> int:
    """Threads this process may use (at least 1)."""
    value = os.environ.get(ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def ort_threads(requested: int | None = None) -> int | None:
    """ONNX Runtime's ``intra_op_num_threads``: the caller's request, else the share set by
    ``QBENCH_THREADS``, else None (ONNX Runtime's own default, one per physical core)."""
    if requested:
        return requested
    value = os.environ.get(ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
