"""INT8 (Q/DQ) and FP16 simulation on the real default model, run in real ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.ranges import INT8_MAX, Ranges, TensorRange
from qbench.runners import OrtRunner
from qbench.simulate import build_fp16_model, build_int8_model, fp16_stats, int8_stats, simulation_stats
from qbench.simulate.naming import float_name


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64)
    b = b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def minmax_ranges(graph, dataset, limit=2) -> Ranges:
    """max |x| per tensor, graph input included (the calibration engine's "minmax" when present)."""
    try:
        from qbench.calibrate import calibrate
    except ImportError:
        calibrate = None
    if calibrate is not None:
        return calibrate(graph, dataset, method="minmax", limit=limit, progress=False)
    runner = OrtRunner(graph)
    amax: dict[str, float] = {}
    for batch in dataset.batches(1, limit):
        for name, value in {**batch, **runner.run(batch)}.items():
            amax[name] = max(amax.get(name, 0.0), float(np.abs(value).max()))
    return Ranges({n: TensorRange(n, a, method="minmax") for n, a in amax.items()}, method="minmax")


@pytest.fixture(scope="module")
def ranges(graph, small_dataset):
    return minmax_ranges(graph, small_dataset)


@pytest.fixture(scope="module")
def sample(small_dataset):
    return small_dataset.sample(1)


@pytest.fixture(scope="module")
def reference(graph, sample):
    return OrtRunner(graph).run(sample)


@pytest.fixture(scope="module")
def int8(graph, ranges):
    return build_int8_model(graph, ranges)


@pytest.fixture(scope="module")
def int8_values(graph, int8, sample):
    names = [t.name for t in graph.float_tensors] + [float_name(n) for n in int8.quantized]
    return OrtRunner(ModelGraph(int8.model, name="int8"), capture=names).run(sample)


def logits_name(graph) -> str:
    """The tensor the final Sigmoid reads: the output probabilities are nearly all 0 at 256x256,
    so the logits are where output error is visible."""
    return graph.producer[graph.output_names[0]].input[0]


# -- INT8 -----------------------------------------------------------------------------------------

def test_int8_model_follows_tensorrt_qdq_rules(graph, int8):
    model = int8.model
    onnx.checker.check_model(model, full_check=True)
    assert max(i.version for i in model.opset_import if i.domain in ("", "ai.onnx")) >= 13
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        assert inits[node.input[1]].dtype == np.float32 and (inits[node.input[1]] > 0).all()
    # every Conv/ConvTranspose reads a dequantized activation and per-channel int8 weights
    producers = {o: n for n in model.graph.node for o in n.output}
    axes = {"Conv": 0, "ConvTranspose": 1}
    weighted = [n for n in model.graph.node if n.op_type in axes]
    assert len(weighted) == 64
    for node in weighted:
        data, weight = producers[node.input[0]], producers[node.input[1]]
        assert data.op_type == "DequantizeLinear" and weight.op_type == "DequantizeLinear", node.name
        axis = onnx.helper.get_attribute_value(weight.attribute[0])
        assert axis == axes[node.op_type]
        codes = inits[weight.input[0]]
        assert codes.dtype == np.int8 and codes.min() >= -127 and inits[weight.input[1]].shape == (codes.shape[axis],)
    assert "x" in int8.quantized_inputs
    assert set(int8.quantized) <= {t.name for t in graph.tensors}


def test_int8_runs_with_optimisations_and_stays_on_the_int8_grid(graph, int8, ranges, int8_values):
    runner = OrtRunner(ModelGraph(int8.model, name="int8"), capture=int8.quantized, optimize=True)
    assert runner.session.get_session_options().graph_optimization_level.name == "ORT_ENABLE_ALL"
    for name in int8.quantized[:20]:
        scale = np.float32(ranges.amax(name) / INT8_MAX)
        codes = int8_values[name] / scale
        assert np.abs(codes - np.rint(codes)).max() < 1e-2, name  # DQ(Q(t)): integer multiples of the scale
        assert np.abs(codes).max() <= 128.01


def test_int8_tracks_fp32_on_the_default_model(graph, int8, reference, int8_values):
    logits = logits_name(graph)
    similarity = {n: cosine(int8_values[n], reference[n]) for n in int8.quantized}
    # measured: median 0.975, worst 0.81 (a 6-value squeeze-excite vector deep in the neck)
    assert np.median(list(similarity.values())) > 0.95
    assert min(similarity.values()) > 0.7, min(similarity.items(), key=lambda kv: kv[1])
    assert cosine(int8_values[logits], reference[logits]) > 0.99  # measured 0.997
    # quantization really happened: values differ from FP32 everywhere downstream of x
    assert not np.array_equal(int8_values[logits], reference[logits])
    out = graph.output_names[0]
    assert np.abs(int8_values[out] - reference[out]).max() < 0.5


def test_too_small_range_collapses_that_tensor_first(graph, ranges, reference, small_dataset, sample, int8_values, int8):
    # a full feature map a third of the way in (measured: p2o.Mul.125, 384x8x8 at 256x256 input)
    planted = next(n for n in int8.quantized[len(int8.quantized) // 3:] if reference[n].size > 10000)
    tiny = ranges.amax(planted) / 100
    sim = build_int8_model(graph, ranges.with_override(planted, tiny))
    names = [t.name for t in graph.float_tensors]
    values = OrtRunner(ModelGraph(sim.model, name="int8-planted"), capture=names + [float_name(planted)]).run(sample)

    healthy = cosine(int8_values[planted], reference[planted])  # measured 0.957
    collapsed = cosine(values[planted], reference[planted])  # measured 0.716
    assert healthy > 0.94 and collapsed < 0.9 and healthy - collapsed > 0.15
    stats = int8_stats(values[float_name(planted)], tiny)
    assert stats["int8_saturated_frac"] > 0.3  # measured 0.57
    assert np.abs(values[planted]).max() <= tiny * 128 / 127 + 1e-6
    # the first tensor (graph order) that departs from FP32 is the planted one
    first_bad = next(n for n in names if cosine(values[n], reference[n]) < 0.9)
    assert first_bad == planted


def test_keep_float_by_tensor_and_by_node(graph, ranges, sample):
    full = build_int8_model(graph, ranges)
    kept_tensor = full.quantized[5]
    conv = next(n for n in graph.model.graph.node if n.op_type == "Conv" and n.input[0] in full.quantized)
    sim = build_int8_model(graph, ranges, keep_float=[kept_tensor, conv.name])
    assert kept_tensor not in sim.quantized and sim.kept_float == [kept_tensor] and sim.kept_nodes == [conv.name]
    node = next(n for n in sim.model.graph.node if n.name == conv.name)
    inits = {t.name: t for t in sim.model.graph.initializer}
    assert node.input[1] in inits and inits[node.input[1]].data_type == onnx.TensorProto.FLOAT  # float weight
    # reads the unquantized activation (its float name, or the plain name when the kept node was
    # its only quantizing consumer and nothing quantizes it any more)
    assert node.input[0] == float_name(conv.input[0]) or (node.input[0] == conv.input[0] and conv.input[0] not in sim.quantized)
    values = OrtRunner(ModelGraph(sim.model, name="kept"), capture=[kept_tensor, conv.output[0]]).run(sample)
    reference = OrtRunner(graph, capture=[kept_tensor]).run(sample)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == float_name(kept_tensor) for n in sim.model.graph.node)
    assert cosine(values[kept_tensor], reference[kept_tensor]) > 0.9  # ran, and is a float value
    with pytest.raises(QbenchError, match="no tensor or node named 'nope'"):
        build_int8_model(graph, ranges, keep_float=["nope"])


def test_missing_range_names_the_tensor(graph, ranges, int8):
    victim = int8.quantized[3]
    partial = Ranges({k: v for k, v in ranges.entries.items() if k != victim})
    with pytest.raises(QbenchError, match=repr(victim).replace(".", r"\.")):
        build_int8_model(graph, partial)


def test_int8_statistics_frame(int8, ranges, int8_values):
    frame = simulation_stats(int8, int8_values, ranges)
    assert len(frame) == len(int8.quantized)  # x is an input, not captured
    assert frame["int8_saturated_frac"].between(0, 1).all() and frame["int8_zero_frac"].between(0, 1).all()
    # minmax ranges clip nothing beyond the calibrated max on a calibration sample; only the
    # element equal to amax itself can count, which matters only in tiny tensors
    large = frame[frame["size"] > 1000]
    assert len(large) > 50 and large["int8_saturated_frac"].max() < 0.01


# -- FP16 -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fp16(graph):
    return build_fp16_model(graph)


def test_fp16_rounds_every_activation_with_optimisations_on(graph, fp16, reference, sample):
    onnx.checker.check_model(fp16.model, full_check=True)
    assert [i.type.tensor_type.elem_type for i in fp16.model.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in fp16.model.graph.output] == [onnx.TensorProto.FLOAT]
    names = [t.name for t in graph.float_tensors]
    assert set(fp16.quantized) == set(names) and fp16.quantized_inputs == ["x"]
    values = OrtRunner(ModelGraph(fp16.model, name="fp16"), capture=names + [float_name(names[0])], optimize=True).run(sample)
    for name in names:
        assert np.array_equal(values[name], values[name].astype(np.float16).astype(np.float32)), name
    first = names[0]
    assert not np.array_equal(values[first], values[float_name(first)])  # the Cast pair was not folded away
    logits = logits_name(graph)
    assert cosine(values[logits], reference[logits]) > 0.999
    assert not np.array_equal(values[logits], reference[logits])
    assert not any(fp16_stats(values[n])["fp16_overflow"] for n in names)


def test_fp16_overflow_appears_first_at_the_scaled_conv(graph, reference, sample):
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    weights = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]

    def factor(conv):  # pushes the conv output to 2e5 (> 65504)
        return 2e5 / float(np.abs(reference[conv.output[0]]).max())

    # from the middle of the network, the first conv whose scaled weights still fit in FP16
    conv = next(c for c in convs[len(convs) // 2:] if np.abs(numpy_helper.to_array(weights[c.input[1]])).max() * factor(c) < 3e4)
    weight = weights[conv.input[1]]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(factor(conv)), weight.name))
    faulty = ModelGraph(model, name="scaled")
    sim = build_fp16_model(faulty)
    assert sim.overflowed_weights == []
    names = [t.name for t in faulty.tensors]
    values = OrtRunner(ModelGraph(sim.model, name="fp16-scaled"), capture=names).run(sample)
    first_inf = next(n for n in names if np.isinf(values[n]).any())
    assert first_inf == conv.output[0]
    assert fp16_stats(values[float_name(first_inf)] if float_name(first_inf) in values else values[first_inf])["fp16_overflow"] > 0
    fp32 = OrtRunner(faulty, capture=[conv.output[0]]).run(sample)
    assert np.isfinite(fp32[conv.output[0]]).all()  # the overflow is FP16's, not the model's


def test_fp16_keep_float(graph, sample):
    conv = next(n for n in graph.model.graph.node if n.op_type == "Conv")
    sim = build_fp16_model(graph, keep_float=[conv.name])
    assert conv.output[0] not in sim.quantized
    values = OrtRunner(ModelGraph(sim.model, name="fp16-kept"), capture=[conv.output[0]]).run(sample)
    reference = OrtRunner(graph, capture=[conv.output[0]]).run(sample)
    np.testing.assert_allclose(values[conv.output[0]], reference[conv.output[0]], rtol=1e-5, atol=1e-5)


# -- one-node models (the comparator's culprit replay) ---------------------------------------------

def one_node_model(graph, node_name: str, shapes: bool) -> ModelGraph:
    node = next(n for n in graph.model.graph.node if n.name == node_name)
    inits = [t for t in graph.model.graph.initializer if t.name in node.input]

    def dynamic(name):  # rank-4 free dims, or no shape at all (which the ONNX checker rejects)
        return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["n", "c", "h", "w"] if shapes else None)

    inputs = [dynamic(i) for i in node.input if i and i not in graph.initializer_names]
    outputs = [dynamic(o) for o in node.output]
    g = onnx.helper.make_graph([node], "one", inputs, outputs, inits)
    model = onnx.helper.make_model(g, opset_imports=graph.model.opset_import)
    return ModelGraph(model, name=node_name)


