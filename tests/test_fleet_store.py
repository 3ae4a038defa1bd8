"""The store's schema migrations and its safety with several writing processes at once."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pandas as pd
import pytest

from qbench.errors import QbenchError
from qbench.report import CandidateResult
from qbench.store import MIGRATIONS, SCHEMA_VERSION, ResultStore, _statements


def _candidate(precision: str, cosine: float, task: dict | None = None) -> CandidateResult:
    frame = pd.DataFrame({"tensor": ["conv", "out"], "index": [0, 1], "cosine": [0.999, cosine],
                          "cosine_min": [0.999, cosine], "rel_l2": [0.01, 0.05], "status": ["ok", "ok"],
                          "is_output": [False, True]})
    meta = {"task": task} if task else {}
    return CandidateResult(precision, frame, [], [], meta)


def _v1_store(path) -> None:
    """A store exactly as qbench's first schema wrote it, with one run, one metric and one finding."""
    con = sqlite3.connect(str(path), isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO runs (created_at, model_name, precision, report_path) VALUES"
                " ('2026-01-01T00:00:00', 'det', 'int8', 'reports/det/index.html'),"
                " ('2026-01-01T00:00:00', 'det', 'fp16', 'reports/det/index.html'),"
                " ('2026-01-02T00:00:00', 'det', 'int8', 'reports/det/index.html')")
    con.execute("INSERT INTO tensor_metrics (run_id, tensor, cosine) VALUES (1, 'x', 0.5)")
    con.execute("INSERT INTO findings (run_id, kind, message) VALUES (1, 'zero', 'm')")
    con.close()


def test_a_version_1_store_is_migrated_keeping_every_row(tmp_path):
    db = tmp_path / "old.sqlite"
    _v1_store(db)
    with ResultStore(db) as store:
        runs = store.runs("det")
        assert len(runs) == 3 and list(store.tensor_metrics(1)["cosine"]) == [0.5] and len(store.findings(1)) == 1
        # the two candidates recorded in the same second for the same report form one group
        assert runs["group_id"].iloc[0] == runs["group_id"].iloc[1] != runs["group_id"].iloc[2]
        assert len(store.groups("det")) == 2
        new_id = store.record_run("det", "d", _candidate("int8", 0.97, {"task": "classify", "primary": "top1_agreement",
                                                                         "metrics": {"top1_agreement": 0.95},
                                                                         "verdict": "fail", "reason": "r"}))
        assert store.run(new_id)["verdict"] == "fail" and store.run(new_id)["task"] == "classify"
        metrics = store.run_metrics(new_id)
        assert metrics["task"] == {"top1_agreement": 0.95}
        assert metrics["output"]["output_cosine_min"] == pytest.approx(0.97)
    con = sqlite3.connect(str(db))
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_without_a_task_the_output_verdict_is_stored(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        good = store.record_run("m", "d", _candidate("fp16", 0.9999))
        bad = store.record_run("m", "d", _candidate("int8", 0.5))
        assert store.run(good)["verdict"] == "pass" and store.run(bad)["verdict"] == "fail"
        assert store.run(good)["group_id"] == store.run(bad)["group_id"]  # one open store = one invocation
    with ResultStore(tmp_path / "s.sqlite") as store:
        third = store.record_run("m", "d", _candidate("fp16", 0.9999))
        assert store.run(third)["group_id"] != store.run(good)["group_id"]


WRITERS, PER_WRITER = 4, 15


def _writer(path: str, worker: int) -> None:
    # each record is its own store opening, as each `qbench run` of a sweep does
    for k in range(PER_WRITER):
        with ResultStore(path) as store:
            store.record_run(f"model-{worker}", "d", _candidate("int8", 0.9 + k / 1000), samples=k)


def test_parallel_writers_lose_no_row(tmp_path):
    db = tmp_path / "shared.sqlite"
    # a fresh file: the writers also race to create and migrate it
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(db), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    with ResultStore(db) as store:
        runs = store.runs()
        assert len(runs) == WRITERS * PER_WRITER
        for w in range(WRITERS):
            assert sorted(runs.loc[runs["model_name"] == f"model-{w}", "samples"]) == list(range(PER_WRITER))
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT count(*) FROM tensor_metrics").fetchone()[0] == 2 * WRITERS * PER_WRITER
    assert con.execute("SELECT count(*) FROM run_metrics WHERE scope = 'output'").fetchone()[0] == 5 * WRITERS * PER_WRITER
    con.close()


def test_a_cells_own_store_replaces_its_record_in_the_sweeps_store_in_one_step(tmp_path):
    """How a Ray cell lands: its own store (written on its node) is copied into the sweep's store,
    replacing what that store held for the cell's report folder and nothing else."""
    main, cell = tmp_path / "sweep.sqlite", tmp_path / "cell.sqlite"
    folder = tmp_path / "out" / "det" / "int8-minmax"
    neighbour = tmp_path / "out" / "DET" / "int8-minmax"  # differs only in case: not the cell's
    with ResultStore(main) as store:
        stale = store.record_run("det", "d", _candidate("int8", 0.5), report_path=str(folder / "index.html"))
        other = store.record_run("det", "d", _candidate("int8", 0.7), report_path=str(neighbour / "index.html"))
    with ResultStore(cell) as store:
        store.record_run("det", "d", _candidate("int8", 0.9, {"task": "classify", "verdict": "pass",
                                                              "metrics": {"top1_agreement": 1.0}}),
                         report_path=str(folder / "index.html"))
    with ResultStore(main) as store:
        (new,) = store.absorb(cell, replace_under=folder)
        runs = store.runs()
        assert set(runs["id"]) == {other, new} and stale not in set(runs["id"])
        assert store.run(new)["verdict"] == "pass"
        assert list(store.tensor_metrics(new)["cosine"]) == [0.999, 0.9]
        assert store.run_metrics(new)["task"] == {"top1_agreement": 1.0}
        assert len(store.tensor_metrics(stale)) == 0  # the stale run's metrics went with it
        # absorbing the same cell again (a retry that also returned) still leaves it once
        (again,) = store.absorb(cell, replace_under=folder)
        assert set(store.runs()["id"]) == {other, again}
    with sqlite3.connect(str(cell)) as conn:
        conn.execute("PRAGMA user_version = 1")
    with ResultStore(main) as store, pytest.raises(QbenchError, match="schema 1, not 2"):
        store.absorb(cell, replace_under=folder)
