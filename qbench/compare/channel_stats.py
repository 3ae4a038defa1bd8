"""Per-channel activation statistics for a format that needs them (AWQ's activation-aware INT4
scales, qbench.simulate.w4a16): one FP32 ONNX Runtime pass over the samples, capturing only the
named tensors, accumulating per channel of the LAST axis (a MatMul's reduction axis) the mean of
|x| and of x^2. Running sums per channel only, so memory does not grow with the samples."""

from __future__ import annotations

import numpy as np

from qbench.data import iter_samples
from qbench.model import ModelGraph
from qbench.runners import OrtRunner


def channel_moments(graph: ModelGraph, dataset, names, limit: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tensor -> (mean |x_k|, mean x_k^2) over every sample and every position but the last axis."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    runner = OrtRunner(graph, name="fp32", capture=names)
    sums: dict[str, list] = {}
    for feed in iter_samples(dataset, limit):
        out = runner.run(feed)
        for name in names:
            value = out.get(name, feed.get(name))
            if value is None:
                continue
            x = np.asarray(value, np.float64)
            rows = x.reshape(-1, x.shape[-1])
            entry = sums.setdefault(name, [np.zeros(rows.shape[1]), np.zeros(rows.shape[1]), 0])
            entry[0] += np.abs(rows).sum(axis=0)
            entry[1] += (rows * rows).sum(axis=0)
            entry[2] += rows.shape[0]
    return {name: (a / n, q / n) for name, (a, q, n) in sums.items() if n}
