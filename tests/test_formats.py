"""FP8, BF16 and W4A16 simulations against ml_dtypes/numpy rounding on real tensors, and their
placement rules, on rapidocr-onnxruntime's PP-OCRv4 text recognizer (SVTR: attention MatMuls between
activations, decomposed LayerNorms, Softmax) and the embedded PP-OCRv4 detector."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from onnx import numpy_helper

from qbench.model import ModelGraph
from qbench.ranges import Ranges, TensorRange
from qbench.runners import OrtRunner
from qbench.simulate import fp8 as fp8_mod
from qbench.simulate import naming, w4a16
from qbench.simulate.formats import FORMATS, expand, get
from tests.search_textdata import ppocr_line, text_line

pytestmark = pytest.mark.filterwarnings("ignore:FP16", "ignore:BF16")


def _rec_path() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"


@pytest.fixture(scope="module")
def rec():
    graph = ModelGraph.from_path(_rec_path())
    feed = {graph.inputs[0].name: ppocr_line(text_line("tensor core", 3, height=48, width=320))}
    ref = OrtRunner(graph, name="fp32", capture=[t.name for t in graph.float_tensors]).run(feed)
    # ranges observed on this very line: max |x| per tensor (what the max calibrator records)
    ranges = Ranges({n: TensorRange(n, float(np.abs(v).max()), observed_min=float(v.min()), observed_max=float(v.max()))
                     for n, v in ref.items()} | {graph.inputs[0].name: TensorRange(graph.inputs[0].name, 1.0, observed_max=1.0)})
    return graph, feed, ref, ranges


def _run(sim, feed, names):
    return OrtRunner(sim.model, name=sim.precision, capture=names, optimize=False).run(feed)


def test_fp8_activations_and_weights_equal_ml_dtypes_rounding(rec):
    graph, feed, ref, ranges = rec
    sim = FORMATS["fp8"].simulate(graph, ranges)
    names = sim.quantized + [naming.float_name(n) for n in sim.quantized] + sim.weights
    out = _run(sim, feed, names)
    checked = 0
    for name in sim.quantized:
        before = out[naming.float_name(name)]
        scale = float(numpy_helper.to_array(next(t for t in sim.model.graph.initializer if t.name == name + naming.SCALE)))
        assert scale == pytest.approx(fp8_mod.observed_amax(ranges, name) / 448, rel=1e-6)
        # QuantizeLinear(saturate=1): clip to +-448, then E4M3's round to nearest even (ml_dtypes)
        codes = np.clip(before / np.float32(scale), -448, 448).astype(ml_dtypes.float8_e4m3fn)
        expected = codes.astype(np.float32) * np.float32(scale)
        np.testing.assert_array_equal(out[name], expected)
        assert not np.array_equal(out[name], before)  # FP8 really rounds (3 mantissa bits)
        checked += 1
    assert checked == len(sim.quantized) > 20
    for name in sim.weights:
        w = graph.initializer(name)
        codes, scale = fp8_mod.weight_codes(w, sim_axis(sim, name))
        shape = [1] * w.ndim
        shape[sim_axis(sim, name)] = -1
        np.testing.assert_array_equal(out[name], codes.astype(np.float32) * scale.reshape(shape))
        # per output channel: each channel's largest |w| is exactly representable (448 * scale)
        assert np.allclose(np.abs(out[name]).max(axis=tuple(i for i in range(w.ndim) if i != sim_axis(sim, name))),
                           np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != sim_axis(sim, name))), rtol=1e-6)


def sim_axis(sim, name: str) -> int:
    node = next(n for n in sim.model.graph.node if n.output and n.output[0] == name and n.op_type == "DequantizeLinear")
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def test_fp8_placement_follows_model_optimizer_rules(rec):
    graph, _, _, ranges = rec
    acts, weights = fp8_mod.plan_fp8(graph)
    inits = graph.initializer_names
    gemm_inputs = {i for n in graph.model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") for i in n.input[:2]
                   if i and i not in inits}
    # rule 1: every activation input of a Conv/MatMul, both inputs of the attention MatMuls included
    assert set(acts) == gemm_inputs
    attention = [n for n in graph.model.graph.node if n.op_type == "MatMul" and not set(n.input) & inits]
    assert len(attention) == 4 and all(set(n.input) <= set(acts) for n in attention)
    # rule 3: Softmax / LayerNorm parts / Sigmoid that feed nothing GEMM-like stay unquantized
    for node in graph.model.graph.node:
        if node.op_type in ("Softmax", "ReduceMean", "Sqrt", "Sigmoid"):
            assert not any(i in acts for i in node.input if graph.consumers.get(i) and
                           all(c.op_type not in ("Conv", "MatMul", "Gemm") for c in graph.consumers[i]))
    # rule 2: per output channel: Conv axis 0, MatMul weight [K, N] axis 1
    convs = {n.input[1] for n in graph.model.graph.node if n.op_type == "Conv"}
    mms = {n.input[1] for n in graph.model.graph.node if n.op_type == "MatMul" and n.input[1] in inits}
    assert {weights[w] for w in convs} == {0} and {weights[w] for w in mms} == {1}
    assert set(weights) == convs | mms


def test_fp8_keep_float_and_missing_range(rec):
    graph, _, _, ranges = rec
    mm = next(n for n in graph.model.graph.node if n.op_type == "MatMul" and n.input[1] not in graph.initializer_names)
    name = graph.node_names[list(graph.model.graph.node).index(mm)]
    kept = FORMATS["fp8"].simulate(graph, ranges, keep_float=[name])
    full = FORMATS["fp8"].simulate(graph, ranges)
    assert set(mm.input) & set(full.quantized) and not any(
        n.op_type == "DequantizeLinear" and n.output[0] in mm.input and all(c is mm for c in graph.consumers[n.output[0]])
        for n in kept.model.graph.node)
    from qbench.errors import QbenchError

    partial = Ranges({k: v for k, v in ranges.entries.items() if k != mm.input[0]})
    with pytest.raises(QbenchError, match="no range for tensor"):
        FORMATS["fp8"].simulate(graph, partial)


@pytest.mark.parametrize("mode", ["likely", "worst"])
def test_bf16_rounding_equals_ml_dtypes(rec, mode):
    graph, feed, _, _ = rec
    sim = FORMATS["bf16"].simulate(graph, mode=mode)
    some = sim.quantized[::7]
    out = _run(sim, feed, some + [naming.float_name(n) for n in some])
    for name in some:
        before = out[naming.float_name(name)]
        np.testing.assert_array_equal(out[name], before.astype(ml_dtypes.bfloat16).astype(np.float32))
    rounded = {t.name: numpy_helper.to_array(t) for t in sim.model.graph.initializer if t.name in sim.weights}
    for name, value in list(rounded.items())[:40]:
        np.testing.assert_array_equal(value, graph.initializer(name).astype(ml_dtypes.bfloat16).astype(np.float32))


def test_bf16_worst_keeps_the_detector_finite_where_fp16_worst_overflows(model_path):
    """The default detector's BN running variance 9.79e7 is inf in FP16, finite in BF16."""
    graph = ModelGraph.from_path(model_path)
    bf = FORMATS["bf16"].simulate(graph, mode="worst")
    fp = FORMATS["fp16"].simulate(graph, mode="worst")
    big = [t.name for t in graph.model.graph.initializer if np.abs(numpy_helper.to_array(t)).max(initial=0) > 65504]
    assert big
    values = {t.name: numpy_helper.to_array(t) for t in bf.model.graph.initializer}
    half = {t.name: numpy_helper.to_array(t) for t in fp.model.graph.initializer}
    for name in big:
        assert np.isfinite(values[name]).all() and not np.isfinite(half[name]).all()
        np.testing.assert_array_equal(values[name], graph.initializer(name).astype(ml_dtypes.bfloat16).astype(np.float32))


