"""Run a TensorRT engine by tensor name behind qbench's Runner interface (``.name``, ``.run(feed)``),
on Polygraphy's ``TrtRunner``.

Polygraphy's part: engine deserialization with TensorRT's plugins initialised (``EngineFromBytes``),
the execution context, device buffers, per-call input shapes, the output allocator (data-dependent
output shapes included) and the debug listener that collects debug tensors (it reads the tensor's
address as the int TensorRT's Python trampoline passes).

qbench's part, which Polygraphy leaves to its caller: inputs cast to each engine input's dtype (Polygraphy
refuses a mismatched dtype), outputs copied out of Polygraphy's reused host buffers (the next call
overwrites them, and qbench's comparator holds a sample's outputs while the next runs), one
``QbenchError`` line instead of a Polygraphy exception, and the capture mode: "unfused" sets the
context's ``unfused_tensors_debug_state`` (Polygraphy only sets ``set_all_tensors_debug_state``, which
covers tensors marked with ``mark_debug``); "none" and "outputs" turn the debug state off again.

Checked here: every keyword passed to Polygraphy against its signature, and TensorRT's names against
the real 10.16/11.4 bindings (tests/trt). NEVER run on real TensorRT (no engine could be built or
deserialized in this workplace).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.errors import MissingDependencyError, QbenchError
from qbench.tensorrt import polygraphy_backend
from qbench.tensorrt._import import import_trt


class TrtRunner:
    def __init__(self, engine: bytes | str | Path, *, name: str = "tensorrt", capture: str = "none", trt=None):
        self.trt = trt or import_trt()
        self.name = name
        self.capture = capture
        pg = polygraphy_backend.backend(self.trt)
        data = Path(engine).read_bytes() if isinstance(engine, (str, Path)) else bytes(engine)
        try:  # held for as long as the engine: an engine must not outlive the Runtime that made it
            self.runtime = self.trt.Runtime(pg.get_trt_logger())
        except TypeError as exc:  # the bindings raise TypeError when libnvinfer returns no runtime
            raise MissingDependencyError(f"TensorRT could not create a Runtime ({exc}): its libraries or a GPU are missing") from None
        engine_obj = polygraphy_backend.call(pg.EngineFromBytes(data, runtime=self.runtime),
                                             "TensorRT could not deserialize the engine (another TensorRT version or GPU?)")
        self.runner = pg.TrtRunner(engine_obj, name=name)
        polygraphy_backend.call(self.runner.activate, f"{name}: cannot start the engine")
        context = self.runner.context
        context.set_all_tensors_debug_state(capture == "debug")
        context.unfused_tensors_debug_state = capture == "unfused"
        engine_ = self.runner.engine
        self.io = []  # (name, is_input, numpy dtype)
        for i in range(engine_.num_io_tensors):
            tname = engine_.get_tensor_name(i)
            try:
                dtype = np.dtype(self.trt.nptype(engine_.get_tensor_dtype(tname)))
            except TypeError:
                raise QbenchError(f"engine tensor {tname!r} has type {engine_.get_tensor_dtype(tname)}, which numpy cannot hold") from None
            self.io.append((tname, engine_.get_tensor_mode(tname) == self.trt.TensorIOMode.INPUT, dtype))

    def _feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n, is_in, _ in self.io if is_in and n not in feed]
        if missing:
            raise QbenchError(f"{self.name}: feed lacks engine inputs {missing} (has {sorted(feed)})")
        return {n: np.ascontiguousarray(feed[n], dtype=dtype) for n, is_in, dtype in self.io if is_in}

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs and captured debug tensors by name, each a copy the caller owns."""
        outputs = polygraphy_backend.call(lambda: self.runner.infer(self._feed(feed), copy_outputs_to_host=True),
                                          f"{self.name}: inference failed")
        return {name: np.array(arr, copy=True) for name, arr in outputs.items()}

    def time_ms(self, feed: dict[str, np.ndarray], *, warmup: int, iterations: int) -> list[float]:
        """Milliseconds per ``infer`` (Polygraphy's ``last_inference_time``: host time around enqueue and
        stream synchronisation), outputs left on the device, after ``warmup`` untimed calls."""
        host = self._feed(feed)
        times = []
        for i in range(warmup + iterations):
            polygraphy_backend.call(lambda: self.runner.infer(host, copy_outputs_to_host=False), f"{self.name}: inference failed")
            if i >= warmup:
                times.append(self.runner.last_inference_time() * 1000.0)
        return times

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()
