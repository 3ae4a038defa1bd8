"""The FP16 headroom figure survives tensors that are already infinite in FP32 (found by the zoo:
openWakeWord's melspectrogram takes the log of zero and the figure's axis limits became inf)."""

from __future__ import annotations

import math

import pandas as pd

from qbench.compare.headroom import Headroom
from qbench.report.headroom_plot import headroom_along_graph


def _headroom(peaks, parameter_magnitudes=()):
    tensors = pd.DataFrame({"index": range(len(peaks)), "node": [f"node{i}" for i in range(len(peaks))],
                            "fp32_peak": peaks, "fp16_fraction": [p / 65504.0 for p in peaks],
                            "risk": [p / 65504.0 > 0.25 for p in peaks]})
    parameters = pd.DataFrame({"node": [f"node{i}" for i in range(len(parameter_magnitudes))],
                               "issue": ["overflow"] * len(parameter_magnitudes),
                               "magnitude": list(parameter_magnitudes)})
    return Headroom(tensors, parameters)


def test_figure_with_an_infinite_fp32_peak_is_drawn():
    png = headroom_along_graph(_headroom([1.0, math.inf, 30000.0, 2.0]))
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_with_an_infinite_parameter_is_drawn():
    png = headroom_along_graph(_headroom([1.0, 5.0, 30000.0], parameter_magnitudes=[math.inf, 1e6]))
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_without_any_positive_peak_is_none():
    assert headroom_along_graph(_headroom([0.0, 0.0])) is None
