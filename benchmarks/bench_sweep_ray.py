"""A sweep over two one-CPU Ray worker nodes against the same cells run one after another.

The cluster: a head with no CPUs (it runs no cell) and two worker nodes of one CPU each, every node
its own raylet and object store, on 127.0.0.1 (``ray.cluster_utils.Cluster``: the processes that
``ray start`` starts). It stands before the timing starts, as a cluster does: its start-up is
printed, not counted. The cells are bench_sweep.py's (the PP-OCR orientation classifier under two
names x INT8 x minmax and percentile, N generated samples each, fallback search off). Measured side
by side in one run, each into a fresh folder, as the command a user types, each in a fresh process:

  sequential - ``qbench sweep SPEC --jobs 1``: the cells one after another on this machine
  ray        - ``qbench sweep SPEC --ray ADDRESS``: the same cells as Ray tasks (one CPU each) on
               the two worker nodes (includes the driver joining the cluster)

The sides alternate ``--repeat`` times and each keeps its fastest run (timeit's rule: on a shared
machine the slower runs measure the neighbours). Every Ray sweep starts its own worker processes (Ray ties
workers to the driver's job and ends them with it), so each pays qbench's import on every node, as
the sequential side pays it once. Also printed: what the machine allows (bench_sweep.capacity: J CPU-bound processes at once
against one), peak memory of a cell (the sequential sweep's process, one cell at a time; each Ray
cell's row: its Ray worker's peak), and cells per hour per core.

Usage: python benchmarks/bench_sweep_ray.py [--samples 8] [--repeat 3] [--smoke]
  --smoke: 2 cells, 1 sample, one repetition (checks the script runs; its ratio means little)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench_sweep import capacity, make_spec, timed_sweep

NODE_OBJECT_STORE = 80 * 2**20  # cells return a small dict: nothing else goes through the object store


def start_cluster(workers: int):
    """A head without CPUs and ``workers`` one-CPU nodes on 127.0.0.1; (cluster, seconds it took)."""
    from ray.cluster_utils import Cluster  # heavy third-party import: only this benchmark needs it

    t0 = time.perf_counter()
    local = {"node_ip_address": "127.0.0.1", "object_store_memory": NODE_OBJECT_STORE}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **local})
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=1, **local)
        cluster.wait_for_nodes(timeout=120)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, time.perf_counter() - t0


def cell_peaks_mb(out: Path) -> list[float]:
    """Each cell's peak memory as its row records it (its worker process's peak RSS when it ended)."""
    cells = json.loads((out / "index.json").read_text())["cells"]
    return [c["peak_rss_mb"] for c in cells if c.get("peak_rss_mb") is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    samples, cells = (1, 2) if args.smoke else (args.samples, 4)
    repeat = 1 if args.smoke else max(1, args.repeat)
    nodes = 2
    with tempfile.TemporaryDirectory(prefix="bench_sweep_ray_") as tmp:
        root = Path(tmp)
        spec = make_spec(root, samples, cells)
        from qbench.fleet.sweep import load_spec, run_cell

        run_cell(load_spec(spec, out=root / "warmup").cells[0])  # untimed: numba cache, file cache
        cluster, startup = start_cluster(nodes)
        try:
            seqs, rays, seq_peak = [], [], 0.0
            for r in range(repeat):  # alternating, each into a fresh folder
                seq, n = timed_sweep(spec, root / f"sequential{r}", "--jobs", "1")
                if r == 0:  # the only child waited for so far: the sequential sweep's own peak (KiB on Linux)
                    seq_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                ray_t, _ = timed_sweep(spec, root / f"ray{r}", "--ray", cluster.address)
                seqs.append(seq)
                rays.append(ray_t)
            peaks = cell_peaks_mb(root / "ray0")
        finally:
            cluster.shutdown()
        cap = capacity(nodes)
    seq, ray_best = min(seqs), min(rays)
    runs = (lambda ts: f"  (runs: {', '.join(f'{t:.2f}' for t in ts)})" if len(ts) > 1 else "")
    print(f"cells: {n} ({samples} sample(s) each), cores: {os.cpu_count()}, Ray worker nodes: {nodes} x 1 CPU "
          f"(+ a head with none), best of {repeat} run(s) each")
    print(f"cluster start-up (not timed below): {startup:.1f} s")
    print(f"sequential: {seq:.2f} s" + runs(seqs))
    print(f"ray:        {ray_best:.2f} s" + runs(rays))
    print(f"ratio ray / sequential: {ray_best / seq:.2f} (target <= 0.6)")
    print(f"this machine: {nodes} CPU-bound processes at once run at {cap:.2f}x the throughput of one "
          f"(independent cores: {nodes}x), so no cluster on it can beat {1 / cap:.2f} on the cells' own work")
    print(f"peak memory: sequential sweep process {seq_peak:.0f} MB (one cell at a time, imports included); "
          f"Ray worker per cell {', '.join(f'{p:.0f}' for p in peaks) or 'n/a'} MB")
    print(f"cells per hour per core: ray {n * 3600 / ray_best / nodes:.0f} (on {nodes} cores), "
          f"sequential {n * 3600 / seq / (os.cpu_count() or 1):.0f} (on {os.cpu_count()} cores)")


if __name__ == "__main__":
    sys.exit(main())
