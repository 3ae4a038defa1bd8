"""``qbench sweep SPEC``: a grid of runs, models x precisions x calibrators x tasks, run in parallel.

A cell is one ``qbench run`` of one model with one precision, one calibration method and one task,
written to ``<out>/<model>/<cell>/`` and recorded in the shared store ``<out>/qbench.sqlite`` (the
store takes concurrent writers). Cells run in a local process pool (the default) or as Ray tasks on
a cluster (``--ray ADDRESS``, Ray's own API: ``ray.init``, ``ray.remote``, ``ray.wait``).

Resumable: a cell that finished writes ``cell.json`` last, naming a key of everything that decides
its result (model file, data folder, precision, method, task, limits); a later sweep skips a cell
whose ``cell.json`` says done with the same key, and reruns failed or changed ones. FP16 does not
use calibrated ranges, so FP16 cells are not multiplied by the calibrators.

The spec (TOML or YAML; paths relative to the spec's folder)::

    out = "reports/sweep"                 # default: sweep/ beside the spec
    data = "data"                          # default data folder for every model
    limit = 4                              # samples per cell (calibration and comparison)
    fallback = false                       # INT8 fallback search in each cell [true]
    models = ["a.onnx", {path = "b.onnx", data = "b_data", name = "b", tasks = ["detect"],
               task_options = {detect = {score_threshold = 0.3}}}]
    precisions = ["int8", "fp16"]          # [int8, fp16]
    calibrators = ["entropy", "minmax"]   # [entropy]
    tasks = ["auto"]                       # [the judge's default]; a model may name its own
    task_options = {classify = {max_drop = 0.01}}   # per task: the judge's options and tolerances
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from qbench import atomic
from qbench.cpu import ENV as THREADS_ENV
from qbench.errors import MissingDependencyError, QbenchError
from qbench.fleet.runs import load_results_json
from qbench.jsonsafe import jsonable
from qbench.pipeline import PRECISIONS, RunConfig, run_pipeline

CELL_FILE = "cell.json"
SPEC_KEYS = {"out", "data", "limit", "fallback", "models", "precisions", "calibrators", "tasks", "max_float",
             "task_options"}
MODEL_KEYS = {"path", "data", "name", "tasks", "task_options"}
CALIBRATORS = ("entropy", "minmax", "percentile")


@dataclass(frozen=True)
class Cell:
    model_name: str
    model: str  # absolute paths: a Ray worker on another host reads the same shared filesystem
    data: str
    precision: str
    calibrator: str  # "" for FP16 (no ranges used)
    task: str  # "" when the sweep names no task
    limit: int | None
    fallback: bool
    max_float: int
    out: str  # this cell's report folder
    store: str
    task_options: str = "{}"  # JSON (sorted keys): a frozen cell is hashable and its key stable

    @property
    def id(self) -> str:
        parts = [self.precision] + ([self.calibrator] if self.calibrator else []) + ([self.task] if self.task else [])
        return "-".join(_slug(p) for p in parts)

    def key(self) -> str:
        """What decides the cell's result; a finished cell with another key is run again."""
        # the model file's size and mtime stand for its content (hashing a large model per cell is not free)
        stat = (os.stat(self.model).st_size, os.stat(self.model).st_mtime_ns) if os.path.exists(self.model) else None
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "store")}
        return hashlib.sha256(json.dumps([fields, stat], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SweepPlan:
    spec: Path
    out: Path
    cells: list[Cell]
    models: list[str]


@dataclass
class SweepResult:
    index: Path
    rows: list[dict] = field(default_factory=list)
    done: int = 0
    skipped: int = 0
    failed: int = 0
    elapsed_s: float = 0.0


def read_spec(path: Path) -> dict:
    """A TOML (.toml) or YAML (.yaml/.yml) mapping; QbenchError on anything else."""
    if path.is_dir():
        raise QbenchError(f"sweep spec {path} is a folder; expected a .toml, .yaml or .yml file")
    if not path.is_file():
        raise QbenchError(f"sweep spec {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, or binary / another encoding
        raise QbenchError(f"sweep spec {path} is not readable UTF-8 text: {exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            raise QbenchError(f"sweep spec {path}: expected a .toml, .yaml or .yml file")
    except QbenchError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError: the parser's message names the line
        raise QbenchError(f"sweep spec {path} is not valid {suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise QbenchError(f"sweep spec {path} must be a mapping of keys (models, precisions, ...)")
    return doc


def load_spec(path: str | Path, out: str | Path | None = None, limit: int | None = None) -> SweepPlan:
    """Read and validate the spec; every path made absolute. ``out``/``limit`` override the spec's."""
    spec_path = Path(path)
    doc = read_spec(spec_path)
    unknown = set(doc) - SPEC_KEYS
    if unknown:
        raise QbenchError(f"sweep spec {spec_path}: unknown key(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    base = spec_path.resolve().parent
    out_dir = Path(out).resolve() if out else _path(base, doc.get("out", "sweep"))
    precisions = _list(doc, "precisions", list(PRECISIONS))
    calibrators = _list(doc, "calibrators", ["entropy"])
    tasks = _list(doc, "tasks", [""])
    for p in precisions:
        if p not in PRECISIONS:
            raise QbenchError(f"sweep spec: unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    for c in calibrators:
        if c not in CALIBRATORS:
            raise QbenchError(f"sweep spec: unknown calibrator {c!r}; choose from {', '.join(CALIBRATORS)}")
    cell_limit = limit if limit is not None else doc.get("limit")
    if cell_limit is not None and (not isinstance(cell_limit, int) or isinstance(cell_limit, bool) or cell_limit < 1):
        raise QbenchError(f"sweep spec: limit must be a whole number ≥ 1, not {cell_limit!r}")
    fallback = doc.get("fallback", True)
    max_float = doc.get("max_float", 8)
    if not isinstance(fallback, bool) or not isinstance(max_float, int):
        raise QbenchError("sweep spec: fallback must be true/false and max_float a whole number")
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise QbenchError(f"sweep spec {spec_path}: 'models' must be a non-empty list of ONNX paths")
    cells, names = [], []
    store = str(out_dir / "qbench.sqlite")
    for entry in models:
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise QbenchError(f"sweep spec: each model is a path or {{path = ..., data = ..., name = ...}}, not {entry!r}")
        if set(entry) - MODEL_KEYS:
            raise QbenchError(f"sweep spec: unknown key(s) {sorted(set(entry) - MODEL_KEYS)} for model {entry['path']}; "
                              f"known: {sorted(MODEL_KEYS)}")
        model_tasks = _list(entry, "tasks", tasks)
        if any(model_tasks) and "task" not in {f.name for f in dataclasses.fields(RunConfig)}:
            raise QbenchError("sweep spec names tasks, but this qbench has no task judge (RunConfig.task)")
        shared, own = _task_options(doc.get("task_options")), _task_options(entry.get("task_options"))
        options = {t: {**shared.get(t, {}), **own.get(t, {})} for t in {*shared, *own}}  # the model's win
        model = _path(base, entry["path"])
        if not model.is_file():
            raise QbenchError(f"sweep spec: model {model} does not exist")
        data = entry.get("data", doc.get("data"))
        if not isinstance(data, str):
            raise QbenchError(f"sweep spec: no data folder for {entry['path']} (set 'data' for the sweep or the model)")
        data_dir = _path(base, data)
        if not data_dir.is_dir():
            raise QbenchError(f"sweep spec: data folder {data_dir} does not exist")
        name = str(entry.get("name") or model.stem)
        if name in names:
            raise QbenchError(f"sweep spec: two models are called {name!r}; give one a 'name'")
        if _slug(name) in {_slug(n) for n in names}:
            raise QbenchError(f"sweep spec: models {name!r} and another share the folder name {_slug(name)!r}; rename one")
        names.append(name)
        seen = set()
        for precision in precisions:
            for calibrator in calibrators:
                for task in model_tasks:
                    cal = calibrator if precision == "int8" else ""  # FP16 reads no ranges
                    if (precision, cal, task) in seen:
                        continue
                    seen.add((precision, cal, task))
                    cell = Cell(name, str(model), str(data_dir), precision, cal, str(task or ""), cell_limit, fallback,
                                max_float, "", store, json.dumps(options.get(task, {}), sort_keys=True))
                    cells.append(dataclasses.replace(cell, out=str(out_dir / _slug(name) / cell.id)))
    return SweepPlan(spec_path, out_dir, cells, names)


def run_cell(cell: Cell) -> dict:
    """Run one cell (in whatever process or Ray worker calls it); never raises: a failure is a row."""
    started = time.perf_counter()
    row = _row(cell)
    try:
        extra = {"task": cell.task, "task_options": json.loads(cell.task_options)} if cell.task else {}
        cfg = RunConfig(model=Path(cell.model), data=Path(cell.data), out=Path(cell.out), precisions=(cell.precision,),
                        method=cell.calibrator or "minmax", calib_limit=cell.limit, compare_limit=cell.limit,
                        fallback=cell.fallback, max_float=cell.max_float, store=Path(cell.store), progress=False,
                        **extra)
        outcome = run_pipeline(cfg, echo=lambda _msg: None)
        row.update(_outcome_row(cell, outcome))
    except QbenchError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or a crash inside one cell must not stop the other cells
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["elapsed_s"] = round(time.perf_counter() - started, 2)
    atomic.write_text(Path(cell.out) / CELL_FILE, json.dumps(row, indent=1, allow_nan=False, default=str))
    return row


def _row(cell: Cell) -> dict:
    return {"model": cell.model_name, "cell": cell.id, "precision": cell.precision, "calibrator": cell.calibrator,
            "task": cell.task, "status": "pending", "verdict": "", "deciding_metric": "", "value": None,
            "recommendation": "", "report": "", "error": "", "elapsed_s": None, "key": cell.key()}


def _outcome_row(cell: Cell, outcome) -> dict:
    view = load_results_json(Path(outcome.results_json))
    cand = view.candidates.get(cell.precision)
    value = cand.metrics().get(cand.deciding) if cand else None
    judged = ((cand.task or {}).get("task") if cand else "") or cell.task  # what the judge resolved (e.g. auto)
    return {"status": "done", "task": judged, "verdict": cand.verdict if cand else "",
            "deciding_metric": cand.deciding if cand else "",
            "value": None if value is None or math.isnan(value) else value,
            "recommendation": view.recommendation, "report": str(outcome.report)}


def finished(cell: Cell) -> dict | None:
    """The cell's saved row when it finished with the same key, else None (run it)."""
    path = Path(cell.out) / CELL_FILE
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if row.get("status") == "done" and row.get("key") == cell.key() and Path(row.get("report", "")).is_file():
        return row
    return None


def run_sweep(plan: SweepPlan, jobs: int | None = None, ray_address: str | None = None, rerun: bool = False,
              echo=print, fork: bool = False) -> SweepResult:
    """Run the plan's unfinished cells (process pool, or Ray with ``ray_address``) and write the index.
    ``fork``: this process has run no model and started no thread pool, so pool workers may be forked
    from it (``_pool_context``); the ``qbench sweep`` command passes True, library callers keep False."""
    started = time.perf_counter()
    atomic.ensure_dir(plan.out)
    rows: dict[Cell, dict] = {}
    todo = []
    for cell in plan.cells:
        saved = None if rerun else finished(cell)
        if saved is not None:
            rows[cell] = {**saved, "skipped": True}
        else:
            rows[cell] = _row(cell)
            todo.append(cell)
    result = SweepResult(plan.out / "index.html", skipped=len(plan.cells) - len(todo))
    echo(f"sweep: {len(plan.cells)} cell(s) over {len(plan.models)} model(s); {result.skipped} already finished, "
         f"{len(todo)} to run" + (f" on Ray ({ray_address})" if ray_address else ""))
    write_index(plan, list(rows.values()))

    def finish(cell: Cell, row: dict) -> None:
        rows[cell] = row
        result.done += 1
        result.failed += row["status"] != "done"
        shown = f"{row['verdict']} ({row['deciding_metric']} {_fmt(row['value'])})" if row["status"] == "done" else \
            f"FAILED: {row['error']}"
        echo(f"sweep: [{result.done}/{len(todo)}] {cell.model_name} {cell.id}: {shown} in {row['elapsed_s']} s")
        write_index(plan, list(rows.values()))  # after each cell: the page shows progress, never a torn file

    if todo:
        # largest models first (file size stands for cost): a big cell started last would leave the
        # other workers idle at the end (longest-first list scheduling; docs/FLEET.md)
        todo.sort(key=lambda c: -(os.path.getsize(c.model) if os.path.exists(c.model) else 0))
        if ray_address:
            _run_on_ray(todo, ray_address, jobs, finish)
        else:
            _run_locally(todo, jobs, finish, fork)
    result.rows = list(rows.values())
    result.elapsed_s = round(time.perf_counter() - started, 2)
    result.index = write_index(plan, result.rows, elapsed_s=result.elapsed_s)
    return result


def _run_locally(todo: list[Cell], jobs: int | None, finish, fork: bool = False) -> None:
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    if workers == 1:  # no pool: the sequential baseline, and the cheapest way to run one cell
        for cell in todo:
            finish(cell, run_cell(cell))
        return
    ctx = _pool_context(fork)
    # each worker gets its share of the cores, not all of them (qbench.cpu says why)
    share = max(1, (os.cpu_count() or 1) // workers)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_use_threads,
                                initargs=(share,)) as pool:
        futures = {pool.submit(run_cell, cell): cell for cell in todo}
        for future in cf.as_completed(futures):
            cell = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                row = {**_row(cell), "status": "failed", "error": f"worker died: {type(exc).__name__}: {exc}"}
            finish(cell, row)


def _pool_context(fork: bool):
    """How the pool's workers start. Each must begin with qbench imported and numba's kernels loaded
    (seconds per process otherwise; ``qbench.fleet.warm``). ``fork``: the caller knows this process
    has run no model and started no thread pool (the ``qbench sweep`` command), so a plain fork of it,
    after loading ``warm`` here, gives every worker those imports for free. Otherwise (a notebook, a
    test) a fork could copy an ONNX Runtime or numba pool half-alive into the child, so the workers
    come from a forkserver, whose clean server imports ``warm`` once: a second interpreter's start
    and imports, about 1 s more before the first cell runs."""
    # Linux only: macOS lists fork too, but its system libraries are not fork-safe (Python's default there is spawn)
    if fork and sys.platform.startswith("linux"):
        import qbench.fleet.warm  # noqa: F401  the forked workers inherit it

        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["qbench.fleet.warm", "qbench.fleet.sweep"])
    return ctx


def _use_threads(count: int) -> None:
    """Worker initializer: this process's thread budget (``QBENCH_THREADS``, read by ``qbench.cpu``)."""
    os.environ[THREADS_ENV] = str(count)


def _run_cell_with_threads(cell: Cell, count: int) -> dict:
    """``run_cell`` under a thread budget: a Ray task holds ``count`` CPUs of its node, not the node."""
    _use_threads(count)
    return run_cell(cell)


def _run_on_ray(todo: list[Cell], address: str, jobs: int | None, finish) -> None:
    """Each cell is one Ray task (one CPU); results are collected as they finish (``ray.wait``).
    ``local`` starts a Ray instance on this machine for the sweep and stops it afterwards."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("--ray needs Ray: pip install 'qbench[fleet]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        try:
            if address == "local":
                ray.init(num_cpus=jobs or os.cpu_count() or 1, **kwargs)
            else:
                _reachable(address)
                ray.init(address=address, **kwargs)
        except QbenchError:
            raise
        except Exception as exc:  # ConnectionError and Ray's own errors: one line
            raise QbenchError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_cell_with_threads)
        pending = {remote.remote(cell, 1): cell for cell in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                row = ray.get(ready[0])
            except Exception as exc:  # the task's worker died
                row = {**_row(cell), "status": "failed", "error": f"Ray task failed: {str(exc).splitlines()[0]}"}
            finish(cell, row)
    finally:
        if started_here:
            ray.shutdown()


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """Refuse a HOST:PORT nobody listens on in seconds: Ray itself retries an absent head for minutes."""
    import socket

    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if match is None:  # "auto" and other forms Ray resolves itself
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout_s).close()
    except OSError as exc:
        raise QbenchError(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc}") from None


_INDEX = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qbench sweep</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem;text-align:left} th{background:#f3f3f3}
.pass{background:#e6f4e6} .fail{background:#fbe3e3} .inconclusive{background:#fff4d6} .failed{background:#f4d0d0}
.pending{color:#888}
</style></head><body>
<h1>qbench sweep</h1>
<p>{{ rows|length }} cell(s) over {{ models|length }} model(s): {{ counts.done }} done, {{ counts.failed }} failed,
{{ counts.pending }} pending{% if elapsed_s is not none %} · {{ elapsed_s }} s{% endif %} · spec <code>{{ spec }}</code>
· <a href="index.json">index.json</a> · <a href="index.csv">index.csv</a></p>
<h2>Models × configurations</h2>
<table id="matrix"><tr><th>model</th>{% for c in configs %}<th>{{ c }}</th>{% endfor %}</tr>
{% for m in models %}<tr><th>{{ m }}</th>{% for c in configs %}{% set r = grid.get((m, c)) %}
<td class="{{ (r.verdict if r.status == 'done' else r.status) if r else '' }}" title="{{ r.deciding_metric if r else '' }}">{% if r and r.status == 'done' %}<a href="{{ r.href }}">{{ r.verdict or "report" }}</a> {{ r.value_text }}{% elif r %}{{ r.status }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Cells</h2>
<table id="cells"><tr><th>model</th><th>cell</th><th>precision</th><th>calibrator</th><th>task</th><th>status</th><th>verdict</th><th>deciding metric</th><th>value</th><th>recommendation</th><th>time s</th><th>report</th></tr>
{% for r in rows %}<tr class="{{ r.status }}"><td>{{ r.model }}</td><td>{{ r.cell }}</td><td>{{ r.precision }}</td><td>{{ r.calibrator or "—" }}</td><td>{{ r.task or "—" }}</td><td>{{ r.status }}{% if r.skipped %} (earlier){% endif %}</td><td>{{ r.verdict }}</td><td>{{ r.deciding_metric }}</td><td>{{ r.value_text }}</td><td>{{ r.recommendation }}</td><td>{{ r.elapsed_s if r.elapsed_s is not none else "" }}</td><td>{% if r.href %}<a href="{{ r.href }}">{{ r.model }}/{{ r.cell }}</a>{% else %}{{ r.error }}{% endif %}</td></tr>
{% endfor %}</table>
</body></html>
""")


def write_index(plan: SweepPlan, rows: list[dict], elapsed_s: float | None = None) -> Path:
    """index.json and index.csv, then index.html (links relative to the sweep folder)."""
    import pandas as pd

    shown = []
    for r in rows:
        r = dict(r)
        report = r.get("report") or ""
        r["href"] = ""
        if r.get("status") == "done" and report:
            try:
                rel = Path(report).resolve().relative_to(plan.out.resolve())
                r["href"] = "/".join(urllib.parse.quote(part) for part in rel.parts)
            except ValueError:
                r["href"] = Path(report).resolve().as_uri()
        r["value_text"] = _fmt(r.get("value"))
        shown.append(r)
    configs = list(dict.fromkeys(r["cell"] for r in shown))
    counts = {"done": sum(r["status"] == "done" for r in shown), "failed": sum(r["status"] == "failed" for r in shown),
              "pending": sum(r["status"] == "pending" for r in shown)}
    atomic.write_text(plan.out / "index.json", json.dumps(jsonable({"spec": str(plan.spec), "cells": rows}), indent=1,
                                                          allow_nan=False))
    columns = ["model", "cell", "precision", "calibrator", "task", "status", "verdict", "deciding_metric", "value",
               "recommendation", "elapsed_s", "report", "error"]
    atomic.write_text(plan.out / "index.csv", pd.DataFrame(rows, columns=columns).to_csv(index=False))
    page = _INDEX.render(rows=shown, models=plan.models, configs=configs, counts=counts, elapsed_s=elapsed_s,
                         spec=str(plan.spec), grid={(r["model"], r["cell"]): r for r in shown})
    return atomic.write_text(plan.out / "index.html", page)


def _list(doc: dict, key: str, default: list) -> list:
    value = doc.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise QbenchError(f"sweep spec: {key!r} must be a non-empty list of names")
    return list(dict.fromkeys(value))


def _task_options(value) -> dict:
    """``{task: {option: value}}`` from the spec; the judge itself checks each option when the cell runs."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise QbenchError("sweep spec: task_options must map a task name to its options, e.g. {classify = {max_drop = 0.01}}")
    return {str(k): dict(v) for k, v in value.items()}


def _path(base: Path, value) -> Path:
    if not isinstance(value, str):
        raise QbenchError(f"sweep spec: expected a path, got {value!r}")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _slug(name: str) -> str:
    """A folder name from a model or cell name (model names may hold anything)."""
    s = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)).strip("._") or "model"
    return s[:80]


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:.4f}"
