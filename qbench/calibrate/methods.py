"""One function per calibration method: a tensor's histogram (and exact statistics) in, its amax out.

Every method reads the same ``TensorHistogram``, so all of them come from one activation pass
(``calibrate_many``). TensorRT's calibrators and what qbench computes for each (docs/CALIBRATION.md):

- ``entropy``: IInt8EntropyCalibrator2, the KL-divergence threshold search (``entropy.py``).
- ``minmax``: IInt8MinMaxCalibrator, the exact max |x| over the calibration set.
- ``legacy``: IInt8LegacyCalibrator. Its two documented knobs are the quantile "used to select the
  region maximum" and the regression cutoff, "the fraction of the maximum" defining where a
  regression determines it; the algorithm itself is not published. qbench reads the regions as the
  calibration batches: the amax is the ``quantile`` of the per-batch maxima, and, when
  ``regression_cutoff`` < 1, a least-squares line through the sorted per-batch maxima at or above
  ``regression_cutoff`` x max evaluated at that quantile (never above the max). An interpretation,
  not TensorRT's code; the defaults are Polygraphy's (0.5, 0.5).
- ``percentile``: the |x| where the histogram's CDF reaches ``percentile`` (not a TensorRT
  calibrator; the cache is read through an entropy-2 calibrator, as ``trtexec --calib`` does).
- ``mse``: the amax minimising the expected squared quantization error over the histogram.
"""

from __future__ import annotations

import numbers

import numpy as np

from qbench.calibrate.entropy import VARIANTS, entropy_amax
from qbench.calibrate.histogram import TensorHistogram, percentile_edge
from qbench.errors import QbenchError

METHODS = ("entropy", "minmax", "legacy", "percentile", "mse")
DEFAULT_PERCENTILE = 99.99
DEFAULT_QUANTILE = 0.5  # Polygraphy's default for IInt8LegacyCalibrator.get_quantile
DEFAULT_REGRESSION_CUTOFF = 0.5  # Polygraphy's default for get_regression_cutoff

# The algorithm name TensorRT writes in a cache header (``TRT-<version>-<name>``) and checks against
# the calibrator reading it: the CalibrationAlgoType of that calibrator. EntropyCalibration2 and
# MinMaxCalibration appear in real caches (tests/data/trt_caches); LegacyCalibration follows the
# same naming of kLEGACY_CALIBRATION and was not seen in a real cache. Percentile and MSE ranges have
# no TensorRT calibrator of their own: they are read through an entropy-2 calibrator.
TRT_ALGORITHM = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "legacy": "LegacyCalibration",
                 "percentile": "EntropyCalibration2", "mse": "EntropyCalibration2"}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise QbenchError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def amax_for(hist: TensorHistogram, method: str, percentile: float = DEFAULT_PERCENTILE,
             num_bits: int = 8, unsigned: bool = False, start_bin: int = 128, stride: int = 1,
             entropy_variant: str = "modelopt", quantile: float = DEFAULT_QUANTILE,
             regression_cutoff: float = DEFAULT_REGRESSION_CUTOFF) -> float:
    if method == "minmax":
        return hist.amax  # exact, not binned
    if method == "legacy":
        return legacy_amax(hist.batch_max, quantile, regression_cutoff)
    if hist.counts is None:
        return 0.0  # every value was zero
    if method == "entropy":
        return entropy_amax(hist.counts, hist.edges, num_bits, unsigned, stride, start_bin, entropy_variant)
    if method == "percentile":
        return percentile_amax(hist.counts, hist.edges, percentile)
    if method == "mse":
        return mse_amax(hist.counts, hist.width, num_bits)
    raise QbenchError(f"unknown calibration method {method!r}")


