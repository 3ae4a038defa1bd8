"""Cost of the sensitivity step plus the mixed-precision search vs one `qbench compare` of the same samples.

On the default model (PP-OCRv4 text detector) and N of the bundled images, with the same ranges:
  compare - qbench.compare.compare_precision(..., "int8"): FP32 and INT8 runs with every float
            tensor captured, metrics, diagnosis and culprit replay (what `qbench compare` runs)
  search  - qbench.search: one gated model and session, every quantized layer's two variants
            ("only it in float", "only it quantized") judged by the task judge, then the mixed
            search from that ranking (grow, bisect, prune; at most --max-float layers)
Both on the same N samples, in this process, one after the other; the ratio search / compare is
printed (target: at most 10x). --smoke: 1 sample at 128x128 and a ratio printed, no target enforced.

Usage: python benchmarks/bench_search.py [--samples 2] [--size 640] [--max-float 8] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchlib import default_data_at

TARGET = 10.0


def measure(samples: int, size: int, max_float: int, layers: int | None = None) -> dict:
    from qbench.compare import compare_precision
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph
    from qbench.search import mixed
    from qbench.search.judging import Reference, make_task_judge
    from qbench.search.models import quantized_layers
    from qbench.search.sensitivity import GatedRunner, local_noise, measure as sensitivity, screen
    from qbench.search.sweep import calibrate_all

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset(default_data_at(Path(tmp) / "data", size, samples), graph.inputs)
        candidates, histograms = calibrate_all(graph, data, ("minmax",))
        ranges = candidates["minmax"]
        t0 = time.perf_counter()
        compare_precision(graph, data, "int8", ranges, progress=False)
        t_compare = time.perf_counter() - t0
        t0 = time.perf_counter()
        reference = Reference(graph, data, part="benchmark samples")
        every = quantized_layers(graph)
        noise = local_noise(graph, ranges, histograms, every)
        order = screen(every, noise, (), layers)
        only = None if layers is None or layers >= len(every) else order
        runner = GatedRunner(graph, ranges, reference, make_task_judge("segment", graph), only=only)
        sens = sensitivity(runner, graph, all_layers=every, noise=noise, order=order)
        found = mixed.search(runner, sens.ranked(), max_float=max_float, start_result=sens.int8)
        t_search = time.perf_counter() - t0
    return {"samples": samples, "size": size, "layers": len(runner.layers), "of_layers": len(every), "variants": sens.runs,
            "sets_judged": len(found.table), "compare_s": round(t_compare, 2), "search_s": round(t_search, 2),
            "sensitivity_s": round(sens.seconds, 2), "ratio": round(t_search / t_compare, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--max-float", type=int, default=8)
    p.add_argument("--layers", type=int, default=16,
                   help="layers measured by the task (--sensitivity-layers); 0: every layer")
    p.add_argument("--smoke", action="store_true", help="1 sample at 128x128: checks the benchmark runs")
    a = p.parse_args(argv)
    if a.smoke:
        a.samples, a.size = 1, 128
    r = measure(a.samples, a.size, a.max_float, a.layers or None)
    print(f"compare (one qbench compare, {r['samples']} sample(s) at {r['size']}x{r['size']}): {r['compare_s']:.2f} s")
    print(f"sensitivity + search ({r['layers']} of {r['of_layers']} layers measured, {r['variants']} variants, {r['sets_judged']} sets judged): "
          f"{r['search_s']:.2f} s (sensitivity {r['sensitivity_s']:.2f} s)")
    verdict = "" if a.smoke else (" (target <= 10x: " + ("met" if r["ratio"] <= TARGET else "MISSED") + ")")
    print(f"ratio search / compare: {r['ratio']:.2f}x{verdict}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
