"""Test data for the report, advisor and store tests: REAL comparison frames.

The comparator is built in parallel with the report, so this module computes the comparator's
columns with a few lines of numpy from real ONNX Runtime runs of the embedded model: the FP32
reference against (a) the same model fed FP16-rounded inputs and (b) a damaged copy (one
convolution's weights zeroed, another's perturbed by noise). It is test data only; the metrics
are deliberately simple. The tests at the bottom check the builder itself.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from qbench.model import ModelGraph
from qbench.report import CandidateResult
from qbench.runners import OrtRunner

SAMPLES = 2
_CACHE: dict = {}


def damaged_model(graph: ModelGraph) -> tuple[ModelGraph, str, str]:
    """A copy of the model with one conv zeroed, bias too (a dead layer), and one perturbed by noise."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    zeroed, noisy = convs[2 * len(convs) // 3], convs[len(convs) // 8]
    inits = {t.name: t for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    for node, how in ((zeroed, "zero"), (noisy, "noise")):
        w = numpy_helper.to_array(inits[node.input[1]])
        w = np.zeros_like(w) if how == "zero" else w + rng.normal(0, 0.15 * float(w.std()), w.shape).astype(w.dtype)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
        if how == "zero" and len(node.input) > 2 and node.input[2] in inits:
            b = numpy_helper.to_array(inits[node.input[2]])
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.zeros_like(b), node.input[2]))
    return ModelGraph(model=model, name=graph.name + "-damaged"), zeroed.output[0], noisy.output[0]


class _Acc:
    """Running sums for one tensor over samples (activations are not kept)."""

    def __init__(self):
        self.n = self.dot = self.rr = self.cc = self.dd = self.abs_sum = 0.0
        self.max_abs = 0.0
        self.ref_zero = self.cand_zero = self.ref_nan = self.ref_inf = self.cand_nan = self.cand_inf = 0
        self.ref_min = self.cand_min = math.inf
        self.ref_max = self.cand_max = -math.inf
        self.cos_min = math.inf
        self.sat = self.qzero = 0
        self.fp16_overflow = self.fp16_flushed = 0
        self.samples = 0
        self.shape = ()

    def add(self, ref: np.ndarray, cand: np.ndarray, amax: float | None):
        r = ref.astype(np.float64).ravel()
        c = cand.astype(np.float64).ravel()
        self.shape = tuple(ref.shape)
        self.samples += 1
        self.n += r.size
        self.ref_nan += int(np.isnan(r).sum())
        self.ref_inf += int(np.isinf(r).sum())
        self.cand_nan += int(np.isnan(c).sum())
        self.cand_inf += int(np.isinf(c).sum())
        self.ref_zero += int((r == 0).sum())
        self.cand_zero += int((c == 0).sum())
        finite = np.isfinite(r) & np.isfinite(c)
        r, c = r[finite], c[finite]
        if r.size:
            d = c - r
            self.dot += float(r @ c)
            self.rr += float(r @ r)
            self.cc += float(c @ c)
            self.dd += float(d @ d)
            self.abs_sum += float(np.abs(d).sum())
            self.max_abs = max(self.max_abs, float(np.abs(d).max()))
            self.ref_min, self.ref_max = min(self.ref_min, r.min()), max(self.ref_max, r.max())
            self.cand_min, self.cand_max = min(self.cand_min, c.min()), max(self.cand_max, c.max())
            self.cos_min = min(self.cos_min, _cos(float(r @ c), float(r @ r), float(c @ c)))
            self.fp16_overflow += int((np.abs(r) > 65504).sum())
            self.fp16_flushed += int(((r != 0) & (np.abs(r) < 2.0 ** -24)).sum())
            if amax:
                self.sat += int((np.abs(r) > amax).sum())
                self.qzero += int(((r != 0) & (np.abs(r) < amax / 127 / 2)).sum())


def _cos(dot: float, rr: float, cc: float) -> float:
    if rr == 0 and cc == 0:
        return 1.0
    if rr == 0 or cc == 0:
        return 0.0
    return dot / math.sqrt(rr * cc)


