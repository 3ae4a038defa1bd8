"""qbench on Polygraphy's TensorRT backend, under the REAL bindings of 10.16.1.11 and 11.4.0.106 over
null libraries, with the host-memory stand-in for the CUDA runtime (tests/trt/hostcudart.c: a test
vehicle, not a GPU).

One test per defect found by reading qbench's former TensorRT code against Polygraphy 0.53.6's
backend (issue 20): calibration inputs fed as float32, batches checked against the OPT shape, loop
bodies left alone by the "outputs" capture, TensorRT's plugins initialised, and the debug listener
reading the int address TensorRT's trampoline passes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trt.conftest import REPO, VERSIONS, trt_env

pytestmark = pytest.mark.trt_bindings

MODEL = REPO / "qbench" / "models" / "ch_PP-OCRv4_det_infer.onnx"


def test_calibration_inputs_are_float32_and_index_inputs_keep_their_type(run_trt):
    """Defect 1: the calibrator cast each batch to the network input's dtype, so a float16 input got
    float16 bytes where TensorRT reads float32."""
    out = run_trt("10", """
        import ctypes, json
        import numpy as np
        from qbench.tensorrt.calibrator import EntropyCalibrator
        a = np.linspace(-3, 3, 2 * 6, dtype=np.float32).reshape(2, 6)
        ids = np.arange(8, dtype=np.int64).reshape(2, 4) * 3
        calib = EntropyCalibrator(lambda: iter([{"a": a.astype(np.float16), "ids": ids}]), batch_size=2,
                                  input_dtypes={"a": np.float16, "ids": np.int64})
        p = calib.get_batch(["a", "ids"])
        want_a = a.astype(np.float16).astype(np.float32)
        print(json.dumps({"backend": calib.backend.name, "device": calib.backend.device_name(),
                          "a_float32": ctypes.string_at(p[0], want_a.nbytes) == want_a.tobytes(),
                          "ids_int64": ctypes.string_at(p[1], ids.nbytes) == ids.tobytes(),
                          "error": repr(calib.error)}))
    """)
    assert out["backend"] == "cudart" and "stand-in" in out["device"]  # qbench's default backend, on the stand-in
    assert out == {**out, "a_float32": True, "ids_int64": True, "error": "None"}


def test_calibration_batches_must_have_the_opt_shape(run_trt):
    """Defect 2: batches were not checked against the calibration profile's OPT shape, so samples of
    another size were read with the wrong layout; now one clear error, and a short last batch is left
    out with a warning."""
    out = run_trt("10", """
        import json, logging
        import numpy as np
        from qbench.errors import QbenchError
        from qbench.tensorrt.calibrator import EntropyCalibrator
        records = []
        logging.getLogger("qbench.tensorrt.calibrator").addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r.getMessage())})())
        small, large = np.zeros((1, 3, 8, 8), np.float32), np.ones((1, 3, 16, 16), np.float32)
        calib = EntropyCalibrator(lambda: iter([{"x": small}, {"x": large}]), input_dtypes={"x": np.float32},
                                  opt_shapes={"x": (1, 3, 8, 8)})
        served = [calib.get_batch(["x"]) is not None, calib.get_batch(["x"]) is not None]
        try:
            calib.raise_error()
            raised = "no error"
        except QbenchError as exc:
            raised = str(exc)
        pair = np.zeros((2, 3, 8, 8), np.float32)
        tail = EntropyCalibrator(lambda: iter([{"x": pair}, {"x": pair}, {"x": pair[:1]}]), batch_size=2,
                                 opt_shapes={"x": (2, 3, 8, 8)})
        tail_served = [tail.get_batch(["x"]) is not None for _ in range(3)]
        print(json.dumps({"served": served, "raised": raised, "tail": tail_served, "tail_error": repr(tail.error),
                          "warned": records}))
    """)
    assert out["served"] == [True, False]
    assert "calibration batch 2" in out["raised"] and "1x3x16x16" in out["raised"] and "OPT shape 1x3x8x8" in out["raised"]
    assert out["tail"] == [True, True, False] and out["tail_error"] == "None"
    assert len(out["warned"]) == 1 and "1 sample(s)" in out["warned"][0]


def test_outputs_capture_leaves_loop_bodies_alone(major, run_trt):
    """Defect 3: the "outputs" capture marked every layer output, loop bodies included, which
    TensorRT cannot mark. The network double's layers carry the real bindings' LayerType values."""
    out = run_trt(major, """
        import json
        from qbench.tensorrt import capture
        from qbench.tensorrt._import import import_trt
        from tests.trt.doubles import Network, layer, tensor
        trt, log = import_trt(), []

        def network():
            t = {n: tensor(trt, log, n) for n in ("x", "conv", "trip", "rec", "body", "loop_out", "y", "w")}
            layers = [layer(trt, log, "conv", "CONVOLUTION", [t["conv"]]), layer(trt, log, "trip", "TRIP_LIMIT", []),
                      layer(trt, log, "rec", "RECURRENCE", [t["rec"]]), layer(trt, log, "body", "ELEMENTWISE", [t["body"]]),
                      layer(trt, log, "loop_out", "LOOP_OUTPUT", [t["loop_out"]]), layer(trt, log, "w", "CONSTANT", [t["w"]]),
                      layer(trt, log, "y", "ACTIVATION", [t["y"]])]
            return Network(trt, log, [t["x"]], layers, [t["y"]])

        every = network()
        plan = capture.mark_network(every, "outputs")
        named = network()
        named_plan = capture.mark_network(named, "outputs", ["conv", "body"])
        print(json.dumps({"outputs": sorted(x.name for x in every.marked), "plan": sorted(plan.marked),
                          "named": sorted(x.name for x in named.marked), "note": named_plan.note}))
    """)
    assert out["outputs"] == ["conv", "loop_out", "y"]  # no loop body, no constant; the model's output kept
    assert out["plan"] == ["conv", "loop_out"]
    assert out["named"] == ["conv", "y"] and "1 requested tensors not found" in out["note"]


def test_debug_capture_marks_every_tensor_but_the_outputs(run_trt):
    out = run_trt("10", """
        import json
        from qbench.tensorrt import capture
        from qbench.tensorrt._import import import_trt
        from tests.trt.doubles import Network, layer, tensor
        trt, log = import_trt(), []
        t = {n: tensor(trt, log, n) for n in ("x", "a", "b", "y")}
        layers = [layer(trt, log, n, "ACTIVATION", [t[n]]) for n in ("a", "b", "y")]
        net = Network(trt, log, [t["x"]], layers, [t["y"]])
        plan = capture.mark_network(net, "debug")
        print(json.dumps({"debug": net.debug, "plan": plan.marked}))
    """)
    assert out == {"debug": ["a", "b"], "plan": ["a", "b"]}


def test_plugins_are_initialised_before_the_builder(major, null_libs, tmp_path):
    """Defect 4: init_libnvinfer_plugins was never called, so models needing TensorRT's plugins failed
    to parse. The null libraries record which factories the bindings reached."""
    env = trt_env(major, null_libs)
    env["NULLTRT_TRACE"] = str(tmp_path / "calls.log")
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", str(MODEL), "-o", str(tmp_path / "m.engine")],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3 and "could not create a Builder" in proc.stderr
    calls = (tmp_path / "calls.log").read_text().split()
    assert "initLibNvInferPlugins" in calls and calls.index("initLibNvInferPlugins") < calls.index("createInferBuilder")


def test_debug_listener_reads_the_int_address_tensorrt_passes(major, run_trt):
    """Defect 5: qbench's listener was tested with a capsule, but TensorRT's Python trampoline passes
    the tensor's address as an int. The runner now uses Polygraphy's TrtRunner listener; here it is
    called as TensorRT calls it, with host and device (stand-in) addresses."""
    out = run_trt(major, """
        import ctypes, json
        import numpy as np
        from polygraphy import cuda
        from qbench.tensorrt import polygraphy_backend
        from qbench.tensorrt._import import import_trt
        trt = import_trt()
        polygraphy_backend.backend(trt)
        # the listener TrtRunner installs when it activates (a private helper: the runner itself needs an engine)
        from polygraphy.backend.trt.runner import _make_debug_listener
        listener = _make_debug_listener()
        host = np.linspace(-1, 1, 24, dtype=np.float16).reshape(2, 3, 4)
        listener.process_debug_tensor(host.ctypes.data, trt.TensorLocation.HOST, trt.float16, (2, 3, 4), "conv_out", 0)
        dev_data = np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5
        device = cuda.DeviceArray.raw((dev_data.nbytes,)).copy_from(dev_data.view(np.uint8).ravel())
        stream = cuda.Stream()
        listener.process_debug_tensor(int(device.ptr), trt.TensorLocation.DEVICE, trt.float32, (2, 3), "relu_out", stream.ptr)
        got = listener.polygraphy_debug_tensor_outputs
        print(json.dumps({"isinstance": isinstance(listener, trt.IDebugListener),
                          "host": got["conv_out"].dtype == host.dtype and got["conv_out"].tobytes() == host.tobytes(),
                          "device": got["relu_out"].shape == (2, 3) and got["relu_out"].tobytes() == dev_data.tobytes()}))
    """)
    assert out == {"isinstance": True, "host": True, "device": True}


@pytest.mark.parametrize("major_, precision", [("10", "int8"), ("10", "fp16"), ("11", "fp16")])
def test_build_engine_end_to_end_through_polygraphy(major_, precision, null_libs, small_data_dir, tmp_path):
    """build_engine through Polygraphy's loaders with doubles for the Builder and parser only
    (tests/trt/build_with_doubles.py): the calibrator reaches TensorRT through CreateConfig, serves
    float32 batches at the OPT shape, and writes the cache TensorRT hands it; layer precisions,
    capture, timing cache and engine cache all take effect."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "trt" / "build_with_doubles.py"), precision,
                           str(small_data_dir), str(tmp_path)], env=trt_env(major_, null_libs), capture_output=True,
                          text=True, cwd=REPO, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["engine"] == "engine built by the double" and out["path"] == f"v{major_}"
    assert out["timing_cache"] == "timing cache of the double"  # saved by Polygraphy where qbench asked
    assert out["leftovers"] == []  # the temporary timing cache and its lock file are gone
    assert out["outputs"] == ["p2o.Conv.0", "relu", "sigmoid_0.tmp_0"] and out["marked"] == ["p2o.Conv.0", "relu"]
    if major_ == "11":
        assert out["flags"] == ["TF32"] and out["network_flags"] == [out["strongly_typed_flags"]]
        assert out["from_cache"] == [False, True, True] and out["builds"] == 1
        return
    assert out["network_flags"] == [0]
    if precision == "fp16":
        assert out["flags"] == ["FP16", "TF32"] and out["from_cache"] == [False, True, True]
        return
    assert out["flags"] == ["INT8", "OBEY_PRECISION_CONSTRAINTS", "TF32"]
    assert out["conv_precision"] == "DataType.FLOAT"  # the layer kept in FP32, through SetLayerPrecisions
    # 4 images in batches of 2 at 256x256, each batch's bytes float32 at the address TensorRT got
    assert out["served"] == [[[2, 3, 256, 256], True], [[2, 3, 256, 256], True]]
    assert out["written"] == ["x"] and out["cache_file"] == ["TRT-101601-EntropyCalibration2", "x: 3c010a14"]
    # calibrated (keyed by the data), rebuilt from the cache TensorRT wrote (keyed by its ranges), then a hit
    assert out["from_cache"] == [False, False, True] and out["builds"] == 2


