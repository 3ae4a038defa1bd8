"""Per-tensor statistics of what a precision does to a tensor's values: pure numpy functions."""

from __future__ import annotations

import numpy as np

from qbench.ranges import INT8_MAX
from qbench.simulate.naming import float_name

FP16_MAX = float(np.finfo(np.float16).max)  # 65504


def int8_stats(x: np.ndarray, amax: float) -> dict[str, float]:
    """What per-tensor symmetric INT8 with this amax (scale = amax / 127) does to ``x`` (float values).

    ``int8_saturated_frac``: fraction of ALL values with |x| >= amax, i.e. values clipped to the
    ends of the int8 range (+-127 codes; information beyond amax is lost).
    ``int8_zero_frac``: fraction of the NONZERO values whose code is 0 (|x| <= scale / 2 with
    round-half-to-even, as QuantizeLinear rounds); 0.0 when ``x`` has no nonzero value.
    NaN values count in neither numerator; they count in the denominators.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return {"int8_saturated_frac": 0.0, "int8_zero_frac": 0.0}
    amax = float(amax)
    magnitude = np.abs(x)
    saturated = float(np.count_nonzero(magnitude >= amax)) / x.size
    nonzero = x != 0
    n_nonzero = int(np.count_nonzero(nonzero))
    if n_nonzero == 0 or amax <= 0:
        zero = 0.0 if n_nonzero == 0 else 1.0
    else:
        codes = np.rint(x[nonzero] / np.float32(amax / INT8_MAX))
        zero = float(np.count_nonzero(codes == 0)) / n_nonzero
    return {"int8_saturated_frac": saturated, "int8_zero_frac": zero}


def fp16_stats(x: np.ndarray) -> dict[str, int]:
    """Counts of what rounding ``x`` through float16 does.

    ``fp16_overflow``: values that are +-inf after rounding (|x| >= 65520 round to inf; values
    already inf count too, so this is also the inf count of an already-rounded tensor).
    ``fp16_nan``: NaN values. ``fp16_flushed``: nonzero values that become 0 in float16
    (|x| < 2**-25, below half of the smallest float16 subnormal).
    """
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    return {
        "fp16_overflow": int(np.count_nonzero(np.isinf(half))),
        "fp16_nan": int(np.count_nonzero(np.isnan(half))),
        "fp16_flushed": int(np.count_nonzero((half == 0) & (x != 0))),
    }


def simulation_stats(sim, values: dict[str, np.ndarray], ranges=None):
    """A DataFrame, one row per simulated tensor present in ``values``, of the statistics above.

    ``values``: float values of the tensors BEFORE simulation, under original names (an FP32
    reference run) or under ``t::float`` names (captured from the simulated model itself).
    ``ranges`` is needed for INT8.
    """
    import pandas as pd

    rows = []
    for name in list(sim.quantized_inputs) + list(sim.quantized):
        value = values.get(float_name(name), values.get(name))
        if value is None:
            continue
        row = {"tensor": name, "size": int(np.size(value))}
        if sim.precision == "int8":
            if ranges is None:
                raise ValueError("INT8 statistics need the ranges table")
            row["amax"] = ranges.amax(name)
            row.update(int8_stats(value, ranges.amax(name)))
        else:
            row.update(fp16_stats(value))
        rows.append(row)
    return pd.DataFrame(rows)
