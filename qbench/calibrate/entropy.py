"""TensorRT's EntropyCalibration2 threshold search: the amax whose 8-bit quantization of the histogram
loses the least information (KL divergence), as NVIDIA reproduces it in modelopt's
``_compute_amax_entropy`` (tests/test_entropy_oracle.py fetches that function from the published
``nvidia-modelopt`` wheel at test time and checks agreement).

Two published descriptions differ in details (``variant``; docs/CALIBRATION.md cites both):

- ``"modelopt"`` (default): NVIDIA's PyTorch reproduction, the later and executable statement.
- ``"gtc"``: the pseudocode of Migacz, "8-bit Inference with TensorRT" (GTC 2017): candidates
  ``range(128, 2048)`` (the last bin count is not a candidate), no special zero bin, the first
  minimum wins and the threshold is the middle of the chosen bin, ``(m + 0.5) * width``.

Definitions of the default variant (same as the reproduction): bin 0 takes bin 1's count (so a spike of exact zeros, e.g.
after ReLU, does not dominate); for every candidate ``i`` from ``start_bin`` to the last bin the
reference P is ``bins[:i]`` with the clipped tail added to its last bin, and Q spreads each of the
128 quantization levels' mass evenly over that level's non-empty bins (levels split ``[0, i)`` at
``np.linspace(0, i, 129)``); divergence is scipy's ``entropy(P, Q)``; the last minimum wins and the
threshold is the left edge of bin ``i``.

Speed: the reproduction loops in Python over every bin for every candidate (O(bins^2) interpreted
steps, seconds per tensor). Here the divergence is rewritten exactly, term by term, into prefix sums:
with T the total count, p_j = P_j/T is the same for every candidate, so

    KL_i = sum_j p_j log p_j  -  sum_levels (S_b/T) log(S_b/n_b)  -  (tail/T) log q_(i-1)  +  log(Q_i)

where S_b and n_b are the level's count and non-empty-bin count and Q_i = sum(bins[:i]). Each
candidate then costs 128 logarithms instead of i, in a numba kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _divergences(bins, levels, start, stride):
    n = bins.size
    total = 0.0
    for j in range(n):
        total += bins[j]
    # prefix sums: counts, non-empty bins, and sum of p log p
    pref_c = np.zeros(n + 1)
    pref_n = np.zeros(n + 1)
    pref_plogp = np.zeros(n + 1)
    for j in range(n):
        b = bins[j]
        pref_c[j + 1] = pref_c[j] + b
        pref_n[j + 1] = pref_n[j] + (1.0 if b != 0 else 0.0)
        t = 0.0
        if b > 0:
            p = b / total
            t = p * math.log(p)
        pref_plogp[j + 1] = pref_plogp[j] + t
    count = 0
    for i in range(start, n + 1, stride):
        count += 1
    out = np.empty(count)
    lo_edge = np.empty(levels + 1, dtype=np.int64)
    k = 0
    for i in range(start, n + 1, stride):
        tail = total - pref_c[i]
        # integer j belongs to level b when space[b] <= j < space[b+1], space = linspace(0, i, levels+1)
        step = i / levels
        for b in range(levels):
            lo_edge[b] = int(math.ceil(b * step))
        lo_edge[levels] = i
        last = bins[i - 1]
        plast = last + tail
        a_term = pref_plogp[i - 1]
        if plast > 0:
            pl = plast / total
            a_term += pl * math.log(pl)
        b_term = 0.0
        q_last = 0.0
        for b in range(levels):
            lo = lo_edge[b]
            hi = lo_edge[b + 1]
            if hi <= lo:
                continue
            s = pref_c[hi] - pref_c[lo]
            nz = pref_n[hi] - pref_n[lo]
            if nz > 0:
                avg = s / nz
                b_term += (s / total) * math.log(avg)
                if lo <= i - 1 < hi:
                    q_last = avg
        qsum = pref_c[i]
        if tail > 0:
            if last == 0:
                out[k] = np.inf  # P has mass where Q has none
                k += 1
                continue
            b_term += (tail / total) * math.log(q_last)
        out[k] = a_term - b_term + math.log(qsum) if qsum > 0 else np.nan
        k += 1
    return out


VARIANTS = ("modelopt", "gtc")


def entropy_divergences(hist: np.ndarray, num_bits: int = 8, unsigned: bool = False, stride: int = 1,
                        start_bin: int = 128, zero_bin: str = "copy") -> np.ndarray:
    """KL divergence for every candidate bin count ``start_bin, start_bin+stride, ..., len(hist)``.
    ``zero_bin="copy"``: bin 0 takes bin 1's count (modelopt); ``"keep"``: as collected (GTC)."""
    bins = np.array(hist, dtype=np.float64)
    if len(bins) > 1 and zero_bin == "copy":
        bins[0] = bins[1]
    levels = 1 << (num_bits - 1 + int(unsigned))
    return _divergences(bins, levels, int(start_bin), int(stride))


def entropy_amax(hist: np.ndarray, edges: np.ndarray, num_bits: int = 8, unsigned: bool = False, stride: int = 1,
                 start_bin: int = 128, variant: str = "modelopt") -> float:
    """The amax minimising KL divergence (TensorRT EntropyCalibration2); ``variant`` as above."""
    if variant not in VARIANTS:
        raise ValueError(f"entropy variant must be one of {VARIANTS}, not {variant!r}")
    hist = np.asarray(hist)
    if hist.sum() == 0:
        return 0.0
    start = min(int(start_bin), len(hist))  # a histogram narrower than start_bin keeps its full range
    if variant == "gtc":
        divergences = entropy_divergences(hist, num_bits, unsigned, stride, start, zero_bin="keep")
        if len(hist) > start:
            divergences = divergences[:-1] if (len(hist) - start) % stride == 0 else divergences
        m = int(np.argmin(divergences)) * stride + start
        return float((m + 0.5) * (edges[1] - edges[0]))
    divergences = entropy_divergences(hist, num_bits, unsigned, stride, start)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(edges[last_argmin * stride + start])
