"""Held-out judgement: calibrate on one part of the data, judge on the other.

A calibrator judged on the samples it was calibrated on is judged on its own training set: MinMax
sees every outlier it will be asked about, and the sweep would favour whichever method overfits.
``split`` draws a seeded permutation of the sample indices and cuts it; both parts keep the data's
natural file order, so a figure "on the judging part" names the same files on every run with the
same seed. Every result of the search carries the name of the part it came from
(``CALIB``/``JUDGE``), and the report prints it beside each figure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from qbench.errors import QbenchError

CALIB = "calibration part"
JUDGE = "judging part (held out)"
DEFAULT_FRACTION = 0.5
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Holdout:
    """Sample indices of the calibration and judging parts (each sorted), and how they were drawn."""

    calib: tuple[int, ...]
    judge: tuple[int, ...]
    seed: int
    fraction: float  # share of the samples that calibrate

    def describe(self) -> str:
        return (f"{len(self.calib)} sample(s) calibrate, {len(self.judge)} held out to judge "
                f"(seed {self.seed}, calibration share {self.fraction:g})")

    def to_dict(self) -> dict:
        return {"calib": list(self.calib), "judge": list(self.judge), "seed": self.seed, "fraction": self.fraction}


def split(n: int, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> Holdout:
    """Cut ``n`` samples into a calibration part (``round(n * fraction)``, at least one) and a
    judging part (the rest, at least one). With one sample both parts are that sample, and the
    description says so, because judging is then not held out."""
    if not 0 < fraction < 1:
        raise QbenchError(f"--calib-fraction must lie strictly between 0 and 1, not {fraction}")
    if n < 1:
        raise QbenchError("the data holds no samples to split")
    if n == 1:
        return Holdout((0,), (0,), seed, fraction)
    order = np.random.default_rng(seed).permutation(n)
    k = min(max(int(round(n * fraction)), 1), n - 1)
    return Holdout(tuple(sorted(int(i) for i in order[:k])), tuple(sorted(int(i) for i in order[k:])), seed, fraction)


def subset(dataset, indices):
    """The samples of ``dataset`` at ``indices``, as a dataset of the same kind (files picked)."""
    return dataclasses.replace(dataset, files=[dataset.files[i] for i in indices])


def held_out(holdout: Holdout) -> bool:
    return not set(holdout.calib) & set(holdout.judge)
