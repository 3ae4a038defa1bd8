"""results.json: everything on the page, machine-readable, in standard JSON.

JSON has no NaN or Infinity: NaN (metric not measured) becomes null, and +/-Infinity (e.g. SQNR of
identical tensors) becomes the strings "inf" / "-inf", as ``nonfinite_encoding`` says in the file.
"""

from __future__ import annotations

import json

import pandas as pd

from qbench.jsonsafe import frame_records, jsonable

FORMAT = "qbench-report/1"  # docs/RESULTS.md; version 1 gained "task" (additive, old readers unaffected)


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
                # the task judge's result: verdict, metrics and per-sample task metrics (docs/RESULTS.md)
                "task": c.task.to_dict() if c.task is not None else None,
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
