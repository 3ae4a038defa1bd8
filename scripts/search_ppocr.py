"""Reproduce the figures of docs/SEARCH.md: the INT8 search on two real PP-OCR models with exact labels.

    python scripts/search_ppocr.py [--lines 48] [--out reports/search-ppocr] [--only cls|rec]

Orientation classifier (tests/data/models): text lines rendered on crops of the bundled photos,
each upright (0) and turned (180); the shipped int8-best/model_qdq.onnx is run in ONNX Runtime and
its top-1 accuracy compared with FP32's on the judging part and on all samples. Recognizer
(rapidocr-onnxruntime's PP-OCRv4 CTC model): rendered strings; character error rate of the shipped
model against FP32's decoded text on the judging part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from search_textdata import orientation_folder, recognition_folder  # noqa: E402

from qbench.data import load_dataset  # noqa: E402
from qbench.model import ModelGraph  # noqa: E402
from qbench.search import SearchOptions, find_int8  # noqa: E402
from qbench.search.holdout import subset  # noqa: E402

CLS = ROOT / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def classifier(out: Path, lines: int, max_float: int, methods=None) -> dict:
    data_dir = out / "cls-data"
    labels = orientation_folder(data_dir, lines)
    graph = ModelGraph.from_path(CLS)
    data = load_dataset(data_dir, graph.inputs)
    t = time.perf_counter()
    o = find_int8(graph, data, out / "cls", SearchOptions(task="classify", labels=data_dir / "labels.json",
                                                           max_float=max_float, methods=methods), model_path=CLS, echo=print)
    seconds = time.perf_counter() - t
    fp32, int8 = _session(CLS), _session(o.folder / "model_qdq.onnx")

    def accuracy(sess, indices):
        return float(np.mean([np.argmax(sess.run(None, data.sample(i))[0]) == labels[data.files[i].name] for i in indices]))

    judge_idx, all_idx = list(o.holdout.judge), list(range(len(data)))
    fig = {"model": "PP-OCR orientation classifier", "samples": len(data), "judging": len(judge_idx),
           "calibrator": o.best.calibrator, "keep_float": o.best.keep_float, "layers_quantized": o.best.layers_quantized,
           "float_share": o.best.float_share, "verdict": o.best.result.verdict, "reason": o.best.result.reason,
           "fp32_acc_judging": accuracy(fp32, judge_idx), "int8_acc_judging": accuracy(int8, judge_idx),
           "fp32_acc_all": accuracy(fp32, all_idx), "int8_acc_all": accuracy(int8, all_idx),
           "sweep": o.rows()[["candidate", "verdict", "primary", "value"]].to_dict("records"), "seconds": round(seconds, 1)}
    fig["drop_points_judging"] = 100 * (fig["fp32_acc_judging"] - fig["int8_acc_judging"])
    fig["drop_points_all"] = 100 * (fig["fp32_acc_all"] - fig["int8_acc_all"])
    return fig


def recognizer(out: Path, lines: int, max_float: int, with_labels: bool = False) -> dict:
    import rapidocr_onnxruntime

    from qbench.judge.ctc import edit_distance, greedy_paths

    rec = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    data_dir = out / "rec-data"
    recognition_folder(data_dir, lines)
    graph = ModelGraph.from_path(rec)
    data = load_dataset(data_dir, graph.inputs)
    t = time.perf_counter()
    # judged against FP32's decoded text by default (the target is CER vs FP32); --rec-labels judges
    # against the rendered strings instead
    o = find_int8(graph, data, out / "rec", SearchOptions(task="ctc", labels=data_dir / "labels.json" if with_labels else None,
                                                           max_float=max_float), model_path=rec, echo=print)
    seconds = time.perf_counter() - t
    charset = {p.key: p.value for p in graph.model.metadata_props}["character"].splitlines() + [" "]

    def text(sess, i):
        path = greedy_paths(sess.run(None, data.sample(i))[0], 0)[0]
        return "".join(charset[k - 1] if 0 < k <= len(charset) else "" for k in path).strip()

    fp32, int8 = _session(rec), _session(o.folder / "model_qdq.onnx")
    ref = [text(fp32, i) for i in o.holdout.judge]
    got = [text(int8, i) for i in o.holdout.judge]
    truth = [json.loads((data_dir / "labels.json").read_text())[data.files[i].name] for i in o.holdout.judge]
    cer = sum(edit_distance(g, r) for g, r in zip(got, ref)) / max(1, sum(len(r) for r in ref))
    cer_fp32_labels = sum(edit_distance(r, t) for r, t in zip(ref, truth)) / sum(len(t) for t in truth)
    cer_int8_labels = sum(edit_distance(g, t) for g, t in zip(got, truth)) / sum(len(t) for t in truth)
    return {"model": "PP-OCRv4 recognizer (CTC)", "samples": len(data), "judging": len(ref),
            "calibrator": o.best.calibrator, "keep_float": o.best.keep_float, "layers_quantized": o.best.layers_quantized,
            "float_share": o.best.float_share, "verdict": o.best.result.verdict, "reason": o.best.result.reason,
            "cer_vs_fp32_judging": cer, "cer_fp32_vs_labels": cer_fp32_labels, "cer_int8_vs_labels": cer_int8_labels,
            "sweep": o.rows()[["candidate", "verdict", "primary", "value"]].to_dict("records"),
            "sentence": o.sentence(), "seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=48)
    p.add_argument("--out", type=Path, default=Path("reports/search-ppocr"))
    p.add_argument("--only", choices=["cls", "rec"], default=None)
    p.add_argument("--max-float", type=int, default=8)
    p.add_argument("--rec-labels", action="store_true", help="judge the recognizer against the labels, not FP32")
    p.add_argument("--methods", default=None, help="comma-separated calibrators to sweep (default: all); "
                   "e.g. 'entropy' to make the classifier need the mixed search")
    a = p.parse_args()
    figures = {}
    if a.only in (None, "cls"):
        figures["classifier"] = classifier(a.out, a.lines, a.max_float, a.methods.split(",") if a.methods else None)
    if a.only in (None, "rec"):
        figures["recognizer"] = recognizer(a.out, a.lines, a.max_float, a.rec_labels)
    print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
