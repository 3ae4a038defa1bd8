"""Imported once by the sweep's forkserver, before it forks any worker: the heavy imports (ONNX
Runtime, pandas, matplotlib, the qbench stages) and numba's cached kernels are loaded there, so each
worker starts with them instead of paying seconds per worker. Nothing here may fail a sweep: a
kernel that cannot be warmed is simply loaded later, in the worker, as without this module."""

from __future__ import annotations

import contextlib

import numpy as np
import onnxruntime  # noqa: F401

import qbench.calibrate  # noqa: F401
import qbench.compare  # noqa: F401
import qbench.pipeline  # noqa: F401
import qbench.report  # noqa: F401
import qbench.simulate  # noqa: F401
from qbench.calibrate.histogram import TensorHistogram
from qbench.compare import kernels
from qbench.compare.metrics import pair_sums


def _warm_kernels() -> None:
    tiny = np.linspace(-1, 1, 64, dtype=np.float32)
    for step in (lambda: pair_sums(tiny, tiny * 0.5),
                 lambda: kernels.int8_counts(tiny, np.float32(1), np.float32(1 / 127)),
                 lambda: kernels.fp16_counts(tiny, kernels.FP16_OVERFLOW_AT, kernels.FP16_FLUSH_AT),
                 lambda: [TensorHistogram("warm").update(tiny * k) for k in (1, 100)]):
        with contextlib.suppress(Exception):
            step()


_warm_kernels()
