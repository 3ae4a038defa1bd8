"""Regression tests for the review findings: each fails without its fix."""

from __future__ import annotations

import json
import logging
import math
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from qbench.calibrate import calibrate, calibration_tensors, percentile_amax
from qbench.calibrate.histogram import TensorHistogram
from qbench.compare.replay import replay_tensor
from qbench.compare.result import Comparison
from qbench.data import ImagePreprocess, InputSpec, check_sample, load_dataset
from qbench.errors import QbenchError
from qbench.model import ModelGraph, _digest_in_parts, load_model, model_digest
from qbench.ranges import Ranges, TensorRange
from qbench.runners.ort import OrtRunner, expose_tensors
from qbench.simulate import build_fp16_model
from qbench.simulate.common import resolve_keep_float


def _model(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, elem=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


# 1 ------------------------------------------------------------------------------------------------
def test_histogram_far_larger_batch_merges_before_growing():
    doubled = TensorHistogram("x")  # TensorRT's rule: still 2048 bins, the range doubled ~200 times
    doubled.update(np.array([1e-30, 0], np.float32))
    doubled.update(np.array([1e30], np.float32))
    assert len(doubled.counts) == 2048 and doubled.counts.sum() == 3 and doubled.range >= 1e30
    hist = TensorHistogram("x", growth="append")
    hist.update(np.array([1e-30, 0], np.float32))
    hist.update(np.array([1e30], np.float32))  # would need ~2e63 bins of the first width
    assert len(hist.counts) <= hist.max_bins and hist.merges > 0
    assert hist.counts.sum() == 3 and hist.counts[-1] == 1 and hist.amax == pytest.approx(1e30)


def test_histogram_reviewer_case_stays_small():
    hist = TensorHistogram("x", growth="append")
    hist.update(np.array([1e-7, 0], np.float32))
    hist.update(np.array([1.0], np.float32))
    assert len(hist.counts) <= hist.max_bins and hist.counts.sum() == 3
    assert hist.edges[-1] >= 1.0


def test_histogram_merge_in_fold_is_exact():
    rng = np.random.default_rng(0)
    first = rng.uniform(-1, 1, 1000).astype(np.float32)
    second = rng.uniform(-300, 300, 1000).astype(np.float32)
    hist = TensorHistogram("x", num_bins=64, max_bins=128, growth="append")
    hist.update(first)
    hist.update(second)
    assert len(hist.counts) <= 128 and hist.merges >= 1
    expected, _ = np.histogram(np.abs(np.concatenate([first, second])), bins=hist.edges)
    # np.histogram closes its last bin on the right; |x| == last edge cannot occur here
    np.testing.assert_array_equal(hist.counts, expected)


# 2 ------------------------------------------------------------------------------------------------
def test_batches_of_unequal_shapes_are_one_clear_error(tmp_path):
    spec = InputSpec("x", TensorProto.FLOAT, ("N", 3, None, None))
    np.save(tmp_path / "a.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((1, 3, 5, 5), np.float32))
    ds = load_dataset(tmp_path, [spec])
    assert [b["x"].shape for b in ds.batches(1)] == [(1, 3, 4, 4), (1, 3, 5, 5)]
    with pytest.raises(QbenchError, match=r"b\.npy.*batch_size > 1 needs samples of equal shapes"):
        list(ds.batches(2))


# 3 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, word", [
    ({"size": [640]}, "size"), ({"size": [0, 64]}, "size"), ({"size": "640"}, "size"), ({"size": [64.5, 64]}, "size"),
    ({"size": [64, 64], "mean": [0.5, 0.5]}, "mean"), ({"size": [64, 64], "std": ["a"]}, "std"),
    ({"size": [64, 64], "channel_order": "GRAY", "std": [1, 1, 1]}, "std"),
    ({"size": [64, 64], "dtype": "int8"}, "dtype"), ({"size": [64, 64], "dtype": "nonsense"}, "dtype"),
    ({"size": [64, 64], "scale": "1/255"}, "scale"),
])
def test_manifest_preprocessing_is_validated(bad, word):
    with pytest.raises(QbenchError, match=f"manifest: '?{word}'?"):
        ImagePreprocess.from_dict(bad)


def test_manifest_preprocessing_valid_values():
    pre = ImagePreprocess.from_dict({"size": [32, 48], "mean": [0.5], "std": [0.5, 0.25, 0.125], "dtype": "float16",
                                     "scale": 1})
    assert pre.size == (32, 48) and pre.mean == (0.5, 0.5, 0.5) and pre.dtype == "float16" and pre.scale == 1.0
    gray = ImagePreprocess.from_dict({"size": [8, 8], "channel_order": "GRAY", "mean": [0.5], "std": [0.5]})
    assert gray.mean == (0.5,)


