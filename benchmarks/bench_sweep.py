"""A local sweep in a process pool against the same cells run one after another.

Four cells of equal size: the PP-OCR orientation classifier under two names x INT8 with two
calibrators (minmax, percentile), N generated samples each, fallback search off. Measured side by
side in one run, each into a fresh folder (nothing skipped):

  sequential - ``run_sweep(jobs=1)``: the cells one after another in this process
  pool       - ``run_sweep(jobs=2)``: the same cells, two at a time in a forkserver process pool
               (includes starting the pool and importing qbench in its workers)

One untimed cell first loads numba's cached kernels and the model files, so neither side pays it.
The two sides alternate ``--repeat`` times and each keeps its fastest run (timeit's rule: on a shared
machine the slower runs measure the neighbours, not the code).

Printed: both times and pool / sequential (target ≤ 0.6 on 2 cores; 0.5 is perfect scaling), and
what this machine allows: the same CPU-bound pure-Python loop run alone and as ``--jobs`` processes at
once gives its parallel capacity (J processes at C times one process's throughput; C = J for J
independent cores), so no pool can do better than 1/C on the cells' work. A virtual machine whose
cores are hyper-threads of one physical core, or are shared with other tenants, shows C well below J.

Usage: python benchmarks/bench_sweep.py [--samples 8] [--jobs 2] [--repeat 3] [--smoke]
  --smoke: 2 cells, 1 sample, one repetition (checks the script runs; its ratio means little)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def make_spec(folder: Path, samples: int, cells: int) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(samples):
        np.save(data / f"s{i}.npy", rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32))
    names = ["cls-a", "cls-b"] if cells == 4 else ["cls-a"]
    models = ", ".join(f'{{path = "{CLASSIFIER}", name = "{n}"}}' for n in names)
    spec = folder / "sweep.toml"
    spec.write_text(f'data = "{data}"\nlimit = {samples}\nfallback = false\nprecisions = ["int8"]\n'
                    f'calibrators = ["minmax", "percentile"]\nmodels = [{models}]\n')
    return spec


def timed_sweep(spec: Path, out: Path, *options: str) -> tuple[float, int]:
    """Wall time of ``qbench sweep SPEC OPTIONS`` in a fresh process, and its cell count (all must run)."""
    command = [sys.executable, "-m", "qbench", "sweep", str(spec), *options, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    cells = json.loads((out / "index.json").read_text())["cells"]
    if not all(c["status"] == "done" and not c.get("skipped") for c in cells):
        raise SystemExit("bench_sweep: a cell did not run")
    return elapsed, len(cells)


_SPIN = "s = 0\nfor i in range({n}): s += i * i\n"


def capacity(jobs: int, n: int = 4_000_000) -> float:
    """Throughput of ``jobs`` concurrent CPU-bound processes relative to one (``jobs`` at best)."""
    def wall(count: int) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN.format(n=n)]) for _ in range(count)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - t0

    one = min(wall(1) for _ in range(2))
    many = min(wall(jobs) for _ in range(2))
    return jobs * one / many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    samples, cells = (1, 2) if args.smoke else (args.samples, 4)
    repeat = 1 if args.smoke else max(1, args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = Path(tmp)
        spec = make_spec(root, samples, cells)
        from qbench.fleet.sweep import load_spec, run_cell

        run_cell(load_spec(spec, out=root / "warmup").cells[0])  # untimed: numba cache, file cache
        seqs, pools = [], []
        for r in range(repeat):  # alternating, each into a fresh folder
            seq, n = timed_sweep(spec, root / f"sequential{r}", "--jobs", "1")
            pool, _ = timed_sweep(spec, root / f"pool{r}", "--jobs", str(args.jobs))
            seqs.append(seq)
            pools.append(pool)
        seq, pool = min(seqs), min(pools)
        cap = capacity(args.jobs)
    print(f"cells: {n} ({samples} sample(s) each), cores: {os.cpu_count()}, jobs: {args.jobs}, "
          f"best of {repeat} run(s) each")
    print(f"sequential: {seq:.2f} s" + (f"  (runs: {', '.join(f'{t:.2f}' for t in seqs)})" if repeat > 1 else ""))
    print(f"pool:       {pool:.2f} s" + (f"  (runs: {', '.join(f'{t:.2f}' for t in pools)})" if repeat > 1 else ""))
    print(f"ratio pool / sequential: {pool / seq:.2f} (target <= 0.6)")
    print(f"this machine: {args.jobs} CPU-bound processes at once run at {cap:.2f}x the throughput of one "
          f"(independent cores: {args.jobs}x), so no pool can beat {1 / cap:.2f} on the cells' own work")


if __name__ == "__main__":
    main()
