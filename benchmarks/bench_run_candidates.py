"""Several candidates for the price of one FP32 pass, and `qbench run`'s peak memory against the samples.

Two measurements, every contender in a fresh process (its own imports, sessions and peak RSS), on
the embedded PP-OCRv4 detector and the bundled images:

1. Candidates (issue 22 item 6): the comparison stage of `qbench run` over the same N samples, with
     int8   - the INT8 candidate alone (one FP32 and one INT8 run per sample);
     all    - every candidate the run can have, in one pass (qbench.compare.stream): the FP32
              reference once per sample, then each candidate;
     apart  - the same candidates compared one after another, the FP32 reference recomputed for
              each (what `qbench run` did before).
   The candidates are issue 22's four, INT8, FP8, FP16 and BF16 (``--candidates`` takes any names of
   the format table, ``NAME-worst`` for a format's worst mode), named on the ratio line. Target:
   `all` / `int8` <= 2.8 for those four (4 if the reference were recomputed per candidate).
2. Memory: `qbench run` (calibration, every comparison, the INT8 search with its sensitivity and
   mixed search under a fixed time budget, the FP16 stage, report, store) at 16 and at 64 samples
   (the bundled images cycled). Target: peak RSS at 64 / at 16 <= 1.2.

Usage: python benchmarks/bench_run_candidates.py [--size 320] [--samples 8] [--small 16] [--large 64]
       python benchmarks/bench_run_candidates.py --smoke   # 128x128, 2 samples; memory at 2 vs 4 samples, INT8 only, --no-fallback
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchlib import default_data_cycled, in_child


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


CANDIDATES = ("int8", "fp8", "fp16", "bf16")  # issue 22's run with four candidates


def candidate_names(requested=CANDIDATES) -> list[str]:
    """``requested`` checked against the table of formats: each must be a simulated format (or its
    worst mode), so the benchmark never times a candidate qbench cannot simulate."""
    from qbench.simulate import formats

    simulated = set(formats.names())
    unknown = [n for n in requested if n.removesuffix("-worst") not in simulated]
    if unknown:
        raise SystemExit(f"bench_run_candidates: not a simulated format: {', '.join(unknown)}")
    return list(requested)


def _jobs(graph, dataset, ranges, names, limit):
    from qbench.compare import compare_precision

    peaks = {n: ranges.amax(n) for n in ranges.entries}

    def job(name):
        precision, mode = (name[:-len("-worst")], "worst") if name.endswith("-worst") else (name, "likely")
        extra = {"fp16_mode": mode, "peaks": peaks} if mode == "worst" else {}
        return lambda reference, stream: compare_precision(graph, dataset, precision, ranges, reference=reference,
                                                           stream=stream, limit=limit, progress=False, **extra)

    return [job(n) for n in names]


def _compare(kind: str, data: str, ranges_path: str, samples: int, requested, queue) -> None:
    from qbench.compare.stream import compare_together
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges
    from qbench.runners import OrtRunner

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    dataset = load_dataset(data, graph.inputs)
    ranges = Ranges.read(ranges_path)
    names = ["int8"] if kind == "int8" else candidate_names(requested)
    _warm_kernels()
    reference = OrtRunner(graph, name="fp32")
    t0 = time.perf_counter()
    jobs = _jobs(graph, dataset, ranges, names, samples)
    if kind == "apart":
        results = [job(reference, None) for job in jobs]
    else:
        results = compare_together(reference, dataset, jobs, limit=samples, progress=False)
    seconds = time.perf_counter() - t0
    queue.put({"kind": kind, "seconds": seconds, "peak_mb": _peak_mb(), "names": names,
               "verdicts": [r.task.verdict if r.task is not None else "-" for r in results]})


def _warm_kernels() -> None:
    """numba loads its kernels at their first call, once per process: not part of any ratio."""
    import numpy as np

    from qbench.compare import kernels
    from qbench.compare.metrics import pair_sums

    tiny = np.ones(8, np.float32)
    pair_sums(tiny, tiny)
    kernels.int8_counts(tiny, np.float32(1), np.float32(1 / 127))
    kernels.fp16_counts(tiny, kernels.FP16_OVERFLOW_AT, kernels.FP16_FLUSH_AT)


def _run(data: str, out: str, search_s: float, smoke: bool, queue) -> None:
    from qbench.defaults import DEFAULT_MODEL
    from qbench.pipeline import RunConfig, run_pipeline

    cfg = RunConfig(model=DEFAULT_MODEL, data=Path(data), out=Path(out), method="minmax", progress=False,
                    search_time_s=search_s, sensitivity_layers=2)
    if smoke:  # the script runs end to end in the suite's time: INT8 alone, the calibrator sweep only
        cfg.precisions, cfg.fallback = ("int8",), False
    t0 = time.perf_counter()
    outcome = run_pipeline(cfg, echo=lambda _msg: None)
    queue.put({"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(),
               "candidates": [c for c in outcome.comparisons]})


def _calibrate(data: str, path: str, queue) -> None:
    from qbench.calibrate import calibrate
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    calibrate(graph, load_dataset(data, graph.inputs), method="minmax", progress=False).write_json(Path(path))
    queue.put(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--samples", type=int, default=8, help="samples of the candidates comparison")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--search-time", type=float, default=20.0, help="search budget of each `qbench run` (s)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated candidates of the one pass (formats of qbench.simulate.formats)")
    parser.add_argument("--no-memory", action="store_true", help="the candidates' timing only, no qbench runs")
    parser.add_argument("--smoke", action="store_true", help="128x128, 2 samples, one round, memory at 2 vs 4 samples")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.samples, args.rounds, args.small, args.large, args.search_time = 128, 2, 1, 2, 4, 5.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = default_data_cycled(tmp / "data", args.size, args.samples)
        ranges = in_child(_calibrate, str(data), str(tmp / "ranges.json"))
        requested = tuple(n.strip() for n in args.candidates.split(",") if n.strip())
        rounds = [{k: in_child(_compare, k, str(data), ranges, args.samples, requested) for k in ("int8", "all", "apart")}
                  for _ in range(args.rounds)]
        runs = {}
        for n in (args.small, args.large) if not args.no_memory else ():
            folder = default_data_cycled(tmp / f"data{n}", args.size, n)
            runs[n] = in_child(_run, str(folder), str(tmp / f"out{n}"), args.search_time, args.smoke)
    best = {k: min(r[k]["seconds"] for r in rounds) for k in ("int8", "all", "apart")}
    names = rounds[0]["all"]["names"]
    print(f"default model, {args.size}x{args.size}; comparison of {args.samples} samples, best of {args.rounds} "
          "alternating round(s), each contender a fresh process")
    print(f"{'contender':<10}{'seconds':>9}{'peak RSS MB':>13}  candidates")
    for k in ("int8", "all", "apart"):
        r = min((r[k] for r in rounds), key=lambda x: x["seconds"])
        print(f"{k:<10}{r['seconds']:>9.2f}{r['peak_mb']:>13.0f}  {', '.join(r['names'])} ({', '.join(r['verdicts'])})")
    per_round = ", ".join(f"{r['all']['seconds'] / r['int8']['seconds']:.2f}/{r['apart']['seconds'] / r['int8']['seconds']:.2f}"
                          for r in rounds)
    print(f"per round, one pass / int8 and recomputed / int8: {per_round}")
    print(f"ratio {len(names)} candidates in one pass ({', '.join(names)}) / int8 alone: {best['all'] / best['int8']:.2f} "
          f"(target <= 2.8 for 4 candidates); recomputing FP32 per candidate: {best['apart'] / best['int8']:.2f}; "
          f"one pass / recomputed: {best['all'] / best['apart']:.2f}")
    if args.no_memory:
        return
    small, large = runs[args.small], runs[args.large]
    print(f"qbench run at {args.small} samples: {small['seconds']:.1f} s, peak RSS {small['peak_mb']:.0f} MB; "
          f"at {args.large}: {large['seconds']:.1f} s, peak RSS {large['peak_mb']:.0f} MB "
          f"(candidates {', '.join(large['candidates'])}; "
          + (f"search budget {args.search_time:g} s)" if not args.smoke else "--no-fallback; smoke)"))
    print(f"ratio peak RSS at {args.large} / at {args.small} samples: {large['peak_mb'] / small['peak_mb']:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
