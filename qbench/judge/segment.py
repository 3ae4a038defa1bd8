"""segment: class maps and probability maps judged by the pixels a user would see.

* **Class maps** — an integer output (a model ending in ArgMax, as tf2onnx segmentation exports
  often do), or the argmax over the class axis of a float output with more than one class: pixel
  agreement with FP32 (pooled over samples: equal pixels / pixels) and mean IoU over the classes
  present in either map. No cosine is involved, so an int64 map never yields NaN.
* **Probability maps** — a float output with one channel (a DB text detector's [B, 1, H, W] map):
  the mask p >= ``threshold`` (0.3, DB's binarisation threshold) of FP32 and of the candidate, their
  IoU and Dice per sample; the verdict reads the IoU pooled over samples (total intersection /
  total union). Two empty masks agree (IoU 1): on a text-free image a candidate that also finds
  nothing is right, and one that finds something raises a false alarm (counted apart).

Verdict: pixel agreement (class maps, default 0.98) or pooled mask IoU (probability maps, default
0.8) >= ``min_agreement``; interval from a bootstrap over samples hulled with the Wilson interval
of the pooled counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Summary, check_shapes
from qbench.judge.generic import channel_axis
from qbench.judge.outputs import pick_output
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "output": None,
    "mode": "auto",          # auto | classes | probability
    "class_axis": None,      # float class scores: default the smaller of axis 1 and the last axis
    "threshold": 0.3,        # probability maps: mask = p >= threshold
    "min_agreement": None,   # None: 0.98 pixel agreement (class maps), 0.8 mean mask IoU (probability maps)
}
_DEFAULT_TOLERANCE = {"classes": 0.98, "probability": 0.8}


def prepare(graph, options: dict) -> dict:
    o = dict(options)
    o["output"] = pick_output(graph, o["output"], "segment", lambda n, s, e: s is None or len(s) >= 3)
    if o["mode"] not in ("auto", "classes", "probability"):
        raise QbenchError(f"segment: mode must be auto, classes or probability, not {o['mode']!r}")
    return o


def _class_map(x: np.ndarray, axis) -> np.ndarray:
    if x.dtype.kind in "iub":
        return x.astype(np.int64)
    a = channel_axis(x.shape, axis)
    return np.argmax(np.nan_to_num(x.astype(np.float64), nan=-np.inf), axis=a)


class SegmentAccumulator(Accumulator):
    def __init__(self, judge) -> None:
        super().__init__(judge)
        self.mode = None
        self.inter: dict = {}  # class -> pooled intersection (class maps)
        self.union: dict = {}

    def _mode(self, x: np.ndarray) -> str:
        mode = self.options["mode"]
        if mode != "auto":
            return mode
        if x.dtype.kind in "iub":
            return "classes"
        a = channel_axis(x.shape, self.options["class_axis"])
        if x.ndim >= 4 and a is not None and x.shape[a] > 1:
            return "classes"
        return "probability"

    def measure(self, index, name, ref, cand, feed, label) -> dict:
        out = self.options["output"]
        check_shapes("segment", out, ref[out], cand[out])
        r, c = np.asarray(ref[out]), np.asarray(cand[out])
        if self.mode is None:
            self.mode = self._mode(r)
        new_nonfinite = int(np.count_nonzero(np.isfinite(r) & ~np.isfinite(c))) if c.dtype.kind == "f" else 0
        if self.mode == "classes":
            rm, cm = _class_map(r, self.options["class_axis"]), _class_map(c, self.options["class_axis"])
            equal = int(np.count_nonzero(rm == cm))
            ious = []
            for k in np.union1d(np.unique(rm), np.unique(cm)):
                a, b = rm == k, cm == k
                inter, union = int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b))
                self.inter[int(k)] = self.inter.get(int(k), 0) + inter
                self.union[int(k)] = self.union.get(int(k), 0) + union
                ious.append(inter / union)
            return {"pixels": int(rm.size), "equal": equal, "pixel_agreement": equal / rm.size if rm.size else 1.0,
                    "mean_iou": float(np.mean(ious)) if ious else 1.0, "new_nonfinite": new_nonfinite}
        thr = float(self.options["threshold"])
        a = np.asarray(r, dtype=np.float64) >= thr
        b = np.asarray(c, dtype=np.float64) >= thr  # NaN compares False: a NaN pixel is no text
        inter, union = int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b))
        na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
        return {"fp32_pixels": na, "cand_pixels": nb, "inter": inter, "union": union, "mask_iou": inter / union if union else 1.0,
                "dice": 2 * inter / (na + nb) if na + nb else 1.0, "false_alarm": int(na == 0 and nb > 0),
                "missed": int(na > 0 and nb == 0), "new_nonfinite": new_nonfinite}

    def _tolerance(self) -> float:
        value = self.options["min_agreement"]
        return float(_DEFAULT_TOLERANCE[self.mode or "probability"] if value is None else value)

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = len(frame)
        notes = []
        if n and int(frame["new_nonfinite"].sum()):
            notes.append(f"{int(frame['new_nonfinite'].sum())} NaN/Inf value(s) new in the candidate")
        if self.mode == "classes":
            equal, pixels = (float(frame[k].sum()) for k in ("equal", "pixels")) if n else (0.0, 0.0)
            value = equal / pixels if pixels else float("nan")
            ious = [self.inter[k] / self.union[k] for k in self.union if self.union[k]]
            metrics = {"pixel_agreement": value, "mean_iou": float(np.mean(ious)) if ious else float("nan"), "classes_seen": len(self.union)}
            ev = Evidence("ratio", num=tuple(frame["equal"]), den=tuple(frame["pixels"]), n=n, counts=True) if n else Evidence("point")
            return Summary(metrics, "pixel_agreement", "pixel agreement with FP32", value, self._tolerance(),
                           "min_agreement", True, ev, notes)
        inter, union = (float(frame[k].sum()) for k in ("inter", "union")) if n else (0.0, 0.0)
        # pooled over the data set (total intersection / total union, as segmentation benchmarks
        # count IoU): a text-free image where both masks are empty adds nothing, one where the
        # candidate alone marks pixels adds only union — a false alarm lowers the IoU
        value = inter / union if union else (1.0 if n else float("nan"))
        metrics = {"mask_iou": value}
        if n:
            metrics.update(mean_sample_iou=float(frame["mask_iou"].mean()), dice=float(frame["dice"].mean()),
                           false_alarms=int(frame["false_alarm"].sum()), missed=int(frame["missed"].sum()),
                           empty_in_both=int((frame["union"] == 0).sum()))
            if metrics["false_alarms"]:
                notes.append(f"{metrics['false_alarms']} false alarm(s): the candidate marks pixels where FP32 marks none")
            if not union:
                notes.append(f"neither FP32 nor the candidate marks any pixel at threshold {self.options['threshold']:g}")
        ev = Evidence("ratio", num=tuple(frame["inter"]), den=tuple(frame["union"]), n=n, counts=True) if union else Evidence("point")
        return Summary(metrics, "mask_iou", f"mask IoU at threshold {self.options['threshold']:g}", value,
                       self._tolerance(), "min_agreement", True, ev, notes)