# 4 ------------------------------------------------------------------------------------------------
def _input_graph():
    return ModelGraph.from_proto(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", shape=[1, 4])], [_vi("y")]))


def test_npz_object_member_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.array([{"a": 1}], dtype=object))
    ds = load_dataset(tmp_path, _input_graph().inputs)
    with pytest.raises(QbenchError, match="never unpickled"):
        ds.sample(0)


def test_npz_corrupt_member_is_one_clear_error(tmp_path):
    path = tmp_path / "s.npz"
    np.savez_compressed(path, x=np.random.default_rng(0).normal(size=(1, 4096)).astype(np.float32))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(64)  # damage the deflated member, not the zip directory
    path.write_bytes(bytes(raw))
    ds = load_dataset(tmp_path, _input_graph().inputs)
    with pytest.raises(QbenchError, match="not a readable .npy/.npz file"):
        ds.sample(0)


def test_npz_member_that_is_not_npy(tmp_path):
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as z:
        z.writestr("x.npy", b"not an array at all")
    ds = load_dataset(tmp_path, _input_graph().inputs)
    with pytest.raises(QbenchError, match="not a readable"):
        ds.sample(0)


# 5 ------------------------------------------------------------------------------------------------
def test_input_of_unknown_rank_accepts_any_rank(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    assert not x.type.tensor_type.HasField("shape")
    graph = ModelGraph.from_proto(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [_vi("y")]))
    assert graph.inputs[0].shape is None
    sample = {"x": np.array([[-1.0, 2.0]], np.float32)}
    check_sample(sample, graph.inputs)
    np.save(tmp_path / "s.npy", np.array([-1.0, 3.0], np.float32))
    loaded = load_dataset(tmp_path, graph.inputs).sample(0)
    assert loaded["x"].shape == (2,)  # no batch dimension guessed for an unknown rank
    np.testing.assert_array_equal(OrtRunner(graph, capture=None).run(loaded)["y"], [0.0, 3.0])


# 6 ------------------------------------------------------------------------------------------------
def _unnamed_model():
    w = numpy_helper.from_array(np.array([1.0001, 3.0001], np.float32), "w")  # not exact in float16
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "w"], ["y"]),
             helper.make_node("Identity", ["y"], ["z"], name="Relu_0")]
    return ModelGraph.from_proto(_model(nodes, [_vi("x", shape=[2])], [_vi("z")], [w]))


def test_node_names_cover_unnamed_nodes_without_clashes():
    graph = _unnamed_model()
    assert graph.node_names == ["Relu_0_1", "Mul_1", "Relu_0"]
    assert [t.node for t in graph.tensors] == graph.node_names


def test_keep_float_accepts_the_displayed_name_of_an_unnamed_node():
    graph = _unnamed_model()
    mul = graph.tensor("y").node
    assert resolve_keep_float(graph, [mul]) == (set(), {1})
    sim = build_fp16_model(graph, keep_float=[mul, "Relu_0"])
    assert sim.kept_nodes == ["Mul_1", "Relu_0"] and "y" not in sim.quantized and "z" not in sim.quantized
    x = np.array([1.0001, 2.0001], np.float32)
    out = OrtRunner(sim.model, capture=None).run({"x": x})["z"]
    # only the input is rounded: the kept Mul read the unrounded Relu output and weight, the kept
    # Identity the unrounded product
    x16 = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out, x16 * np.array([1.0001, 3.0001], np.float32))


# 7 ------------------------------------------------------------------------------------------------
def test_exposed_tensor_of_unknown_type_keeps_its_real_type():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    model = _model(nodes, [_vi("x", shape=[2, 3])], [_vi("y")])
    exposed = expose_tensors(model, ["s"], elem_types={})  # "s" as if shape inference could not type it
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    y, s = session.run(["y", "s"], {"x": np.zeros((2, 3), np.float32)})
    assert s.dtype == np.int64 and s.tolist() == [2, 3]


# 8 ------------------------------------------------------------------------------------------------
def test_replay_feeds_int64_indices_uncast():
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"]), helper.make_node("Relu", ["g"], ["y"])]
    graph = ModelGraph.from_proto(_model(nodes, [_vi("x", shape=[4, 3]), _vi("idx", TensorProto.INT64, [2])], [_vi("y")]))
    x = np.arange(12, dtype=np.float32).reshape(4, 3) - 5
    idx = np.array([3, 1], np.int64)
    ref = OrtRunner(graph).run({"x": x, "idx": idx})
    ref.update({"x": x, "idx": idx})
    result = replay_tensor("g", ref, graph=graph, candidate_model=graph.model)
    assert result.isolated is not None, result.note
    assert result.isolated["cosine"] == pytest.approx(1.0) and result.isolated["max_abs_err"] == 0.0


