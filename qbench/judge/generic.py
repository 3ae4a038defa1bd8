"""generic: judge any model output by output and channel by channel, never as one flat vector.

Why: one cosine over a whole tensor is dominated by its largest-magnitude part — a YOLOv8 head
[1, 4+C, N] concatenates box coordinates in the hundreds with class scores below 1, so scores can
collapse while the cosine stays at 0.995 — and a near-zero output (a text detector's map on a page
without text) has a cosine that is pure noise.

Definition, per sample and per float output:
* the channel axis is option ``channel_axis`` or, by default, the smaller of axis 1 and the last
  axis (NCHW maps and [B, 4+C, N] heads use axis 1; [B, N, 5+C] heads and NHWC use the last);
* each (batch row, channel) slice r of the reference gets its own scale s = max(range(r), atol),
  range = max − min of its finite values (a channel of one value per row, as in logits [B, C], has
  no range of its own: there the whole row is the slice); the slice's error is max |cand − ref| / s (or the
  ``error_quantile`` quantile of it). A slice with (almost) no range is thus judged by its
  absolute error against ``atol`` instead of by noise amplified without bound;
* integer and bool outputs (ArgMax maps, labels, counts) are judged by exact agreement: the share
  of equal elements must reach ``min_exact``;
* a NaN or Inf in the candidate where the reference is finite fails the sample outright.

Before any of that, each output is *read* as its user reads it (``qbench.judge.reading``):
probabilities and logits at their decisions or in probability units, one-value outputs by absolute
and relative tolerance, integers exactly; only outputs that nothing marks as scores get the range
rule above. The note says how each output was read and why.

A sample agrees when every output is within its tolerance as read (each part's error divided by
its tolerance, ``excess``, is at most 1) and nothing became non-finite. The verdict is on the share
of agreeing samples (Wilson interval) against ``min_agreement`` — except for a model whose one
output is a probability map read by its decisions (a DB text detector): there the verdict is the
decided region's IoU pooled over samples (total intersection / total union, interval from the
elements and the samples) against ``min_iou``, so ``qbench run`` without a task agrees with
``qbench demo``'s segment judge on the same map.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge import reading as rd
from qbench.judge.base import Accumulator, Summary
from qbench.judge.heads import find_anchor_head
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "max_error": 0.1,        # largest slice error, as a share of the reference slice's range
    "atol": 1e-3,            # floor of a slice's scale (near-constant slices: absolute error)
    "error_quantile": 1.0,   # 1.0: the maximum error of a slice; 0.99: its 99th percentile
    "min_exact": 0.99,       # share of equal elements an integer/bool output must reach
    "min_agreement": 0.95,   # share of agreeing samples the verdict asks for
    "channel_axis": None,    # None: the smaller of axis 1 and the last axis
    "threshold": 0.5,        # probabilities read as maps: the decision p >= threshold
    "min_iou": 0.9,          # ... agree when the decided sets' IoU reaches this (per slice)
    "scalar_atol": 0.01,     # one value per row: |cand - ref| <= scalar_atol + scalar_rtol * |ref|
    "scalar_rtol": 0.01,
    "read": None,            # {output: kind} or "name:kind,...": override the reading (reading.KINDS)
}


def prepare(graph, options: dict) -> dict:
    o = dict(options)
    o["_read"] = rd.parse_read_option(o.get("read"))
    o["_anchor_head"] = find_anchor_head(graph) if graph is not None else None
    unknown = [n for n in o["_read"] if graph is not None and n not in graph.output_names]
    if unknown:
        raise QbenchError(f"generic: option read names output(s) {unknown} the model does not have ({list(graph.output_names)})")
    return o


def channel_axis(shape: tuple, option=None) -> int | None:
    """The axis whose entries are separate quantities (see module docstring); None below rank 2."""
    if option is not None:
        axis = int(option)
        return axis % len(shape) if shape else None
    if len(shape) < 2:
        return None
    if len(shape) == 2:
        return 1
    return 1 if shape[1] <= shape[-1] else len(shape) - 1


def slice_errors(ref: np.ndarray, cand: np.ndarray, axis: int | None, atol: float, quantile: float = 1.0) -> np.ndarray:
    """Per (batch row, channel) slice error of cand against ref, normalised by each reference
    slice's own range (floored at atol). Returns an array [rows, channels] (rows = batch size)."""
    # float32 is exact enough for an error relative to a range, and half the memory traffic
    dtype = np.float64 if np.asarray(ref).dtype == np.float64 else np.float32
    ref = np.asarray(ref, dtype=dtype)
    cand = np.asarray(cand, dtype=dtype)
    if ref.ndim == 0:
        ref, cand = ref.reshape(1, 1, 1), cand.reshape(1, 1, 1)
    elif axis is None:
        ref, cand = ref.reshape(1, 1, -1), cand.reshape(1, 1, -1)
    else:
        ref = np.moveaxis(ref, axis, 1)
        cand = np.moveaxis(cand, axis, 1)
        ref = ref.reshape(ref.shape[0], ref.shape[1], -1)
        cand = cand.reshape(cand.shape[0], cand.shape[1], -1)
        if ref.shape[2] == 1:  # one value per channel (logits [B, C]): a channel has no range of
            ref = ref.reshape(ref.shape[0], 1, -1)  # its own, so the row is the slice
            cand = cand.reshape(cand.shape[0], 1, -1)
    diff = np.abs(cand - ref)
    if np.isfinite(diff).all():  # the usual case: no masking copies needed
        lo, hi = ref.min(axis=2), ref.max(axis=2)
    else:
        finite = np.isfinite(ref)
        lo = np.where(finite, ref, np.inf).min(axis=2)
        hi = np.where(finite, ref, -np.inf).max(axis=2)
        diff = np.where(finite & np.isfinite(cand), diff, 0.0)  # non-finite values are counted apart
    span = (hi - lo).astype(np.float64)
    span = np.where(np.isfinite(span), span, 0.0)
    scale = np.maximum(span, atol)
    if quantile >= 1.0 or diff.shape[2] == 1:
        err = diff.max(axis=2)
    else:
        k = int(np.ceil(quantile * (diff.shape[2] - 1)))
        err = np.partition(diff, k, axis=2)[:, :, k]
    return err.astype(np.float64) / scale


