"""Loading models and data: real files load; every kind of bad input is one clear QbenchError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qbench.data import check_sample, load_dataset
from qbench.errors import QbenchError
from qbench.model import ModelGraph, load_model


def test_default_model_is_canonicalised(graph):
    # paddle2onnx stores weights as Constant nodes; every Conv weight must now be an initializer
    convs = [n for n in graph.model.graph.node if n.op_type == "Conv"]
    assert convs and all(n.input[1] in graph.initializer_names for n in convs)
    assert not any(n.op_type == "Constant" for n in graph.model.graph.node)
    names = [t.name for t in graph.tensors]
    assert len(names) == len(set(names))
    assert graph.tensors[-1].name == "sigmoid_0.tmp_0" and graph.tensors[-1].is_output


def test_graph_order_is_topological(graph):
    produced = {i.name for i in graph.inputs} | graph.initializer_names
    for node in graph.model.graph.node:
        assert all(i in produced for i in node.input if i), node.name
        produced.update(node.output)


def test_calibration_images_follow_manifest(graph, calib_dir):
    ds = load_dataset(calib_dir, graph.inputs)
    assert len(ds) == 16
    batch = next(ds.batches(2))
    x = batch["x"]
    assert x.shape == (2, 3, 640, 640) and x.dtype == np.float32
    # mean 0.5 / std 0.5 on pixel/255 maps every pixel into [-1, 1]
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.1


def test_manifest_channel_order_is_applied(graph, small_data_dir):
    manifest = json.loads((small_data_dir / "manifest.json").read_text())
    ds_bgr = load_dataset(small_data_dir, graph.inputs)
    colour = [i for i, f in enumerate(ds_bgr.files) if f.name == "astronaut.png"][0]
    sample_bgr = ds_bgr.sample(colour)["x"]
    manifest["inputs"]["x"]["channel_order"] = "RGB"
    pre = type(ds_bgr.preprocess["x"]).from_dict(manifest["inputs"]["x"])
    sample_rgb = pre(ds_bgr.files[colour])
    np.testing.assert_array_equal(sample_bgr[:, ::-1], sample_rgb)
    assert not np.array_equal(sample_bgr, sample_rgb)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not"),
        (b"this is not protobuf at all \x00\xff" * 10, "not"),
    ],
)
def test_malformed_model_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(QbenchError, match=message):
        load_model(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(QbenchError, match="not found"):
        ModelGraph.from_path(tmp_path / "absent.onnx")


def test_missing_and_empty_data_folder(graph, tmp_path):
    with pytest.raises(QbenchError, match="not found"):
        load_dataset(tmp_path / "nope", graph.inputs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(QbenchError, match="no samples"):
        load_dataset(tmp_path / "empty", graph.inputs)


def test_images_without_manifest_are_refused(graph, calib_dir, tmp_path):
    (tmp_path / "a.png").write_bytes((calib_dir / "images" / "page.png").read_bytes())
    with pytest.raises(QbenchError, match="manifest"):
        load_dataset(tmp_path, graph.inputs)


def test_array_samples_wrong_dtype_shape_and_nan(graph, tmp_path):
    good = np.zeros((1, 3, 64, 64), np.float32)
    cases = {
        "dtype.npy": (good.astype(np.float64), "dtype float64"),
        "channels.npy": (np.zeros((1, 4, 64, 64), np.float32), "expects"),
        "rank.npy": (np.zeros((64, 64), np.float32), "3-D|2-D"),
        "nan.npy": (np.where(np.arange(good.size).reshape(good.shape) == 7, np.nan, good).astype(np.float32), "NaN"),
    }
    for name, (arr, message) in cases.items():
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        np.save(folder / name, arr)
        ds = load_dataset(folder, graph.inputs)
        with pytest.raises(QbenchError, match=message):
            ds.sample(0)
    ok = tmp_path / "ok"
    ok.mkdir()
    np.save(ok / "s.npy", good[0])  # without batch dimension
    assert load_dataset(ok, graph.inputs).sample(0)["x"].shape == (1, 3, 64, 64)


def test_pickled_arrays_are_never_unpickled(graph, tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    np.save(tmp_path / "evil.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    ds = load_dataset(tmp_path, graph.inputs)
    with pytest.raises(QbenchError, match="unpickling"):
        ds.sample(0)


def test_npz_with_missing_input(graph, tmp_path):
    np.savez(tmp_path / "s.npz", y=np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(QbenchError, match="missing arrays for inputs \\['x'\\]"):
        load_dataset(tmp_path, graph.inputs).sample(0)


def test_check_sample_accepts_dynamic_dims(graph):
    check_sample({"x": np.zeros((3, 3, 32, 96), np.float32)}, graph.inputs)


@pytest.mark.parametrize("pattern", ["/etc/*", "../*", 7])
def test_manifest_glob_must_stay_inside_the_data_folder(graph, small_data_dir, tmp_path, pattern):
    manifest = json.loads((small_data_dir / "manifest.json").read_text())
    manifest["inputs"]["x"]["glob"] = pattern
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(QbenchError, match="inside the data folder"):
        load_dataset(tmp_path, graph.inputs)


def test_samples_are_in_natural_order(graph, tmp_path):
    """sample2 before sample10: imported TensorRT results are matched to samples by position."""
    for i in (10, 2, 1):
        np.save(tmp_path / f"sample{i}.npy", np.full((1, 3, 8, 8), i, np.float32))
    ds = load_dataset(tmp_path, graph.inputs)
    assert [f.name for f in ds.files] == ["sample1.npy", "sample2.npy", "sample10.npy"]
    assert [float(b["x"].flat[0]) for b in ds.batches(1)] == [1.0, 2.0, 10.0]
