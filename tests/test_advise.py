"""The precision recommendation: lowest precision whose outputs pass, FP32 when none does."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from qbench.advise import Thresholds, precision_rank, recommend
from qbench.errors import QbenchError
from qbench.report import CandidateResult
from test_report_frames import real_candidates


def _cand(precision, cosine, latency=None, nan=0, status=None, zero_frac=0.0):
    frame = pd.DataFrame({
        "index": [0, 1], "tensor": ["hidden", "out"], "is_output": [False, True],
        "cosine": [0.2, cosine], "cand_nan": [0, nan], "cand_inf": [0, 0], "cand_zero_frac": [0.0, zero_frac],
        "status": ["divergent", status or ("ok" if cosine >= 0.99 else "divergent")],
    })
    return CandidateResult(precision, frame, [], [], {}, latency)


def test_real_frames_pick_the_lowest_precision_whose_outputs_pass(graph, small_dataset):
    real = real_candidates(graph, small_dataset)
    cands = [real["fp16"], real["int8"]]
    rec = recommend(cands)
    passing = []
    for c in cands:
        out = c.tensors[c.tensors["is_output"]]
        if out["cosine_min"].min() >= 0.99 and not (out["cand_nan"] + out["cand_inf"]).any() and (out["status"] != "zero").all():
            passing.append(c.precision)
    expected = min(passing, key=precision_rank) if passing else "fp32"
    assert rec.precision == expected
    assert list(rec.table["precision"]) == ["int8", "fp16"]  # table in precision order, lowest first
    row = rec.table.set_index("precision").loc["int8"]
    out = real["int8"].tensors[real["int8"].tensors["is_output"]]
    assert math.isclose(row["output_cosine_min"], out["cosine_min"].min())
    assert row["problem_tensors"] == int((real["int8"].tensors["status"] != "ok").sum())


def test_nothing_passes_keeps_fp32_and_says_why():
    rec = recommend([_cand("int8", 0.5), _cand("fp16", 0.9)])
    assert rec.precision == "fp32"
    assert "0.5000 < 0.99" in rec.reason and "0.9000 < 0.99" in rec.reason
    assert set(rec.table["verdict"]) == {"fail"}


def test_thresholds_are_configurable():
    cands = [_cand("int8", 0.97), _cand("fp16", 0.999)]
    assert recommend(cands).precision == "fp16"
    assert recommend(cands, {"min_cosine": 0.95}).precision == "int8"
    assert recommend(cands, Thresholds(min_cosine=0.9999)).precision == "fp32"
    with pytest.raises(QbenchError, match="unknown threshold"):
        recommend(cands, {"min_cos": 0.9})


def test_nan_and_all_zero_outputs_fail_even_with_a_good_cosine():
    rec = recommend([_cand("int8", 0.999, nan=3), _cand("fp16", 0.999, status="zero", zero_frac=1.0), _cand("fp32", 1.0)])
    verdicts = dict(zip(rec.table["precision"], rec.table["verdict"]))
    assert verdicts == {"int8": "fail", "fp16": "fail", "fp32": "pass"}
    assert rec.precision == "fp32"
    assert recommend([_cand("int8", 0.999, nan=3)], {"allow_nonfinite": True}).precision == "int8"


def test_latency_gives_the_speed_up_and_a_clearly_faster_precision_wins():
    rec = recommend([_cand("fp32", 1.0, latency=9.0), _cand("int8", 0.995, latency=3.0), _cand("fp16", 0.999, latency=4.5)])
    assert rec.precision == "int8"
    assert f"{9.0 / 3.0:.2f}×" in rec.reason
    # INT8 slower than FP16 (reformat layers): FP16 is the better deployment choice
    rec = recommend([_cand("int8", 0.995, latency=6.0), _cand("fp16", 0.999, latency=4.0)])
    assert rec.precision == "fp16" and "faster" in rec.reason


def test_precision_order_and_edge_cases():
    assert precision_rank("int8") < precision_rank("int8+fp16 fallback") < precision_rank("fp16") < precision_rank("fp32")
    rec = recommend([])
    assert rec.precision == "fp32" and rec.table.empty
    no_outputs_marked = CandidateResult("int8", pd.DataFrame({"tensor": ["a", "b"], "cosine": [0.1, 0.999]}))
    assert recommend([no_outputs_marked]).precision == "int8"  # the last tensor stands in for the output
    nan_only = CandidateResult("int8", pd.DataFrame({"tensor": ["a"], "cosine": [np.nan]}))
    assert recommend([nan_only]).precision == "fp32"


def test_nan_inf_the_reference_has_too_is_not_held_against_a_candidate():
    """An FP32 model can output -inf itself (log of zero); FP16 reproducing it is not a failure."""
    import pandas as pd

    from qbench.advise import Thresholds, evaluate
    from qbench.report import CandidateResult

    row = {"index": 0, "tensor": "log_out", "node": "Log_0", "op_type": "Log", "is_output": True, "cosine": 1.0,
           "cosine_min": 1.0, "rel_l2": 0.0, "max_abs_err": 0.0, "ref_zero_frac": 0.0, "cand_zero_frac": 0.0,
           "ref_nan": 0, "ref_inf": 5, "cand_nan": 0, "cand_inf": 5, "status": "ok"}
    same = evaluate(CandidateResult("fp16", pd.DataFrame([row])), Thresholds())
    assert same["verdict"] == "pass" and same["output_nonfinite"] == 0
    more = evaluate(CandidateResult("fp16", pd.DataFrame([{**row, "cand_inf": 6}])), Thresholds())
    assert more["verdict"] == "fail" and more["output_nonfinite"] == 1


def test_a_format_that_changes_no_tensor_is_never_the_answer():
    """NVFP4 quantizes MatMul/Gemm only: on the embedded Conv-only detector it changes nothing, so it
    "passes" trivially; the recommendation must take the cheapest format that really changes the model."""
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges
    from qbench.simulate import formats

    # no MatMul/Gemm, so no activation scale is ever looked up: an empty ranges table suffices
    sim = formats.get("nvfp4").simulate(ModelGraph.from_path(DEFAULT_MODEL), Ranges())
    assert len(sim.quantized) + len(sim.quantized_inputs) + len(sim.weights) == 0  # the fact the rule rests on
    nvfp4, fp16 = _cand("nvfp4", 1.0), _cand("fp16", 0.999)
    nvfp4.meta["simulated_tensors"] = 0
    fp16.meta["simulated_tensors"] = 12
    rec = recommend([nvfp4, fp16])
    assert rec.precision == "fp16", rec.reason
    assert "NVFP4 quantizes no layer of this model" in rec.reason
    # without the count (results from elsewhere), the cheaper passing format is taken as before
    del nvfp4.meta["simulated_tensors"]
    assert recommend([nvfp4, fp16]).precision == "nvfp4"
