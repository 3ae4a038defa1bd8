"""The comparator's metric functions against plain float64 numpy, and the matching rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qbench.compare.diagnose import Thresholds, status_of
from qbench.compare.matching import mismatch_reason
from qbench.compare.metrics import SumsAccumulator, derive, pair_sums


def _expected(r: np.ndarray, c: np.ndarray) -> dict:
    r64, c64 = r.astype(np.float64).ravel(), c.astype(np.float64).ravel()
    d = c64 - r64
    return {
        "max_abs_err": np.abs(d).max(),
        "mean_abs_err": np.abs(d).mean(),
        "rel_l2": np.linalg.norm(d) / np.linalg.norm(r64),
        "cosine": r64 @ c64 / (np.linalg.norm(r64) * np.linalg.norm(c64)),
        "sqnr_db": 10 * np.log10((r64 @ r64) / (d @ d)),
    }


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    r = rng.standard_normal((2, 8, 33, 17)).astype(np.float32)
    c = (r + 0.3 * rng.standard_normal(r.shape)).astype(np.float32)
    r[0, 0, 0, :5] = 0.0
    r[0, 0, 1, :3] = -0.0  # negative zero is a zero too
    c[0, 0, :2, :] = 0.0
    return r, c


def test_metrics_match_float64_numpy(pair):
    r, c = pair
    got = derive(pair_sums(r, c))
    for key, want in _expected(r, c).items():
        assert got[key] == pytest.approx(want, rel=1e-5), key
    assert got["ref_zero_frac"] == pytest.approx(np.mean(r == 0)) and np.sum(r == 0) >= 8
    assert got["cand_zero_frac"] == pytest.approx(np.mean(c == 0))


def test_aggregate_over_samples_equals_metrics_of_concatenation(pair):
    r, c = pair
    acc = SumsAccumulator()
    for i in range(2):
        s = pair_sums(r[i], c[i])
        acc.add(s, derive(s)["cosine"])
    whole = _expected(r, c)
    got = derive(acc.sums)
    for key in ("rel_l2", "cosine", "sqnr_db", "mean_abs_err", "max_abs_err"):
        assert got[key] == pytest.approx(whole[key], rel=1e-5), key
    per_sample = [derive(pair_sums(r[i], c[i]))["cosine"] for i in range(2)]
    assert acc.cosine_min == pytest.approx(min(per_sample))
    assert acc.samples == 2
    assert acc.sums["ref_min"] == r.min() and acc.sums["cand_max"] == c.max()


def test_nan_and_inf_are_counted_and_excluded_from_errors(pair):
    r, c = pair
    c = c.copy()
    c.flat[[3, 10]] = np.nan
    c.flat[20] = np.inf
    s = pair_sums(r, c)
    assert (s["cand_nan"], s["cand_inf"], s["ref_nan"], s["ref_inf"]) == (2, 1, 0, 0)
    m = derive(s)
    mask = np.isfinite(c.ravel())
    want = _expected(r.ravel()[mask], c.ravel()[mask])
    assert m["cosine"] == pytest.approx(want["cosine"], rel=1e-6)
    assert math.isfinite(s["cand_max"])
    assert status_of({**s, **m}, Thresholds()) == "nonfinite"


def test_fused_sums_equal_the_exact_float64_definition(pair):
    from qbench.compare.metrics import _slow_sums

    r, c = pair
    fast = pair_sums(r, c)
    exact = _slow_sums(r.reshape(-1), c.reshape(-1))  # masked float64 numpy: the definition
    for key in ("n", "n_finite", "ref_zeros", "cand_zeros", "ref_min", "ref_max", "cand_min", "cand_max"):
        assert fast[key] == exact[key], key
    assert fast["max_abs_err"] == pytest.approx(exact["max_abs_err"], rel=1e-7)  # float32 of the float64 |d|
    for key in ("ss_err", "ss_ref", "ss_cand", "dot", "sum_abs_err"):
        assert fast[key] == pytest.approx(exact[key], rel=1e-9), key
    c = c.copy()
    c.flat[5000] = np.nan  # one NaN anywhere sends the pair to the exact path
    with_nan = pair_sums(r, c)
    assert with_nan["cand_nan"] == 1 and with_nan["n_finite"] == r.size - 1


def test_tiny_values_do_not_underflow_into_false_zeros():
    r = np.full(1000, 3e-30, dtype=np.float32)
    c = r * np.float32(2.0)
    m = derive(pair_sums(r, c))
    assert m["cosine"] == pytest.approx(1.0)
    assert m["rel_l2"] == pytest.approx(1.0)


def test_fused_int8_counts_match_simulate_int8_stats(graph, small_dataset):
    from qbench.compare.kernels import int8_counts
    from qbench.ranges import INT8_MAX
    from qbench.runners import OrtRunner
    from qbench.simulate import int8_stats

    values = OrtRunner(graph, capture=[t.name for t in graph.float_tensors[::40]]).run(small_dataset.sample(0))
    for name, x in values.items():
        x = x.reshape(-1)
        for amax in (float(np.abs(x).max()) / 3 + 1e-6, 1e-3, 1e3):
            saturated, zero_code, nonzero = int8_counts(x, np.float32(amax), np.float32(amax / INT8_MAX))
            want = int8_stats(x, amax)
            assert saturated / x.size == pytest.approx(want["int8_saturated_frac"], abs=1e-12), name
            assert (zero_code / nonzero if nonzero else 0.0) == pytest.approx(want["int8_zero_frac"], abs=1e-12), name


def test_fused_fp16_counts_match_simulate_fp16_stats(graph, small_dataset):
    from qbench.compare.kernels import FP16_FLUSH_AT, FP16_OVERFLOW_AT, fp16_counts
    from qbench.runners import OrtRunner
    from qbench.simulate import fp16_stats

    def check(x, label):
        want = fp16_stats(x)
        got = fp16_counts(x, FP16_OVERFLOW_AT, FP16_FLUSH_AT)
        assert got == (want["fp16_overflow"], want["fp16_nan"], want["fp16_flushed"]), label

    values = OrtRunner(graph, capture=[t.name for t in graph.float_tensors[::40]]).run(small_dataset.sample(0))
    seen = np.zeros(3, np.int64)
    for name, x in values.items():
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        check(x, name)
        # the same activations scaled into the overflow and the flush-to-zero ranges, with NaN/Inf
        for scale in (1e5, 3e-8, 1e-9):
            y = x * np.float32(scale)
            y[:3] = (np.nan, np.inf, -np.inf)
            check(y, f"{name} x {scale}")
            seen += fp16_counts(y, FP16_OVERFLOW_AT, FP16_FLUSH_AT)
    assert (seen > 0).all()  # every counter was exercised, not only zeros compared with zeros
    # every float32 bit pattern around the rounding boundaries (ties to even), both signs
    bits = [np.arange(b - 4096, b + 4096, dtype=np.uint32) for b in (np.float32(65520).view(np.uint32),
                                                                       np.float32(2.0 ** -25).view(np.uint32))]
    edges = np.concatenate(bits).view(np.float32)
    edges = np.concatenate([edges, -edges, np.array([0.0, -0.0, 1e-45, np.nan, np.inf, 65504, 3.4e38], np.float32)])
    check(edges, "boundaries")
    assert fp16_counts(edges, FP16_OVERFLOW_AT, FP16_FLUSH_AT)[2] > 0


def test_fp16_comparison_statistics_equal_the_definition(graph, small_dataset):
    from qbench.compare import compare_precision
    from qbench.runners import OrtRunner
    from qbench.simulate import fp16_stats

    cmp = compare_precision(graph, small_dataset, "fp16", limit=2, replay=False, progress=False)
    frame = cmp.tensors.set_index("tensor")
    names = list(frame.index[::25])
    runner = OrtRunner(graph, name="fp32")  # the comparison's reference, capturing all as it does
    want = {n: {"fp16_overflow": 0, "fp16_nan": 0, "fp16_flushed": 0} for n in names}
    for i in range(2):
        values = runner.run(small_dataset.sample(i))
        for n in names:
            for k, v in fp16_stats(values[n]).items():
                want[n][k] += v
    for n in names:
        assert {k: int(frame.loc[n, k]) for k in want[n]} == want[n], n
    # folded on a background thread, the samples still arrive whole and in order
    assert cmp.meta["samples"] == 2 and list(cmp.per_sample["sample"]) == [0] * len(frame) + [1] * len(frame)
    assert (frame["samples"] == 2).all()


def test_status_rules():
    th = Thresholds(min_cosine=0.9, max_rel_l2=0.5)
    r = np.linspace(-1, 1, 101, dtype=np.float32)
    assert status_of(derive(pair_sums(r, r)), th) == "ok"
    assert status_of(derive(pair_sums(r, np.zeros_like(r))), th) == "zero"
    assert status_of(derive(pair_sums(r, -r)), th) == "divergent"
    assert status_of(derive(pair_sums(r, r * 1.6)), th) == "divergent"  # same direction, wrong size
    both_zero = derive(pair_sums(np.zeros(4, np.float32), np.zeros(4, np.float32)))
    assert status_of(both_zero, th) == "ok"


def test_mismatch_reasons():
    a = np.zeros((1, 2), np.float32)
    assert mismatch_reason("t", {"t": a}, {"t": a}) == ""
    assert "not captured by candidate" in mismatch_reason("t", {"t": a}, {})
    assert "shape mismatch" in mismatch_reason("t", {"t": a}, {"t": np.zeros((2, 1), np.float32)})
    assert "dtype" in mismatch_reason("t", {"t": a}, {"t": np.array([["x", "y"]])})
