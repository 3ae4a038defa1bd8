"""The results store: every run's summary, per-tensor metrics and findings in one SQLite file, so a
model's accuracy can be followed across runs (did the last calibration make conv_12 worse?).

One run is written in one transaction: a crash or an error part-way leaves no half-recorded run.
The schema version lives in ``PRAGMA user_version``; a file made by a newer qbench is refused
rather than misread.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import sqlite3
import time
import uuid
from pathlib import Path

import pandas as pd

from qbench import __version__
from qbench.advise import Thresholds, evaluate
from qbench.atomic import ensure_dir
from qbench.errors import QbenchError

SCHEMA_VERSION = 2

# Version 1: runs, per-tensor metrics and findings (qbench 0.1's first store).
_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      TEXT NOT NULL,
    model_name      TEXT NOT NULL,
    model_digest    TEXT NOT NULL DEFAULT '',
    precision       TEXT NOT NULL,
    qbench_version  TEXT NOT NULL DEFAULT '',
    data_dir        TEXT NOT NULL DEFAULT '',
    samples         INTEGER,
    status          TEXT NOT NULL DEFAULT '',
    recommendation  TEXT NOT NULL DEFAULT '',
    report_path     TEXT NOT NULL DEFAULT '',
    latency_ms      REAL,
    meta_json       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model_name, created_at);
CREATE TABLE IF NOT EXISTS tensor_metrics (
    run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tensor          TEXT NOT NULL,
    "index"         INTEGER,
    op_type         TEXT NOT NULL DEFAULT '',
    max_abs_err     REAL,
    cosine          REAL,
    rel_l2          REAL,
    sqnr_db         REAL,
    zero_frac       REAL,
    ref_zero_frac   REAL,
    status          TEXT NOT NULL DEFAULT '',
    origin          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, tensor)
);
CREATE INDEX IF NOT EXISTS metrics_by_tensor ON tensor_metrics (tensor);
CREATE TABLE IF NOT EXISTS findings (
    run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    tensor          TEXT NOT NULL DEFAULT '',
    node            TEXT NOT NULL DEFAULT '',
    op_type         TEXT NOT NULL DEFAULT '',
    "index"         INTEGER,
    severity        TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS findings_by_run ON findings (run_id);
"""

# Version 2: the candidates of one invocation share a group id (``qbench check/diff RUN`` read a
# whole run, not one candidate); each candidate's verdict and task; summary metrics per scope
# ("output": the advisor's output-tensor metrics, "task": the judge's task metrics). Rows written by
# version 1 get the group their report path and second of recording imply, which is how one
# ``qbench run`` wrote them.
_V2 = """
ALTER TABLE runs ADD COLUMN group_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN verdict TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN task TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN task_primary TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN task_reason TEXT NOT NULL DEFAULT '';
UPDATE runs SET group_id = 'v1:' || report_path || '@' || created_at WHERE group_id = '';
CREATE INDEX IF NOT EXISTS runs_by_group ON runs (group_id);
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           REAL,
    PRIMARY KEY (run_id, scope, name)
);
"""

# MIGRATIONS[v] takes a store at version v to v + 1. Append only: a released step never changes,
# so every older file meets the same sequence of steps.
MIGRATIONS = (_V1, _V2)
assert len(MIGRATIONS) == SCHEMA_VERSION

RUN_FIELDS = ("data_dir", "samples", "status", "recommendation", "report_path", "qbench_version", "created_at",
              "group_id", "verdict")
# The advisor's output-tensor metrics kept per candidate (scope "output" of run_metrics).
OUTPUT_METRICS = ("output_cosine_min", "output_rel_l2_max", "output_nonfinite", "output_zero", "problem_tensors")
# Writers wait this long for another writer's transaction to finish before giving up (sweeps run
# many cells at once against one file; a run's transaction takes milliseconds).
BUSY_TIMEOUT_S = 60.0


