"""Device memory, copies, streams and events, through pycuda or (where pycuda is absent) cuda-python.

Every TensorRT module asks this one for memory, so the choice of CUDA binding lives in one place.
``HostBackend`` is a third, real allocator that hands out host (numpy) memory addresses: it lets the
calibrator's pointer logic run where no GPU exists (the conformance tests use it under the real
TensorRT bindings); it is never chosen automatically, since TensorRT needs device pointers.

Run on a real GPU (tests/device/check_calibrator_device.py, on an H100 through cuda-python): malloc,
host-to-device and device-to-host copies, streams and events of ``CudaPythonBackend``. ``PycudaBackend``
was not run there (no pycuda wheel exists for that machine) and follows pycuda's documented API.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np

from qbench.errors import MissingDependencyError, QbenchError


@dataclass
class DeviceBuffer:
    """One allocation: ``ptr`` is the integer address TensorRT is given."""

    backend: "Backend"
    ptr: int
    nbytes: int

    def copy_from_host(self, arr: np.ndarray, stream: int | None = None) -> None:
        arr = np.ascontiguousarray(arr)
        if arr.nbytes > self.nbytes:
            raise QbenchError(f"internal: {arr.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        self.backend.htod(self.ptr, arr, stream)

    def copy_to_host(self, arr: np.ndarray, stream: int | None = None) -> np.ndarray:
        if not arr.flags.c_contiguous or arr.nbytes > self.nbytes:
            raise QbenchError("internal: host array for a device copy must be contiguous and fit the buffer")
        self.backend.dtoh(arr, self.ptr, stream)
        return arr

    def free(self) -> None:
        if self.ptr:
            self.backend.free(self.ptr)
            self.ptr = 0


class Backend:
    """The CUDA operations qbench needs; one subclass per binding."""

    name = "abstract"

    def alloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self, self.malloc(max(int(nbytes), 1)), max(int(nbytes), 1))

    # the primitives below are implemented per binding
    def malloc(self, nbytes: int) -> int: raise NotImplementedError
    def free(self, ptr: int) -> None: raise NotImplementedError
    def htod(self, ptr: int, arr: np.ndarray, stream: int | None = None) -> None: raise NotImplementedError
    def dtoh(self, arr: np.ndarray, ptr: int, stream: int | None = None) -> None: raise NotImplementedError
    def stream(self) -> int: raise NotImplementedError
    def sync(self, stream: int) -> None: raise NotImplementedError
    def event(self): raise NotImplementedError
    def record(self, event, stream: int) -> None: raise NotImplementedError
    def elapsed_ms(self, start, end) -> float: raise NotImplementedError
    def device_name(self) -> str: raise NotImplementedError


class HostBackend(Backend):
    """Host memory with real addresses (numpy arrays kept alive here). Not a mock: the bytes at each
    address are really written and can be read back with ctypes. Used where no GPU exists."""

    name = "host"

    def __init__(self):
        self._arrays: dict[int, np.ndarray] = {}

    def malloc(self, nbytes: int) -> int:
        arr = np.empty(nbytes, dtype=np.uint8)
        ptr = arr.ctypes.data
        self._arrays[ptr] = arr
        return ptr

    def free(self, ptr: int) -> None:
        self._arrays.pop(ptr, None)

    def _view(self, ptr: int, nbytes: int) -> np.ndarray:
        base = self._arrays.get(ptr)
        if base is None or nbytes > base.nbytes:
            raise QbenchError("internal: host buffer address unknown or too small")
        return base[:nbytes]

    def htod(self, ptr, arr, stream=None):
        self._view(ptr, arr.nbytes)[:] = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)

    def dtoh(self, arr, ptr, stream=None):
        arr.view(np.uint8).reshape(-1)[:] = self._view(ptr, arr.nbytes)

    def stream(self) -> int:
        return 0

    def sync(self, stream) -> None:
        pass

    def device_name(self) -> str:
        return "host memory (no GPU)"


class CudaPythonBackend(Backend):
    """NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart`` on old releases)."""

    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # older cuda-python
            except ImportError:
                raise MissingDependencyError("neither pycuda nor cuda-python is installed: pip install cuda-python") from None
        self.rt = cudart
        self._objects: dict[int, object] = {}  # stream handle -> cuda-python object (kept alive)
        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess or count < 1:
            raise MissingDependencyError(f"no CUDA GPU is usable here (cudaGetDeviceCount: {self._errname(err)})")

    def _errname(self, err) -> str:
        try:
            return self.rt.cudaGetErrorName(err)[1].decode()
        except Exception:
            return str(err)

    def _check(self, result, what: str):
        err = result[0]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise QbenchError(f"CUDA {what} failed: {self._errname(err)}")
        return result[1] if len(result) == 2 else result[1:]

    def malloc(self, nbytes):
        return int(self._check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr):
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def _copy(self, dst, src, nbytes, kind, stream):
        if stream is None:
            self._check(self.rt.cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy")
        else:
            self._check(self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def htod(self, ptr, arr, stream=None):
        arr = np.ascontiguousarray(arr)
        self._copy(ptr, arr.ctypes.data, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
        if stream is not None:
            self.sync(stream)  # the host array may be a temporary: finish before it can go away

    def dtoh(self, arr, ptr, stream=None):
        self._copy(arr.ctypes.data, ptr, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
        if stream is not None:
            self.sync(stream)

    def stream(self) -> int:
        s = self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        handle = int(s)
        self._objects[handle] = s
        return handle

    def sync(self, stream):
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def event(self):
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event, stream):
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        self._check(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def device_name(self) -> str:
        dev = self._check(self.rt.cudaGetDevice(), "cudaGetDevice")
        prop = self._check(self.rt.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
        name = prop.name
        return (name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)).strip()


class PycudaBackend(Backend):
    """pycuda, on the device's primary context (the one TensorRT's runtime API also uses)."""

    name = "pycuda"

    def __init__(self):
        try:
            import pycuda.driver as cuda
        except ImportError:
            raise MissingDependencyError("pycuda is not installed") from None
        try:
            cuda.init()
            if cuda.Device.count() < 1:
                raise MissingDependencyError("no CUDA GPU is usable here (pycuda sees no device)")
            self.device = cuda.Device(0)
            self.ctx = self.device.retain_primary_context()
            self.ctx.push()
        except cuda.Error as exc:
            raise MissingDependencyError(f"no CUDA GPU is usable here (pycuda: {exc})") from None
        self.cuda = cuda
        self._live: dict[int, object] = {}
        atexit.register(self.close)

    def close(self) -> None:
        """Free what is still allocated and pop the primary context pushed in __init__: pycuda
        aborts the interpreter at exit (SIGABRT, "context stack was not empty") when a context is
        left on its stack; seen on an H200 with pycuda 2026.1 before this existed."""
        if self.ctx is None:
            return
        for key, obj in list(self._live.items()):
            if isinstance(key, int):
                obj.free()
        self._live.clear()
        self.ctx.pop()
        self.ctx = None

    def malloc(self, nbytes):
        alloc = self.cuda.mem_alloc(nbytes)
        self._live[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr):
        alloc = self._live.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def _stream(self, handle):
        return self._live.get(("stream", handle)) if handle else None

    def htod(self, ptr, arr, stream=None):
        arr = np.ascontiguousarray(arr)
        if stream:
            self.cuda.memcpy_htod_async(ptr, arr, self._stream(stream))
            self.sync(stream)
        else:
            self.cuda.memcpy_htod(ptr, arr)

    def dtoh(self, arr, ptr, stream=None):
        if stream:
            self.cuda.memcpy_dtoh_async(arr, ptr, self._stream(stream))
            self.sync(stream)
        else:
            self.cuda.memcpy_dtoh(arr, ptr)

    def stream(self) -> int:
        s = self.cuda.Stream()
        self._live[("stream", s.handle)] = s
        return s.handle

    def sync(self, stream):
        s = self._stream(stream)
        if s is not None:
            s.synchronize()
        else:
            self.cuda.Context.synchronize()

    def event(self):
        return self.cuda.Event()

    def record(self, event, stream):
        event.record(self._stream(stream))

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return float(start.time_till(end))

    def device_name(self) -> str:
        return self.device.name()


_BACKENDS = {"pycuda": PycudaBackend, "cuda-python": CudaPythonBackend}


def default_backend(prefer: str | None = None) -> Backend:
    """pycuda where installed, else cuda-python; ``prefer`` (or QBENCH_CUDA_BACKEND) picks one."""
    choice = prefer or os.environ.get("QBENCH_CUDA_BACKEND")
    if choice:
        if choice not in _BACKENDS:
            raise QbenchError(f"unknown CUDA backend {choice!r} (known: {', '.join(_BACKENDS)})")
        return _BACKENDS[choice]()
    missing = []
    for cls in (PycudaBackend, CudaPythonBackend):
        try:
            return cls()
        except MissingDependencyError as exc:
            missing.append(str(exc))
    raise MissingDependencyError("no usable CUDA: " + "; ".join(dict.fromkeys(missing)))
