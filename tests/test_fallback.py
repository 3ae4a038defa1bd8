"""The INT8 fallback search on the real embedded model, real images and real ONNX Runtime.

A fault is planted (one quantized tensor's range cut 1000x) so that INT8 fails because of that one
tensor; the search must find it. The 256x256 fixture data already costs INT8 some accuracy on
text.png (worst-sample output cosine ~0.45), so the tests judge with min_cosine 0.3: the planted
fault drops the output below it (~0.05), keeping the tensor in float lifts it back (~0.40).
"""

from __future__ import annotations

import json

import pytest

from qbench.advise import Thresholds, precision_rank, recommend
from qbench.compare import compare_precision
from qbench.fallback import search_fallback

PLANTED = "conv2d_473.tmp_0"  # input of a Conv: quantized, mid-network
LOOSE = Thresholds(min_cosine=0.3)
LIMIT = 2


@pytest.fixture(scope="module")
def planted(graph, small_dataset):
    from qbench.calibrate import calibrate

    ranges = calibrate(graph, small_dataset, method="entropy", progress=False)
    bad = ranges.with_override(PLANTED, ranges.amax(PLANTED) / 1000)
    cmp = compare_precision(graph, small_dataset, "int8", bad, limit=LIMIT, progress=False)
    return ranges, bad, cmp


def test_planted_fault_is_found_and_fixed(graph, small_dataset, planted):
    _, bad, cmp = planted
    res = search_fallback(graph, small_dataset, bad, cmp, thresholds=LOOSE, limit=LIMIT, progress=False)
    assert res.passed
    assert res.kept == [PLANTED]
    steps = res.steps
    assert list(steps["action"]) == ["start", "keep"]
    assert not steps.loc[0, "passed"] and steps.loc[1, "passed"]
    assert steps.loc[1, "added"] == PLANTED
    assert steps.loc[0, "output_cosine_min"] < LOOSE.min_cosine < steps.loc[1, "output_cosine_min"]
    assert steps.loc[1, "output_sqnr_db"] > steps.loc[0, "output_sqnr_db"]
    assert steps.loc[1, "flagged"] < steps.loc[0, "flagged"]
    assert res.comparison.meta["samples"] == LIMIT  # same samples as the comparison it started from
    assert res.flags() == f"--keep-float {PLANTED}"


def test_budget_zero_reports_failure(graph, small_dataset, planted):
    _, bad, cmp = planted
    res = search_fallback(graph, small_dataset, bad, cmp, thresholds=LOOSE, max_float=0, limit=LIMIT, progress=False)
    assert not res.passed and res.kept == []
    assert len(res.steps) == 1 and res.comparison is cmp


def test_user_keep_float_stays_kept(graph, small_dataset, planted):
    _, bad, _ = planted
    cmp = compare_precision(graph, small_dataset, "int8", bad, keep_float=[PLANTED], limit=LIMIT, progress=False)
    res = search_fallback(graph, small_dataset, bad, cmp, thresholds=LOOSE, limit=LIMIT, progress=False,
                          keep_float=[PLANTED])
    # the user's own name already fixes the fault: nothing to add, and it is in the flags
    assert res.passed and res.kept == [] and res.keep_float == [PLANTED]


def test_mixed_ranks_between_int8_and_fp16():
    assert precision_rank("int8") < precision_rank("int8-mixed") < precision_rank("fp16")


def test_pipeline_adds_int8_mixed(tmp_path, model_path, small_data_dir, planted):
    from qbench.pipeline import RunConfig, run_pipeline

    _, bad, _ = planted
    cache = bad.write_json(tmp_path / "planted.json")
    lines = []
    outcome = run_pipeline(RunConfig(model=model_path, data=small_data_dir, out=tmp_path / "rep", ranges=cache,
                                     compare_limit=LIMIT, precisions=("int8",), max_float=2, progress=False),
                           echo=lines.append)
    assert "int8-mixed" in outcome.comparisons
    assert any("fallback: step 1: keep " + PLANTED in line for line in lines), lines
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    names = [c["precision"] for c in results["candidates"]]
    assert names == ["int8", "int8-mixed"]
    mixed = results["candidates"][1]
    assert mixed["meta"]["keep_float"][0] == PLANTED
    assert mixed["meta"]["source"].startswith("ONNX Runtime CPU simulation of INT8 with")
    assert "not TensorRT" in mixed["meta"]["source"]
    assert "INT8 fallback search" in json.dumps(results)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "INT8 fallback search" in page and f"--keep-float {PLANTED}" in page
    assert (tmp_path / "rep" / "int8-mixed" / "tensors.csv").is_file()


def test_reason_prints_the_flags(graph, small_dataset, planted):
    from qbench.report import CandidateResult

    _, bad, _ = planted
    cmp = compare_precision(graph, small_dataset, "int8", bad, keep_float=[PLANTED], limit=LIMIT, progress=False)
    mixed = CandidateResult("int8-mixed", cmp.tensors, cmp.findings, meta={"keep_float": [PLANTED]})
    rec = recommend([mixed], LOOSE)
    assert rec.precision == "int8-mixed"
    assert PLANTED in rec.reason and f"--keep-float {PLANTED}" in rec.reason
