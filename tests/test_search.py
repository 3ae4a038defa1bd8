"""The INT8 search (qbench.search) on the real PP-OCR orientation classifier and rendered, exactly
labelled text lines: held-out split, calibrator sweep, gated sensitivity, mixed search, int8-best."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from qbench.errors import QbenchError
from qbench.search import holdout as ho
from tests.search_textdata import orientation_folder

CLS = "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
# a planted fault: the input of the classifier's first MaxPool clipped to 1 % of its range; the
# judge fails INT8 on it, and keeping that MaxPool in float repairs it (measured on this data)
PLANTED_TENSOR, PLANTED_LAYER = "hardswish_17.tmp_0", "MaxPool@0"


@pytest.fixture(scope="module")
def cls_graph():
    from qbench.model import ModelGraph

    return ModelGraph.from_path(CLS)


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lines")
    orientation_folder(folder, n_lines=4, seed=3)
    return folder


@pytest.fixture(scope="module")
def parts(cls_graph, lines):
    """Calibration ranges (minmax) from the calibration part, the judging reference, a generic judge."""
    from qbench.data import load_dataset
    from qbench.search.judging import Reference, make_task_judge
    from qbench.search.sweep import calibrate_all

    data = load_dataset(lines, cls_graph.inputs)
    split = ho.split(len(data))
    ranges, hists = calibrate_all(cls_graph, ho.subset(data, split.calib))
    reference = Reference(cls_graph, ho.subset(data, split.judge), part=ho.JUDGE)
    return data, ranges, hists, reference, make_task_judge("generic", cls_graph)


# -- holdout ----------------------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    a, b = ho.split(10, 0.5, seed=1), ho.split(10, 0.5, seed=1)
    assert a == b and len(a.calib) == 5 and not set(a.calib) & set(a.judge)
    assert sorted(a.calib + a.judge) == list(range(10))
    assert ho.split(10, 0.5, seed=2) != a
    assert len(ho.split(10, 0.3).calib) == 3
    one = ho.split(1)
    assert one.calib == one.judge == (0,) and not ho.held_out(one)
    with pytest.raises(QbenchError, match="calib-fraction"):
        ho.split(10, 1.0)


# -- sweep ------------------------------------------------------------------------------------------
def test_local_error_matches_a_sampled_oracle():
    """E(amax) from the histogram against the MSE of actually quantizing values drawn from it."""
    from qbench.search.sweep import local_error

    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_t(3, 200_000)).astype(np.float64)
    counts, edges = np.histogram(x, bins=4096, range=(0, x.max()))
    for amax in (2.0, 5.0, float(x.max())):
        s = amax / 127
        q = np.clip(np.round(x / s), -127, 127) * s
        oracle = float(np.mean((q - x) ** 2))
        assert local_error(counts, edges, amax) == pytest.approx(oracle, rel=0.1)
    # clipping hard costs more than the resolution MinMax gives away on this long tail
    assert local_error(counts, edges, 0.5) > local_error(counts, edges, float(x.max()))


def test_best_of_takes_each_tensors_least_error_candidate(parts):
    from qbench.search.sweep import BEST_OF, best_of, local_error

    _, ranges, hists, _, _ = parts
    best = best_of(ranges, hists)
    assert best.method == BEST_OF and len(best) == len(ranges["minmax"])
    picked = {best[t].method.split(":")[1] for t in best.entries}
    assert len(picked) >= 2  # not one method everywhere: the choice is per tensor
    for tensor in list(best.entries)[:20]:
        h = hists[tensor]
        if h.counts is None:
            continue
        errors = {m: local_error(h.counts, h.edges, r.amax(tensor)) for m, r in ranges.items()}
        assert local_error(h.counts, h.edges, best.amax(tensor)) == pytest.approx(min(errors.values()))


def test_sweep_ranks_by_the_judge_and_ships_its_best(cls_graph, parts):
    """A clipped candidate fails the judge; the sweep must not ship it (removing the sweep does)."""
    from qbench.search.sweep import sweep

    _, ranges, hists, reference, judge = parts
    clipped = ranges["minmax"].with_override(PLANTED_TENSOR, ranges["minmax"].amax(PLANTED_TENSOR) * 0.01)
    result = sweep(cls_graph, {"clipped": clipped, "minmax": ranges["minmax"]}, reference, judge, histograms=hists)
    assert result.candidates["best-of"][PLANTED_TENSOR].method == "best-of:minmax"
    assert result.results["clipped"].verdict == "fail"
    assert result.best in ("minmax", "best-of") and result.results[result.best].verdict != "fail"
    table = result.table()
    assert list(table["candidate"])[-1] == "int8-clipped" and set(table["part"]) == {ho.JUDGE}


# -- gated model, sensitivity, mixed search -------------------------------------------------------------
def test_gated_model_reproduces_the_qdq_models(cls_graph, parts):
    """Gate 1 everywhere = build_int8_model; gate 0 on one layer = build_int8_model(keep_float=[it]);
    gate 0 everywhere = FP32."""
    from qbench.search.judging import session
    from qbench.search.models import GATE, gated_model, int8_model

    data, ranges, _, _, _ = parts
    r = ranges["minmax"]
    model, layers = gated_model(cls_graph, r)
    feed = data.sample(0)
    gated = session(model, optimize=False)

    def run(off):
        gates = {f"{GATE}{i}": np.array(0.0 if n in off else 1.0, np.float32) for i, n in enumerate(layers)}
        return gated.run(None, {**feed, **gates})[0]

    for keep in ([], [PLANTED_LAYER], ["Conv@8", "Add@1"]):
        want = session(int8_model(cls_graph, r, keep), optimize=False).run(None, feed)[0]
        np.testing.assert_allclose(run(set(keep)), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(set(layers)), session(cls_graph.model).run(None, feed)[0], rtol=1e-5, atol=1e-6)
    # gating a subset: the other layers fixed quantized (rest="quantized") or float (rest="float")
    others = [n for n in layers if n != PLANTED_LAYER]
    for rest, gate, keep in (("quantized", 0.0, [PLANTED_LAYER]), ("float", 1.0, others)):
        sub, names = gated_model(cls_graph, r, only=[PLANTED_LAYER], rest=rest)
        assert names == [PLANTED_LAYER]
        got = session(sub, optimize=False).run(None, {**feed, f"{GATE}0": np.array(gate, np.float32)})[0]
        want = session(int8_model(cls_graph, r, keep), optimize=False).run(None, feed)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sensitivity_finds_the_planted_layer_and_search_keeps_only_it(cls_graph, parts, tmp_path):
    from qbench.search import mixed
    from qbench.search.sensitivity import GatedRunner, chart, measure

    _, ranges, _, reference, judge = parts
    bad = ranges["minmax"].with_override(PLANTED_TENSOR, ranges["minmax"].amax(PLANTED_TENSOR) * 0.01)
    runner = GatedRunner(cls_graph, bad, reference, judge)
    sens = measure(runner, cls_graph, culprits=[PLANTED_TENSOR])
    assert sens.int8.verdict == "fail" and sens.runs == 2 * len(runner.layers) + 2
    top = sens.frame.iloc[0]
    assert top["layer"] == PLANTED_LAYER and top["gain_if_float"] > 0 and bool(top["culprit"])
    assert sens.frame.loc[sens.frame["layer"] == PLANTED_LAYER, "loss_alone"].iloc[0] < 0
    assert chart(sens, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    res = mixed.search(runner, sens.ranked(), max_float=4, start_result=sens.int8)
    assert res.passed and res.kept == [PLANTED_LAYER]
    assert res.table["pareto"].any() and (res.table["kept"] <= 4).all()
    # screened: only the planted layer and one other measured (two sessions, no gating of the rest)
    from qbench.search.sensitivity import local_noise, screen
    from qbench.search.models import quantized_layers

    every = quantized_layers(cls_graph)
    noise = local_noise(cls_graph, bad, parts[2], every)
    assert noise[PLANTED_LAYER] == max(noise.values())  # the clipped input is the noisiest by far
    order = screen(every, noise, (), 2)
    few = GatedRunner(cls_graph, bad, reference, judge, only=order)
    screened = measure(few, cls_graph, all_layers=every, noise=noise, order=order)
    assert screened.runs == 6 and screened.frame["measured"].sum() == 2 and len(screened.frame) == len(every)
    assert screened.ranked()[0] == PLANTED_LAYER and screened.fp32.score == sens.fp32.score
    # a budget of zero layers cannot pass, and says so
    none = mixed.search(runner, sens.ranked(), max_float=0, start_result=sens.int8)
    assert not none.passed and none.kept == [] and "at most 0" in none.stopped


# -- the whole search and the deployable folder -----------------------------------------------------------
@pytest.mark.slow
def test_find_int8_writes_a_deployable_folder(cls_graph, lines, tmp_path, monkeypatch):
    """With the only calibrator clipped, the search must fall back to keeping the planted layer in
    float, and int8-best must hold exactly that configuration."""
    import qbench.search.sweep as sweep_mod
    from qbench.data import load_dataset
    from qbench.search import SearchOptions, find_int8
    from qbench.search.deploy import read

    real = sweep_mod.calibrate_all

    def clipped_only(graph, data, methods=None, **kw):
        ranges, hists = real(graph, data, ("minmax",), **kw)
        r = ranges["minmax"]
        return {"minmax": r.with_override(PLANTED_TENSOR, r.amax(PLANTED_TENSOR) * 0.01)}, hists

    monkeypatch.setattr(sweep_mod, "calibrate_all", clipped_only)
    data = load_dataset(lines, cls_graph.inputs)
    out = find_int8(cls_graph, data, tmp_path, SearchOptions(task="generic", max_float=4), model_path=CLS)
    assert out.best.keep_float == [PLANTED_LAYER] and out.best.result.verdict != "fail"
    folder = out.folder
    found = read(folder)
    assert found["keep_float"] == [PLANTED_LAYER]
    verdict = json.loads((folder / "verdict.json").read_text())
    assert verdict["verdict"] == out.best.result.verdict and verdict["part"] == ho.JUDGE
    flags = (folder / "trtexec_flags.txt").read_text()
    assert f"--layerPrecisions={PLANTED_LAYER}:fp32" in flags and "--precisionConstraints=obey" in flags
    assert "--calib=calibration.cache" in flags and "--int8" in flags
    assert f"{PLANTED_LAYER}:float32" in (folder / "polygraphy_flags.txt").read_text()
    compile((folder / "build_trt10.py").read_text(), "build_trt10.py", "exec")
    # the shipped Q/DQ model runs in ONNX Runtime, agrees with FP32 and leaves the kept layer float
    import onnx

    qdq = onnx.load(str(folder / "model_qdq.onnx"))
    node = next(n for n in qdq.graph.node if n.name == PLANTED_LAYER or n.op_type == "MaxPool")
    assert node.input[0] == PLANTED_TENSOR
    sess, fp32 = ort.InferenceSession(str(folder / "model_qdq.onnx")), ort.InferenceSession(CLS)
    for i in range(len(data)):
        assert np.argmax(sess.run(None, data.sample(i))[0]) == np.argmax(fp32.run(None, data.sample(i))[0])
    assert "Ship" in out.sentence() or "meets the tolerance" in out.sentence()
    assert {"int8-minmax", "int8-mixed"} <= set(out.rows()["candidate"])


def test_build_from_refuses_an_incomplete_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", "--from", str(tmp_path), "-o", str(tmp_path / "m.engine")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("qbench: error: --from") and "missing" in proc.stderr


@pytest.mark.slow
def test_pipeline_runs_the_sweep_and_writes_int8_best(lines, tmp_path):
    """qbench run's search stage with --no-fallback: the sweep and int8-best, no sensitivity."""
    from qbench.calibrate import METHODS
    from qbench.pipeline import RunConfig, run_pipeline

    said = []
    outcome = run_pipeline(RunConfig(model=CLS, data=lines, out=tmp_path / "rep", precisions=("int8",), task="classify",
                                     labels=lines / "labels.json", fallback=False, progress=False), echo=said.append)
    search = outcome.search
    assert search.sensitivity is None and search.mixed is None
    assert {f"int8-{m}" for m in METHODS} | {"int8-best-of"} == set(search.rows()["candidate"])
    assert set(search.rows()["part"]) == {ho.JUDGE}
    verdict = json.loads((tmp_path / "rep" / "int8-best" / "verdict.json").read_text())
    assert verdict["calibrator"] == search.sweep.best and verdict["holdout"]["judge"] == list(search.holdout.judge)
    assert (tmp_path / "rep" / "int8-best" / "calibration.cache.provenance.json").is_file()
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "INT8 per calibrator" in page and "judging part (held out)" in page
    assert any("no sensitivity, no mixed search" in line for line in said)
    # no --search-time: the budget is derived from this run's own INT8 comparison (floor 30 s)
    compare_s = outcome.comparisons["int8"].meta["timing_s"]["total"]
    budget = [line for line in said if line.startswith("qbench: search budget ")]
    assert len(budget) == 1 and f"the {compare_s:.1f} s INT8 comparison" in budget[0]
    assert float(budget[0].split()[3]) >= max(30.0, 8 * compare_s) - 1


def test_run_options_are_on_the_command_line():
    from click.testing import CliRunner

    from qbench.cli.run import run_command

    text = CliRunner().invoke(run_command, ["--help"]).output
    for option in ("--calib-fraction", "--seed", "--search-time", "--sensitivity", "--max-float", "--no-fallback",
                   "--task", "--labels"):
        assert option in text, option


@pytest.mark.slow
def test_benchmark_smoke():
    sys.path.insert(0, "benchmarks")
    import bench_search

    result = bench_search.measure(samples=1, size=128, max_float=2, layers=3)
    assert result["compare_s"] > 0 and result["search_s"] > 0 and result["variants"] == 2 * 3 + 2
    assert result["of_layers"] > result["layers"] == 3