def percentile_amax(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """modelopt's ``_compute_amax_percentile``: the edge where the CDF reaches ``percentile``."""
    if not 0 <= percentile <= 100:
        raise QbenchError(f"percentile must be between 0 and 100, not {percentile}")
    return percentile_edge(hist, edges, percentile)


def legacy_amax(batch_max, quantile: float = DEFAULT_QUANTILE, regression_cutoff: float = DEFAULT_REGRESSION_CUTOFF) -> float:
    """See the module docstring: the ``quantile`` of the per-batch maxima, or with a regression
    through the top ones (``regression_cutoff`` < 1)."""
    peaks = np.sort(np.asarray([m for m in batch_max if m > 0], dtype=np.float64))
    if peaks.size == 0:
        return 0.0
    top = float(peaks[-1])
    at = float(np.quantile(peaks, quantile))
    if regression_cutoff >= 1 or peaks.size < 3:
        return at
    tail = np.flatnonzero(peaks >= regression_cutoff * top)
    if tail.size < 2:
        return at
    # rank (as a fraction of the batches) -> batch maximum, fitted over the top batches only
    ranks = tail / (peaks.size - 1)
    slope, intercept = np.polyfit(ranks, peaks[tail], 1)
    return float(min(max(slope * quantile + intercept, 0.0), top))


def mse_amax(counts: np.ndarray, width: float, num_bits: int = 8, start_bin: int = 16) -> float:
    """The amax (a bin edge from ``start_bin`` up) minimising the expected squared error of symmetric
    ``num_bits`` quantization over the histogram, every value taken at its bin's centre c:

    - c beyond the amax saturates: error (c - amax)^2;
    - c below half a step rounds to 0: error c^2 (kept exact, so a spike of zeros costs nothing);
    - any other c has rounding error uniform over a step: step^2 / 12.

    With prefix sums of n, n*c and n*c^2 every candidate costs O(1), so all 2048 are tried."""
    n = np.asarray(counts, dtype=np.float64)
    if n.sum() == 0 or width <= 0:
        return 0.0
    levels = (1 << (num_bits - 1)) - 1
    centers = (np.arange(n.size) + 0.5) * width
    c0 = np.concatenate([[0.0], np.cumsum(n)])
    c1 = np.concatenate([[0.0], np.cumsum(n * centers)])
    c2 = np.concatenate([[0.0], np.cumsum(n * centers * centers)])
    k = np.arange(min(start_bin, n.size), n.size + 1)  # candidate: amax = k * width
    amax = k * width
    step = amax / levels
    # bins whose centre lies below step/2 round to zero
    half = np.clip(np.ceil(step / 2 / width - 0.5).astype(np.int64), 0, k)
    zero_err = c2[half]
    rounding = (c0[k] - c0[half]) * step * step / 12.0
    tail_n, tail_s1, tail_s2 = c0[-1] - c0[k], c1[-1] - c1[k], c2[-1] - c2[k]
    clipping = tail_s2 - 2 * amax * tail_s1 + amax * amax * tail_n
    err = zero_err + rounding + np.maximum(clipping, 0.0)
    return float(amax[int(np.argmin(err))])


def check_percentile(percentile: float) -> float:
    """Refuse a percentile outside (0, 100] before any work is done, not after the ORT pass."""
    if not isinstance(percentile, numbers.Real) or isinstance(percentile, bool) or not 0 < percentile <= 100:
        raise QbenchError(f"percentile must be above 0 and at most 100, not {percentile}")
    return percentile


def check_legacy(quantile: float, regression_cutoff: float) -> None:
    for name, value in (("quantile", quantile), ("regression cutoff", regression_cutoff)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
            raise QbenchError(f"the Legacy calibrator's {name} must be between 0 and 1, not {value}")


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise QbenchError(f"unknown entropy variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def method_label(method: str, percentile: float = DEFAULT_PERCENTILE, entropy_variant: str = "modelopt") -> str:
    if method == "percentile":
        return f"percentile-{percentile:g}"
    if method == "entropy" and entropy_variant != "modelopt":
        return f"entropy-{entropy_variant}"
    return method
