"""Statistics of float32 arrays computed on their bit patterns, shared by calibration and comparison.

Integer min/max/compare reductions vectorise in numba without fast-math, whereas float min/max with
NaN semantics do not; so min, max, max |x| and zero counts are taken on the int32 view of the data,
and a NaN or Inf (|bits| >= INF) sends only its own chunk to a careful scalar path.
"""

from __future__ import annotations

import numba
import numpy as np

CHUNK = 16384  # elements per chunk: small enough to stay in L1/L2 between passes

ABS = np.int32(0x7FFFFFFF)  # float32 bits without the sign
INF = np.int32(0x7F800000)  # |bits| >= this: Inf or NaN


@numba.njit(nogil=True, cache=True)
def scan_bits(b):
    """Over float32 bit patterns ``b``: order keys of min and max, max |bits|, number of (+-)zeros.

    Integer-only on purpose: integer min/max/compare reductions vectorise without fast-math, whereas
    float min/max with NaN semantics do not; a NaN or Inf shows up as ``top >= INF`` and the caller
    then takes the careful path, so no NaN ever reaches an index computation."""
    klo = np.int32(0x7FFFFFFF)
    khi = np.int32(-0x80000000)
    top = np.int32(0)
    zeros = np.int32(0)
    for k in range(b.size):
        v = b[k]
        key = v ^ ((v >> 31) & ABS)  # ordered like the float values (-0.0 just below +0.0)
        klo = klo if klo < key else key
        khi = khi if khi > key else key
        a = v & ABS
        top = top if top > a else a
        zeros += np.int32(a == 0)
    return klo, khi, top, zeros


@numba.njit(nogil=True, cache=True)
def unkey(key):
    bits = np.empty(1, dtype=np.int32)
    bits[0] = key ^ ((key >> 31) & ABS)
    return bits.view(np.float32)[0]


@numba.njit(nogil=True, cache=True)
def stats_careful(x):
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    zeros = 0
    nonfinite = 0
    for k in range(x.size):
        v = x[k]
        if not np.isfinite(v):
            nonfinite += 1
            continue
        if v < lo:
            lo = v
        if v > hi:
            hi = v
        if v == 0.0:
            zeros += 1
    return lo, hi, zeros, nonfinite


@numba.njit(nogil=True, cache=True)
def float_stats(x):
    """min, max, number of exact zeros, number of NaN/Inf (ignored everywhere else)."""
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    zeros = 0
    nonfinite = 0
    bits = x.view(np.int32)
    for start in range(0, x.size, CHUNK):
        stop = min(start + CHUNK, x.size)
        klo, khi, top, z = scan_bits(bits[start:stop])
        if top >= INF:
            l, h, z, nf = stats_careful(x[start:stop])
            nonfinite += nf
        else:
            l = unkey(klo)
            h = unkey(khi)
        if l < lo:
            lo = l
        if h > hi:
            hi = h
        zeros += z
    return lo, hi, zeros, nonfinite
