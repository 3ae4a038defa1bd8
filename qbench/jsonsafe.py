"""Values for standard JSON, which has no NaN or Infinity: NaN (not measured) becomes null and
+/-Infinity (e.g. the SQNR of identical tensors) the strings "inf" / "-inf". Shared by every JSON
file qbench writes (comparison.json, results.json), so all of them read back the same way."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import pandas as pd


def jsonable(value):
    """Plain Python values for json.dumps (numpy scalars, NaN, tuples, paths, timestamps)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, pd.DataFrame):
        return frame_records(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if value is None or isinstance(value, (str, int)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (_dt.datetime, _dt.date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return jsonable(vars(value))
    return str(value)


def frame_records(df: pd.DataFrame) -> list[dict]:
    return [jsonable(r) for r in df.to_dict("records")]


# Columns that may hold text: a tensor or node named "inf" stays a string there.
TEXT_COLUMNS = {"tensor", "node", "op_type", "shape", "status", "first_problem", "origin", "sample", "name"}


def unjson_value(v, text: bool = False):
    """Undo ``jsonable`` for one value: null is NaN; "inf"/"-inf" are infinities unless ``text``."""
    if v is None:
        return math.nan
    if text:
        return v
    return math.inf if v == "inf" else -math.inf if v == "-inf" else v


def unjson_row(row: dict) -> dict:
    """Undo ``jsonable`` for one table row (``TEXT_COLUMNS`` keep their strings)."""
    return {k: unjson_value(v, k in TEXT_COLUMNS) for k, v in row.items()}