@pytest.mark.parametrize("major_, capture", [("10", "none"), ("10", "unfused"), ("11", "debug")])
def test_runner_end_to_end_on_polygraphys_trtrunner(major_, capture, null_libs):
    """qbench's TrtRunner on Polygraphy's, with doubles for the runtime, engine and context only
    (tests/trt/run_with_doubles.py: an engine computing relu of a float16 input): inputs cast to the
    engine's dtype, outputs copied out of Polygraphy's reused buffers, the capture mode's debug state set
    on the context, and debug tensors delivered at an int device address reach the result by name."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "trt" / "run_with_doubles.py"), capture],
                          env=trt_env(major_, null_libs), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["stand_in"].endswith("libcudart.so.13")
    assert out["x_fed_as_float16"] is True and out["y_dtype"] == "float32"
    assert out["y"] == [[0.0, 0.25, 2.0, 0.0], [3.0, 0.0, 0.5, 1.0]]
    assert out["second_y"] == [[1.5, 0.0, 0.0, 0.125]] and out["first_y_unchanged"] is True
    assert out["timing_iterations"] == 3
    assert out["debug_all"] is (capture == "debug") and out["unfused"] is (capture == "unfused")
    doubled = [[-3.0, 0.5, 4.0, -0.25], [6.0, -4.0, 1.0, 2.0]]
    want = {"none": {}, "unfused": {"x_times_2 [internal]": doubled}, "debug": {"x_times_2": doubled}}[capture]
    assert out["debug"] == want
