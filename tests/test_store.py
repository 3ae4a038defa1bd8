"""The SQLite results store: runs survive reopening, and a failed record leaves nothing behind."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest

from qbench.errors import QbenchError
from qbench.report import CandidateResult
from qbench.store import SCHEMA_VERSION, ResultStore
from test_report_frames import real_candidates


def _counts(path) -> tuple[int, int, int]:
    con = sqlite3.connect(str(path))
    try:
        return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "tensor_metrics", "findings"))
    finally:
        con.close()


def test_record_reopen_and_query_history(tmp_path, graph, small_dataset):
    real = real_candidates(graph, small_dataset)
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        ids = [store.record_run("det", graph.digest, real[p], data_dir="calib_data", samples=2, report_path="r/index.html")
               for p in ("int8", "fp16")]
        store.record_run("other-model", "d", real["fp16"])
    assert ids[0] != ids[1]
    with ResultStore(db) as store:
        runs = store.runs("det")
        assert list(runs["id"]) == ids and list(runs["precision"]) == ["int8", "fp16"]
        assert set(runs["model_digest"]) == {graph.digest} and set(runs["data_dir"]) == {"calib_data"}
        assert runs.set_index("precision").loc["int8", "status"] == (
            "problems" if (real["int8"].tensors["status"] != "ok").any() else "ok")
        assert len(store.runs()) == 3
        frame = real["int8"].tensors
        name = frame.loc[frame["cosine"].idxmin(), "tensor"]
        hist = store.tensor_history("det", name)
        assert list(hist["precision"]) == ["int8", "fp16"]
        for prec, cos in zip(hist["precision"], hist["cosine"]):
            f = real[prec].tensors
            assert math.isclose(cos, float(f.loc[f["tensor"] == name, "cosine"].iloc[0]))
        metrics = store.tensor_metrics(ids[0])
        assert list(metrics["tensor"]) == list(frame["tensor"])
        assert len(store.findings(ids[0])) == len(real["int8"].findings)
    con = sqlite3.connect(str(db))
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_a_failure_inside_record_run_leaves_no_partial_run(tmp_path):
    db = tmp_path / "results.sqlite"
    good = CandidateResult("fp16", pd.DataFrame({"tensor": ["a", "b"], "cosine": [1.0, np.nan], "sqnr_db": [math.inf, 3.0]}),
                           [{"kind": "divergent", "tensor": "b", "severity": "warning", "message": "m"}])
    # the same tensor twice: the runs row and the first metric insert succeed, the second fails
    bad = CandidateResult("int8", pd.DataFrame({"tensor": ["a", "b", "a"], "cosine": [1.0, 0.5, 0.4]}),
                          [{"kind": "divergent", "tensor": "b", "severity": "warning", "message": "m"}])
    with ResultStore(db) as store:
        store.record_run("m", "d", good)
        before = _counts(db)
        with pytest.raises(QbenchError, match="nothing was stored"):
            store.record_run("m", "d", bad)
        assert _counts(db) == before == (1, 2, 1)
        row = store.tensor_metrics(store.runs()["id"].iloc[0]).set_index("tensor")
        assert pd.isna(row.loc["b", "cosine"]) and row.loc["a", "sqnr_db"] == math.inf  # NaN is NULL, inf kept


def test_unusable_files_are_refused_with_one_line(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(QbenchError, match="not a qbench results store"):
        ResultStore(garbage)
    newer = tmp_path / "newer.sqlite"
    con = sqlite3.connect(str(newer))
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(QbenchError, match="newer qbench"):
        ResultStore(newer)
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(str(foreign))
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(QbenchError, match="another program"):
        ResultStore(foreign)
    with pytest.raises(QbenchError, match="folder"):
        ResultStore(tmp_path)


def test_a_new_store_opened_while_another_process_holds_a_lock_waits(tmp_path):
    """A sweep's workers open a new store at once: switching its journal to WAL needs the exclusive
    lock, which SQLite refuses at once (no busy timeout) while another connection holds any lock.
    The store waits for it instead of failing the cell ("database is locked", seen in bench_sweep)."""
    import sqlite3
    import threading

    from qbench.store import ResultStore

    path = tmp_path / "new.sqlite"
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file's reserved lock
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with ResultStore(path):
            pass
    finally:
        release.join()
        other.close()
    assert sqlite3.connect(str(path)).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
