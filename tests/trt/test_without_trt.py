"""qbench without TensorRT or a GPU (this machine's normal state), and the pure parts of the backend."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.trt.conftest import REPO


def _env():
    env = dict(os.environ)
    env.pop("QBENCH_TRT_MODULE", None)
    env["PYTHONPATH"] = str(REPO)  # no .trt-bindings on the path: no TensorRT at all
    return env


def test_import_and_commands_without_tensorrt(tmp_path):
    import qbench.tensorrt  # noqa: F401 - must import with no TensorRT present
    from qbench.tensorrt import builder, calibrator, capture, inspector, runner, timing  # noqa: F401

    model = REPO / "qbench" / "models" / "ch_PP-OCRv4_det_infer.onnx"
    for args in (["trt-info"], ["build", str(model), "-o", str(tmp_path / "m.engine")]):
        proc = subprocess.run([sys.executable, "-m", "qbench", *args], env=_env(), capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 3
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qbench: error: TensorRT is not installed")


def test_summarize_latency():
    from qbench.tensorrt.timing import summarize

    s = summarize([2.0, 1.0, 3.0, 4.0, 10.0], batch_size=4)
    assert s["median_ms"] == 3.0 and s["mean_ms"] == 4.0 and s["max_ms"] == 10.0
    assert s["p90_ms"] == pytest.approx(7.6) and s["throughput_per_s"] == pytest.approx(4000 / 3)


def test_engine_cache_key_changes_with_every_input(tmp_path):
    from qbench.tensorrt.engine_cache import EngineCache, cache_key

    base = dict(onnx_bytes=b"m", precision="int8", ranges_bytes=b"r", trt_version="10.16.1.11", gpu="H100", options={"w": 1})
    k = cache_key(**base)
    for field, other in [("onnx_bytes", b"m2"), ("precision", "fp16"), ("ranges_bytes", b"r2"),
                         ("trt_version", "11.4.0.106"), ("gpu", "H200"), ("options", {"w": 2})]:
        assert cache_key(**{**base, field: other}) != k, field
    cache = EngineCache(tmp_path)
    assert cache.get(k) is None
    cache.put(k, b"engine-bytes", {"precision": "int8"})
    assert cache.get(k) == b"engine-bytes"


def test_fp16_typed_model_is_float16_and_close_to_fp32(graph, small_dataset):
    """The 11.x FP16 input: float16 weights and activations, float32 I/O, same function."""
    import onnx
    import onnxruntime as ort

    from qbench.tensorrt.typed_models import fp16_typed_model

    typed = fp16_typed_model(graph)
    inits = {t.data_type for t in typed.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in inits
    assert not any(n.op_type == "BatchNormalization" for n in typed.graph.node)  # folded, no inf variance
    fp32 = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"])
    peak = 0.0
    for feed in small_dataset:
        ref, got = fp32.run(None, feed)[0], fp16.run(None, feed)[0]
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.isfinite(got).all() and np.abs(got - ref).max() < 0.05
        peak = max(peak, float(ref.max()))
    assert peak > 0.5  # the document images make the detector fire, so the comparison means something
