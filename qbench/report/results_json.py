"""results.json: everything on the page, machine-readable, in standard JSON.

JSON has no NaN or Infinity: NaN (metric not measured) becomes null, and +/-Infinity (e.g. SQNR of
identical tensors) becomes the strings "inf" / "-inf", as ``nonfinite_encoding`` says in the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "qbench-report/1"


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


def build(model_name: str, meta: dict, recommendation, candidates, summaries: list[dict], normalized: list,
          ranges_frame: pd.DataFrame | None, extra_sections: list[dict], files: dict) -> str:
    doc = {
        "format": FORMAT,
        "nonfinite_encoding": {"NaN": None, "Infinity": "inf", "-Infinity": "-inf"},
        "model": model_name,
        "meta": meta,
        "recommendation": recommendation.to_dict() if recommendation is not None else None,
        "candidates": [
            {
                "precision": c.precision,
                "meta": c.meta,
                "latency_ms": c.latency_ms,
                "summary": s,
                "findings": list(c.findings or []),
                "unmatched": [{"tensor": t, "reason": r} for t, r in (c.unmatched or [])],
                "tensors": frame_records(df),
            }
            for c, s, df in zip(candidates, summaries, normalized)
        ],
        "ranges": None if ranges_frame is None else frame_records(ranges_frame),
        "extra_sections": [{"title": e["title"], "rows": frame_records(e["frame"]) if e.get("frame") is not None else None}
                           for e in extra_sections],
        "files": files,
    }
    return json.dumps(jsonable(doc), indent=1, ensure_ascii=False, allow_nan=False)
