"""Streaming histograms of absolute activation values, folded one batch at a time.

Two ways to grow when a batch holds a value past the current range (``growth``):

- ``"double"`` (default, TensorRT's documented rule): the histogram always has ``num_bins`` (2048)
  bins; the first batch sets the range to [0, max|x| of that batch]; a later batch past the range
  doubles it, merging neighbouring bins in pairs (exact: every coarse edge is an old edge), as many
  times as needed. TensorRT's developer guide ("INT8 Calibration Using C++") describes this, and
  warns that a doubling late in calibration leaves half the bins nearly empty.
- ``"append"``: NVIDIA's PyTorch reproduction (modelopt's ``HistogramCalibrator.collect``) keeps the
  bin width and appends bins of the same width until the batch's maximum is covered; qbench bounds
  the count at ``max_bins`` by merging pairs. Kept as an option: it lets the entropy search reach
  thresholds at 128/8192 = 1/64 of the range, below TensorRT's 1/16 floor.

Either way a tensor that is all zeros in its first batch waits for the first non-zero batch to fix
its range (TensorRT's rule for such tensors is not documented; modelopt would divide by zero), and
each batch's exact max |x| is kept (the Legacy calibrator's per-batch maxima, the late-reallocation
warning).

The per-element work runs in numba kernels that release the GIL, so several tensors are folded in
parallel threads, and while ONNX Runtime computes the next batch. Each chunk is scanned and then binned
while it is still in cache; the scan is branch-free integer work that vectorises, NaN/Inf only divert
their own chunk to a careful scalar path, and the binning spreads its increments over 4 sub-histograms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from qbench.float_bits import INF, float_stats, scan_bits, stats_careful, unkey

NUM_BINS = 2048  # TensorRT / modelopt default
MAX_BINS = 8192  # "append" growth: merge pairs past this (bounds memory and the entropy search)
GROWTH = ("double", "append")
_CHUNK = 16384  # elements binned right after their max is known, while still in L1/L2


@numba.njit(nogil=True, cache=True)
def _index(y, inv, top, idx):
    for k in range(y.size):
        idx[k] = min(np.int32(abs(y[k]) * inv), top)


@numba.njit(nogil=True, cache=True)
def _halve(c):
    """Merge neighbouring bins of ``c`` in pairs (exact: every coarse edge is an old edge)."""
    out = np.zeros((c.size + 1) // 2, dtype=c.dtype)
    for b in range(c.size):
        out[b // 2] += c[b]
    return out


@numba.njit(nogil=True, cache=True)
def _fold(x, counts, width, max_bins):
    """Add |x| to ``counts`` (bins of ``width`` starting at 0), growing it with bins of the same width
    when a value lies past the end. Returns (counts, width, merges, min, max, zeros, nonfinite).

    A value far past the end would need ``ceil(max / width)`` bins, possibly billions: before
    growing, bins are merged in pairs (width doubled, ``merges`` counted) until at most
    ``max_bins`` cover it, so memory stays bounded whatever the data.

    Bin increments go to 4 interleaved sub-histograms: mostly-zero (post-ReLU) tensors hit bin 0 over
    and over, and one histogram would serialise on that store-to-load dependency. int32 sub-counts
    keep them in L1/L2; the caller splits arrays of 2**31 values or more."""
    n = x.size
    nb = counts.size
    merges = 0
    bits = x.view(np.int32)
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    zeros = 0
    nonfinite = 0
    s0 = np.zeros(nb, dtype=np.int32)
    s1 = np.zeros(nb, dtype=np.int32)
    s2 = np.zeros(nb, dtype=np.int32)
    s3 = np.zeros(nb, dtype=np.int32)
    idx = np.empty(_CHUNK, dtype=np.int32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        y = x[start:stop]
        klo, khi, top, z = scan_bits(bits[start:stop])
        finite = top < INF
        if finite:
            clo = unkey(klo)
            chi = unkey(khi)
            amax = max(-clo, chi)
        else:
            clo, chi, z, nf = stats_careful(y)
            nonfinite += nf
            amax = max(-clo, chi) if nf < y.size else np.float32(0.0)
        if clo < lo:
            lo = clo
        if chi > hi:
            hi = chi
        zeros += z
        # compared as floats: amax / width may not fit an int
        while amax / width > max_bins:
            counts = _halve(counts)
            s0, s1, s2, s3 = _halve(s0), _halve(s1), _halve(s2), _halve(s3)
            nb = s0.size
            width *= 2.0
            merges += 1
        inv = 1.0 / width
        if amax > nb * width:
            grown = int(math.ceil(amax / width))
            t0 = np.zeros(grown, dtype=np.int32)
            t1 = np.zeros(grown, dtype=np.int32)
            t2 = np.zeros(grown, dtype=np.int32)
            t3 = np.zeros(grown, dtype=np.int32)
            t0[:nb] = s0
            t1[:nb] = s1
            t2[:nb] = s2
            t3[:nb] = s3
            s0, s1, s2, s3 = t0, t1, t2, t3
            nb = grown
        if not finite:
            for k in range(y.size):
                a = abs(y[k])
                if np.isfinite(a):
                    i = int(a * inv)
                    if i >= nb:
                        i = nb - 1
                    s0[i] += 1
            continue
        m = y.size
        _index(y, inv, np.int32(nb - 1), idx)
        q = m - (m & 3)
        for k in range(0, q, 4):
            s0[idx[k]] += 1
            s1[idx[k + 1]] += 1
            s2[idx[k + 2]] += 1
            s3[idx[k + 3]] += 1
        for k in range(q, m):
            s0[idx[k]] += 1
    out = np.zeros(nb, dtype=np.int64)
    out[: counts.size] = counts
    for b in range(nb):
        out[b] += np.int64(s0[b]) + np.int64(s1[b]) + np.int64(s2[b]) + np.int64(s3[b])
    return out, width, merges, lo, hi, zeros, nonfinite


_SPLIT = 1 << 30  # well under the int32 sub-counts' limit


def _fold_split(x, counts, width, max_bins):
    if x.size <= _SPLIT:
        return _fold(x, counts, width, max_bins)
    lo, hi, zeros, nonfinite, merges = math.inf, -math.inf, 0, 0, 0
    for start in range(0, x.size, _SPLIT):
        counts, width, m, l, h, z, nf = _fold(x[start:start + _SPLIT], counts, width, max_bins)
        lo, hi, zeros, nonfinite, merges = min(lo, l), max(hi, h), zeros + z, nonfinite + nf, merges + m
    return counts, width, merges, lo, hi, zeros, nonfinite


def percentile_edge(counts: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """modelopt's ``_compute_amax_percentile``: the edge where the CDF reaches ``percentile``. The one
    convention for ``--method percentile`` and the reported p50..p99.99, so they agree."""
    total = counts.sum()
    if total == 0:
        return 0.0
    cdf = np.cumsum(counts / total)
    idx = int(np.searchsorted(cdf, percentile / 100))
    return float(edges[min(idx, len(edges) - 1)])


@dataclass
class TensorHistogram:
    """Histogram of |x| for one tensor over every batch seen so far, plus exact min/max/zero counts.

    ``growth``: ``"double"`` (TensorRT) or ``"append"`` (modelopt), see the module docstring.
    ``reallocations``: the batch numbers (1-based) at which a ``"double"`` histogram's range grew.
    ``batch_max``: max |x| of each batch (finite values; 0 for a batch without one)."""

    name: str
    num_bins: int = NUM_BINS
    max_bins: int = MAX_BINS
    growth: str = "double"
    counts: np.ndarray | None = None  # int64, bin k covers [k*width, (k+1)*width)
    width: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    zeros: int = 0
    nonfinite: int = 0
    total: int = 0  # finite values seen
    pending_zeros: int = 0  # values seen while every value so far was 0 (no width yet)
    batches: int = 0
    samples: int = 0
    merges: int = field(default=0)
    reallocations: list = field(default_factory=list)
    batch_max: list = field(default_factory=list)

    def __post_init__(self):
        if self.growth not in GROWTH:
            raise ValueError(f"histogram growth must be one of {GROWTH}, not {self.growth!r}")

    @property
    def amax(self) -> float:
        """Exact max |x| over the finite values seen."""
        if self.total == 0:
            return 0.0
        return float(max(abs(self.minimum), abs(self.maximum)))

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.counts) + 1, dtype=np.float64) * self.width

    @property
    def range(self) -> float:
        """The upper end of the histogram (bins x width): what TensorRT's range doubling acts on."""
        return 0.0 if self.counts is None else len(self.counts) * self.width

    def update(self, values: np.ndarray, samples: int = 1) -> None:
        x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        self.batches += 1
        self.samples += samples
        if self.counts is None:
            lo, hi, zeros, nonfinite = float_stats(x)
            finite = x.size - nonfinite
            self._note(lo, hi, zeros, nonfinite, finite)
            top = max(abs(lo), abs(hi)) if finite else 0.0
            if top == 0.0:
                self.pending_zeros += finite
                return
            # the first non-zero batch fixes the range: [0, its max|x|] in num_bins bins
            self.width = float(np.float32(top)) / self.num_bins
            counts = np.zeros(self.num_bins, dtype=np.int64)
            # num_bins + 1: float rounding may put the maximum just past the last edge
            counts, self.width, merges, *_ = _fold_split(x, counts, self.width, self._fold_bins(first=True))
            self.merges += merges
            counts[0] += self.pending_zeros
            self.pending_zeros = 0
            self.counts = counts
        else:
            before = len(self.counts)
            counts, self.width, merges, lo, hi, zeros, nonfinite = _fold_split(x, self.counts, self.width, self._fold_bins())
            self.counts = counts
            self.merges += merges
            # the range grew: doubled (bins merged), or bins appended
            if merges or (self.growth == "append" and len(counts) != before):
                self.reallocations.append(self.batches)
            self._note(lo, hi, zeros, nonfinite, x.size - nonfinite)
        self._bound()

    def _fold_bins(self, first: bool = False) -> int:
        if self.growth == "double":
            # the kernel merges pairs until num_bins cover the batch, then _bound pads back to num_bins
            return self.num_bins + 1 if first else self.num_bins
        # a first batch may need num_bins (+1 for rounding) even when max_bins is smaller; _bound
        # merges those down afterwards
        return max(self.max_bins, self.num_bins + 1)

    def _note(self, lo, hi, zeros, nonfinite, finite) -> None:
        if finite:
            self.minimum = min(self.minimum, float(lo))
            self.maximum = max(self.maximum, float(hi))
        self.batch_max.append(float(max(abs(lo), abs(hi))) if finite else 0.0)
        self.zeros += int(zeros)
        self.nonfinite += int(nonfinite)
        self.total += int(finite)

    def _bound(self) -> None:
        if self.growth == "double":
            n = len(self.counts)
            if n > self.num_bins:  # only the first batch's rounding: its maximum joins the last bin
                self.counts[self.num_bins - 1] += self.counts[self.num_bins:].sum()
                self.counts = self.counts[: self.num_bins].copy()
            elif n < self.num_bins:  # after merging pairs, the range is doubled: pad the empty upper half
                self.counts = np.concatenate([self.counts, np.zeros(self.num_bins - n, dtype=np.int64)])
            return
        while len(self.counts) > self.max_bins:
            c = self.counts
            if len(c) % 2:
                c = np.append(c, 0)
            self.counts = c[0::2] + c[1::2]
            self.width *= 2.0
            self.merges += 1

    def percentile(self, q: float) -> float:
        """The |x| below which ``q`` percent of the values lie, to bin resolution, by the same rule as
        ``--method percentile`` (``percentile_edge``)."""
        if self.counts is None or self.total == 0:
            return 0.0
        return percentile_edge(self.counts, self.edges, q)

    def summary(self) -> dict:
        """Plain numbers for reports (JSON-safe)."""
        total = self.total + self.nonfinite
        return {
            "min": self.minimum if self.total else 0.0,
            "max": self.maximum if self.total else 0.0,
            "absmax": self.amax,
            "zero_fraction": self.zeros / total if total else 0.0,
            "nonfinite": self.nonfinite,
            "values": self.total,
            "p50": self.percentile(50.0),
            "p99": self.percentile(99.0),
            "p99_9": self.percentile(99.9),
            "p99_99": self.percentile(99.99),
            "bins": 0 if self.counts is None else int(len(self.counts)),
            "bin_width": self.width,
            "histogram_range": self.range,
            "reallocations": list(self.reallocations),
        }
