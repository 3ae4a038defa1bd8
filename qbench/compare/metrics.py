"""Error metrics between a reference tensor and a candidate tensor, as small pure functions.

The comparator works on *sums* (sum of squared error, of squared reference, of the product, ...)
rather than on finished metrics, because sums add up across samples: the aggregate relative L2
error or cosine over a whole dataset is then exact, not an average of per-sample ratios.

Speed matters: the default model yields ~170 M floats per sample and per runner. The fast path is
one fused pass (``kernels.pair_stats``) that also notices NaN/Inf; only then do we pay for exact
counts and a masked float64 recomputation.
"""

from __future__ import annotations

import math

import numpy as np

from qbench.compare.kernels import pair_stats

# Keys of the additive part of ``pair_sums`` (summed across samples); the rest are max/min/counts.
ADDITIVE = ("n", "n_finite", "sum_abs_err", "ss_err", "ss_ref", "ss_cand", "dot", "ref_zeros", "cand_zeros",
            "ref_nan", "ref_inf", "cand_nan", "cand_inf")


def _flat32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x.reshape(-1)


def pair_sums(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Additive statistics of one reference/candidate pair of equal shape (one sample).

    One fused numba pass per cache-sized chunk (sums in float64, min/max/zeros on the float bits);
    an array holding NaN or Inf takes the exact, slower ``_slow_sums`` instead."""
    r = np.ascontiguousarray(_flat32(ref))
    c = np.ascontiguousarray(_flat32(cand))
    if r.size == 0:
        return _slow_sums(r, c)
    (finite, n, ref_zeros, cand_zeros, ss_ref, ss_cand, dot, ss_err, sum_abs_err, max_abs_err,
     ref_min, ref_max, cand_min, cand_max) = pair_stats(r, c)
    if not finite:
        return _slow_sums(r, c)
    return {"n": int(n), "ref_zeros": int(ref_zeros), "cand_zeros": int(cand_zeros), "n_finite": int(n),
            "ss_ref": float(ss_ref), "ss_cand": float(ss_cand), "dot": float(dot), "ss_err": float(ss_err),
            "sum_abs_err": float(sum_abs_err), "max_abs_err": float(max_abs_err),
            "ref_nan": 0, "ref_inf": 0, "cand_nan": 0, "cand_inf": 0,
            "ref_min": float(ref_min), "ref_max": float(ref_max), "cand_min": float(cand_min), "cand_max": float(cand_max)}


def count_zeros(x: np.ndarray) -> int:
    """Exact zeros (+0.0 and -0.0) in ``x``."""
    return int(np.count_nonzero(np.equal(x, 0)))


def merge_sums(total: dict, s: dict) -> dict:
    """Fold the sums of another block or sample into ``total`` (in place) and return it."""
    for key in ADDITIVE:
        total[key] += s[key]
    total["max_abs_err"] = _nanmax(total["max_abs_err"], s["max_abs_err"])
    for key in ("ref_min", "cand_min"):
        total[key] = _nanmin(total[key], s[key])
    for key in ("ref_max", "cand_max"):
        total[key] = _nanmax(total[key], s[key])
    return total


def _slow_sums(r: np.ndarray, c: np.ndarray) -> dict:
    """Exact NaN/Inf counts, and the error sums over the elements finite on both sides (float64, so
    that huge finite values cannot overflow the squares, nor tiny ones underflow)."""
    r_nan, c_nan = np.isnan(r), np.isnan(c)
    r_inf, c_inf = np.isinf(r), np.isinf(c)
    both = ~(r_nan | c_nan | r_inf | c_inf)
    r64 = r[both].astype(np.float64)
    c64 = c[both].astype(np.float64)
    d = c64 - r64
    rf, cf = r[np.isfinite(r)], c[np.isfinite(c)]
    return {
        "n": r.size, "ref_zeros": count_zeros(r), "cand_zeros": count_zeros(c), "n_finite": int(both.sum()),
        "ss_ref": float(np.dot(r64, r64)), "ss_cand": float(np.dot(c64, c64)), "dot": float(np.dot(r64, c64)),
        "ss_err": float(np.dot(d, d)), "sum_abs_err": float(np.abs(d).sum()),
        "max_abs_err": float(np.abs(d).max()) if d.size else math.nan,
        "ref_nan": int(r_nan.sum()), "ref_inf": int(r_inf.sum()), "cand_nan": int(c_nan.sum()), "cand_inf": int(c_inf.sum()),
        "ref_min": float(rf.min()) if rf.size else math.nan, "ref_max": float(rf.max()) if rf.size else math.nan,
        "cand_min": float(cf.min()) if cf.size else math.nan, "cand_max": float(cf.max()) if cf.size else math.nan,
    }


def cosine(ss_ref: float, ss_cand: float, dot: float) -> float:
    """Cosine similarity from sums. Two all-zero tensors are identical (1.0); exactly one all-zero
    tensor shares no direction with the other (0.0)."""
    if ss_ref == 0.0 and ss_cand == 0.0:
        return 1.0
    if ss_ref == 0.0 or ss_cand == 0.0:
        return 0.0
    return max(-1.0, min(1.0, dot / math.sqrt(ss_ref * ss_cand)))


def rel_l2(ss_err: float, ss_ref: float) -> float:
    """||cand - ref|| / ||ref||; infinite when the reference is zero and the candidate is not."""
    if ss_ref == 0.0:
        return 0.0 if ss_err == 0.0 else math.inf
    return math.sqrt(ss_err / ss_ref)


def sqnr_db(ss_err: float, ss_ref: float) -> float:
    """Signal-to-quantization-noise ratio in dB; +inf for an exact match."""
    if ss_err == 0.0:
        return math.inf
    if ss_ref == 0.0:
        return -math.inf
    return 10.0 * math.log10(ss_ref / ss_err)


def derive(s: dict) -> dict:
    """The reported metrics from (possibly aggregated) sums."""
    n = s["n"]
    nf = s["n_finite"]
    return {
        "max_abs_err": s["max_abs_err"],
        "mean_abs_err": s["sum_abs_err"] / nf if nf else math.nan,
        "rel_l2": rel_l2(s["ss_err"], s["ss_ref"]),
        "cosine": cosine(s["ss_ref"], s["ss_cand"], s["dot"]),
        "sqnr_db": sqnr_db(s["ss_err"], s["ss_ref"]),
        "ref_zero_frac": s["ref_zeros"] / n if n else math.nan,
        "cand_zero_frac": s["cand_zeros"] / n if n else math.nan,
    }


class SumsAccumulator:
    """Folds per-sample ``pair_sums`` of one tensor into dataset-wide sums, keeping O(1) memory."""

    __slots__ = ("sums", "samples", "cosine_min")

    def __init__(self) -> None:
        self.sums: dict | None = None
        self.samples = 0
        self.cosine_min = math.inf

    def add(self, s: dict, sample_cosine: float) -> None:
        self.samples += 1
        self.cosine_min = min(self.cosine_min, sample_cosine)
        if self.sums is None:
            self.sums = dict(s)
            return
        merge_sums(self.sums, s)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)