class ResultStore:
    """``ResultStore(path)``: open (creating or migrating if needed) a results database.

    Several processes may write one store at once: the file is in WAL mode (readers never block
    the writer), every write is one ``BEGIN IMMEDIATE`` transaction, and a writer that finds the
    file locked waits up to ``BUSY_TIMEOUT_S`` instead of failing. The candidates recorded through
    one open store form one group (one invocation of ``qbench run``), unless ``group_id`` is given.
    """

    def __init__(self, path: str | Path, group_id: str | None = None):
        self.path = Path(path)
        self.group_id = group_id or uuid.uuid4().hex[:16]
        if self.path.is_dir():
            raise QbenchError(f"results store {self.path} is a folder; expected a SQLite file path")
        ensure_dir(self.path.parent)
        self._conn = None
        try:
            # isolation_level=None: no implicit transactions; _transaction() opens each one itself
            self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError as exc:  # cannot open or read: permissions, a missing mount
            self._close_quietly()
            raise QbenchError(f"cannot open the results store {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise QbenchError(f"{self.path} is not a qbench results store ({exc})") from None
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise QbenchError(f"{self.path} was written by a newer qbench (schema {version} > {SCHEMA_VERSION}); upgrade qbench")
        if version == 0:  # refuse another program's database before _wal(), which would rewrite its header
            try:
                self._refuse_foreign(self._tables(self._conn))
            except QbenchError:
                self._conn.close()
                raise
        self._wal()
        if version < SCHEMA_VERSION:
            self._migrate()

    def _close_quietly(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _wal(self) -> None:
        """WAL mode, persistent: set once per file, cheap after. Switching a new file's journal mode
        needs its exclusive lock, and SQLite answers "database is locked" at once, without the busy
        timeout, while another process holds any lock -- as when a sweep's workers all open a new
        store at their first cell. So the switch is retried, within the same busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._conn.close()
                    raise QbenchError(f"cannot use the results store {self.path}: {exc}") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                self._conn.close()
                raise QbenchError(f"cannot use the results store {self.path}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction that takes the write lock at once (BEGIN IMMEDIATE), so two
        writers queue on the busy timeout instead of one failing when it upgrades a read lock."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @staticmethod
    def _tables(conn) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _refuse_foreign(self, tables: set[str]) -> None:
        """QbenchError when an unversioned file holds tables but not a version-1 store's."""
        if tables and not {"runs", "tensor_metrics", "findings"} <= tables:
            raise QbenchError(f"{self.path} is a SQLite file of another program (tables {sorted(tables)[:5]}), "
                              "not a qbench store")

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION, step by step, in one transaction. The version is read
        again under the write lock: another process may have migrated the file meanwhile."""
        try:
            with self._transaction() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:  # again under the lock: the file may have changed since __init__ looked
                    self._refuse_foreign(self._tables(conn))
                for step in range(version, SCHEMA_VERSION):
                    for statement in _statements(MIGRATIONS[step]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {step + 1}")
        except QbenchError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise QbenchError(f"cannot create or upgrade the results store {self.path}: {exc}") from None

    # -- writing ----------------------------------------------------------------------------------
    def record_run(self, model_name: str, model_digest: str, candidate, **meta) -> int:
        """Store one candidate's comparison; return the new run id. ``meta`` may set data_dir, samples,
        status, recommendation, report_path, qbench_version, created_at, group_id, verdict; other keys
        go to meta_json. The candidate's task result (``candidate.task`` or ``candidate.meta["task"]``:
        a judge ``TaskResult`` or its ``to_dict()``), when present, gives the verdict and the task
        metrics; otherwise the verdict is the advisor's on the output tensors."""

        df = candidate.tensors if candidate.tensors is not None else pd.DataFrame()
        fields = {k: meta.pop(k) for k in RUN_FIELDS if k in meta}
        statuses = df["status"].astype(str) if "status" in df else pd.Series([], dtype=str)
        default_status = "problems" if statuses.isin(["zero", "nonfinite", "divergent"]).any() else "ok"
        task = task_of(candidate)
        output = evaluate(candidate, Thresholds())
        verdict = str(fields.get("verdict") or (task or {}).get("verdict") or output.get("verdict") or "")
        extra = {k: v for k, v in {**(candidate.meta or {}), **meta}.items() if k != "task"}
        run_row = (
            str(fields.get("created_at") or _dt.datetime.now().astimezone().isoformat(timespec="seconds")),
            str(model_name), str(model_digest or ""), str(candidate.precision),
            str(fields.get("qbench_version") or __version__), str(fields.get("data_dir") or ""),
            _int(fields.get("samples", _samples(df))), str(fields.get("status") or default_status),
            str(fields.get("recommendation") or ""), str(fields.get("report_path") or ""),
            _real(candidate.latency_ms), json.dumps(extra, default=str, allow_nan=False, sort_keys=True)
            if _json_ok(extra) else json.dumps({str(k): str(v) for k, v in extra.items()}),
            str(fields.get("group_id") or self.group_id), verdict, _text((task or {}).get("task")),
            _text((task or {}).get("primary")), _text((task or {}).get("reason")),
        )
        metric_rows = [
            (str(r.get("tensor")), _int(r.get("index", i)), str(r.get("op_type") or ""), _real(r.get("max_abs_err")),
             _real(r.get("cosine")), _real(r.get("rel_l2")), _real(r.get("sqnr_db")), _real(r.get("cand_zero_frac")),
             _real(r.get("ref_zero_frac")), str(r.get("status") or ""), _text(r.get("origin")))
            for i, r in enumerate(df.to_dict("records"))
        ]
        finding_rows = [
            (str(f.get("kind", "")), _text(f.get("tensor")), _text(f.get("node")), _text(f.get("op_type")),
             _int(f.get("index")), _text(f.get("severity")), _text(f.get("message")))
            for f in (candidate.findings or [])
        ]
        summary_rows = [("output", k, _real(output.get(k))) for k in OUTPUT_METRICS]
        summary_rows += [("task", str(k), _real_or_none(v)) for k, v in ((task or {}).get("metrics") or {}).items()]
        try:
            with self._transaction() as conn:  # one transaction: commit on success, roll back on any exception
                cur = conn.execute(
                    "INSERT INTO runs (created_at, model_name, model_digest, precision, qbench_version, data_dir,"
                    " samples, status, recommendation, report_path, latency_ms, meta_json, group_id, verdict, task,"
                    " task_primary, task_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_row)
                run_id = cur.lastrowid
                conn.executemany(
                    'INSERT INTO tensor_metrics (run_id, tensor, "index", op_type, max_abs_err, cosine, rel_l2, sqnr_db,'
                    " zero_frac, ref_zero_frac, status, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    ((run_id, *row) for row in metric_rows))
                conn.executemany(
                    'INSERT INTO findings (run_id, kind, tensor, node, op_type, "index", severity, message)'
                    " VALUES (?,?,?,?,?,?,?,?)", ((run_id, *row) for row in finding_rows))
                conn.executemany("INSERT INTO run_metrics (run_id, scope, name, value) VALUES (?,?,?,?)",
                                 ((run_id, *row) for row in summary_rows))
        except sqlite3.IntegrityError as exc:
            raise QbenchError(f"cannot record the {candidate.precision} run of {model_name}: {exc} "
                              "(is a tensor listed twice?); nothing was stored") from None
        except sqlite3.DatabaseError as exc:
            raise QbenchError(f"cannot record the run in {self.path}: {exc}; nothing was stored") from None
        return int(run_id)

    def forget_reports_under(self, folder: str | Path, keep=()) -> int:
        """Delete the runs whose report lies in ``folder`` (their metrics and findings follow: ON
        DELETE CASCADE), except the run ids in ``keep``; return how many went. One transaction.
        A sweep cell owns its report folder, so this makes its record idempotent: a cell retried
        after its worker died, or run again, replaces what an earlier attempt recorded."""
        # an exact prefix test (LIKE would ignore case and treat _ and % as wildcards)
        prefix = str(Path(folder) / "x")[:-1]  # the folder and its separator
        keep = [int(k) for k in keep]
        sql = "DELETE FROM runs WHERE substr(report_path, 1, ?) = ?"
        if keep:
            sql += f" AND id NOT IN ({','.join('?' * len(keep))})"
        try:
            with self._transaction() as conn:
                return conn.execute(sql, (len(prefix), prefix, *keep)).rowcount
        except sqlite3.DatabaseError as exc:
            raise QbenchError(f"cannot update the results store {self.path}: {exc}") from None

    def absorb(self, other: str | Path, replace_under: str | Path) -> list[int]:
        """Copy every run of the store file ``other`` (a cell's own store, written on another host)
        with its metrics and findings into this store, in one transaction that first deletes the
        runs whose report lies in ``replace_under`` (``forget_reports_under``); return the new run
        ids. One transaction: a reader sees the cell's old record or its new one, never both or a
        part. ``other`` must be at this store's schema version (the same qbench wrote it)."""
        self._conn.execute("ATTACH DATABASE ? AS cell", (str(other),))
        try:
            version = self._conn.execute("PRAGMA cell.user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise QbenchError(f"{other} is a results store of schema {version}, not {SCHEMA_VERSION}: "
                                  "every node of a sweep must run the same qbench")
            prefix = str(Path(replace_under) / "x")[:-1]
            with self._transaction() as conn:
                conn.execute("DELETE FROM main.runs WHERE substr(report_path, 1, ?) = ?", (len(prefix), prefix))
                run_columns = ", ".join(f'"{c}"' for c in self._columns(conn, "runs") if c != "id")
                new_ids = []
                for (old_id,) in conn.execute("SELECT id FROM cell.runs ORDER BY id").fetchall():
                    new_id = conn.execute(f"INSERT INTO main.runs ({run_columns}) SELECT {run_columns} FROM cell.runs "
                                          "WHERE id = ?", (old_id,)).lastrowid
                    for table in ("tensor_metrics", "findings", "run_metrics"):
                        columns = ", ".join(f'"{c}"' for c in self._columns(conn, table) if c != "run_id")
                        conn.execute(f"INSERT INTO main.{table} (run_id, {columns}) SELECT ?, {columns} "
                                     f"FROM cell.{table} WHERE run_id = ? ORDER BY rowid", (new_id, old_id))
                    new_ids.append(int(new_id))
            return new_ids
        except sqlite3.DatabaseError as exc:
            raise QbenchError(f"cannot copy the runs of {other} into {self.path}: {exc}") from None
        finally:
            self._conn.execute("DETACH DATABASE cell")

    @staticmethod
    def _columns(conn, table: str) -> list[str]:
        return [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]

    # -- reading ----------------------------------------------------------------------------------
    def runs(self, model_name: str | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM runs"
        params: tuple = ()
        if model_name is not None:
            sql += " WHERE model_name = ?"
            params = (model_name,)
        return pd.read_sql_query(sql + " ORDER BY created_at, id", self._conn, params=params)

    def run(self, run_id: int) -> dict | None:
        """One candidate's row as a dict, or None."""
        frame = pd.read_sql_query("SELECT * FROM runs WHERE id = ?", self._conn, params=(int(run_id),))
        return None if frame.empty else frame.iloc[0].to_dict()

    def group(self, group_id: str) -> pd.DataFrame:
        """The candidates recorded by one invocation, in the order they were recorded."""
        return pd.read_sql_query("SELECT * FROM runs WHERE group_id = ? ORDER BY id", self._conn, params=(str(group_id),))

    def groups(self, model_name: str | None = None) -> list[str]:
        """Group ids, oldest invocation first."""
        sql = "SELECT group_id, min(id) AS first FROM runs"
        params: tuple = ()
        if model_name is not None:
            sql += " WHERE model_name = ?"
            params = (model_name,)
        return [r[0] for r in self._conn.execute(sql + " GROUP BY group_id ORDER BY first", params)]

    def run_metrics(self, run_id: int) -> dict[str, dict[str, float | None]]:
        """``{"output": {...}, "task": {...}}`` summary metrics of one candidate."""
        out: dict[str, dict] = {}
        for scope, name, value in self._conn.execute(
                "SELECT scope, name, value FROM run_metrics WHERE run_id = ? ORDER BY rowid", (int(run_id),)):
            out.setdefault(scope, {})[name] = value
        return out

    def tensor_metrics(self, run_id: int) -> pd.DataFrame:
        return pd.read_sql_query('SELECT * FROM tensor_metrics WHERE run_id = ? ORDER BY "index", tensor',
                                 self._conn, params=(int(run_id),))

    def findings(self, run_id: int) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM findings WHERE run_id = ? ORDER BY rowid", self._conn, params=(int(run_id),))

    def tensor_history(self, model_name: str, tensor: str) -> pd.DataFrame:
        """One row per run of ``model_name`` that compared ``tensor``, oldest first."""
        return pd.read_sql_query(
            "SELECT r.id AS run_id, r.created_at, r.precision, r.model_digest, m.\"index\", m.op_type, m.max_abs_err,"
            " m.cosine, m.rel_l2, m.sqnr_db, m.zero_frac, m.ref_zero_frac, m.status, m.origin"
            " FROM tensor_metrics m JOIN runs r ON r.id = m.run_id"
            " WHERE r.model_name = ? AND m.tensor = ? ORDER BY r.created_at, r.id",
            self._conn, params=(model_name, tensor))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def task_of(candidate) -> dict | None:
    """The judge's result for a candidate as a plain dict (``TaskResult.to_dict()`` keys), or None
    when the run had no task judge (the output-tensor verdict then stands)."""
    task = getattr(candidate, "task", None)
    if task is None:
        task = (getattr(candidate, "meta", None) or {}).get("task")
    if task is None:
        return None
    if hasattr(task, "to_dict"):
        task = task.to_dict()
    return task if isinstance(task, dict) else None


def _real_or_none(v) -> float | None:
    """A task metric: numbers are stored, anything else (a string, a list) is not a metric."""
    try:
        return _real(v)
    except QbenchError:
        return None


def _statements(script: str) -> list[str]:
    """A migration script as single statements (``executescript`` would commit the open transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _real(v) -> float | None:
    """SQLite REAL; NaN is stored as NULL (unknown), infinities as they are (SQLite keeps them)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        if v is None:
            return None
        raise QbenchError(f"expected a number in the comparison, got {v!r}") from None
    return None if math.isnan(f) else f


def _int(v) -> int | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _samples(df: pd.DataFrame):
    if "samples" in df and len(df):
        s = pd.to_numeric(df["samples"], errors="coerce").dropna()
        return int(s.max()) if len(s) else None
    return None


def _json_ok(d: dict) -> bool:
    try:
        json.dumps(d, default=str, allow_nan=False)
        return True
    except (TypeError, ValueError):  # NaN/Inf values, or keys JSON cannot hold (tuples)
        return False
