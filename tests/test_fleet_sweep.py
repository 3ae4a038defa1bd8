"""qbench sweep: spec validation (fast); a two-model sweep on a local Ray instance whose index page is
checked in headless Chromium, then resumed with nothing left to run (slow)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from browser import open_page
from qbench.cli import main
from qbench.defaults import DEFAULT_MODEL
from qbench.errors import QbenchError
from qbench.fleet.sweep import load_spec, run_cell, run_sweep
from qbench.report import CandidateResult
from qbench.store import ResultStore

CLASSIFIER = Path(__file__).parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
EVIL = "cls <b>bold</b>"  # a model name that would be markup if not escaped


def _npy(folder: Path, shape, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        np.save(folder / f"s{i}.npy", rng.uniform(0, 1, shape).astype(np.float32))
    return folder


def test_spec_errors_are_one_line(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(CLASSIFIER.read_bytes())
    (tmp_path / "data").mkdir()
    cases = {
        "bad.toml": ("models = [", "not valid TOML"),
        "unknown.toml": ('models = ["m.onnx"]\ndata = "data"\ncolour = "red"', "unknown key(s) ['colour']"),
        "prec.yaml": ("models: [m.onnx]\ndata: data\nprecisions: [int4]", "unknown precision 'int4'"),
        "nodata.yaml": ("models: [m.onnx]", "no data folder"),
        "twice.yaml": ("models: [m.onnx, m.onnx]\ndata: data", "two models are called 'm'"),
        "spec.json": ("{}", "expected a .toml, .yaml or .yml"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["sweep", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qbench: error:") and message in err and err.count("\n") == 1, (name, err)
    (tmp_path / "ok.yaml").write_text("models: [m.onnx]\ndata: data\nprecisions: [int8, fp16]\n"
                                      "calibrators: [entropy, minmax]\nlimit: 2")
    plan = load_spec(tmp_path / "ok.yaml")
    # FP16 reads no ranges: one FP16 cell, not one per calibrator
    assert [c.id for c in plan.cells] == ["int8-entropy", "int8-minmax", "fp16"]
    assert all(Path(c.model).is_absolute() and c.limit == 2 for c in plan.cells)
    (tmp_path / "tasks.toml").write_text('models = ["m.onnx"]\ndata = "data"\nprecisions = ["int8"]\n'
                                         'calibrators = ["minmax"]\ntasks = ["classify", "generic"]')
    assert [c.id for c in load_spec(tmp_path / "tasks.toml").cells] == ["int8-minmax-classify", "int8-minmax-generic"]
    # a model names its own tasks; task options merge the sweep's and the model's (the model's win)
    (tmp_path / "own.toml").write_text('data = "data"\nprecisions = ["int8"]\ncalibrators = ["minmax"]\n'
                                       'task_options = {classify = {max_drop = 0.02, top_k = 5}}\n'
                                       'models = [{path = "m.onnx", tasks = ["classify"], task_options = {classify = {top_k = 1}}},'
                                       ' {path = "m.onnx", name = "g"}]')
    cells = load_spec(tmp_path / "own.toml").cells
    assert [(c.model_name, c.task, json.loads(c.task_options)) for c in cells] == [
        ("m", "classify", {"max_drop": 0.02, "top_k": 1}), ("g", "", {})]
    with pytest.raises(QbenchError, match="whole number"):
        load_spec(tmp_path / "ok.yaml", limit=0)


def test_an_unreachable_ray_cluster_is_one_line_in_seconds(tmp_path, capsys):
    pytest.importorskip("ray")
    (tmp_path / "data").mkdir()
    (tmp_path / "s.yaml").write_text(f"models: ['{CLASSIFIER}']\ndata: data\nprecisions: [fp16]\nout: out")
    assert main(["sweep", str(tmp_path / "s.yaml"), "--ray", "127.0.0.1:1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qbench: error: cannot connect to the Ray cluster at 127.0.0.1:1:") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.browser
def test_two_model_sweep_on_local_ray_writes_the_index_and_resumes(tmp_path):
    pytest.importorskip("ray")
    cls_data = _npy(tmp_path / "cls_data", (1, 3, 48, 192))
    det_data = _npy(tmp_path / "det_data", (1, 3, 64, 64))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"out: out\nlimit: 2\nfallback: false\nprecisions: [int8]\ncalibrators: [minmax]\n"
                    f"models:\n  - {{path: '{CLASSIFIER}', data: '{cls_data}', name: '{EVIL}'}}\n"
                    f"  - {{path: '{DEFAULT_MODEL}', data: '{det_data}'}}\n")
    plan = load_spec(spec)
    result = run_sweep(plan, jobs=2, ray_address="local", echo=lambda _: None)
    assert (result.done, result.failed, result.skipped) == (2, 0, 0)
    index = tmp_path / "out" / "index.html"
    assert result.index == index
    rows = json.loads((tmp_path / "out" / "index.json").read_text())["cells"]
    assert {r["model"] for r in rows} == {EVIL, "ch_PP-OCRv4_det_infer"} and all(r["status"] == "done" for r in rows)

    with open_page(index) as view:
        page = view.page
        assert not view.console_errors and not view.page_errors and not view.requests
        matrix = page.locator("#matrix")
        assert matrix.locator("tr").count() == 3  # header + one row per model
        assert EVIL in matrix.inner_text() and matrix.locator("b").count() == 0  # shown as text, not markup
        links = page.locator("#cells a")
        assert links.count() == 2
        for i in range(2):
            href = links.nth(i).get_attribute("href")
            assert (index.parent / href).resolve().is_file()  # relative links into each report folder
        links.first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith("/int8-minmax/index.html") and "qbench" in page.title().lower()

    # resumable: the same sweep again (now in the local process pool) runs nothing and adds no run
    store = tmp_path / "out" / "qbench.sqlite"
    before = sqlite3.connect(str(store)).execute("SELECT count(*) FROM runs").fetchone()[0]
    again = run_sweep(load_spec(spec), jobs=2, echo=lambda _: None)
    assert (again.done, again.skipped) == (0, 2)
    assert sqlite3.connect(str(store)).execute("SELECT count(*) FROM runs").fetchone()[0] == before == 2


def test_each_pool_worker_gets_its_share_of_the_cores(monkeypatch):
    """A pool of J cells on C cores gives each worker C // J threads (QBENCH_THREADS), which every
    ONNX Runtime session and thread pool in qbench then uses, instead of J x C threads on C cores."""
    import concurrent.futures as cf

    from qbench.cpu import ENV, cpu_threads
    from qbench.fleet.sweep import _pool_context, _use_threads
    from qbench.runners import OrtRunner

    monkeypatch.delenv(ENV, raising=False)
    with cf.ProcessPoolExecutor(1, mp_context=_pool_context(fork=True), initializer=_use_threads,
                                initargs=(3,)) as pool:
        assert pool.submit(cpu_threads).result() == 3
    monkeypatch.setenv(ENV, "1")
    assert cpu_threads() == 1
    runner = OrtRunner(_classifier_graph(), capture=None)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv(ENV, "not a number")
    assert cpu_threads() >= 1  # ignored: every core


def _classifier_graph():
    from qbench.model import ModelGraph

    return ModelGraph.from_path(CLASSIFIER)


@pytest.mark.slow
def test_a_cell_is_recorded_once_however_often_it_runs(tmp_path):
    """A cell owns its report folder: running it again (a retry after a dead worker, --rerun)
    replaces its runs in the store, and what a killed attempt left half-written there goes too."""
    data = _npy(tmp_path / "data", (1, 3, 48, 192), count=1)
    spec = tmp_path / "s.toml"
    spec.write_text(f'out = "out"\ndata = "{data}"\nlimit = 1\nfallback = false\nprecisions = ["int8"]\n'
                    f'calibrators = ["minmax"]\nmodels = [{{path = "{CLASSIFIER}", name = "a"}}, '
                    f'{{path = "{CLASSIFIER}", name = "A"}}]\n')
    cell, neighbour = load_spec(spec).cells
    assert run_cell(neighbour)["status"] == "done"
    # what a worker killed in the middle of its store writes leaves: a run under the cell's folder
    with ResultStore(cell.store) as store:
        store.record_run(cell.model_name, "", CandidateResult("int8", pd.DataFrame(), [], [], {}),
                         report_path=str(Path(cell.out) / "index.html"))
    first = run_cell(cell)
    second = run_cell(cell)
    assert first["status"] == second["status"] == "done" and (first["attempt"], second["attempt"]) == (1, 2)
    with sqlite3.connect(cell.store) as conn:
        groups = dict(conn.execute("SELECT report_path, count(DISTINCT group_id) FROM runs GROUP BY report_path"))
    # the cell once (its last run), and its neighbour, whose folder differs only in case, untouched
    assert groups == {str(Path(cell.out) / "index.html"): 1, str(Path(neighbour.out) / "index.html"): 1}, groups
