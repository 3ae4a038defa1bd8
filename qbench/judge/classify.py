"""classify: does the candidate pick the same class as FP32 (and, with labels, the right one)?

A single score per row is a binary classifier (p > 0.5, or logit > 0). Per sample (each batch row
is one trial): top-1 agreement (argmax equal), top-5 agreement (the
FP32 top-1 class among the candidate's five best), and the drop of FP32's top class probability
(softmax applied when the output holds logits; argmax is the same for logits and probabilities).
With class labels: accuracy of FP32 and of the candidate on the same samples, and the accuracy
drop, whose interval is the paired-difference interval of Agresti & Min (verdict.py).

Verdict: without labels, top-1 agreement (Wilson) >= ``min_agreement``; with labels, accuracy drop
<= ``max_drop``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Summary, check_shapes
from qbench.judge.outputs import is_float_type, looks_like_probabilities, pick_output, softmax
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "output": None,          # output holding the scores (default: the first float output)
    "class_axis": None,      # default: the last axis longer than 1
    "min_agreement": 0.99,   # top-1 agreement with FP32 (no labels)
    "max_drop": 0.01,        # accuracy drop against labels
}


def prepare(graph, options: dict) -> dict:
    options = dict(options)
    options["output"] = pick_output(graph, options["output"], "classify", lambda n, s, e: is_float_type(e))
    return options


def _rows(x: np.ndarray, axis) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise QbenchError("classify: the scores output is a scalar; choose the output with `output`")
    if axis is None:
        long = [i for i in range(1, x.ndim) if x.shape[i] > 1] or [x.ndim - 1]
        axis = long[-1]
    x = np.moveaxis(x, int(axis), -1)
    x = x.reshape(-1, x.shape[-1])
    if x.shape[1] == 1:
        # one score per row: a binary classifier behind a sigmoid (p) or before it (logit z);
        # as two classes [1-p, p] or [0, z] its argmax is the decision p > 0.5 or z > 0
        finite = x[np.isfinite(x)]
        prob = finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
        x = np.concatenate([1.0 - x, x] if prob else [np.zeros_like(x), x], axis=1)
    return x


class ClassifyAccumulator(Accumulator):
    def measure(self, index, name, ref, cand, feed, label) -> dict:
        out = self.options["output"]
        check_shapes("classify", out, ref[out], cand[out])
        r = _rows(ref[out], self.options["class_axis"])
        c = _rows(cand[out], self.options["class_axis"])
        c_clean = np.where(np.isfinite(c), c, -np.inf)
        ref_top = np.argmax(r, axis=1)
        cand_top = np.argmax(c_clean, axis=1)
        k = min(5, r.shape[1])
        cand_top5 = np.argpartition(-c_clean, k - 1, axis=1)[:, :k]
        top5 = np.any(cand_top5 == ref_top[:, None], axis=1)
        pr = r if looks_like_probabilities(r) else softmax(r)
        pc = c if looks_like_probabilities(c) else softmax(c_clean)
        rows = np.arange(r.shape[0])
        prob_drop = pr[rows, ref_top] - np.nan_to_num(pc[rows, ref_top], nan=0.0)
        row = {"rows": r.shape[0], "top1_agree": int(np.sum(ref_top == cand_top)), "top5_agree": int(np.sum(top5)),
               "top1_agreement": float(np.mean(ref_top == cand_top)), "top5_agreement": float(np.mean(top5)),
               "fp32_class": int(ref_top[0]), "cand_class": int(cand_top[0]), "prob_drop": float(np.max(prob_drop))}
        if label is not None:
            if r.shape[0] != 1:
                raise QbenchError(f"classify: sample {name!r} holds {r.shape[0]} rows but one class label; use batch size 1 with labels")
            if int(label) >= r.shape[1]:
                raise QbenchError(f"classify: label {label} of {name!r} is outside the model's {r.shape[1]} classes")
            row.update(label=int(label), fp32_correct=int(ref_top[0] == label), cand_correct=int(cand_top[0] == label))
        return row

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = int(frame["rows"].sum()) if len(frame) else 0
        k1 = float(frame["top1_agree"].sum()) if n else 0.0
        k5 = float(frame["top5_agree"].sum()) if n else 0.0
        metrics = {"top1_agreement": k1 / n if n else float("nan"), "top5_agreement": k5 / n if n else float("nan"),
                   "max_prob_drop": float(frame["prob_drop"].max()) if n else float("nan")}
        common = dict(rank_column="prob_drop", rank_higher_is_better=False)
        if self.judge.labels is None or "label" not in frame:
            return Summary(metrics, "top1_agreement", "top-1 agreement with FP32", metrics["top1_agreement"],
                           float(self.options["min_agreement"]), "min_agreement", True, Evidence("wilson", k=k1, n=n), **common)
        ref_acc = float(frame["fp32_correct"].mean())
        cand_acc = float(frame["cand_correct"].mean())
        n10 = float(((frame["fp32_correct"] == 1) & (frame["cand_correct"] == 0)).sum())
        n01 = float(((frame["fp32_correct"] == 0) & (frame["cand_correct"] == 1)).sum())
        metrics.update(fp32_accuracy=ref_acc, accuracy=cand_acc, accuracy_drop=ref_acc - cand_acc)
        return Summary(metrics, "accuracy_drop", "accuracy drop vs FP32 (labels)", ref_acc - cand_acc,
                       float(self.options["max_drop"]), "max_drop", False,
                       Evidence("paired_drop", n10=n10, n01=n01, n=len(frame)), **common)
