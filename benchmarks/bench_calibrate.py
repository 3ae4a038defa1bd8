"""Calibration speed and memory, measured side by side in one run (ratios, not absolute targets).

    python benchmarks/bench_calibrate.py [--large 256] [--skip-ort-calibrator]

Each measurement runs in a fresh child process (so peak RSS is its own, and every contender pays its
own session creation and warm-up):
  pass      one ONNX Runtime pass over the 16 images at 640x640 with every float activation exposed
  qbench    qbench entropy calibration over the same 16 images (that pass + streaming histograms + KL)
  ortcal    onnxruntime.quantization.calibrate's Entropy calibrator over the same 16 images
  qbench-N  qbench entropy calibration over N samples (the 16 images cycled), for memory flatness
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path


def _feeds(n: int):
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(DEFAULT_MODEL)
    ds = load_dataset(DEFAULT_DATA, graph.inputs)
    return graph, (ds.sample(i) for i in islice(cycle(range(len(ds))), n))


def child(kind: str, n: int) -> dict:
    start = time.perf_counter()
    if kind == "pass":
        from qbench.calibrate.collector import _CalibrationSession

        # the very session calibration uses (all float activations exposed, no spin-waiting), so the
        # ratio isolates what calibration adds on top of running the model
        graph, feeds = _feeds(n)
        runner = _CalibrationSession(graph)
        for feed in feeds:
            runner.run(feed)
    elif kind == "qbench":
        from qbench.calibrate import calibrate

        graph, feeds = _feeds(n)
        calibrate(graph, feeds, method="entropy", progress=False)
    elif kind == "ortcal":
        from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

        graph, feeds = _feeds(n)

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(feeds, None)

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(graph.model.SerializeToString())
            calibrator = create_calibrator(path, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=CalibrationMethod.Entropy)
            calibrator.collect_data(Reader())
            calibrator.compute_data()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} x{n} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {kind:<8} n={n:<4} {result['seconds']:8.2f} s   peak RSS {result['peak_rss_mb']:8.0f} MB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2)
    parser.add_argument("--large", type=int, default=256)
    parser.add_argument("--skip-ort-calibrator", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    measure("qbench", 1)  # compiles the numba kernels into their on-disk cache, not timed below
    print("measurements (each in a fresh process, 640x640 images):")
    one_pass = measure("pass", 16)
    ours = measure("qbench", 16)
    print(f"entropy calibration / one ORT pass with all activations exposed: {ours['seconds'] / one_pass['seconds']:.2f}x  (target <= 2.5x)")
    if not args.skip_ort_calibrator:
        theirs = measure("ortcal", 16)
        print(f"ORT entropy calibrator / qbench entropy calibration: {theirs['seconds'] / ours['seconds']:.2f}x faster  (target >= 5x); "
              f"memory {theirs['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x less")
    large = measure("qbench", args.large)
    print(f"peak RSS at {args.large} samples / at 16: {large['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x  (target <= 1.2x)")


if __name__ == "__main__":
    main()