def test_w4a16_blockwise_int4_equals_numpy_and_only_gemm_weights(rec):
    graph, feed, _, _ = rec
    sim = FORMATS["w4a16"].simulate(graph)
    mms = {n.input[1]: n for n in graph.model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in graph.initializer_names}
    convs = {n.input[1] for n in graph.model.graph.node if n.op_type == "Conv"}
    int4 = [naming.original_name(n.output[0]) for n in sim.model.graph.node if n.op_type == "DequantizeLinear"]
    assert set(int4) == set(mms) and not set(int4) & convs  # placement: MatMul/Gemm weights only
    out = _run(sim, feed, int4)
    for name in int4:
        w = graph.initializer(name)
        codes, scale = w4a16.block_codes(w, 0, 128)
        assert codes.min() >= -8 and codes.max() <= 7
        assert np.array_equal(scale, scale.astype(np.float16).astype(np.float32))  # FP16 scales
        expected = w4a16.dequantize(codes, scale, 0, 128)
        # the DQ output is FP16 in the engine: code * scale rounded to FP16 (7 * an 11-bit scale needs 14 bits)
        np.testing.assert_array_equal(out[name], expected.astype(np.float16).astype(np.float32))
        k = w.shape[0]
        blocks = -(-k // 128)
        assert scale.shape == (blocks, w.shape[1])
        # each block's largest |w| maps to code +-7 (or -8): max rounding
        ref_scale = np.abs(np.concatenate([w, np.zeros((blocks * 128 - k, w.shape[1]), np.float32)])
                           .reshape(blocks, 128, -1)).max(axis=1) / 7
        np.testing.assert_allclose(scale, np.where(ref_scale > 0, ref_scale, 1), rtol=1e-3)


def test_nvfp4_decomposition_equals_ml_dtypes_on_real_activations(rec):
    """ORT has no FP4 kernel: the ONNX decomposition of the dynamic block quantization must give
    exactly ml_dtypes' E2M1 (and E4M3 block scales) on the recognizer's MatMul inputs."""
    from qbench.simulate import nvfp4

    graph, feed, _, ranges = rec
    sim = FORMATS["nvfp4"].simulate(graph, ranges)
    assert len(sim.quantized) >= 4 and len(sim.weights) >= 8
    out = _run(sim, feed, sim.quantized + [naming.float_name(n) for n in sim.quantized] + sim.weights)
    for name in sim.quantized:
        before = out[naming.float_name(name)]
        g = nvfp4.global_scale(fp8_mod.observed_amax(ranges, name))
        k = before.shape[-1]
        pad = (-k) % 16  # the recognizer's width 120 ends in a block of 8
        rows = np.concatenate([before, np.zeros(before.shape[:-1] + (pad,), np.float32)], axis=-1).reshape(-1, 16)
        s = np.clip(np.abs(rows).max(axis=1, keepdims=True) / np.float32(6 * g), -448, 448)
        s = s.astype(ml_dtypes.float8_e4m3fn).astype(np.float32) * np.float32(g)
        safe = np.where(s == 0, np.float32(1), s)
        codes = np.clip(rows / safe, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
        expected = (codes * safe).reshape(before.shape[:-1] + (k + pad,))[..., :k]
        np.testing.assert_array_equal(out[name], expected)
        assert len(np.unique(np.abs(codes))) <= 8  # E2M1 has 8 magnitudes
    attention = [n for n in graph.model.graph.node if n.op_type == "MatMul" and not set(n.input) & graph.initializer_names]
    for node in attention:  # placement: matmuls between activations stay float
        assert node.input[1] not in sim.quantized
    for name in sim.weights:
        w = graph.initializer(name)
        np.testing.assert_array_equal(out[name], nvfp4.quantize_weight(w, 0))
        assert len(np.unique(out[name])) < len(np.unique(w))


def test_e2m1_rounding_of_the_decomposition_on_every_tie():
    """The three-step Round decomposition against ml_dtypes on every E2M1 value, tie and neighbour."""
    from onnx import TensorProto, helper

    from qbench.simulate import nvfp4
    from qbench.simulate.rewrite import Rewriter

    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    mids = (grid[1:] + grid[:-1]) / 2
    probe = np.concatenate([grid, mids, np.nextafter(mids, 0), np.nextafter(mids, 10), [6.5, 100.0]]).astype(np.float32)
    x = np.concatenate([probe, -probe])
    x = np.concatenate([x, np.zeros((-len(x)) % 16, np.float32)])
    x[0] = 6.0  # block maxima of 6 keep the block scale at 1 (g = 1/448)
    x = x.reshape(1, -1)
    g = 1 / 448
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    rw = Rewriter(model)
    src, dst = rw.tap("x")
    rw.add_chain("x", nvfp4._chain("x", src, dst, g, rw, x.shape[-1]))
    got = OrtRunner(rw.apply(), name="t", capture=None, optimize=False).run({"x": x})["y"]
    np.testing.assert_array_equal(got, nvfp4.fake_quantize_blocks(x, g))


def test_table_names_and_expand():
    assert expand(["all"]) == ("int8", "fp8", "nvfp4", "w4a16", "fp16", "bf16")
    assert get("bf16-worst").name == "bf16" and get("int8-mixed").name == "int8"
    from qbench.errors import QbenchError

    with pytest.raises(QbenchError, match="unknown precision"):
        expand(["fp7"])
    for fmt in FORMATS.values():
        assert fmt.gpus and fmt.trtexec and fmt.builder and fmt.min_cc >= 7.5 and fmt.generation


def test_awq_scales_lower_the_output_error_of_the_recognizer_matmuls(rec):
    """AWQ (activation-aware INT4 scales) against plain round-to-nearest on the recognizer's own
    MatMul inputs: the layer outputs move closer to FP32, and the shipped form is x*(1/s) @ Q(w*s)."""
    graph, feed, ref, _ = rec
    from qbench.compare.channel_stats import channel_moments

    acts = w4a16.awq_inputs(graph)
    assert len(acts) >= 8
    stats = channel_moments(graph, [feed], list(acts.values()))
    rtn = FORMATS["w4a16"].simulate(graph)
    awq = FORMATS["w4a16"].simulate(graph, channel_stats=stats)
    assert sum(n.op_type == "Mul" and n.name.endswith("::AwqScale") for n in awq.model.graph.node) == len(acts)
    assert not any(n.name.endswith("::AwqScale") for n in rtn.model.graph.node)
    # layer by layer on the real FP32 activations: (x / s) @ Q(w * s) vs x @ Q(w), both against x @ w
    better = 0
    for weight, act in acts.items():
        w, x = graph.initializer(weight), ref[act].reshape(-1, graph.initializer(weight).shape[0])
        exact = x @ w
        s, alpha = w4a16.awq_scale(w, 0, *stats[act])
        rtn_w = w4a16.dequantize(*w4a16.block_codes(w, 0), 0)
        awq_w = w4a16.dequantize(*w4a16.block_codes(w * s[:, None], 0), 0)
        e_rtn = float(np.square(x @ rtn_w - exact).sum())
        e_awq = float(np.square((x / s) @ awq_w - exact).sum())
        assert e_awq <= e_rtn * 1.05  # the diagonal proxy may miss slightly, never by much
        better += e_awq < e_rtn and alpha > 0
    assert better >= len(acts) // 2


def test_ranking_names_every_format_with_its_gpu_generation():
    import pandas as pd

    from qbench.advise import format_ranking, precision_rank

    table = pd.DataFrame([{"precision": p, "task_value": v, "task_metric": "top1", "verdict": verdict}
                          for p, v, verdict in (("int8", 0.91, "fail"), ("fp8", 0.97, "pass"), ("bf16-worst", 0.99, "pass"))])
    text = format_ranking(table)
    assert text.index("bf16-worst 0.99") < text.index("fp8 0.97") < text.index("int8 0.91")
    assert "fp8 0.97 (pass, Ada or newer, compute capability 8.9+)" in text and "Ampere or newer" in text
    # the cheapest first: nvfp4 < int8 = fp8 < w4a16 < fp16 = bf16 < fp32
    assert precision_rank("nvfp4") < precision_rank("fp8") == precision_rank("int8") < precision_rank("w4a16") \
        < precision_rank("bf16-worst") == precision_rank("fp16") < precision_rank("fp32")


def test_bf16_likely_folds_batchnorm_statistics_worst_rounds_them(model_path):
    """BF16 keeps FP16's placement assumptions: BN statistics unrounded when folded (likely), rounded
    as stored when unfolded (worst); every other weight rounded in both."""
    graph = ModelGraph.from_path(model_path)
    bn = next(n for n in graph.model.graph.node if n.op_type == "BatchNormalization")
    var = bn.input[4]
    conv_w = next(n.input[1] for n in graph.model.graph.node if n.op_type == "Conv")
    for mode, rounded in (("likely", False), ("worst", True)):
        sim = FORMATS["bf16"].simulate(graph, mode=mode)
        values = {t.name: numpy_helper.to_array(t) for t in sim.model.graph.initializer}
        original = graph.initializer(var)
        as_bf16 = original.astype(ml_dtypes.bfloat16).astype(np.float32)
        assert not np.array_equal(original, as_bf16)
        np.testing.assert_array_equal(values[var], as_bf16 if rounded else original)
        assert (var in sim.weights) == rounded and conv_w in sim.weights
        assert any("BF16" in line for line in sim.assumptions) and not any("FP16" in line for line in sim.assumptions)
