"""Run a TensorRT engine by tensor name: the Runner interface (``.name``, ``.run(feed)``).

Any number of inputs and outputs; host and device buffers in each tensor's own engine dtype
(``trt.nptype(engine.get_tensor_dtype(name))``), inputs cast to it; dynamic shapes set per call with
``set_input_shape`` and outputs sized from ``context.get_tensor_shape`` afterwards; debug tensors
collected through an ``IDebugListener`` when the engine was built with a capture mode.

Checked here: every TensorRT name used exists in the real 10.16/11.4 bindings. NEVER run on real
TensorRT (no engine could be built or deserialized in this workplace).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.errors import MissingDependencyError, QbenchError


class TrtRunner:
    def __init__(self, engine: bytes | str | Path, *, name: str = "tensorrt", capture: str = "none",
                 backend=None, trt=None):
        from qbench.tensorrt._import import import_trt
        from qbench.tensorrt.builder import make_logger
        from qbench.tensorrt.device_buffers import default_backend

        self.trt = trt or import_trt()
        self.name = name
        self.capture = capture
        data = Path(engine).read_bytes() if isinstance(engine, (str, Path)) else bytes(engine)
        self.backend = backend if backend is not None else default_backend()
        self.logger = make_logger(self.trt)
        try:
            self.runtime = self.trt.Runtime(self.logger)
        except TypeError as exc:
            raise MissingDependencyError(f"TensorRT could not create a Runtime ({exc}): its libraries or a GPU are missing") from None
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            why = self.logger.errors[-1] if self.logger.errors else "built by another TensorRT version or for another GPU?"
            raise QbenchError(f"TensorRT could not deserialize the engine: {why}")
        self.context = self.engine.create_execution_context()
        self.io = []  # (name, is_input, numpy dtype)
        for i in range(self.engine.num_io_tensors):
            tname = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(tname) == self.trt.TensorIOMode.INPUT
            try:
                dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(tname)))
            except TypeError:
                raise QbenchError(f"engine tensor {tname!r} has type {self.engine.get_tensor_dtype(tname)}, which numpy cannot hold") from None
            self.io.append((tname, is_input, dtype))
        self.buffers = {}
        self.stream = self.backend.stream()
        self.listener = None
        if capture in ("debug", "unfused"):
            from qbench.tensorrt.capture import make_debug_listener

            self.listener = make_debug_listener(self.trt, self.backend)
            self.context.set_debug_listener(self.listener)
            if capture == "debug":
                self.context.set_all_tensors_debug_state(True)
            else:
                self.context.unfused_tensors_debug_state = True

    @property
    def input_names(self) -> list[str]:
        return [n for n, is_in, _ in self.io if is_in]

    @property
    def output_names(self) -> list[str]:
        return [n for n, is_in, _ in self.io if not is_in]

    def _buffer(self, name: str, nbytes: int):
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self.buffers[name] = self.backend.alloc(nbytes)
        return buf

    def prepare(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, set shapes and addresses; return empty host arrays for the outputs."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise QbenchError(f"{self.name}: feed lacks engine inputs {missing} (has {sorted(feed)})")
        for tname, is_input, dtype in self.io:
            if not is_input:
                continue
            arr = np.ascontiguousarray(feed[tname], dtype=dtype)
            if not self.context.set_input_shape(tname, tuple(arr.shape)):
                raise QbenchError(f"{self.name}: shape {arr.shape} of input {tname!r} is outside the engine's profile")
            buf = self._buffer(tname, arr.nbytes)
            buf.copy_from_host(arr, self.stream)
            self.context.set_tensor_address(tname, buf.ptr)
        hosts = {}
        for tname, is_input, dtype in self.io:
            if is_input:
                continue
            shape = tuple(int(d) for d in self.context.get_tensor_shape(tname))
            if any(d < 0 for d in shape):
                raise QbenchError(f"{self.name}: output {tname!r} has a data-dependent shape {shape}, not supported")
            hosts[tname] = np.empty(shape, dtype=dtype)
            buf = self._buffer(tname, hosts[tname].nbytes)
            self.context.set_tensor_address(tname, buf.ptr)
        return hosts

    def enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            why = self.logger.errors[-1] if self.logger.errors else "see TensorRT's log"
            raise QbenchError(f"{self.name}: execute_async_v3 failed: {why}")

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hosts = self.prepare(feed)
        if self.listener is not None:
            self.listener.tensors.clear()
        self.enqueue()
        for tname, arr in hosts.items():
            self.buffers[tname].copy_to_host(arr, self.stream)
        self.backend.sync(self.stream)
        result = dict(hosts)
        if self.listener is not None:
            for tname, arr in self.listener.tensors.items():
                result.setdefault(tname, arr)
        return result

    def close(self) -> None:
        for buf in self.buffers.values():
            buf.free()
        self.buffers.clear()
