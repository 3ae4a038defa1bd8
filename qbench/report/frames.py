"""Reading the comparator's frame defensively: columns may be absent (FP16 has no INT8 columns, an
imported comparison may lack diagnosis columns), so every reader goes through ``normalize``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qbench.advise import output_rows

STATUSES = ("ok", "zero", "nonfinite", "divergent")
PROBLEM_STATUSES = ("zero", "nonfinite", "divergent")

# Columns the report always shows; absent numeric ones become NaN, so a cell reads "—" rather than
# the page failing.
NUMERIC = [
    "samples", "max_abs_err", "mean_abs_err", "rel_l2", "cosine", "cosine_min", "sqnr_db",
    "ref_zero_frac", "cand_zero_frac", "ref_nan", "ref_inf", "cand_nan", "cand_inf",
    "ref_min", "ref_max", "cand_min", "cand_max", "isolated_cosine", "isolated_rel_l2", "culprit_rank",
]
INT8_COLUMNS = ["amax", "int8_saturated_frac", "int8_zero_frac"]
FP16_COLUMNS = ["fp16_overflow", "fp16_nan", "fp16_flushed"]


def normalize(frame: pd.DataFrame | None) -> pd.DataFrame:
    """A copy with every column the report reads, sorted in graph order."""
    df = pd.DataFrame() if frame is None else frame.copy()
    n = len(df)
    if "tensor" not in df:
        df["tensor"] = [f"tensor_{i}" for i in range(n)]
    if "index" not in df:
        df["index"] = np.arange(n)
    for col in ("node", "op_type", "origin", "shape"):
        if col not in df:
            df[col] = ""
    for col in ("tensor", "node", "op_type", "origin", "shape"):
        df[col] = df[col].map(_text).astype(object)
    if "status" not in df:
        df["status"] = "ok"
    df["status"] = df["status"].map(lambda s: _text(s) or "ok").astype(object)
    for col in ("is_output", "first_problem"):
        if col not in df:
            df[col] = False
        df[col] = df[col].map(_truthy).astype(bool)
    for col in NUMERIC:
        if col not in df:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["index"] = pd.to_numeric(df["index"], errors="coerce")
    if df["index"].notna().all():
        df["index"] = df["index"].astype("int64")  # whole numbers read (and anchor) better than 12.0
    return df.sort_values("index", kind="stable", na_position="last").reset_index(drop=True)


def has_values(df: pd.DataFrame, column: str) -> bool:
    """True when ``column`` exists and holds at least one number (INT8/FP16 columns are optional)."""
    return column in df and pd.to_numeric(df[column], errors="coerce").notna().any()


def first_problem(df: pd.DataFrame) -> dict | None:
    """The first tensor in graph order where a problem appears: the comparator's flag when it set
    one, else the first row whose status is not ok."""
    flagged = df[df["first_problem"]]
    if len(flagged):
        return flagged.iloc[0].to_dict()
    bad = df[df["status"].isin(PROBLEM_STATUSES)]
    return bad.iloc[0].to_dict() if len(bad) else None


def culprits(df: pd.DataFrame, limit: int = 5) -> pd.DataFrame:
    """Tensors where a problem is introduced (not inherited), best-ranked first."""
    intro = df[df["origin"] == "introduced"]
    if intro.empty:
        return intro
    intro = intro.assign(_rank=intro["culprit_rank"].fillna(math.inf))
    return intro.sort_values(["_rank", "index"], kind="stable").drop(columns="_rank").head(limit)


# the recommendation and the report must judge the same rows as outputs
outputs = output_rows


def summarize(candidate) -> dict:
    """Counts and headline numbers for one candidate, shared by the HTML page and results.json."""
    df = normalize(candidate.tensors)
    counts = {s: int((df["status"] == s).sum()) for s in STATUSES}
    other = int((~df["status"].isin(STATUSES)).sum())
    if other:
        counts["other"] = other
    outs = outputs(df)
    severities = {"error": 0, "warning": 0, "info": 0}
    for f in candidate.findings or []:
        sev = _text(f.get("severity")) or "info"
        severities[sev] = severities.get(sev, 0) + 1
    fp = first_problem(df)
    worst = df.loc[df["cosine"].idxmin()] if df["cosine"].notna().any() else None
    return {
        "precision": candidate.precision,
        "tensors": len(df),
        "status_counts": counts,
        "problems": int(df["status"].isin(PROBLEM_STATUSES).sum()),
        "introduced": int((df["origin"] == "introduced").sum()),
        "inherited": int((df["origin"] == "inherited").sum()),
        "findings": severities,
        "unmatched": len(candidate.unmatched or []),
        "output_tensors": list(outs["tensor"]),
        "output_cosine_min": _nanmin(outs["cosine_min"].where(outs["cosine_min"].notna(), outs["cosine"])),
        "output_sqnr_db_min": _nanmin(outs["sqnr_db"]),
        "output_rel_l2_max": _nanmax(outs["rel_l2"]),
        # the error metrics only see values finite on both sides: an output with new NaN/Inf can
        # still score cosine 1.0, so readers must show this count before any metric
        "output_nonfinite": int((outs["status"] == "nonfinite").sum()),
        "worst_tensor": None if worst is None else {"tensor": worst["tensor"], "op_type": worst["op_type"],
                                                     "index": worst["index"], "cosine": worst["cosine"]},
        "first_problem": None if fp is None else {k: fp.get(k) for k in ("tensor", "node", "op_type", "index", "status")},
        "culprits": culprits(df)[["tensor", "node", "op_type", "index", "status", "cosine", "culprit_rank"]].to_dict("records"),
        "latency_ms": candidate.latency_ms,
    }


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "×".join(str(v) for v in value)
    return str(value)


def _truthy(value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _nanmin(series: pd.Series) -> float | None:
    s = pd.to_numeric(series, errors="coerce").dropna()
    return float(s.min()) if len(s) else None


def _nanmax(series: pd.Series) -> float | None:
    s = pd.to_numeric(series, errors="coerce").dropna()
    return float(s.max()) if len(s) else None
