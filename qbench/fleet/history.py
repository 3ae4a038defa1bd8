"""``qbench history``: the runs recorded in the store, one row per candidate, oldest first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from qbench.errors import QbenchError
from qbench.jsonsafe import frame_records
from qbench.store import ResultStore

COLUMNS = ["id", "created_at", "model", "precision", "verdict", "task", "deciding_metric", "value",
           "output_cosine_min", "recommendation", "samples", "group_id", "report_path"]
FORMATS = ("table", "csv", "json")


def history(store_path: str | Path, model: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """One row per recorded candidate; the deciding metric is the task's primary one when the judge
    ran, the worst-sample output cosine otherwise. ``limit`` keeps the newest N invocations."""
    path = Path(store_path)
    if not path.is_file():
        raise QbenchError(f"no results store at {path} (give --store PATH)")
    with ResultStore(path) as store:
        runs = store.runs(model)
        if model is not None and runs.empty:
            known = sorted(set(store.runs()["model_name"]))
            raise QbenchError(f"no runs of {model!r} in {path} (models: {', '.join(known) or 'none'})")
        if limit is not None and len(runs):
            keep = list(dict.fromkeys(runs["group_id"]))[-limit:]
            runs = runs[runs["group_id"].isin(keep)]
        rows = []
        for r in runs.to_dict("records"):
            summary = store.run_metrics(r["id"])
            task_metrics, output = summary.get("task", {}), summary.get("output", {})
            primary = r.get("task_primary") or ""
            if primary and primary in task_metrics:
                deciding, value = f"task.{primary}", task_metrics[primary]
            else:
                deciding, value = "output_cosine_min", output.get("output_cosine_min")
            rows.append({"id": r["id"], "created_at": r["created_at"], "model": r["model_name"],
                         "precision": r["precision"], "verdict": r.get("verdict") or "", "task": r.get("task") or "",
                         "deciding_metric": deciding, "value": value,
                         "output_cosine_min": output.get("output_cosine_min"), "recommendation": r["recommendation"],
                         "samples": r["samples"], "group_id": r["group_id"], "report_path": r["report_path"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def render(frame: pd.DataFrame, fmt: str = "table") -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(frame_records(frame), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt != "table":
        raise QbenchError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if frame.empty:
        return "no runs recorded\n"
    shown = frame.drop(columns=["group_id", "report_path", "output_cosine_min"]).copy()
    shown["value"] = [("—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}")
                      for v in shown["value"]]
    shown["samples"] = shown["samples"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return shown.to_string(index=False) + "\n"
