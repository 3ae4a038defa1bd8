"""``qbench diff RUN_A RUN_B``: which verdicts, task metrics and tensors changed between two runs.

Candidates are matched by precision, tensors by name. A summary metric changed when it differs by
more than ``tolerance`` (absolute); a tensor changed when its status differs or its cosine moved by
more than ``tolerance``. Tensors present in one run only are listed as such (a new model version
renames them). The HTML page escapes every name (tensor names come from the model).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from qbench import atomic
from qbench.fleet.runs import RunView
from qbench.jsonsafe import frame_records, jsonable

DEFAULT_TOLERANCE = 1e-4


@dataclass
class RunDiff:
    a: RunView
    b: RunView
    candidates: pd.DataFrame  # precision, verdict_a, verdict_b, changed
    metrics: pd.DataFrame  # precision, metric, a, b, delta, changed
    tensors: pd.DataFrame  # precision, tensor, change, status_a, status_b, cosine_a, cosine_b, delta_cosine
    tolerance: float

    def summary(self) -> str:
        lines = [f"diff {self.a.label} -> {self.b.label} ({self.a.model or '?'}"
                 + (f" vs {self.b.model}" if self.b.model != self.a.model else "") + ")"]
        if self.a.recommendation != self.b.recommendation:
            lines.append(f"recommendation: {self.a.recommendation} -> {self.b.recommendation}")
        for r in self.candidates.to_dict("records"):
            if r["changed"]:
                lines.append(f"{r['precision']}: verdict {r['verdict_a'] or '-'} -> {r['verdict_b'] or '-'}")
        changed = self.metrics[self.metrics["changed"]]
        for r in changed.to_dict("records"):
            lines.append(f"{r['precision']}: {r['metric']} {_fmt(r['a'])} -> {_fmt(r['b'])} ({r['delta']:+.4g})"
                         if _finite(r["delta"]) else f"{r['precision']}: {r['metric']} {_fmt(r['a'])} -> {_fmt(r['b'])}")
        by = self.tensors.groupby("precision")["change"].value_counts() if len(self.tensors) else {}
        for (precision, change), n in (by.items() if len(self.tensors) else []):
            lines.append(f"{precision}: {n} tensor(s) {change}")
        if len(lines) == 1:
            lines.append(f"no change beyond {self.tolerance:g}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return jsonable({"a": self.a.label, "b": self.b.label, "model_a": self.a.model, "model_b": self.b.model,
                         "recommendation_a": self.a.recommendation, "recommendation_b": self.b.recommendation,
                         "tolerance": self.tolerance, "candidates": frame_records(self.candidates),
                         "metrics": frame_records(self.metrics), "tensors": frame_records(self.tensors)})


def diff_runs(a: RunView, b: RunView, tolerance: float = DEFAULT_TOLERANCE) -> RunDiff:
    precisions = list(a.candidates) + [p for p in b.candidates if p not in a.candidates]
    cand_rows, metric_rows, tensor_frames = [], [], []
    for p in precisions:
        ca, cb = a.candidates.get(p), b.candidates.get(p)
        va, vb = (ca.verdict if ca else ""), (cb.verdict if cb else "")
        cand_rows.append({"precision": p, "verdict_a": va, "verdict_b": vb, "changed": va != vb})
        ma, mb = (ca.metrics() if ca else {}), (cb.metrics() if cb else {})
        for name in list(ma) + [n for n in mb if n not in ma]:
            x, y = ma.get(name, math.nan), mb.get(name, math.nan)
            delta = y - x if _finite(x) and _finite(y) else math.nan
            same = (_finite(delta) and abs(delta) <= tolerance) or (x == y) or (math.isnan(x) and math.isnan(y))
            metric_rows.append({"precision": p, "metric": name, "a": x, "b": y, "delta": delta, "changed": not same})
        if ca is not None and cb is not None:
            tensor_frames.append(_tensor_changes(p, ca.tensors, cb.tensors, tolerance))
    tensors = (pd.concat(tensor_frames, ignore_index=True) if tensor_frames else pd.DataFrame(columns=_TENSOR_OUT))
    return RunDiff(a, b, pd.DataFrame(cand_rows, columns=["precision", "verdict_a", "verdict_b", "changed"]),
                   pd.DataFrame(metric_rows, columns=["precision", "metric", "a", "b", "delta", "changed"]),
                   tensors, tolerance)


_TENSOR_OUT = ["precision", "tensor", "change", "op_type", "status_a", "status_b", "cosine_a", "cosine_b",
               "delta_cosine", "rel_l2_a", "rel_l2_b"]


def _tensor_changes(precision: str, ta: pd.DataFrame, tb: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    cols = ["tensor", "index", "op_type", "status", "cosine", "rel_l2"]
    merged = ta[cols].merge(tb[cols], on="tensor", how="outer", suffixes=("_a", "_b"), indicator=True)
    merged["delta_cosine"] = merged["cosine_b"] - merged["cosine_a"]
    status_moved = merged["status_a"].fillna("").astype(str) != merged["status_b"].fillna("").astype(str)
    cosine_moved = merged["delta_cosine"].abs() > tolerance
    # one side NaN (not measured) and the other a number is a change too
    cosine_moved |= merged["cosine_a"].isna() != merged["cosine_b"].isna()
    merged["change"] = ""
    both = merged["_merge"] == "both"
    merged.loc[both & (status_moved | cosine_moved), "change"] = "changed"
    merged.loc[merged["_merge"] == "left_only", "change"] = "only in A"
    merged.loc[merged["_merge"] == "right_only", "change"] = "only in B"
    merged = merged[merged["change"] != ""].copy()
    merged["precision"] = precision
    merged["op_type"] = merged["op_type_a"].fillna(merged["op_type_b"])
    # biggest cosine moves first; tensors in one run only (no delta) after them
    merged["order"] = merged["delta_cosine"].abs().fillna(-1.0)
    merged = merged.sort_values(["order", "index_a"], ascending=[False, True], kind="stable")
    return merged[_TENSOR_OUT].reset_index(drop=True)


_PAGE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qbench diff: {{ d.a.model }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.2rem .5rem;font-size:.9rem;text-align:left} th{background:#f3f3f3}
tr.changed td{background:#fff4e0} .worse{color:#a00} .better{color:#070} code{font-size:.85rem}
</style></head><body>
<h1>qbench diff: {{ d.a.model }}{% if d.b.model != d.a.model %} vs {{ d.b.model }}{% endif %}</h1>
<p>A: <code>{{ d.a.label }}</code> {{ d.a.created_at }} · B: <code>{{ d.b.label }}</code> {{ d.b.created_at }} ·
tolerance {{ d.tolerance }}</p>
<p id="recommendation">Recommendation: {{ d.a.recommendation or "—" }} → {{ d.b.recommendation or "—" }}</p>
<h2>Verdicts</h2>
<table id="verdicts"><tr><th>precision</th><th>A</th><th>B</th></tr>
{% for r in candidates %}<tr class="{{ 'changed' if r.changed }}"><td>{{ r.precision }}</td><td>{{ r.verdict_a or "—" }}</td><td>{{ r.verdict_b or "—" }}</td></tr>
{% endfor %}</table>
<h2>Task and output metrics</h2>
<table id="metrics"><tr><th>precision</th><th>metric</th><th>A</th><th>B</th><th>Δ</th></tr>
{% for r in metrics %}<tr class="{{ 'changed' if r.changed }}"><td>{{ r.precision }}</td><td>{{ r.metric }}</td><td>{{ fmt(r.a) }}</td><td>{{ fmt(r.b) }}</td><td class="{{ r.direction }}">{{ fmt(r.delta) }}</td></tr>
{% endfor %}</table>
<h2>Tensors that changed ({{ tensors|length }})</h2>
{% if tensors %}<table id="tensors"><tr><th>precision</th><th>tensor</th><th>op</th><th>change</th><th>status A</th><th>status B</th><th>cosine A</th><th>cosine B</th><th>Δ cosine</th></tr>
{% for r in tensors %}<tr><td>{{ r.precision }}</td><td><code>{{ r.tensor }}</code></td><td>{{ r.op_type }}</td><td>{{ r.change }}</td><td>{{ r.status_a }}</td><td>{{ r.status_b }}</td><td>{{ fmt(r.cosine_a) }}</td><td>{{ fmt(r.cosine_b) }}</td><td>{{ fmt(r.delta_cosine) }}</td></tr>
{% endfor %}</table>{% else %}<p>No tensor changed beyond the tolerance.</p>{% endif %}
<p>Machine-readable: <a href="diff.json">diff.json</a> · <a href="diff_tensors.csv">diff_tensors.csv</a></p>
</body></html>
""")


def write_diff(d: RunDiff, out_dir: str | Path) -> Path:
    """Write diff.json, diff_tensors.csv and then diff.html (last, so the page's links exist)."""
    out = atomic.ensure_dir(out_dir)
    atomic.write_text(out / "diff.json", json.dumps(d.to_dict(), indent=1, ensure_ascii=False, allow_nan=False))
    atomic.write_text(out / "diff_tensors.csv", d.tensors.to_csv(index=False))
    metrics = []
    for r in d.metrics.to_dict("records"):
        cand = d.b.candidates.get(r["precision"]) or d.a.candidates.get(r["precision"])
        better = _finite(r["delta"]) and r["delta"] != 0 and ((r["delta"] > 0) == cand.higher_is_better(r["metric"]))
        r["direction"] = "" if not (_finite(r["delta"]) and r["changed"]) else ("better" if better else "worse")
        metrics.append(r)
    page = _PAGE.render(d=d, candidates=d.candidates.to_dict("records"), metrics=metrics,
                        tensors=d.tensors.to_dict("records"), fmt=_fmt)
    return atomic.write_text(out / "diff.html", page)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—" if v is None else str(v)
    return "—" if math.isnan(f) else f"{f:.6g}"
