"""The recommendation reads the task result, never a raw cosine: a task fail beats a perfect
cosine, a task pass beats a poor one, an inconclusive candidate is named and never taken. Task
results come from the real generic judge over outputs made here (identical, perturbed, too few)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper

from qbench.advise import Thresholds, evaluate, passes, recommend
from qbench.judge import make_judge
from qbench.model import ModelGraph
from qbench.report import CandidateResult


@pytest.fixture(scope="module")
def graph():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = helper.make_model(helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])]))
    return ModelGraph.from_proto(model, "tiny")


def judged(graph, samples: int, noise: float):
    """A generic TaskResult over ``samples`` samples whose candidate differs by ``noise`` (a share of
    each channel's range)."""
    rng = np.random.default_rng(0)
    acc = make_judge("generic", graph).start()
    for i in range(samples):
        ref = rng.normal(size=(1, 4, 8)).astype(np.float32)
        cand = ref + noise * (ref.max() - ref.min()) * rng.uniform(0.5, 1.0, size=ref.shape).astype(np.float32)
        acc.add(i, f"s{i}", {"y": ref}, {"y": cand}, {})
    return acc.finish()


def cand(precision, cosine, task, nan=0):
    frame = pd.DataFrame({"index": [0], "tensor": ["y"], "is_output": [True], "cosine": [cosine], "cosine_min": [cosine],
                          "cand_nan": [nan], "cand_inf": [0], "status": ["ok" if cosine >= 0.99 else "divergent"]})
    return CandidateResult(precision, frame, [], [], {}, task=task)


def test_task_verdict_decides_not_the_cosine(graph):
    good, bad = judged(graph, 80, 0.0), judged(graph, 80, 0.5)
    assert good.verdict == "pass" and bad.verdict == "fail"
    int8 = cand("int8", 0.9999, bad)   # a cosine that would pass, a task that fails
    fp16 = cand("fp16", 0.50, good)    # a cosine that would fail, a task that passes
    rec = recommend([fp16, int8])
    assert rec.precision == "fp16"
    table = rec.table.set_index("precision")
    assert table.loc["int8", "verdict"] == "fail" and table.loc["fp16", "verdict"] == "pass"
    assert table.loc["int8", "why"] == bad.reason and table.loc["int8", "task_metric"] == bad.primary
    assert table.loc["int8", "output_cosine_min"] == pytest.approx(0.9999)  # kept as diagnosis
    assert "INT8 rejected" in rec.reason
    assert not passes(int8) and passes(fp16)


def test_inconclusive_is_named_and_never_taken(graph):
    few = judged(graph, 3, 0.0)
    assert few.verdict == "inconclusive" and few.more_samples
    rec = recommend([cand("int8", 1.0, few), cand("fp16", 1.0, judged(graph, 80, 0.0))])
    assert rec.precision == "fp16"
    assert "INT8 is inconclusive" in rec.reason and "more samples" in rec.reason
    alone = recommend([cand("int8", 1.0, few)])
    assert alone.precision == "fp32" and "int8 inconclusive, not a pass" in alone.reason
    row = alone.table.iloc[0]
    assert row["verdict"] == "inconclusive" and row["more_samples"] == few.more_samples
    assert row["task_ci_low"] < row["task_ci_high"]


def test_new_nan_in_an_output_fails_even_when_the_task_passes(graph):
    row = evaluate(cand("int8", 1.0, judged(graph, 80, 0.0), nan=3), Thresholds())
    assert row["verdict"] == "fail" and row["why"].startswith("NaN/Inf in 1 output(s)")


def test_candidates_without_a_task_result_say_so(graph):
    row = evaluate(cand("int8", 0.995, None), Thresholds())
    assert row["verdict"] == "pass" and row["judged_by"] == "output tensors (no task result)"
    assert row["why"].startswith("no task result")
