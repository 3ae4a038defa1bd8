"""Fused numba kernels for per-element statistics that numpy would need many passes and
temporaries for. They release the GIL, so the comparator's threads measure tensors in parallel.

(A fused kernel for the error sums themselves was tried and measured no faster than the block-wise
numpy/BLAS code in ``metrics``, which is therefore kept.)
"""

from __future__ import annotations

import numba
import numpy as np

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
