"""One finished run, read from its results.json or from the store, in the shape check and diff use.

A RUN argument is either a path (a ``results.json`` or the report folder holding one) or a store run
id (``12`` or ``#12``: the invocation that recorded candidate 12, with all its candidates).

Each candidate carries its verdict, the advisor's output-tensor metrics (``output_cosine_min``, ...),
the judge's task block when the run had one (``task``: task, primary, metrics, verdict, reason), and
its per-tensor metrics. The *deciding* metric is the task's primary metric when there is a task
(the judge decides), the worst-sample output cosine otherwise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qbench.errors import QbenchError
from qbench.store import ResultStore

DEFAULT_STORE = Path("reports") / "qbench.sqlite"
OUTPUT_METRICS = ("output_cosine_min", "output_rel_l2_max", "output_nonfinite", "output_zero", "problem_tensors")
TENSOR_COLUMNS = ("tensor", "index", "op_type", "cosine", "rel_l2", "sqnr_db", "max_abs_err", "status")
# Metric names that mean "lower is better" (errors, counts of broken things); every other metric,
# agreement, F1, IoU, cosine, is higher-is-better. Matched as whole words of the name.
_LOWER_IS_BETTER = re.compile(r"(^|[_.\s-])(rel_l2|l2|nonfinite|zero|problem|tensors|cer|wer|err|error|errors|loss|"
                              r"drop|distance|mse|mae|rmse|latency|ms)($|[_.\s-])")
_RUN_ID = re.compile(r"^#?(\d+)$")


def lower_is_better(metric: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(metric.lower()))


@dataclass
class CandidateView:
    precision: str
    verdict: str
    output: dict = field(default_factory=dict)
    task: dict | None = None
    tensors: pd.DataFrame = field(default_factory=pd.DataFrame)

    def metrics(self) -> dict[str, float]:
        """Every summary metric under one name space: output ones as they are, task ones as ``task.NAME``."""
        out = {k: _num(v) for k, v in self.output.items()}
        for k, v in ((self.task or {}).get("metrics") or {}).items():
            out[f"task.{k}"] = _num(v)
        return out

    def higher_is_better(self, metric: str) -> bool:
        """The judge states the direction of its primary metric; other names go by their words."""
        task = self.task or {}
        if metric == f"task.{task.get('primary')}" and isinstance(task.get("higher_is_better"), bool):
            return task["higher_is_better"]
        return not lower_is_better(metric)

    @property
    def deciding(self) -> str:
        primary = (self.task or {}).get("primary")
        if primary and primary in ((self.task or {}).get("metrics") or {}):
            return f"task.{primary}"
        return "output_cosine_min"


@dataclass
class RunView:
    label: str
    model: str
    recommendation: str
    candidates: dict[str, CandidateView]
    created_at: str = ""
    report: str = ""
    group_id: str = ""  # set when read from the store


def load_run(spec: str | Path, store_path: str | Path | None = None) -> RunView:
    """Read RUN (a path or a store run id); QbenchError when it cannot be read."""
    text = str(spec)
    match = _RUN_ID.match(text)
    if match and not Path(text).exists():
        return load_stored_run(int(match.group(1)), store_path)
    return load_results_json(Path(text))


def load_results_json(path: Path) -> RunView:
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise QbenchError(f"{path}: no such results.json or report folder (or store run id)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QbenchError(f"{file} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("qbench-report/"):
        raise QbenchError(f"{file} is not a qbench results.json (no 'format': 'qbench-report/...')")
    rec = doc.get("recommendation") or {}
    table = {str(r.get("precision")): r for r in (rec.get("table") or []) if isinstance(r, dict)}
    candidates: dict[str, CandidateView] = {}
    for c in doc.get("candidates") or []:
        precision = str(c.get("precision"))
        row = table.get(precision, {})
        task = _task_block(c.get("task") or (c.get("meta") or {}).get("task") or row.get("task"))
        output = {k: _num(row.get(k, (c.get("summary") or {}).get(k))) for k in OUTPUT_METRICS}
        verdict = str((task or {}).get("verdict") or row.get("verdict") or "")
        tensors = pd.DataFrame(c.get("tensors") or [])
        candidates[precision] = CandidateView(precision, verdict, output, task, _tensor_frame(tensors))
    if not candidates:
        raise QbenchError(f"{file} lists no candidates")
    meta = doc.get("meta") or {}
    return RunView(str(file), str(doc.get("model") or ""), str(rec.get("precision") or ""), candidates,
                   str(meta.get("generated_at") or ""), str(file.parent / "index.html"))


def load_stored_run(run_id: int, store_path: str | Path | None = None) -> RunView:
    path = Path(store_path or DEFAULT_STORE)
    if not path.is_file():
        raise QbenchError(f"no results store at {path} (give --store PATH)")
    with ResultStore(path) as store:
        row = store.run(run_id)
        if row is None:
            raise QbenchError(f"no run #{run_id} in {path}")
        return _view_of_group(store, row["group_id"], f"run #{run_id}")


def _view_of_group(store, group_id: str, label: str) -> RunView:
    rows = store.group(group_id)
    candidates = {}
    for r in rows.to_dict("records"):
        summary = store.run_metrics(r["id"])
        task = None
        if r.get("task"):
            task = {"task": r["task"], "primary": r.get("task_primary") or "", "metrics": summary.get("task", {}),
                    "verdict": r.get("verdict") or "", "reason": r.get("task_reason") or ""}
        tensors = store.tensor_metrics(r["id"])
        candidates[str(r["precision"])] = CandidateView(str(r["precision"]), str(r.get("verdict") or ""),
                                                        summary.get("output", {}), task, _tensor_frame(tensors))
    first = rows.iloc[0]
    return RunView(label, str(first["model_name"]), str(first["recommendation"] or ""), candidates,
                   str(first["created_at"]), str(first["report_path"] or ""), group_id)


def previous_run(run: RunView, store_path: str | Path | None = None) -> RunView:
    """The invocation of the same model recorded in the store just before ``run`` (``--baseline previous``)."""
    path = Path(store_path or DEFAULT_STORE)
    if not path.is_file():
        raise QbenchError(f"--baseline previous needs the results store; none at {path} (give --store PATH)")
    with ResultStore(path) as store:
        groups = store.groups(run.model)
        if run.group_id:
            mine = run.group_id
        else:  # a results.json: its own invocation is the latest group that wrote this report
            same = [g for g in groups if _same_report(store.group(g), run.report)]
            mine = same[-1] if same else None
        earlier = groups[:groups.index(mine)] if mine in groups else groups
        if not earlier:
            raise QbenchError(f"no earlier run of {run.model!r} in {path} to compare with")
        first_id = int(store.group(earlier[-1])["id"].iloc[0])
        return _view_of_group(store, earlier[-1], f"run #{first_id}")


def _same_report(rows: pd.DataFrame, report: str) -> bool:
    try:
        return any(Path(p).resolve() == Path(report).resolve() for p in rows["report_path"] if p)
    except OSError:
        return False


def _task_block(task) -> dict | None:
    if not isinstance(task, dict):
        return None
    metrics = task.get("metrics") if isinstance(task.get("metrics"), dict) else {}
    return {"task": str(task.get("task") or ""), "primary": str(task.get("primary") or ""),
            "metrics": {str(k): _num(v) for k, v in metrics.items() if _is_number(v)},
            "verdict": str(task.get("verdict") or ""), "reason": str(task.get("reason") or ""),
            "higher_is_better": task.get("higher_is_better") if isinstance(task.get("higher_is_better"), bool) else None}


def _tensor_frame(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.copy()
    if "zero_frac" in df and "cand_zero_frac" not in df:
        df["cand_zero_frac"] = df["zero_frac"]
    for col in TENSOR_COLUMNS:
        if col not in df:
            df[col] = "" if col in ("tensor", "op_type", "status") else math.nan
    for col in ("cosine", "rel_l2", "sqnr_db", "max_abs_err"):
        df[col] = pd.to_numeric(df[col].replace({"inf": math.inf, "-inf": -math.inf}), errors="coerce")
    df["tensor"] = df["tensor"].astype(str)
    return df[list(TENSOR_COLUMNS)].drop_duplicates("tensor").reset_index(drop=True)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) or v in ("inf", "-inf")


def _num(v) -> float:
    if v in ("inf", "-inf"):
        return math.inf if v == "inf" else -math.inf
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