def compare(graph: ModelGraph, refs: list[dict], cands: list[dict], precision: str,
            amax: dict[str, float] | None = None) -> CandidateResult:
    """The comparator's frame and findings for one candidate, from real activations."""
    accs: dict[str, _Acc] = {}
    unmatched = []
    for ref, cand in zip(refs, cands):
        for info in graph.float_tensors:
            if info.name not in ref or info.name not in cand:
                continue
            if ref[info.name].shape != cand[info.name].shape:
                continue
            accs.setdefault(info.name, _Acc()).add(ref[info.name], cand[info.name], (amax or {}).get(info.name))
    rows = []
    for info in graph.float_tensors:
        a = accs.get(info.name)
        if a is None:
            unmatched.append((info.name, "not captured by both runners"))
            continue
        cosine = _cos(a.dot, a.rr, a.cc)
        row = {
            "index": info.index, "tensor": info.name, "node": info.node, "op_type": info.op_type,
            "is_output": info.is_output, "shape": "×".join(map(str, a.shape)), "samples": a.samples,
            "max_abs_err": a.max_abs, "mean_abs_err": a.abs_sum / max(a.n, 1),
            "rel_l2": math.sqrt(a.dd / a.rr) if a.rr else (0.0 if a.dd == 0 else math.inf),
            "cosine": cosine, "cosine_min": a.cos_min,
            "sqnr_db": 10 * math.log10(a.rr / a.dd) if a.dd and a.rr else (math.inf if a.rr else -math.inf),
            "ref_zero_frac": a.ref_zero / a.n, "cand_zero_frac": a.cand_zero / a.n,
            "ref_nan": a.ref_nan, "ref_inf": a.ref_inf, "cand_nan": a.cand_nan, "cand_inf": a.cand_inf,
            "ref_min": a.ref_min, "ref_max": a.ref_max, "cand_min": a.cand_min, "cand_max": a.cand_max,
        }
        if amax is not None:
            row.update(amax=amax.get(info.name, math.nan), int8_saturated_frac=a.sat / a.n, int8_zero_frac=a.qzero / a.n)
        else:
            row.update(fp16_overflow=a.fp16_overflow, fp16_nan=a.ref_nan, fp16_flushed=a.fp16_flushed)
        if a.cand_nan + a.cand_inf and not (a.ref_nan + a.ref_inf):
            row["status"] = "nonfinite"
        elif row["cand_zero_frac"] > 0.999 and row["ref_zero_frac"] < 0.9:
            row["status"] = "zero"
        elif cosine < 0.99:
            row["status"] = "divergent"
        else:
            row["status"] = "ok"
        rows.append(row)
    df = pd.DataFrame(rows)
    # origin: a problem is introduced where none of the producing node's inputs had one
    status = dict(zip(df["tensor"], df["status"]))
    origin = []
    for name, st in zip(df["tensor"], df["status"]):
        if st == "ok":
            origin.append("")
            continue
        inputs = [i for i in graph.producer[name].input if i in status]
        origin.append("inherited" if any(status[i] != "ok" for i in inputs) else "introduced")
    df["origin"] = origin
    df["first_problem"] = False
    problems = df.index[df["status"] != "ok"]
    if len(problems):
        df.loc[problems[0], "first_problem"] = True
    df["isolated_cosine"] = np.nan
    df["isolated_rel_l2"] = np.nan
    intro = df[df["origin"] == "introduced"].sort_values("cosine")
    df["culprit_rank"] = np.nan
    df.loc[intro.index, "culprit_rank"] = np.arange(1, len(intro) + 1, dtype=float)
    findings = []
    for r in df[df["status"] != "ok"].itertuples():
        findings.append({"kind": r.status, "tensor": r.tensor, "node": r.node, "op_type": r.op_type, "index": r.index,
                         "severity": "warning" if r.status == "divergent" else "error",
                         "message": f"{r.status}: cosine {r.cosine:.4f}, zeros {r.cand_zero_frac:.1%} vs {r.ref_zero_frac:.1%}"})
        if r.first_problem:
            findings.append({"kind": "first_problem", "tensor": r.tensor, "node": r.node, "op_type": r.op_type,
                             "index": r.index, "severity": "info", "message": "first problem in graph order"})
        if r.origin == "introduced":
            findings.append({"kind": "culprit", "tensor": r.tensor, "node": r.node, "op_type": r.op_type, "index": r.index,
                             "severity": "error", "message": f"culprit rank {int(r.culprit_rank)}: problem introduced here"})
    return CandidateResult(precision, df, findings, unmatched,
                           {"source": f"test data: ONNX Runtime CPU, {precision} stand-in"})


def real_candidates(graph: ModelGraph, dataset) -> dict:
    """{"ref_outputs", "fp16", "int8", "zeroed", "noisy", "amax"}, computed once per test session."""
    if "real" in _CACHE:
        return _CACHE["real"]
    feeds = [dataset.sample(i) for i in range(SAMPLES)]
    ref_runner = OrtRunner(graph, threads=2)
    refs = [ref_runner.run(f) for f in feeds]
    # FP16 stand-in: the real model fed FP16-rounded inputs (small, honest differences)
    half = [{k: v.astype(np.float16).astype(v.dtype) for k, v in f.items()} for f in feeds]
    fp16_runs = [ref_runner.run(f) for f in half]
    damaged, zeroed, noisy = damaged_model(graph)
    dmg_runner = OrtRunner(damaged, threads=2)
    int8_runs = [dmg_runner.run(f) for f in feeds]
    # amax at 60% of the observed max: some saturation for the INT8 columns to show
    amax = {}
    for name in refs[0]:
        peak = max(float(np.nanmax(np.abs(r[name]))) if r[name].size else 0.0 for r in refs)
        amax[name] = 0.6 * peak
    result = {
        "fp16": compare(graph, refs, fp16_runs, "fp16"),
        "int8": compare(graph, refs, int8_runs, "int8", amax=amax),
        "zeroed": zeroed, "noisy": noisy, "amax": amax,
    }
    _CACHE["real"] = result
    return result


@pytest.fixture(scope="module")
def real(graph, small_dataset):
    return real_candidates(graph, small_dataset)


def test_builder_marks_the_zeroed_conv_and_orders_rows(real, graph):
    df = real["int8"].tensors
    assert list(df["index"]) == sorted(df["index"])
    assert len(df) + len(real["int8"].unmatched) == len(graph.float_tensors)
    zeroed = df[df["tensor"] == real["zeroed"]].iloc[0]
    assert zeroed["status"] == "zero" and zeroed["cand_zero_frac"] == 1.0
    first = df[df["first_problem"]]
    assert len(first) == 1
    assert (df.loc[: first.index[0] - 1, "status"] == "ok").all()


def test_fp16_stand_in_stays_close(real):
    df = real["fp16"].tensors
    assert df["cosine"].min() > 0.9
    assert "int8_saturated_frac" not in df and "fp16_overflow" in df
