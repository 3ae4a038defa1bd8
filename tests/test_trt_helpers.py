"""The pure-Python parts of the TensorRT builder and inspector: --shapes validation, the dynamic-shape
profile from the calibration data, the engine cache key, and layer-info validation. No TensorRT needed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qbench.errors import QbenchError
from qbench.model import InputSpec
from qbench.tensorrt.builder import BuildOptions
from qbench.tensorrt.shapes import (check_batch_size, compute_profile, data_digest, profile_from_shapes,
                                    sample_shapes, validate_shapes)

DYN = [InputSpec("x", 1, ("N", 3, "H", "W"))]
FIXED_BATCH = [InputSpec("x", 1, (1, 3, "H", "W"))]


# -- --shapes (review item 13) ----------------------------------------------------------------------
def test_shapes_must_name_a_model_input_with_its_rank():
    ok = {"x": ((1, 3, 32, 32), (2, 3, 64, 64), (4, 3, 128, 128))}
    validate_shapes(ok, DYN)
    with pytest.raises(QbenchError, match=r"input 'y', but the model's inputs are \['x'\]"):
        validate_shapes({"y": ok["x"]}, DYN)
    with pytest.raises(QbenchError, match="rank 3, but the input is 4-D"):
        validate_shapes({"x": ((1, 3, 32),) * 3}, DYN)
    with pytest.raises(QbenchError, match="dimension 1 is fixed at 3"):
        validate_shapes({"x": ((1, 4, 32, 32),) * 3}, DYN)
    with pytest.raises(QbenchError, match="min <= opt <= max"):
        validate_shapes({"x": ((1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 64, 64))}, DYN)


def test_cli_shapes_refuses_unknown_input_in_one_line():
    from qbench.cli.trt import _shapes

    with pytest.raises(QbenchError, match="twice"):
        _shapes(("x:1x3x32x32", "x:1x3x64x64"))
    # build_engine (which `qbench build` calls) validates --shapes before any TensorRT call, so a
    # stand-in module with only a version is never touched further
    from qbench.defaults import DEFAULT_MODEL
    from qbench.model import ModelGraph
    from qbench.tensorrt.builder import build_engine

    class _NoTrt:
        __version__ = "10.16.1.11"

    with pytest.raises(QbenchError, match="model's inputs are"):
        build_engine(ModelGraph.from_path(DEFAULT_MODEL), "fp32", trt=_NoTrt(),
                     options=BuildOptions(shapes=_shapes(("images:1x3x32x32",))))


# -- batch size and profile (review item 4) ---------------------------------------------------------
def test_batch_size_above_one_needs_a_dynamic_batch_dimension():
    check_batch_size(FIXED_BATCH, 1)
    check_batch_size(DYN, 8)
    with pytest.raises(QbenchError, match="fixed batch dimension"):
        check_batch_size(FIXED_BATCH, 2)


def test_profile_covers_every_calibration_batch():
    shapes = [{"x": (1, 3, 32, 48)}, {"x": (1, 3, 32, 48)}, {"x": (1, 3, 64, 40)}, {"x": (1, 3, 64, 40)},
              {"x": (1, 3, 16, 16)}]
    lo, opt, hi = profile_from_shapes(DYN, shapes, 2, {})["x"]
    assert opt == (2, 3, 32, 48)  # the first calibration batch, at the calibration batch size
    assert lo == (1, 3, 16, 16) and hi == (2, 3, 64, 48)  # the short last batch is in range too
    user = {"x": ((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))}
    assert profile_from_shapes(DYN, shapes, 2, user) == user
    assert profile_from_shapes([InputSpec("x", 1, (1, 3, 8, 8))], [], 1, {}) == {}  # static: no profile
    with pytest.raises(QbenchError, match="give --shapes or calibration data"):
        profile_from_shapes(DYN, [], 1, {})


def test_profile_from_array_files_matches_the_batches(tmp_path):
    from qbench.data import load_dataset

    for i, hw in enumerate([(32, 32), (48, 40), (48, 40), (24, 64)]):
        np.save(tmp_path / f"s{i}.npy", np.zeros((3, *hw), np.float32))  # no batch dim: qbench adds one
    ds = load_dataset(tmp_path, DYN)
    assert sample_shapes(ds) == [{"x": (1, 3, 32, 32)}, {"x": (1, 3, 48, 40)}, {"x": (1, 3, 48, 40)},
                                 {"x": (1, 3, 24, 64)}]
    lo, opt, hi = compute_profile(DYN, ds, BuildOptions(calib_batch_size=1))["x"]
    every = [b["x"].shape for b in ds.batches(1)]
    assert opt == every[0]
    assert lo == tuple(min(s[a] for s in every) for a in range(4))
    assert hi == tuple(max(s[a] for s in every) for a in range(4))
    lo, opt, hi = compute_profile(DYN, ds, BuildOptions(calib_batch_size=1, calib_limit=2))["x"]
    assert hi == (1, 3, 48, 40)  # only the samples calibration reads


def test_profile_from_npz_and_images(tmp_path, graph, small_dataset):
    from qbench.data import load_dataset

    np.savez(tmp_path / "a.npz", x=np.zeros((2, 3, 16, 16), np.float32))
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 3, 16, 16), np.float32))
    ds = load_dataset(tmp_path, DYN)
    assert compute_profile(DYN, ds, BuildOptions(calib_batch_size=2))["x"] == ((4, 3, 16, 16),) * 3
    lo, opt, hi = compute_profile(graph.inputs, small_dataset, BuildOptions(calib_batch_size=2))["x"]
    first = next(iter(small_dataset.batches(2, 2)))["x"].shape
    assert lo == opt == hi == first == (2, 3, 256, 256)  # 4 images of the manifest size, 2 per batch


# -- engine cache key (review item 3) ---------------------------------------------------------------
def test_cache_key_includes_profile_and_data():
    from qbench.tensorrt.engine_cache import cache_key

    base = dict(onnx_bytes=b"m", precision="int8", ranges_bytes=None, trt_version="10.16.1.11", gpu="H100", options={})
    p1 = {"x": ((1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))}
    p2 = {"x": ((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 64, 64))}
    k = cache_key(**base, profile=p1, data="d1")
    assert cache_key(**base, profile=p2, data="d1") != k
    assert cache_key(**base, profile=p1, data="d2") != k
    assert cache_key(**base, profile=p1, data="d1") == k


def test_data_digest_follows_the_files(tmp_path):
    from qbench.data import load_dataset

    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.full((1, 3, 8, 8), i, np.float32))
    ds = load_dataset(tmp_path, DYN)
    d = data_digest(ds)
    assert d == data_digest(load_dataset(tmp_path, DYN))
    assert data_digest(ds, limit=2) != d
    st = (tmp_path / "s1.npy").stat()
    os.utime(tmp_path / "s1.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data_digest(ds) != d
    np.save(tmp_path / "s3.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert data_digest(load_dataset(tmp_path, DYN)) != data_digest(ds)
    assert data_digest(lambda: iter(())) is None


# -- layer info (review item 8) ---------------------------------------------------------------------
@pytest.mark.parametrize("layers", [
    [{"Name": "a", "Outputs": ["x"]}],
    [{"Name": "a", "Inputs": {"Name": "x"}}],
    [42],
    ["ok", None],
])
def test_malformed_layer_info_is_one_line(layers):
    import json

    from qbench.artifacts.layer_info import parse_layer_info

    with pytest.raises(QbenchError, match=r"^f\.json: layer \d is malformed$"):
        parse_layer_info(json.dumps({"Layers": layers}), source="f.json")


def test_wellformed_layer_info_still_reads():
    import json

    from qbench.artifacts.layer_info import layers_frame, parse_layer_info

    info = parse_layer_info(json.dumps({"Layers": ["n1", {"Name": "a + b", "Inputs": [{"Name": "x"}],
                                                           "Outputs": [{"Name": "y", "Format/Datatype": "Half"}]}]}))
    frame = layers_frame(info)
    assert list(frame["layer"]) == ["n1", "a + b"] and frame["fused"].tolist() == [1, 2]