# 9 ------------------------------------------------------------------------------------------------
def test_model_with_external_data_loads_and_runs(tmp_path):
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", shape=[1, 2])], [_vi("y")], [w])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.bin", size_threshold=0)
    assert (tmp_path / "m.bin").exists()
    graph = ModelGraph.from_path(path)
    y = OrtRunner(graph, capture=None).run({"x": np.array([[1.0, 2.0]], np.float32)})["y"]
    np.testing.assert_array_equal(y, [[6.0, 9.0, 12.0]])
    assert graph.digest == model_digest(graph.model)


def test_checker_value_error_is_a_warning(tmp_path, monkeypatch, caplog):
    path = tmp_path / "m.onnx"
    onnx.save_model(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", shape=[1])], [_vi("y")]), str(path))

    def too_big(model, *args, **kwargs):
        assert isinstance(model, str)  # by path: a proto over 2 GB cannot be checked in memory
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB")

    monkeypatch.setattr(onnx.checker, "check_model", too_big)
    with caplog.at_level(logging.WARNING, logger="qbench"):
        assert load_model(path).graph.node
    assert "2GB" in caplog.text


def test_digest_in_parts_depends_on_every_weight():
    graph = _unnamed_model()
    other = onnx.ModelProto()
    other.CopyFrom(graph.model)
    other.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([1.0, 3.0], np.float32), "w"))
    assert _digest_in_parts(graph.model) == _digest_in_parts(graph.model)
    assert _digest_in_parts(graph.model) != _digest_in_parts(other)


# 10 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [150, 0, -1, float("nan")])
def test_bad_percentile_is_refused_before_any_batch(p):
    def batches():
        raise AssertionError("calibration ran before the percentile was checked")
        yield

    with pytest.raises(QbenchError, match="percentile"):
        calibrate(_input_graph(), batches(), method="percentile", percentile=p, progress=False)


# 12 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["[1, 2]", "3", '"comparison"'])
def test_comparison_load_refuses_non_objects(tmp_path, text):
    (tmp_path / "comparison.json").write_text(text)
    with pytest.raises(QbenchError, match="not a qbench comparison"):
        Comparison.load(tmp_path)


def test_comparison_round_trip_keeps_a_tensor_named_inf(tmp_path):
    tensors = pd.DataFrame({"tensor": ["inf", "-inf"], "node": ["inf", "n"], "max_abs_err": [math.inf, 1.0],
                            "sqnr_db": [-math.inf, math.nan]})
    Comparison(tensors, pd.DataFrame({"sample": [0], "tensor": ["inf"], "cosine": [math.inf]})).save(tmp_path)
    back = Comparison.load(tmp_path)
    assert back.tensors["tensor"].tolist() == ["inf", "-inf"] and back.tensors["node"].tolist() == ["inf", "n"]
    assert back.tensors["max_abs_err"].tolist() == [math.inf, 1.0]
    assert back.tensors["sqnr_db"].iloc[0] == -math.inf and math.isnan(back.tensors["sqnr_db"].iloc[1])
    assert back.per_sample["tensor"].tolist() == ["inf"] and back.per_sample["cosine"].tolist() == [math.inf]
    assert json.loads((tmp_path / "comparison.json").read_text())["tensors"][0]["tensor"] == "inf"


# 13 -----------------------------------------------------------------------------------------------
def test_int64_input_needs_no_range():
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"]), helper.make_node("Relu", ["g"], ["y"])]
    graph = ModelGraph.from_proto(_model(nodes, [_vi("idx", TensorProto.INT64, [2]), _vi("x", shape=[4, 3])], [_vi("y")]))
    assert graph.range_tensors == ["x", "g", "y"] == calibration_tensors(graph)
    ranges = Ranges({n: TensorRange(n, 1.0) for n in graph.range_tensors})
    check = ranges.check_against(graph)
    assert check.missing == [] and check.unknown == []
    # a range for the int64 input is still a model tensor, not an unknown name
    ranges.entries["idx"] = TensorRange("idx", 1.0)
    assert ranges.check_against(graph).unknown == []


# 15 -----------------------------------------------------------------------------------------------
def test_summary_percentiles_match_percentile_method():
    hist = TensorHistogram("x")
    hist.update(np.random.default_rng(1).normal(size=20000).astype(np.float32))
    summary = hist.summary()
    for key, q in (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9), ("p99_99", 99.99)):
        assert summary[key] == percentile_amax(hist.counts, hist.edges, q), key
