"""qbench sweep on a real multi-node Ray cluster on this machine: a head (no CPUs, so it runs no cell)
and two worker nodes of one CPU each, every node its own raylet and object store on 127.0.0.1
(``ray.cluster_utils.Cluster``, which starts the same processes ``ray start`` does). The sweep is the
command a user types, ``qbench sweep SPEC --ray ADDRESS``, in its own process (the Ray driver).

1. The cells spread over both worker nodes (each cell's row names the node that ran it).
2. A worker node killed while it runs a cell: Ray runs the cell again on the surviving node, the
   sweep finishes, every cell is in the store exactly once, and a second sweep resumes (runs only
   what is missing, still exactly once).

Cells are tiny (the PP-OCR orientation classifier, 1 generated sample, INT8, fallback off) and every
Ray process is stopped by the fixture's finalizer, whatever the test did."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
NODE_MEMORY = 80 * 2**20  # object store per node: cells return a small dict, nothing else goes through it
SWEEP_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPUs and two 1-CPU worker nodes; every process of it is stopped afterwards.
    One cluster for the module (starting one takes ~20 s): the test that kills a node comes last."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    local = {"node_ip_address": "127.0.0.1", "object_store_memory": NODE_MEMORY}
    # fast node-death detection: a killed node is declared dead in ~1.5 s instead of ~30 s
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": system,
                                                         **local})
    try:
        workers = [head.add_node(num_cpus=1, **local) for _ in range(2)]
        head.wait_for_nodes(timeout=120)
        yield head, workers
    finally:
        head.shutdown()


def _spec(tmp_path: Path, names: list[str], calibrators: list[str]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "s0.npy", np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32))
    models = ", ".join(f'{{path = "{CLASSIFIER}", name = "{n}"}}' for n in names)
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'out = "out"\ndata = "{data}"\nlimit = 1\nfallback = false\nprecisions = ["int8"]\n'
                    f'calibrators = {json.dumps(calibrators)}\nmodels = [{models}]\n')
    return spec


def _sweep(spec: Path, address: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "qbench", "sweep", str(spec), "--ray", address]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _rows(spec: Path) -> list[dict]:
    return json.loads((spec.parent / "out" / "index.json").read_text())["cells"]


def _store_groups(spec: Path) -> dict[str, list[str]]:
    """report folder -> the invocations (group ids) recorded for it."""
    with sqlite3.connect(str(spec.parent / "out" / "qbench.sqlite")) as conn:
        rows = conn.execute("SELECT report_path, group_id FROM runs ORDER BY id").fetchall()
    groups: dict[str, list[str]] = {}
    for report, group in rows:
        groups.setdefault(str(Path(report).parent), [])
        if group not in groups[str(Path(report).parent)]:
            groups[str(Path(report).parent)].append(group)
    return groups


def _exactly_once(spec: Path, rows: list[dict]) -> None:
    groups = _store_groups(spec)
    folders = {str(Path(r["report"]).parent) for r in rows}
    assert len(folders) == len(rows)  # one report folder per cell
    assert set(groups) == folders, (sorted(groups), sorted(folders))  # nothing lost, nothing stray
    assert all(len(g) == 1 for g in groups.values()), groups  # nothing recorded twice
    # the driver alone wrote the sweep's store: no cell left a store of its own in the shared folder
    assert [p.name for p in (spec.parent / "out").rglob("*.sqlite")] == ["qbench.sqlite"]


def test_cells_spread_over_the_worker_nodes(cluster, tmp_path):
    head, workers = cluster
    spec = _spec(tmp_path, ["cls-a", "cls-b"], ["minmax", "percentile"])
    proc = _sweep(spec, head.address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(spec)
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows), rows
    ran_on = {r["node"] for r in rows}
    # every cell ran on a worker node (the head has no CPU), and both worker nodes took cells
    assert ran_on == {w.node_id for w in workers}, (ran_on, [w.node_id for w in workers])
    assert all(r["attempt"] == 1 for r in rows)
    _exactly_once(spec, rows)


def test_a_worker_node_killed_mid_sweep_loses_and_duplicates_nothing(cluster, tmp_path):
    head, (survivor, victim) = cluster
    assert len(head.list_all_nodes()) == 3, "the cluster lost a node before this test"
    spec = _spec(tmp_path, ["cls-a", "cls-b", "cls-c"], ["minmax", "percentile"])
    out = spec.parent / "out"
    killed: list[str] = []  # the cell that was running on the victim when it was killed

    def kill_the_victim_mid_cell() -> None:
        """Wait until the victim node has started a cell it has not finished, then kill the node."""
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while time.monotonic() < deadline:
            for marker in out.glob("*/*/cell.attempts.json"):
                try:
                    attempts = json.loads(marker.read_text())["attempts"]
                except (OSError, ValueError):
                    continue  # being replaced
                if attempts[-1]["node"] == victim.node_id and not (marker.parent / "cell.json").exists():
                    head.remove_node(victim, allow_graceful=False)  # SIGKILL: raylet, object store, workers
                    killed.append(str(marker.parent))
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_victim_mid_cell, daemon=True)
    watcher.start()
    proc = _sweep(spec, head.address)
    watcher.join(timeout=10)
    assert killed, "the victim node never started a cell"
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(spec)
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows), rows
    # the cell killed in flight ran again, on the surviving node, as its second attempt
    (retried,) = [r for r in rows if str(Path(r["report"]).parent) == killed[0]]
    assert retried["attempt"] == 2 and retried["node"] == survivor.node_id, retried
    started = json.loads((Path(killed[0]) / "cell.attempts.json").read_text())["attempts"]
    assert [a["node"] for a in started] == [victim.node_id, survivor.node_id]
    assert {r["node"] for r in rows} <= {survivor.node_id, victim.node_id}
    _exactly_once(spec, rows)

    # resumable: the same sweep again runs nothing; with one cell's result gone, it runs that cell
    # alone (on the one node left), and the store still holds every cell once
    again = _sweep(spec, head.address)
    assert again.returncode == 0 and "6 already finished, 0 to run" in again.stderr, again.stderr
    (Path(killed[0]) / "cell.json").unlink()
    once_more = _sweep(spec, head.address)
    assert once_more.returncode == 0 and "5 already finished, 1 to run" in once_more.stderr, once_more.stderr
    rows = _rows(spec)
    assert all(r["status"] == "done" for r in rows)
    (rerun,) = [r for r in rows if str(Path(r["report"]).parent) == killed[0]]
    assert rerun["node"] == survivor.node_id and not rerun.get("skipped")
    _exactly_once(spec, rows)
