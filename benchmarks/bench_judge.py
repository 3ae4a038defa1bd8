"""Cost of task evaluation in `qbench run` on the default model and data.

Measured side by side, each run in a fresh process, rounds alternating so both see the same
background load on a shared machine:
  without  - run_pipeline with task=None: the tensor comparison only (verdicts from output tensors)
  generic  - run_pipeline with the default task (generic: per output, per channel slice)
  segment  - run_pipeline as `qbench demo` judges it (segment, probability map at threshold 0.3)
Every run is the whole `qbench run` job (calibration, INT8 and FP16 comparisons, report, store)
with --no-fallback, because the fallback search runs or not depending on the verdict, which would
compare different work. The target (issue 9): task evaluation adds at most 10 % (ratio <= 1.10).

Two ratios are printed: wall-clock (what a user waits) and CPU time of the whole process, all
threads (user + system: the work done). On a shared machine wall-clock varies by tens of percent
from run to run whatever the code does; CPU time is far steadier, so it is the figure to read when
the two disagree. The seconds the judge itself took inside each comparison are printed too.

Usage: python benchmarks/bench_judge.py [--samples 4] [--rounds 3] [--size 640] [--smoke]
--smoke: 2 samples at 128x128, one round (what the test suite runs: it checks the benchmark runs
and prints its ratios, not the figures).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchlib import default_data_at, in_child

VARIANTS = {"without": (None, {}), "generic": ("generic", {}), "segment": ("segment", {"threshold": 0.3})}


def _run(variant: str, data: str, out: str, samples: int, queue) -> None:
    from qbench.defaults import DEFAULT_MODEL
    from qbench.pipeline import RunConfig, run_pipeline

    task, options = VARIANTS[variant]
    cfg = RunConfig(model=DEFAULT_MODEL, data=Path(data), out=Path(out), method="minmax", calib_limit=samples,
                    compare_limit=samples, fallback=False, progress=False, task=task, task_options=dict(options))
    t0, c0 = time.perf_counter(), _cpu()
    outcome = run_pipeline(cfg, echo=lambda _msg: None)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    judged = {p: c.meta.get("timing_s", {}).get("task", 0.0) for p, c in outcome.comparisons.items()}
    queue.put({"variant": variant, "seconds": seconds, "cpu": cpu, "task_s": judged,
               "recommendation": outcome.recommendation.precision})


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return use.ru_utime + use.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--smoke", action="store_true", help="2 samples at 128x128, one round")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.rounds, args.size = 2, 1, 128
    with tempfile.TemporaryDirectory() as tmp:
        data = default_data_at(Path(tmp) / "data", args.size)
        rounds = [{v: in_child(_run, v, str(data), str(Path(tmp) / f"{v}{r}"), args.samples) for v in VARIANTS}
                  for r in range(args.rounds)]
    best = {v: min((r[v] for r in rounds), key=lambda x: x["seconds"]) for v in VARIANTS}
    cpu = {v: min(r[v]["cpu"] for r in rounds) for v in VARIANTS}
    base = best["without"]["seconds"]
    print(f"default model, {args.size}x{args.size}, {args.samples} samples, INT8 (minmax) and FP16, no fallback; "
          f"best of {args.rounds} alternating round(s), each run a fresh process")
    print(f"{'variant':<10}{'wall s':>8}{'ratio':>8}{'CPU s':>8}{'ratio':>8}  judge inside (s)        recommendation")
    for v in VARIANTS:
        r = best[v]
        inside = ", ".join(f"{p} {s:.2f}" for p, s in r["task_s"].items()) or "-"
        print(f"{v:<10}{r['seconds']:>8.2f}{r['seconds'] / base:>8.3f}{cpu[v]:>8.2f}{cpu[v] / cpu['without']:>8.3f}"
              f"  {inside:<22}  {r['recommendation']}")
    for v in ("generic", "segment"):
        per_round = ", ".join(f"{r[v]['seconds'] / r['without']['seconds']:.3f}" for r in rounds)
        print(f"ratio {v} / without: {best[v]['seconds'] / base:.3f} wall-clock, {cpu[v] / cpu['without']:.3f} CPU time "
              f"(target <= 1.10); wall per round: {per_round}")


if __name__ == "__main__":
    main()
