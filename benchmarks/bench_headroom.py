"""What the FP16 headroom analysis adds to an FP16 comparison (target: at most 5 %).

Side by side in one process, on the same samples, alternating rounds:
  plain    - qbench.compare.compare_precision(..., "fp16") with the headroom step switched off
  headroom - the same call as shipped: the comparison, then analyze_headroom over its FP32 extremes,
             the parameter scan and the findings
The headroom step is also timed on its own inside the shipped call, which is the steadier figure on a
shared machine: ratio = (plain + headroom step) / plain. Both ratios are printed.

Usage: python benchmarks/bench_headroom.py [--samples 4] [--rounds 2] [--smoke]
--smoke: the small PP-OCR classifier on 1 rendered sample, 1 round (what the test suite runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _smoke_case():
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(REPO / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)}]
    return graph, feeds


def _default_case(samples: int):
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    dataset = load_dataset(DEFAULT_DATA, graph.inputs)
    feeds = [f for _, f in zip(range(samples), dataset.batches(1))]
    return graph, feeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)

    from qbench.compare import entry
    from qbench.runners import OrtRunner

    graph, feeds = _smoke_case() if args.smoke else _default_case(args.samples)
    rounds = 1 if args.smoke else args.rounds
    reference = OrtRunner(graph, name="fp32")
    shipped = entry._add_headroom
    step_times: list[float] = []

    def timed_headroom(cmp, g, sim):
        t0 = time.perf_counter()
        shipped(cmp, g, sim)
        step_times.append(time.perf_counter() - t0)

    plain, full = [], []
    kwargs = dict(reference=reference, limit=len(feeds), progress=False, replay=False)
    entry.compare_precision(graph, feeds[:1], "fp16", **{**kwargs, "limit": 1})  # warm-up: numba kernels, ORT
    step_times.clear()
    try:
        for _ in range(rounds):
            entry._add_headroom = lambda cmp, g, sim: None
            t0 = time.perf_counter()
            entry.compare_precision(graph, feeds, "fp16", **kwargs)
            plain.append(time.perf_counter() - t0)
            entry._add_headroom = timed_headroom
            t0 = time.perf_counter()
            cmp = entry.compare_precision(graph, feeds, "fp16", **kwargs)
            full.append(time.perf_counter() - t0)
    finally:
        entry._add_headroom = shipped
    p, f, h = statistics.median(plain), statistics.median(full), statistics.median(step_times)
    print(f"model {graph.name}, {len(feeds)} sample(s), {rounds} round(s); {len(cmp.headroom.tensors)} tensors, "
          f"{len(cmp.headroom.parameters)} parameter risk(s)")
    print(f"plain FP16 compare {p:.3f} s, with headroom {f:.3f} s, headroom step alone {h * 1e3:.1f} ms")
    print(f"ratio (plain + headroom step) / plain = {(p + h) / p:.4f}  (target <= 1.05)")
    print(f"ratio with / without, timed side by side = {f / p:.4f}  (noisy on a shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