@pytest.mark.parametrize("shapes", [True, False], ids=["shaped", "shapeless"])
@pytest.mark.parametrize("op", ["Conv", "ConvTranspose", "Add"])
def test_one_node_models_build_and_run(graph, ranges, reference, sample, op, shapes):
    candidates = [n for n in graph.model.graph.node if n.op_type == op
                  and sum(i not in graph.initializer_names for i in n.input) == (2 if op == "Add" else 1)]
    node = candidates[-1]
    single = one_node_model(graph, node.name, shapes)
    feed = {i.name: (sample[i.name] if i.name in sample else reference[i.name]) for i in single.inputs}
    out = node.output[0]
    int8 = build_int8_model(single, ranges)
    got = OrtRunner(ModelGraph(int8.model, name="one-int8")).run(feed)[out]
    assert cosine(got, reference[out]) > 0.95
    if op != "Add" or int8.quantized_inputs:
        assert int8.quantized_inputs and not np.array_equal(got, reference[out])
    fp16 = build_fp16_model(single)
    got16 = OrtRunner(ModelGraph(fp16.model, name="one-fp16")).run(feed)[out]
    assert np.array_equal(got16, got16.astype(np.float16).astype(np.float32))
    assert cosine(got16, reference[out]) > 0.999


# -- statistics helpers -----------------------------------------------------------------------------

def test_int8_stats_counts_saturation_and_zeros():
    amax = 1.27  # scale 0.01
    x = np.array([0.0, 0.004, -0.004, 0.006, 0.5, 1.27, -2.0, 5.0], dtype=np.float32)
    stats = int8_stats(x, amax)
    assert stats["int8_saturated_frac"] == pytest.approx(3 / 8)  # 1.27, -2, 5
    assert stats["int8_zero_frac"] == pytest.approx(2 / 7)  # +-0.004 of the 7 nonzero values
    assert int8_stats(np.zeros(4, np.float32), amax) == {"int8_saturated_frac": 0.0, "int8_zero_frac": 0.0}


def test_fp16_stats_counts_overflow_nan_and_flush():
    x = np.array([1.0, 65504.0, 65519.0, 70000.0, -1e9, np.nan, 1e-8, 1e-7, 0.0], dtype=np.float32)
    stats = fp16_stats(x)
    assert stats == {"fp16_overflow": 2, "fp16_nan": 1, "fp16_flushed": 1}
