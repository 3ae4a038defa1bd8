"""How many threads one qbench process may use: ``QBENCH_THREADS`` when set, else every core.

A sweep runs several cells at once, each in its own process. If every cell also used every core
(ONNX Runtime's intra-op pool, the histogram and comparison threads), J cells would put J x cores
threads on the cores. The sweep's workers therefore set ``QBENCH_THREADS`` to their share of the
cores, and every thread pool and ONNX Runtime session in qbench asks here. Measured on 2 cores
(benchmarks/bench_sweep.py's cells, 2 workers, three runs each): a share of 1 thread took 11.2-11.4 s,
2 threads per worker 10.4-13.8 s; not faster here, but steadier, and it bounds the threads on a large
host where J x cores would be hundreds.
"""

from __future__ import annotations

import os

ENV = "QBENCH_THREADS"


def _from_env() -> int | None:
    """``QBENCH_THREADS`` as a positive int, or None when unset or not one (then ignored)."""
    value = os.environ.get(ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cpu_threads() -> int:
    """Threads this process may use (at least 1)."""
    return _from_env() or os.cpu_count() or 1


def ort_threads(requested: int | None = None) -> int | None:
    """ONNX Runtime's ``intra_op_num_threads``: the caller's request, else the share set by
    ``QBENCH_THREADS``, else None (ONNX Runtime's own default, one per physical core)."""
    return requested or _from_env()
