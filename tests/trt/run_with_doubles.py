"""qbench's ``TrtRunner`` on Polygraphy's TrtRunner, under the real bindings, with doubles for the
runtime, engine and execution context only (tests/trt/doubles.py), and the CUDA runtime stand-in for
every buffer (a test vehicle, not a GPU).

The engine double is what a real engine would be for ``y = relu(x)`` with a float16 input ``x`` and a
float32 output ``y``: on ``execute_async_v3`` it reads ``x`` at the address Polygraphy set, asks
Polygraphy's output allocator for ``y``'s memory, writes relu(x) there, and, where the context's debug
state asks for it, calls the debug listener the way TensorRT's trampoline does: an int device address.
Run as a script: argv = capture mode; prints one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np


def main() -> None:
    from polygraphy import cuda

    from qbench.tensorrt import polygraphy_backend
    from qbench.tensorrt._import import import_trt
    from qbench.tensorrt.runner import TrtRunner
    from qbench.tensorrt.timing import measure
    from tests.trt import doubles

    capture = sys.argv[1]
    trt = import_trt()
    polygraphy_backend.backend(trt)
    log: list = []
    io = {"x": (trt.TensorIOMode.INPUT, trt.float16), "y": (trt.TensorIOMode.OUTPUT, trt.float32)}
    state = {"shapes": {}, "addresses": {}, "allocators": {}, "listener": None, "debug_all": None, "unfused": None}

    def execute_async_v3(stream):
        shape = state["shapes"]["x"]
        x = np.frombuffer(ctypes.string_at(state["addresses"]["x"], int(np.prod(shape)) * 2), np.float16).reshape(shape)
        state.setdefault("seen", []).append(x.copy())
        y = np.maximum(x.astype(np.float32), 0)
        allocator = state["allocators"]["y"]
        ptr = allocator.reallocate_output("y", 0, y.nbytes, 256)
        ctypes.memmove(ptr, y.ctypes.data, y.nbytes)
        allocator.notify_shape("y", trt.Dims(y.shape))
        # a debug tensor: a marked one (debug state on) or one TensorRT kept unfused (unfused state on)
        name = "x_times_2" if state["debug_all"] else "x_times_2 [internal]" if state["unfused"] else None
        if name is not None and state["listener"] is not None:
            internal = (x.astype(np.float32) * 2).astype(np.float32)
            state["device"] = cuda.DeviceArray.raw((internal.nbytes,)).copy_from(internal.view(np.uint8).ravel())
            state["listener"].process_debug_tensor(int(state["device"].ptr), trt.TensorLocation.DEVICE, trt.float32,
                                                   trt.Dims(shape), name, stream)
        return True

    def set_debug_listener(listener):
        state["listener"] = listener
        return True

    context = doubles.Checked(trt.IExecutionContext, "context", log, values={"active_optimization_profile": 0}, returns={
        "set_input_shape": lambda name, shape: state["shapes"].__setitem__(name, tuple(shape)) or True,
        "get_tensor_shape": lambda name: trt.Dims(state["shapes"].get(name, (-1, 4))),
        "set_tensor_address": lambda name, ptr: state["addresses"].__setitem__(name, int(ptr)) or True,
        "get_tensor_address": lambda name: state["addresses"].get(name, 0),
        "set_output_allocator": lambda name, allocator: state["allocators"].__setitem__(name, allocator) or True,
        "set_debug_listener": set_debug_listener,
        "set_all_tensors_debug_state": lambda flag: state.__setitem__("debug_all", bool(flag)),
        "execute_async_v3": execute_async_v3,
    })
    # the context double records the unfused debug state when it is assigned
    original_setattr = doubles.Checked.__setattr__

    def record(self, attr, value):
        original_setattr(self, attr, value)
        if self is context and attr == "unfused_tensors_debug_state":
            state["unfused"] = bool(value)

    doubles.Checked.__setattr__ = record
    engine = doubles.Impersonating(trt.ICudaEngine, "engine", log, values={"num_io_tensors": 2}, returns={
        "get_tensor_name": lambda i: list(io)[i], "get_tensor_mode": lambda name: io[name][0],
        "get_tensor_dtype": lambda name: io[name][1], "is_shape_inference_io": False,
        "get_tensor_format": lambda *a: trt.TensorFormat.LINEAR, "get_tensor_shape": lambda name: trt.Dims((-1, 4)),
        "create_execution_context": lambda *a: context,
    })
    real_runtime = trt.Runtime
    trt.Runtime = lambda logger: doubles.Checked(real_runtime, "runtime", log, returns={"deserialize_cuda_engine": lambda data: engine})

    runner = TrtRunner(b"serialized engine", name="tensorrt (double)", capture=capture, trt=trt)
    first_x = np.array([[-1.5, 0.25, 2.0, -0.125], [3.0, -2.0, 0.5, 1.0]], np.float32)
    first = runner.run({"x": first_x})
    second = runner.run({"x": -first_x[:1]})  # another shape; Polygraphy reuses its output buffer
    timing = measure(runner, {"x": first_x}, warmup=1, iterations=3)
    runner.close()
    import polygraphy

    print(json.dumps({
        "polygraphy": polygraphy.__version__,
        "outputs": sorted(first), "y": first["y"].tolist(), "y_dtype": str(first["y"].dtype),
        "x_fed_as_float16": state["seen"][0].tobytes() == first_x.astype(np.float16).tobytes(),
        "second_y": second["y"].tolist(), "first_y_unchanged": first["y"].tolist() == np.maximum(first_x, 0).tolist(),
        "debug": {k: v.tolist() for k, v in first.items() if k != "y"},
        "debug_all": state["debug_all"], "unfused": state["unfused"], "timing_iterations": timing["iterations"],
        "stand_in": cuda.wrapper().handle._name,
    }))


if __name__ == "__main__":
    main()
