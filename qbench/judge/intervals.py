"""Confidence intervals for the judge's verdicts, and how many samples would narrow one enough.

Two kinds of metric reach a verdict:

* **Agreement** (a share of trials that agree: top-1 agreement, exact lines): the Wilson score
  interval (Wilson 1927). For k successes in n trials, p = k/n and z the normal quantile,

      centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).

  Unlike the Wald interval p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and does not collapse to a
  point when p is 0 or 1 — which is exactly the case that matters here (32 of 32 agree is not proof
  of 100 %).
* **Ratio of sums over samples** (a mean per-sample IoU, a pooled F1 = 2TP / (2TP+FP+FN), a CER =
  edits / characters): a percentile bootstrap that resamples whole samples, so detections or
  characters of one image, which are not independent, move together. Seeded: the same run gives
  the same interval.

"About N more samples": for Wilson, the smallest n' ≥ n whose interval at the same observed share
excludes the tolerance (searched over a vector of n'); for the bootstrap, the half-width shrinks
as 1/sqrt(n), so n' = n·(half / gap)² where gap is the distance from the estimate to the tolerance.
Both assume the observed rate holds; when it sits on the tolerance no sample count settles it.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
_BOOT = 2000
_MAX_N = 10_000_000


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (n > 0)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_samples_needed(p: float, n: int, tolerance: float, z: float = Z95) -> int | None:
    """Smallest total trial count at which the Wilson interval around share p excludes the
    tolerance, or None when p equals the tolerance (no count settles it)."""
    if p == tolerance:
        return None
    ns = np.unique(np.geomspace(max(n, 1), _MAX_N, 4000).astype(np.int64))
    z2 = z * z
    denom = 1.0 + z2 / ns
    centre = (p + z2 / (2 * ns)) / denom
    half = z * np.sqrt(np.maximum(p * (1 - p) / ns + z2 / (4.0 * ns * ns), 0.0)) / denom
    settled = (centre - half > tolerance) if p > tolerance else (centre + half < tolerance)
    hit = np.flatnonzero(settled)
    return int(ns[hit[0]]) if hit.size else None


def bootstrap_ratio(numerators, denominators, z: float = Z95, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of sum(num)/sum(den), resampling samples (rows).
    None with fewer than two samples (no spread to resample)."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = num.size
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(_BOOT, n))
    top = num[idx].sum(axis=1)
    bottom = den[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = top / bottom
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return None
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return (float(lo), float(hi))


def bootstrap_samples_needed(value: float, interval: tuple[float, float], n: int, tolerance: float) -> int | None:
    """Total sample count at which a bootstrap interval of the same shape would clear the tolerance
    (half-width ~ 1/sqrt(n)); None when the estimate sits on the tolerance."""
    gap = abs(value - tolerance)
    if gap == 0:
        return None
    half = (value - interval[0]) if tolerance < value else (interval[1] - value)
    if half <= 0:
        return n
    return int(min(_MAX_N, math.ceil(n * (half / gap) ** 2)))


def paired_drop(n10: float, n01: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Interval for a paired difference of two shares — accuracy(reference) − accuracy(candidate)
    on the same samples — from the discordant counts: n10 samples right in the reference and wrong
    in the candidate, n01 the other way round. Agresti & Min (2005): add ½ to each of the four cells
    of the paired 2×2 table, then the Wald interval of p10 − p01 with variance
    (p10 + p01 − (p10 − p01)²)/n. Like Wilson it does not collapse to a point when no sample
    changes (zero changes in 32 samples does not prove a drop below 1 %)."""
    m = n + 2.0
    p10 = (n10 + 0.5) / m
    p01 = (n01 + 0.5) / m
    diff = p10 - p01
    half = z * math.sqrt(max(p10 + p01 - diff * diff, 0.0) / m)
    return (max(-1.0, diff - half), min(1.0, diff + half))


def paired_drop_samples_needed(n10: float, n01: float, n: int, tolerance: float, z: float = Z95) -> int | None:
    """Smallest sample count at which the paired-drop interval, at the same discordant rates,
    lies wholly on one side of the tolerance."""
    if n <= 0:
        return None
    r10, r01 = n10 / n, n01 / n
    if r10 - r01 == tolerance:
        return None
    ns = np.unique(np.geomspace(max(n, 1), _MAX_N, 4000).astype(np.int64)).astype(np.float64)
    m = ns + 2.0
    p10 = (r10 * ns + 0.5) / m
    p01 = (r01 * ns + 0.5) / m
    diff = p10 - p01
    half = z * np.sqrt(np.maximum(p10 + p01 - diff * diff, 0.0) / m)
    settled = (diff + half < tolerance) | (diff - half > tolerance)
    hit = np.flatnonzero(settled)
    return int(ns[hit[0]]) if hit.size else None
