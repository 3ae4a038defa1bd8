"""write_report: one folder per model with index.html, results.json, per-tensor CSVs and plots.

Every file is written atomically (qbench.atomic), and index.html last, so a page that exists always
refers to files that exist.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import qbench
from qbench import atomic
from qbench.advise import Recommendation, Thresholds, recommend
from qbench.errors import QbenchError
from qbench.report import frames, html, plots, results_json, samples
from qbench.report.candidate import CandidateResult


@dataclass
class ExtraSection:
    """A section added by a later stage (e.g. the TensorRT engine inspector): a title, an optional
    paragraph of plain text and an optional table. Everything is escaped on the page."""

    title: str
    frame: pd.DataFrame | None = None
    text: str = ""
    # (caption, PNG bytes) pairs shown under the table and written beside index.html
    images: tuple = ()


BASE_COLUMNS = [
    # key, header, format kind, tooltip
    ("max_abs_err", "max |err|", "g", "largest absolute difference from the FP32 reference"),
    ("cosine", "cosine", "cos", "cosine similarity with the reference over all samples (1 = same direction)"),
    ("sqnr_db", "SQNR dB", "db", "signal-to-quantization-noise ratio; higher is better, ∞ = identical"),
    ("rel_l2", "rel. L2", "g", "‖cand − ref‖ / ‖ref‖"),
    ("ref_zero_frac", "zeros ref", "pct", "fraction of exact zeros in the FP32 reference"),
    ("cand_zero_frac", "zeros cand", "pct", "fraction of exact zeros in the candidate"),
]
INT8_COLUMNS = [
    ("amax", "amax", "g", "calibrated range: values beyond ±amax saturate"),
    ("int8_saturated_frac", "INT8 sat.", "pct", "fraction of values clipped at ±amax"),
    ("int8_zero_frac", "INT8 →0", "pct", "fraction of non-zero values that quantize to zero"),
]
FP16_COLUMNS = [
    ("fp16_overflow", "FP16 inf", "int", "elements beyond the FP16 range (65504)"),
    ("fp16_nan", "FP16 NaN", "int", "NaN elements in FP16"),
    ("fp16_flushed", "FP16 flushed", "int", "non-zero elements below the FP16 subnormal range (become 0)"),
]
STATUS_TEXT = {"ok": "ok", "zero": "all zero", "nonfinite": "NaN/Inf", "divergent": "divergent"}


def write_report(out_dir, model_name: str, candidates: list[CandidateResult], ranges=None, meta: dict | None = None,
                 extra_sections=(), thresholds=None, recommendation: Recommendation | None = None) -> Path:
    """Write the report folder; return the path of index.html. ``recommendation``: the run's one
    answer (qbench.advise.recommend), printed as is in the header and results.json; None: computed
    here from the candidates."""
    out = atomic.ensure_dir(out_dir)
    candidates = list(candidates or [])
    for c in candidates:
        if not isinstance(c, CandidateResult):
            raise QbenchError(f"write_report expects CandidateResult objects, got {type(c).__name__}")
    seen: set[str] = set()
    for c in candidates:
        if c.precision in seen:
            raise QbenchError(f"two candidates are both called {c.precision!r}; give each precision a unique name")
        seen.add(c.precision)
    meta = dict(meta or {})
    meta.setdefault("qbench_version", qbench.__version__)
    meta.setdefault("generated_at", _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    th = Thresholds.from_any(thresholds)
    extras = [_extra(e) for e in extra_sections]

    if recommendation is None:
        recommendation = recommend(candidates, th)
        note = (meta or {}).get("recommendation_note") or {}
        if note.get("precision") == recommendation.precision and note.get("text"):  # e.g. the FP16 assumption
            recommendation.reason += " " + str(note["text"])
    normalized = [frames.normalize(c.tensors) for c in candidates]
    summaries = [frames.summarize(c) for c in candidates]
    verdicts = dict(zip(recommendation.table["precision"], recommendation.table["verdict"]))
    ranges_frame = _ranges_frame(ranges)

    files: dict[str, str] = {}
    cand_ctx = []
    slugs: set[str] = set()
    for i, (c, df, s) in enumerate(zip(candidates, normalized, summaries)):
        slug = _slug(c.precision, i)
        if slug in slugs:  # "int8/a" and "int8_a" must not overwrite each other's files
            slug = f"{slug}_{i}"
        slugs.add(slug)
        csv_name = f"tensors_{slug}.csv"
        atomic.write_text(out / csv_name, df.to_csv(index=False))
        files[f"tensors[{c.precision}]"] = csv_name
        figs = []
        for key, title, fn in (
            ("error", "Error along the graph", lambda: plots.error_along_graph(df, c.precision, th.min_cosine)),
            ("zeros", "Zeros along the graph", lambda: plots.zeros_along_graph(df, c.precision)),
            ("int8", "INT8 saturation and zero-quantization", lambda: plots.int8_along_graph(df, c.precision)),
            ("fp16", "FP16 overflow and flushing", lambda: plots.fp16_along_graph(df, c.precision)),
        ):
            png = fn()
            if png is None:
                continue
            name = _write_file(out, files, f"plot_{key}[{c.precision}]", f"plot_{key}_{slug}.png", png)
            figs.append({"title": title, "png": png, "file": name})
        task_ctx = None
        if c.task is not None:
            task_csv = f"task_{slug}.csv"
            atomic.write_text(out / task_csv, c.task.per_sample.to_csv(index=False))
            files[f"task[{c.precision}]"] = task_csv
            task_ctx = _task_context(c, slug, out, files)
        cand_ctx.append(_candidate_context(c, df, s, figs, verdicts.get(c.precision, ""), i, meta,
                                           recommendation.precision, task_ctx))

    overview = plots.outputs_summary(summaries, verdicts)
    if overview is not None:
        _write_file(out, files, "plot_outputs", "plot_outputs.png", overview)
    if ranges_frame is not None:
        atomic.write_text(out / "ranges.csv", ranges_frame.to_csv(index=False))
        files["ranges"] = "ranges.csv"
    for k, e in enumerate(extras, 1):
        for j, (caption, png) in enumerate(e.images, 1):
            _write_file(out, files, f"extra[{e.title}][{j}]", f"plot_extra{k}_{j}.png", png)
    files["results"] = "results.json"

    atomic.write_text(out / "results.json", results_json.build(
        model_name, meta, recommendation, candidates, summaries, normalized, ranges_frame,
        [{"title": e.title, "frame": e.frame} for e in extras], files))

    page = html.render({
        "model_name": model_name,
        "meta": meta,
        "meta_items": _meta_items(meta),
        "recommendation": _recommendation_context(recommendation, candidates, meta),
        "candidates": cand_ctx,
        "overview_png": overview,
        "ranges": _table_context(ranges_frame) if ranges_frame is not None else None,
        "extras": [{"title": e.title, "text": e.text, "table": _table_context(e.frame) if e.frame is not None else None,
                    "images": [{"caption": c, "png": p} for c, p in e.images]}
                   for e in extras],
        "files": sorted(set(files.values())),
        "status_text": STATUS_TEXT,
    })
    return atomic.write_text(out / "index.html", page)


# -- context builders ---------------------------------------------------------------------------
# per-sample table: this many worst samples, and pictures of the first few of them
WORST_ROWS = 10


def _task_context(c: CandidateResult, slug: str, out: Path, files: dict) -> dict:
    """The task verdict of one candidate and the samples behind it (table and pictures)."""
    t = c.task
    ps = t.per_sample
    worst = t.worst(WORST_ROWS) if len(ps) else ps
    # (column, format): counts read as counts (11,300 pixels, not 1.13e+04)
    columns = [(col, "int" if pd.api.types.is_integer_dtype(ps[col]) else "g") for col in ps.columns
               if col not in ("sample", "name")]
    pictures = []
    rows = {int(r["sample"]): r for r in worst.to_dict("records")} if "sample" in worst else {}
    for j, pic in enumerate(c.pictures or [], 1):
        row = rows.get(pic.index, {})
        column = t.rank_column or t.primary
        caption = f"sample {pic.index}: {pic.name} · {column} = {html.fmt(row.get(column))}"
        png = samples.draw(pic, caption)
        if png is None:
            continue
        name = _write_file(out, files, f"sample[{c.precision}][{j}]", f"sample_{slug}_{j}.png", png)
        pictures.append({"caption": caption, "png": png, "file": name})
    interval = t.interval
    return {
        "task": t.task,
        "note": t.note,
        "primary": t.primary,
        "value": (t.metrics or {}).get(t.primary),
        "verdict": t.verdict,
        "reason": t.reason,
        "interval": None if interval is None else (interval[0], interval[1]),
        "more_samples": t.more_samples,
        "metrics": [(k, v) for k, v in (t.metrics or {}).items()],
        "samples": len(ps),
        "worst_columns": columns,
        "worst_rows": worst.to_dict("records"),
        "csv": files.get(f"task[{c.precision}]", ""),
        "pictures": pictures,
    }


def _candidate_context(c: CandidateResult, df: pd.DataFrame, s: dict, figs: list, verdict: str, i: int, meta: dict,
                       recommended: str, task_ctx: dict | None = None) -> dict:
    columns = list(BASE_COLUMNS)
    if any(frames.has_values(df, k) for k, *_ in INT8_COLUMNS):
        columns += [col for col in INT8_COLUMNS if col[0] in df]
    if any(frames.has_values(df, k) for k, *_ in FP16_COLUMNS):
        columns += [col for col in FP16_COLUMNS if col[0] in df]
    source = str(c.meta.get("source") or meta.get("source") or f"ONNX Runtime CPU simulation of {c.precision.upper()}"
                 + (" (Q/DQ)" if "int8" in c.precision.lower() else ""))
    simulated = c.meta.get("simulated")
    if simulated is None:  # "simulation of INT8 (not TensorRT)" is a simulation, "TensorRT 10.3 engine" is not
        simulated = "simulat" in source.lower() or "tensorrt" not in source.lower()
    fp = s["first_problem"]
    return {
        "anchor": f"cand-{i}",
        "precision": c.precision,
        "recommended": c.precision == recommended,
        "verdict": verdict,
        "source": source,
        "simulated": bool(simulated),
        "says_not_trt": "not tensorrt" in source.lower(),
        "capture_mode": c.meta.get("capture_mode") or meta.get("capture_mode") or "",
        "meta_items": _meta_items({k: v for k, v in c.meta.items() if k not in ("source", "simulated", "capture_mode")}),
        "sentence": _sentence(c, s, verdict),
        "task": task_ctx,
        "summary": s,
        "first_problem": fp,
        "first_problem_index": None if fp is None or _nan(fp.get("index")) else fp.get("index"),
        "culprits": s["culprits"],
        "figures": figs,
        "columns": columns,
        "rows": df.to_dict("records"),
        "findings": [{k: ("" if f.get(k) is None else f.get(k)) for k in ("severity", "kind", "tensor", "op_type", "index", "message")}
                     for f in (c.findings or [])],
        "unmatched": [{"tensor": t, "reason": r} for t, r in (c.unmatched or [])],
        "latency_ms": c.latency_ms,
        "int8_sat_max": float(df["int8_saturated_frac"].max()) if frames.has_values(df, "int8_saturated_frac") else None,
        "fp16_bad": (float(sum(pd.to_numeric(df[k], errors="coerce").fillna(0).sum() for k in frames.FP16_COLUMNS if k in df))
                     if any(frames.has_values(df, k) for k in frames.FP16_COLUMNS) else None),
    }


def _sentence(c: CandidateResult, s: dict, verdict: str) -> str:
    """One plain sentence per candidate for the verdict box: the task verdict's reason first, then
    the output diagnosis (which explains, never decides)."""
    parts = []
    if c.task is not None:
        parts.append(f"{c.task.task}: {c.task.reason}")
    if s.get("output_nonfinite"):
        parts.append(f"NaN/Inf in {s['output_nonfinite']} output(s), which the metrics below leave out")
    if s["output_cosine_min"] is not None:
        parts.append(f"output cosine {html.fmt(s['output_cosine_min'], 'cos')} (diagnosis)")
    if s["output_sqnr_db_min"] is not None:
        parts.append(f"SQNR {html.fmt(s['output_sqnr_db_min'], 'db')} dB")
    problems = s["problems"]
    if problems:
        counts = ", ".join(f"{n} {frames_status}" for frames_status, n in s["status_counts"].items()
                           if frames_status != "ok" and n)
        parts.append(f"{problems} of {s['tensors']} tensors flagged ({counts})")
        if s["introduced"]:
            parts.append(f"{s['introduced']} introduced, {s['inherited']} inherited")
    else:
        parts.append(f"all {s['tensors']} tensors within tolerance")
    if c.latency_ms is not None:
        parts.append(f"{c.latency_ms:.2f} ms")
    word = {"pass": "passes", "fail": "fails", "inconclusive": "inconclusive"}.get(verdict, verdict)
    return f"{word}: " + "; ".join(parts) + "."


def _recommendation_context(rec: Recommendation, candidates, meta: dict) -> dict:
    table = rec.table
    tasks = sorted({c.task.task for c in candidates if c.task is not None})
    return {"precision": rec.precision, "reason": rec.reason, "rows": table.to_dict("records"),
            "thresholds": rec.thresholds, "tasks": tasks,
            "labelled": bool(meta.get("labels"))}


def _table_context(df: pd.DataFrame) -> dict:
    df = df.reset_index(drop=True)
    return {"columns": [str(c) for c in df.columns], "rows": [list(r) for r in df.itertuples(index=False, name=None)]}


def _write_file(out: Path, files: dict, key: str, name: str, data: bytes) -> str:
    """Write one file of the report folder (atomically) and list it under ``key``; its name."""
    atomic.write_bytes(out / name, data)
    files[key] = name
    return name


HEADER_SKIP = {"recommendation_note"}


def _meta_items(meta: dict) -> list[tuple[str, str]]:
    items = []
    for k, v in meta.items():
        if k in HEADER_SKIP:  # shown where it belongs (the recommendation), not as a raw value
            continue
        if isinstance(v, float):
            v = html.fmt(v)
        if k == "generated_at" and isinstance(v, str):
            v = v.replace("T", " ", 1)
        items.append((str(k).replace("_", " "), "—" if v is None or v == "" else str(v)))
    return items


def _ranges_frame(ranges) -> pd.DataFrame | None:
    if ranges is None:
        return None
    if isinstance(ranges, pd.DataFrame):
        return ranges.reset_index(drop=True)
    if hasattr(ranges, "to_frame"):
        return ranges.to_frame()
    raise QbenchError(f"ranges must be a qbench Ranges or a DataFrame, not {type(ranges).__name__}")


def _extra(e) -> ExtraSection:
    if isinstance(e, ExtraSection):
        section = e
    elif isinstance(e, dict):
        section = ExtraSection(str(e.get("title", "")), e.get("frame"), str(e.get("text", "") or ""))
    elif isinstance(e, (tuple, list)) and 1 <= len(e) <= 3:
        section = ExtraSection(*e)
    else:
        raise QbenchError(f"an extra section must be ExtraSection, a dict or (title, frame[, text]), not {type(e).__name__}")
    if section.frame is not None and not isinstance(section.frame, pd.DataFrame):
        raise QbenchError(f"extra section {section.title!r}: frame must be a pandas DataFrame")
    if any(not isinstance(p, (bytes, bytearray)) or not bytes(p[:8]) == b"\x89PNG\r\n\x1a\n" for _, p in section.images):
        raise QbenchError(f"extra section {section.title!r}: images must be (caption, PNG bytes) pairs")
    return section


def _slug(precision: str, i: int) -> str:
    """File-name-safe form of a candidate name (names are user-supplied: no '/', no '..')."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", precision).strip("._") or f"candidate{i}"
    return s[:60]


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
