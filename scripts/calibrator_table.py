"""The table in docs/CALIBRATION.md: every calibrator's thresholds and the INT8 top-1 accuracy it
gives on the PP-OCR text-direction classifier, with labelled text lines rendered here (tests/textlines.py).

    PYTHONPATH=. python scripts/calibrator_table.py [--calib 32] [--eval 128]

Calibration lines and evaluation lines are different renderings (seeds 0 and 1). INT8 is the ONNX
Runtime Q/DQ simulation with the implicit-INT8 placement (likely and worst), not TensorRT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from textlines import CLASSIFIER, labelled_lines  # noqa: E402

from qbench.calibrate import METHODS, collect, ranges_from_histograms  # noqa: E402
from qbench.model import ModelGraph  # noqa: E402
from qbench.runners import OrtRunner  # noqa: E402
from qbench.simulate import build_int8_model  # noqa: E402


def accuracy(graph, model, x, y) -> float:
    out = OrtRunner(ModelGraph(model, name="m") if model is not None else graph).run({"x": x})[graph.output_names[0]]
    return float((out.argmax(1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--eval", type=int, default=128)
    args = parser.parse_args()
    graph = ModelGraph.from_path(CLASSIFIER)
    cx, _ = labelled_lines(args.calib, seed=0)
    ex, ey = labelled_lines(args.eval, seed=1)
    first_relu = next(n.output[0] for n in graph.model.graph.node if n.op_type == "Relu")
    print(f"FP32 top-1 on {args.eval} lines: {accuracy(graph, None, ex, ey):.1%}; first ReLU output: {first_relu!r}\n")
    print("| calibrator | histogram | batch | first ReLU amax / max | median amax / max | INT8 top-1 (likely) | INT8 top-1 (worst) |")
    print("|---|---|---|---|---|---|---|")
    settings = [("append", 1), ("double", 1), ("double", args.calib)]
    for growth, batch in settings:
        feeds = ({"x": cx[i:i + batch]} for i in range(0, len(cx), batch))
        collector = collect(graph, feeds, growth=growth, progress=False)
        runs = [(m, "modelopt") for m in METHODS] + [("entropy", "gtc")]
        if growth == "append":
            runs = [("entropy", "modelopt")]
        for method, variant in runs:
            ranges = ranges_from_histograms(collector.histograms, method, entropy_variant=variant)
            ratios = [e.amax / e.summary["absmax"] for e in ranges.entries.values() if e.summary.get("absmax")]
            relu = ranges[first_relu]
            accs = [accuracy(graph, build_int8_model(graph, ranges, placement=p).model, ex, ey) for p in ("likely", "worst")]
            print(f"| {ranges.method} ({ranges.header.split('-', 2)[2]}) | {growth} | {batch} | "
                  f"{relu.amax:.3g} / {relu.summary['absmax']:.3g} | {np.median(ratios):.2f} | {accs[0]:.1%} | {accs[1]:.1%} |",
                  flush=True)


if __name__ == "__main__":
    main()
