"""Does a shipped format's verdict hold on many more samples than the run judged?

Runs the FP32 recognizer and the shipped explicit models of a ``qbench run`` (``<out>/fp8-best/
model_qdq.onnx`` and the other ``*-best/model_qdq.onnx``) on N freshly rendered text lines (other
seeds than the run's, exact labels) and prints each model's character error rate against the labels
and its increase over FP32, side by side in one run.

Usage: python tests/formats_holdout.py --run OUT --lines 200 [--seed 7] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]  # tests/ -> the repository root
sys.path.insert(0, str(REPO))


def cer(model, files, labels, charset) -> float:
    from qbench.judge.ctc import edit_distance, greedy_paths
    from qbench.runners import OrtRunner

    from qbench.model import ModelGraph

    runner = OrtRunner(ModelGraph.from_path(model), name="m", capture=None, optimize=False)
    errors = total = 0
    for path in files:
        out = runner.run({"x": np.load(path, allow_pickle=False)})
        scores = next(iter(out.values()))
        text = "".join(charset[i] for i in greedy_paths(scores, 0)[0])
        errors += edit_distance(text, labels[path.name])
        total += len(labels[path.name])
    return errors / max(total, 1)


def main(argv=None) -> int:
    from qbench.judge.ctc import prepare
    from qbench.model import ModelGraph
    from tests.search_textdata import recognition_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True, help="the qbench run's --out folder")
    parser.add_argument("--model", type=Path, default=None, help="the FP32 model (default: the run's fp8-best/model.onnx)")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="4 lines")
    args = parser.parse_args(argv)
    n = 4 if args.smoke else args.lines
    folders = sorted(p for p in args.run.glob("*-best") if (p / "model_qdq.onnx").is_file())
    fp32 = args.model or (folders[0] / "model.onnx" if folders else None)
    if fp32 is None:
        raise SystemExit(f"no *-best/model_qdq.onnx under {args.run}")
    graph = ModelGraph.from_path(fp32)
    # the judge's own charset rule (model metadata, PaddleOCR's appended space); blank = class 0
    options = prepare(graph, {"output": None, "blank": 0, "charset": None})
    chars = options["_chars"] + [" "]
    charset = [""] + chars
    with tempfile.TemporaryDirectory() as tmp:
        labels = recognition_folder(Path(tmp), n_lines=n, seed=args.seed)
        files = sorted(Path(tmp).glob("*.npy"))
        label = {f.name: labels[f.name] for f in files}
        base = cer(fp32, files, label, charset)
        print(f"{n} lines (seed {args.seed}); FP32 CER {base:.4f}")
        for folder in folders:
            c = cer(folder / "model_qdq.onnx", files, label, charset)
            print(f"{folder.name}: CER {c:.4f}, increase over FP32 {c - base:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
