"""Cost of the layer-by-layer comparison on the default model and data (640x640).

Measured side by side, each stage in a fresh process so that its peak RSS is its own:
  runs     - FP32 reference and simulated INT8 (or FP16) candidate, every float tensor captured, N samples
             (the floor: what any layer-wise comparison must pay)
  compare  - qbench.compare.compare_precision on the same N samples: the same runs plus metrics,
             per-sample rows, diagnosis and the culprit replay (which re-runs the reference once)
  compare1 - the same on 1 sample: if samples are streamed, peak RSS does not grow with N

Usage: python benchmarks/bench_compare.py [--samples N] [--rounds 3] [--method minmax] [--precision int8|fp16]
       python benchmarks/bench_compare.py --smoke   # 1 sample at 128x128, 1 round: checks the script runs
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchlib import default_data_at, in_child


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _stage(kind: str, samples: int, ranges_path: str, precision: str, data: str, queue) -> None:
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    dataset = load_dataset(data, graph.inputs)
    ranges = Ranges.read(ranges_path)
    jit_load = 0.0
    if kind != "runs":
        # numba loads its compiled kernels from the on-disk cache at their first call, once per
        # process; that fixed cost is timed and printed on its own, not mixed into the per-sample ratio
        import numpy as np

        from qbench.compare import kernels
        from qbench.compare.metrics import pair_sums

        t_jit = time.perf_counter()
        tiny = np.ones(8, np.float32)
        pair_sums(tiny, tiny)
        kernels.int8_counts(tiny, np.float32(1), np.float32(1 / 127))
        kernels.fp16_counts(tiny, kernels.FP16_OVERFLOW_AT, kernels.FP16_FLUSH_AT)
        jit_load = time.perf_counter() - t_jit
    before = _rss_mb()
    t0 = time.perf_counter()
    if kind == "runs":
        from qbench.runners import OrtRunner
        from qbench.simulate import build_fp16_model, build_int8_model

        sim = build_int8_model(graph, ranges) if precision == "int8" else build_fp16_model(graph)
        names = [t.name for t in graph.float_tensors]
        # the same runners as compare_precision builds
        reference = OrtRunner(graph, name="fp32")
        candidate = OrtRunner(sim.model, name=precision, capture=names, optimize=False)
        floats = 0
        t_setup = time.perf_counter() - t0
        for feed in dataset.batches(1, limit=samples):
            ref = reference.run(feed)
            cand = candidate.run(feed)
            floats = sum(v.size for v in ref.values())
            del ref, cand
        extra = {"floats_per_run": floats, "setup": t_setup}
    else:
        from qbench.compare import compare_precision

        cmp = compare_precision(graph, dataset, precision, ranges, limit=samples, progress=False)
        extra = {"timing": cmp.meta["timing_s"], "replay": cmp.meta["replay"].get("replayed"), "jit_load": jit_load,
                 "status": cmp.meta["status_counts"]}
    queue.put({"kind": kind, "samples": samples, "seconds": time.perf_counter() - t0, "rss_before_mb": before,
               "peak_rss_mb": _rss_mb(), **extra})


def _calibrate(samples: int, method: str, path: str, data: str, queue) -> None:
    from qbench.calibrate import calibrate
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    calibrate(graph, load_dataset(data, graph.inputs), method=method, limit=samples, progress=False).write_json(path)
    queue.put({})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="minmax", help="calibration method for the INT8 ranges (not timed)")
    parser.add_argument("--precision", default="int8", choices=("int8", "fp16"))
    parser.add_argument("--smoke", action="store_true", help="1 sample at 128x128, 1 round: only checks that it runs")
    args = parser.parse_args()
    from qbench.defaults import DEFAULT_DATA

    with tempfile.TemporaryDirectory() as tmp:
        data, size = str(DEFAULT_DATA), "640x640"
        if args.smoke:
            args.samples, args.rounds, data, size = 1, 1, str(default_data_at(Path(tmp) / "small", 128)), "128x128 (smoke)"
        ranges = str(Path(tmp) / "ranges.json")
        in_child(_calibrate, args.samples, args.method, ranges, data)
        # alternate the two stages and keep each one's fastest round: the machine is shared, and
        # interleaving exposes both to the same background load
        p = args.precision
        rounds = [(in_child(_stage, "runs", args.samples, ranges, p, data),
                   in_child(_stage, "compare", args.samples, ranges, p, data)) for _ in range(args.rounds)]
        one = in_child(_stage, "compare", 1, ranges, p, data)
    runs = min((r for r, _ in rounds), key=lambda r: r["seconds"])
    full = min((c for _, c in rounds), key=lambda c: c["seconds"])
    what = f"INT8 ({args.method} ranges)" if args.precision == "int8" else "FP16"
    print(f"default model, {size}, {args.samples} samples, FP32 vs simulated {what}; "
          f"{runs['floats_per_run'] / 1e6:.0f} M floats captured per run; best of {args.rounds} alternating rounds")
    print(f"{'stage':<24}{'seconds':>9}{'peak RSS MB':>13}{'RSS after imports':>19}")
    for label, r in (("two runs, capture all", runs), (f"full compare (N={args.samples})", full), ("full compare (N=1)", one)):
        print(f"{label:<24}{r['seconds']:>9.2f}{r['peak_rss_mb']:>13.0f}{r['rss_before_mb']:>19.0f}")
    print("all rounds (runs s, compare s): " + ", ".join(f"({r['seconds']:.2f}, {c['seconds']:.2f})" for r, c in rounds))
    t = full["timing"]
    print(f"compare / runs time ratio (best vs best): {full['seconds'] / runs['seconds']:.2f} (budget 1.5); "
          "per round: " + ", ".join(f"{c['seconds'] / r['seconds']:.2f}" for r, c in rounds))
    print(f"inside the compare process: runs {t['runs']:.2f} s, metrics {t['metrics']:.2f} s (overlapped with the next "
          f"sample's runs; runs waited {t['metrics_wait']:.2f} s for them), replay {t['replay']:.2f} s")
    print(f"replayed nodes: {full['replay']}; statuses: {full['status']}")
    print(f"one-time numba kernel load in the compare process, before timing: {full['jit_load']:.2f} s "
          f"(with it, the ratio would be {(full['seconds'] + full['jit_load']) / runs['seconds']:.2f})")
    print(f"peak RSS, compare N={args.samples} vs N=1: {full['peak_rss_mb']:.0f} vs {one['peak_rss_mb']:.0f} MB; "
          f"two runs alone: {runs['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
