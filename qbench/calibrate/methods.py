"""One function per calibration method: a tensor's histogram in, its amax out."""

from __future__ import annotations

import numbers

import numpy as np

from qbench.calibrate.entropy import entropy_amax
from qbench.calibrate.histogram import TensorHistogram, percentile_edge
from qbench.errors import QbenchError

METHODS = ("entropy", "minmax", "percentile")
DEFAULT_PERCENTILE = 99.99

# TensorRT checks the algorithm named in a cache's header against the calibrator reading it.
# TensorRT has no percentile calibrator; percentile ranges are meant to be loaded through an
# entropy-2 calibrator (trtexec --calib uses one), so they carry that header.
TRT_ALGORITHM = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "EntropyCalibration2"}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise QbenchError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def amax_for(hist: TensorHistogram, method: str, percentile: float = DEFAULT_PERCENTILE,
             num_bits: int = 8, unsigned: bool = False, start_bin: int = 128, stride: int = 1) -> float:
    if method == "minmax":
        return hist.amax  # exact, not binned
    if hist.counts is None:
        return 0.0  # every value was zero
    if method == "entropy":
        return entropy_amax(hist.counts, hist.edges, num_bits, unsigned, stride, start_bin)
    if method == "percentile":
        return percentile_amax(hist.counts, hist.edges, percentile)
    raise QbenchError(f"unknown calibration method {method!r}")


def percentile_amax(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """modelopt's ``_compute_amax_percentile``: the edge where the CDF reaches ``percentile``."""
    if not 0 <= percentile <= 100:
        raise QbenchError(f"percentile must be between 0 and 100, not {percentile}")
    return percentile_edge(hist, edges, percentile)


def check_percentile(percentile: float) -> float:
    """Refuse a percentile outside (0, 100] before any work is done, not after the ORT pass."""
    if not isinstance(percentile, numbers.Real) or isinstance(percentile, bool) or not 0 < percentile <= 100:
        raise QbenchError(f"percentile must be above 0 and at most 100, not {percentile}")
    return percentile
