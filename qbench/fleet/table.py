"""The Markdown summary of a sweep (spec key ``table``; ``zoo.toml`` writes docs/ZOO.md with it).

One row per model: ``model``, ``package`` (the spec's ``package`` of the model: where the model file
comes from), ``task`` (what the judge judged: the task the cells resolved, e.g. ``auto`` becomes
``classify``), ``samples`` (how many samples the cells judged; a range when they differ), then one
column per configuration of the sweep, in the spec's order: the precision alone when it has one
configuration (``fp16``), else precision and calibrator (``int8-minmax``). A cell shows its verdict
and deciding metric, ``failed`` with the first words of its error, or ``—`` when it has not run.
Written like every other qbench file: to a temporary file, then renamed (qbench.atomic).
"""

from __future__ import annotations

import math
from pathlib import Path

from qbench import atomic


def column_of(row: dict) -> str:
    """A cell's configuration without its task (the task has its own column)."""
    return "-".join(part for part in (row.get("precision"), row.get("calibrator")) if part)


def render_table(models: list[str], packages: dict[str, str], rows: list[dict], title: str = "", note: str = "") -> str:
    columns = list(dict.fromkeys(column_of(r) for r in rows))
    precisions = [c.split("-")[0] for c in columns]
    # a precision with one configuration is named alone: "fp16", not "fp16-"
    heads = [c.split("-")[0] if precisions.count(c.split("-")[0]) == 1 else c for c in columns]
    lines = [f"# {title}", ""] if title else []
    lines += [note, ""] if note else []
    lines += ["| model | package | task | samples | " + " | ".join(heads) + " |",
              "|" + "---|" * (4 + len(heads))]
    for model in models:
        own = [r for r in rows if r.get("model") == model]
        tasks = sorted({str(r.get("task") or "") for r in own if r.get("status") == "done"} - {""})
        counts = sorted({int(r["samples"]) for r in own if isinstance(r.get("samples"), int)})
        samples = "" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        cells = []
        for column in columns:
            found = [r for r in own if column_of(r) == column]
            cells.append(" / ".join(_cell(r) for r in found) if found else "—")
        lines.append("| " + " | ".join(_md(v) for v in [model, packages.get(model, ""), ", ".join(tasks), samples])
                     + " | " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(path: Path, models: list[str], packages: dict[str, str], rows: list[dict], title: str = "",
                note: str = "") -> Path:
    """``note``: a line under the title (which command wrote the table, and how much it swept)."""
    return atomic.write_text(path, render_table(models, packages, rows, title, note))


def _cell(row: dict) -> str:
    if row.get("status") == "done":
        value = row.get("value")
        shown = "" if value is None or (isinstance(value, float) and math.isnan(value)) else f" ({value:.4f})"
        metric = str(row.get("deciding_metric") or "").removeprefix("task.")
        return f"{row.get('verdict') or 'done'}{shown and f' {metric}{shown}'}"
    if row.get("status") == "failed":
        return "failed: " + " ".join(str(row.get("error") or "").split()[:8])
    return "—"


def _md(text) -> str:
    """Table-safe text: a pipe would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")