class GenericAccumulator(Accumulator):
    def __init__(self, judge) -> None:
        super().__init__(judge)
        self.readings: dict = {}   # output -> Reading, fixed on the first sample
        self.shapes: dict = {}
        self._counts = None        # (intersection, union) of the last map read, for the pooled verdict

    def _reading(self, out: str, r: np.ndarray, axis) -> rd.Reading:
        if out not in self.readings:
            forced = self.options.get("_read", {}).get(out)
            head = self.options.get("_anchor_head")
            if forced is None and head is not None and out != head.scores and r.ndim == 3:
                self.readings[out] = rd.Reading(out, "regressors", f"it sits beside the scores of a raw anchor head ({head.why})",
                                                scores=head.scores)
            else:
                self.readings[out] = rd.decide_reading(self.judge.graph, out, r, axis, forced)
            self.shapes[out] = r.shape
        return self.readings[out]

    def _decided_anchors(self, scores: str, ref: dict, cand: dict) -> np.ndarray:
        """[B, N] anchors that the scores decide (p >= threshold, background column aside) in FP32
        or in the candidate: the only anchors whose regressors an application reads."""
        r = np.asarray(ref[scores], dtype=np.float64)
        reading = self.readings.get(scores) or self._reading(scores, r, channel_axis(r.shape, self.options["channel_axis"]))
        thr = float(self.options["threshold"])
        marks = []
        for x in (r, np.asarray(cand[scores], dtype=np.float64)):
            p = rd.to_probabilities(x, reading) if reading.kind == "logits" else x
            p = p[..., 1:] if p.shape[-1] >= 2 else p  # SSD convention: class 0 is the background
            marks.append(np.nan_to_num(p, nan=0.0).max(axis=-1) >= thr)
        return marks[0] | marks[1]

    def _part_errors(self, reading: rd.Reading, r, c, axis, decided=None) -> tuple[np.ndarray, np.ndarray]:
        """(error in the reading's own unit, error / tolerance) per (row, channel) slice."""
        o = self.options
        if reading.kind == "regressors":
            # [B, N, K]: each channel's error at the decided anchors, against that channel's range there
            r64, c64 = np.asarray(r, np.float64), np.asarray(c, np.float64)
            err = np.zeros((r64.shape[0], r64.shape[2]))
            for b in range(r64.shape[0]):
                sel = decided[b] if decided is not None else np.ones(r64.shape[1], bool)
                if sel.any():
                    err[b] = slice_errors(r64[b][sel].T[None], c64[b][sel].T[None], 1, float(o["atol"]))[0]
            return err, err / float(o["max_error"])
        if reading.kind in ("probabilities", "logits"):
            pr, pc = rd.to_probabilities(r, reading), rd.to_probabilities(c, reading)
            if reading.as_map:
                inter, union = rd.decision_counts(pr, pc, axis, float(o["threshold"]))
                self._counts = (int(inter.sum()), int(union.sum()))
                err = 1.0 - np.where(union > 0, inter / np.maximum(union, 1), 1.0)
                return err, err / max(1.0 - float(o["min_iou"]), 1e-12)
            # a few probabilities: the absolute change in probability units (the scale is 1)
            err = slice_errors(pr, np.where(np.isfinite(pc), pc, pr), axis, 1.0)
            return err, err / float(o["max_error"])
        if reading.kind == "scalar":
            r64, c64 = np.asarray(r, np.float64).reshape(r.shape[0] if r.ndim else 1, -1), np.asarray(c, np.float64)
            c64 = c64.reshape(r64.shape)
            with np.errstate(invalid="ignore"):
                diff = np.where(np.isfinite(r64) & np.isfinite(c64), np.abs(c64 - r64), 0.0)
            tol = float(o["scalar_atol"]) + float(o["scalar_rtol"]) * np.abs(np.nan_to_num(r64))
            return diff, diff / tol
        err = slice_errors(r, c, axis, float(o["atol"]), float(o["error_quantile"]))
        return err, err / float(o["max_error"])

    def measure(self, index, name, ref, cand, feed, label) -> dict:
        o = self.options
        worst_excess, worst, worst_at, worst_kind, exact, new_nonfinite, broken = 0.0, 0.0, "", "", 1.0, 0, []
        for out in self.judge.output_names:
            r, c = np.asarray(ref[out]), np.asarray(cand[out])
            if r.shape != c.shape:
                broken.append(f"{out}: shape {c.shape} vs {r.shape}")
                continue
            axis = channel_axis(r.shape, o["channel_axis"])
            reading = self._reading(out, r, axis)
            if reading.kind == "classes" or r.dtype.kind in "iub" or c.dtype.kind in "iub":
                share = float(np.mean(r == c)) if r.size else 1.0
                exact = min(exact, share)
                continue
            new_nonfinite += int(np.count_nonzero(np.isfinite(r) & ~np.isfinite(c)))
            if r.size == 0:
                continue
            decided = self._decided_anchors(reading.scores, ref, cand) if reading.kind == "regressors" else None
            err, excess = self._part_errors(reading, r, c, axis, decided)
            at = np.unravel_index(int(np.argmax(excess)), excess.shape)
            if excess[at] > worst_excess:
                worst_excess, worst, worst_kind = float(excess[at]), float(err[at]), reading.kind
                worst_at = out if axis is None or excess.shape[-1] == 1 else f"{out}[ch {at[-1]}]"
        excess = max(worst_excess, (1.0 - exact) / max(1.0 - float(o["min_exact"]), 1e-12))
        agree = not broken and new_nonfinite == 0 and excess <= 1.0
        if broken or new_nonfinite:
            excess = float("inf")
        row = {"agree": float(agree), "excess": excess, "worst_error": worst if not broken else float("inf"),
               "worst_slice": worst_at if not broken else broken[0], "worst_reading": worst_kind,
               "exact_agreement": exact, "new_nonfinite": new_nonfinite}
        if self._one_map() and getattr(self, "_counts", None) is not None:
            row["decided_inter"], row["decided_union"] = self._counts
        self._counts = None
        return row

    def _one_map(self) -> str | None:
        """The output, when the model has exactly one and it is a probability map (read by its
        decisions): its user reads the decided region, so the verdict pools it like segment does."""
        if len(self.judge.output_names) != 1 or len(self.readings) != 1:
            return None
        out, reading = next(iter(self.readings.items()))
        return out if reading.kind in ("probabilities", "logits") and reading.as_map else None

    def reading_note(self) -> str:
        """How each output was read and why (one clause per output), for the note and the report."""
        return "outputs read as: " + "; ".join(rd_.describe(self.shapes[o]) for o, rd_ in self.readings.items())

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = len(frame)
        k = float(frame["agree"].sum()) if n else 0.0
        value = k / n if n else float("nan")
        metrics = {"sample_agreement": value}
        if n:
            metrics.update(worst_excess=float(frame["excess"].max()), worst_error=float(frame["worst_error"].max()),
                           min_exact_agreement=float(frame["exact_agreement"].min()),
                           new_nonfinite=int(frame["new_nonfinite"].sum()))
        notes = [self.reading_note()] if self.readings else []
        if self.options.get("_anchor_head") is not None:
            # generic stays strict at the anchor level; what an application reads is the detections
            notes.append("the outputs form a raw anchor head: --task detect (or auto) judges the objects it finds "
                         "(give option anchors to decode boxes)")
        if n and metrics["new_nonfinite"]:
            notes.append(f"{metrics['new_nonfinite']} NaN/Inf value(s) new in the candidate")
        out = self._one_map()
        if n and out and "decided_union" in frame:
            # one probability map: the decided region pooled over samples (total intersection /
            # total union, as segmentation benchmarks count IoU), the elements its units
            inter, union = float(frame["decided_inter"].fillna(0).sum()), float(frame["decided_union"].fillna(0).sum())
            value = inter / union if union else 1.0
            metrics["decision_iou"] = value
            if metrics.get("new_nonfinite"):
                value = 0.0  # NaN/Inf where FP32 is finite: nothing the map says can be trusted
            ev = (Evidence("ratio", num=tuple(frame["decided_inter"].fillna(0)), den=tuple(frame["decided_union"].fillna(0)),
                           n=n, counts=True) if union else Evidence("point"))
            if not union:
                notes.append(f"neither FP32 nor the candidate decides any element of {out!r} at p >= {self.options['threshold']:g}")
            return Summary(metrics=metrics, primary="decision_iou",
                           label=f"IoU of the region '{out}' decides (p >= {self.options['threshold']:g}), pooled",
                           value=value, tolerance=float(self.options["min_iou"]), option="min_iou", higher_is_better=True,
                           evidence=ev, notes=notes, rank_column="excess", rank_higher_is_better=False)
        return Summary(metrics=metrics, primary="sample_agreement",
                       label="sample agreement (every output within its tolerance as read)", value=value,
                       tolerance=float(self.options["min_agreement"]), option="min_agreement", higher_is_better=True,
                       evidence=Evidence("wilson", k=k, n=n), notes=notes, rank_column="excess", rank_higher_is_better=False)
