"""Fused numba kernels for per-element statistics that numpy would need many passes and
temporaries for. They release the GIL, so the comparator's threads measure tensors in parallel.

(A fused kernel for the error sums themselves was tried and measured no faster than the block-wise
numpy/BLAS code in ``metrics``, which is therefore kept.)
"""

from __future__ import annotations

import numba
import numpy as np

from qbench.float_bits import CHUNK, INF, scan_bits, unkey

_FLAGS = {"reassoc", "contract"}  # not "nnan"/"ninf": non-finite values must still propagate


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def int8_counts(x, amax, scale):
    """(values with |x| >= amax, nonzero values whose int8 code is 0, nonzero values) for symmetric
    per-tensor INT8 with this amax; the same definitions as ``qbench.simulate.int8_stats`` (code 0
    when |x / scale| <= 0.5 in float32, as round-half-to-even QuantizeLinear rounds)."""
    saturated = 0
    zero_code = 0
    nonzero = 0
    for i in range(x.size):
        v = x[i]
        mag = abs(v)
        saturated += mag >= amax
        nz = v != 0
        nonzero += nz
        zero_code += nz and abs(v / scale) <= np.float32(0.5)
    return saturated, zero_code, nonzero


# float32 -> float16 rounds to nearest, ties to even: |x| >= 65520 (halfway between 65504, the
# largest float16, and 65536) becomes inf; |x| <= 2**-25 (halfway between 0 and 2**-24, the smallest
# float16 subnormal, tie to the even 0) becomes 0.
FP16_OVERFLOW_AT = np.float32(65520.0)
FP16_FLUSH_AT = np.float32(2.0 ** -25)


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def fp16_counts(x, overflow_at, flush_at):
    """(values that are +-inf in float16, NaN values, nonzero values that become 0 in float16) of a
    1-D float32 array; the same definitions as ``qbench.simulate.fp16_stats`` in one pass, without
    the float16 copy and boolean temporaries (a test holds the two equal on real activations)."""
    overflow = 0
    nan = 0
    flushed = 0
    for i in range(x.size):
        v = x[i]
        mag = abs(v)
        overflow += mag >= overflow_at  # inf included; NaN compares false
        nan += v != v
        flushed += (mag <= flush_at) and (v != 0)
    return overflow, nan, flushed


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def _chunk_sums(r, c, absdiff):
    """Error sums of one finite chunk in float64 (no overflow of squares, no underflow of tiny
    values), and |c - r| into ``absdiff`` for the integer max that follows."""
    dot = 0.0
    ss_ref = 0.0
    ss_cand = 0.0
    ss_err = 0.0
    sum_abs = 0.0
    for k in range(r.size):
        a = np.float64(r[k])
        b = np.float64(c[k])
        d = b - a
        dot += a * b
        ss_ref += a * a
        ss_cand += b * b
        ss_err += d * d
        ad = abs(d)
        sum_abs += ad
        absdiff[k] = np.float32(ad)
    return dot, ss_ref, ss_cand, ss_err, sum_abs


@numba.njit(nogil=True, cache=True)
def _max_bits(b):
    top = np.int32(0)
    for k in range(b.size):
        v = b[k]
        top = top if top > v else v
    return top


@numba.njit(nogil=True, cache=True)
def pair_stats(r, c):
    """Every additive statistic of one reference/candidate pair of 1-D float32 arrays in one pass per
    cache-sized chunk: (finite, n, ref_zeros, cand_zeros, ss_ref, ss_cand, dot, ss_err, sum_abs_err,
    max_abs_err, ref_min, ref_max, cand_min, cand_max). ``finite`` is False, and the rest
    meaningless, as soon as either array holds a NaN or Inf: the caller then counts exactly."""
    n = r.size
    rb = r.view(np.int32)
    cb = c.view(np.int32)
    scratch = np.empty(CHUNK, np.float32)
    sbits = scratch.view(np.int32)
    ref_zeros = 0
    cand_zeros = 0
    dot = 0.0
    ss_ref = 0.0
    ss_cand = 0.0
    ss_err = 0.0
    sum_abs = 0.0
    top = np.int32(0)
    rlo = np.int32(0x7FFFFFFF)
    rhi = np.int32(-0x80000000)
    clo = np.int32(0x7FFFFFFF)
    chi = np.int32(-0x80000000)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        lo, hi, rtop, z = scan_bits(rb[start:stop])
        if rtop >= INF:
            return (False, n, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, np.float32(0), np.float32(0), np.float32(0), np.float32(0), np.float32(0))
        rlo = min(rlo, lo)
        rhi = max(rhi, hi)
        ref_zeros += z
        lo, hi, ctop, z = scan_bits(cb[start:stop])
        if ctop >= INF:
            return (False, n, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, np.float32(0), np.float32(0), np.float32(0), np.float32(0), np.float32(0))
        clo = min(clo, lo)
        chi = max(chi, hi)
        cand_zeros += z
        s = _chunk_sums(r[start:stop], c[start:stop], scratch[:stop - start])
        dot += s[0]
        ss_ref += s[1]
        ss_cand += s[2]
        ss_err += s[3]
        sum_abs += s[4]
        top = max(top, _max_bits(sbits[:stop - start]))
    mae = np.empty(1, np.int32)
    mae[0] = top
    return (True, n, ref_zeros, cand_zeros, ss_ref, ss_cand, dot, ss_err, sum_abs, mae.view(np.float32)[0],
            unkey(rlo), unkey(rhi), unkey(clo), unkey(chi))
