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

A sample agrees when every slice's error is at most ``max_error``, every integer output reaches
``min_exact`` and nothing became non-finite. The verdict is on the share of agreeing samples
(Wilson interval) against ``min_agreement``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qbench.judge.base import Accumulator, Summary
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "max_error": 0.1,        # largest slice error, as a share of the reference slice's range
    "atol": 1e-3,            # floor of a slice's scale (near-constant slices: absolute error)
    "error_quantile": 1.0,   # 1.0: the maximum error of a slice; 0.99: its 99th percentile
    "min_exact": 0.99,       # share of equal elements an integer/bool output must reach
    "min_agreement": 0.95,   # share of agreeing samples the verdict asks for
    "channel_axis": None,    # None: the smaller of axis 1 and the last axis
}


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
    def measure(self, index, name, ref, cand, feed, label) -> dict:
        o = self.options
        worst, worst_at, exact, new_nonfinite, broken = 0.0, "", 1.0, 0, []
        for out in self.judge.output_names:
            r, c = np.asarray(ref[out]), np.asarray(cand[out])
            if r.shape != c.shape:
                broken.append(f"{out}: shape {c.shape} vs {r.shape}")
                continue
            if r.dtype.kind in "iub" or c.dtype.kind in "iub":
                share = float(np.mean(r == c)) if r.size else 1.0
                exact = min(exact, share)
                continue
            new_nonfinite += int(np.count_nonzero(np.isfinite(r) & ~np.isfinite(c)))
            if r.size == 0:
                continue
            axis = channel_axis(r.shape, o["channel_axis"])
            err = slice_errors(r, c, axis, float(o["atol"]), float(o["error_quantile"]))
            at = np.unravel_index(int(np.argmax(err)), err.shape)
            if err[at] > worst:
                worst = float(err[at])
                worst_at = out if axis is None else f"{out}[ch {at[1]}]"
        agree = (not broken and new_nonfinite == 0 and worst <= float(o["max_error"]) and exact >= float(o["min_exact"]))
        # how far past its tolerance the sample's worst part is (> 1: it fails); orders worst()
        excess = max(worst / float(o["max_error"]), (1.0 - exact) / max(1.0 - float(o["min_exact"]), 1e-12))
        if broken or new_nonfinite:
            excess = float("inf")
        return {"agree": float(agree), "excess": excess, "worst_error": worst if not broken else float("inf"),
                "worst_slice": worst_at if not broken else broken[0], "exact_agreement": exact,
                "new_nonfinite": new_nonfinite}

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = len(frame)
        k = float(frame["agree"].sum()) if n else 0.0
        value = k / n if n else float("nan")
        metrics = {"sample_agreement": value}
        if n:
            metrics.update(worst_error=float(frame["worst_error"].max()), mean_worst_error=float(frame["worst_error"].mean()),
                           min_exact_agreement=float(frame["exact_agreement"].min()),
                           new_nonfinite=int(frame["new_nonfinite"].sum()))
        notes = []
        if n and metrics["new_nonfinite"]:
            notes.append(f"{metrics['new_nonfinite']} NaN/Inf value(s) new in the candidate")
        return Summary(metrics=metrics, primary="sample_agreement", label="sample agreement (every output slice within "
                       f"{self.options['max_error']:g} of its range)", value=value, tolerance=float(self.options["min_agreement"]),
                       option="min_agreement", higher_is_better=True, evidence=Evidence("wilson", k=k, n=n), notes=notes,
                       rank_column="excess", rank_higher_is_better=False)
