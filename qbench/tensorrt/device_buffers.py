"""Device memory and synchronous copies for the INT8 calibrator: pycuda where installed, else the CUDA
runtime library through Polygraphy's ctypes wrapper (``CudartBackend``).

Why qbench's and not only Polygraphy's ``cuda`` module: users asked for the calibrator on pycuda (the
binding NVIDIA's TensorRT samples use); the engine runner's memory is Polygraphy's. One interface for
both keeps the choice of binding in one place.

What ran where: the cuda-python backend this module had before (same calls: cudaMalloc, cudaMemcpy)
ran on an H100, and ``PycudaBackend`` on an H200 (its ``close`` exists because of that run);
``CudartBackend`` has run only over the host-memory stand-in for libcudart in tests/trt, which is a test
vehicle, not a GPU.
"""

from __future__ import annotations

import atexit
import ctypes
import os

import numpy as np

from qbench.errors import MissingDependencyError, QbenchError
from qbench.tensorrt.polygraphy_backend import one_line, route_logging


class Backend:
    """The CUDA operations the calibrator needs (integer device addresses), one subclass per binding."""

    name = "abstract"

    def malloc(self, nbytes: int) -> int: raise NotImplementedError
    def free(self, ptr: int) -> None: raise NotImplementedError
    def htod(self, ptr: int, arr: np.ndarray) -> None: raise NotImplementedError
    def dtoh(self, arr: np.ndarray, ptr: int) -> None: raise NotImplementedError
    def device_name(self) -> str: raise NotImplementedError

    def compute_capability(self) -> float | None:
        """The current device's compute capability as major.minor (8.9 for Ada), None where unknown."""
        return None


class CudartBackend(Backend):
    """The CUDA runtime library (libcudart) through Polygraphy's ctypes wrapper (``polygraphy.cuda``),
    the library Polygraphy's TrtRunner also uses: no extra binding to install. In tests/trt the library
    found is a host-memory stand-in (tests/trt/hostcudart.c), so the calibrator runs end to end on the
    CPU there."""

    name = "cudart"

    def __init__(self):
        route_logging()  # Polygraphy warns while it looks for libcudart: not on stdout
        # heavy third-party: polygraphy's CUDA wrapper loads libcudart only when a backend is made
        from polygraphy import cuda
        from polygraphy.exception import PolygraphyException

        try:
            self.rt = cuda.wrapper()
        except (PolygraphyException, OSError) as exc:
            raise MissingDependencyError(f"the CUDA runtime library is not loadable ({one_line(exc)})") from None
        self.kinds = cuda.MemcpyKind
        count = ctypes.c_int(0)
        status = self.rt.handle.cudaGetDeviceCount(ctypes.byref(count))
        if status != 0 or count.value < 1:
            raise MissingDependencyError(f"no CUDA GPU is usable here (cudaGetDeviceCount: error {status})")

    def _call(self, what, *args):
        try:
            return getattr(self.rt, what)(*args)
        except Exception as exc:  # noqa: BLE001 - PolygraphyException from its error check, as one line
            raise QbenchError(f"CUDA {what} failed: {one_line(exc)}") from None

    def malloc(self, nbytes):
        return int(self._call("malloc", nbytes))

    def free(self, ptr):
        self._call("free", ptr)

    def htod(self, ptr, arr):
        arr = np.ascontiguousarray(arr)
        self._call("memcpy", ptr, arr.ctypes.data, arr.nbytes, self.kinds.HostToDevice)

    def dtoh(self, arr, ptr):
        self._call("memcpy", arr.ctypes.data, ptr, arr.nbytes, self.kinds.DeviceToHost)

    def device_name(self) -> str:
        device = ctypes.c_int(0)
        prop = ctypes.create_string_buffer(8192)  # cudaDeviceProp (about 1 KiB) begins with char name[256]
        if self.rt.handle.cudaGetDevice(ctypes.byref(device)) or self.rt.handle.cudaGetDeviceProperties(prop, device):
            raise QbenchError("CUDA cudaGetDeviceProperties failed")
        return prop.raw[:256].split(b"\0")[0].decode(errors="replace").strip()

    def compute_capability(self) -> float | None:
        # cudaDeviceGetAttribute with cudaDevAttrComputeCapabilityMajor (75) / Minor (76), the CUDA
        # runtime API's stable enum values; any failure leaves the capability unknown
        device, major, minor = ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(-1)
        get = getattr(self.rt.handle, "cudaDeviceGetAttribute", None)
        if get is None or self.rt.handle.cudaGetDevice(ctypes.byref(device)) or get(ctypes.byref(major), 75, device) \
                or get(ctypes.byref(minor), 76, device) or major.value < 0 or minor.value < 0:
            return None
        return float(f"{major.value}.{minor.value}")


class PycudaBackend(Backend):
    """pycuda, on the device's primary context (the one TensorRT's runtime API also uses)."""

    name = "pycuda"

    def __init__(self):
        try:
            import pycuda.driver as cuda  # heavy third-party, GPU machines only: imported when a backend is made
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
        for obj in list(self._live.values()):
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

    def htod(self, ptr, arr):
        self.cuda.memcpy_htod(ptr, np.ascontiguousarray(arr))

    def dtoh(self, arr, ptr):
        self.cuda.memcpy_dtoh(arr, ptr)

    def device_name(self) -> str:
        return self.device.name()

    def compute_capability(self) -> float | None:
        major, minor = self.device.compute_capability()
        return float(f"{major}.{minor}")


_BACKENDS = {"pycuda": PycudaBackend, "cudart": CudartBackend}


def default_backend(prefer: str | None = None) -> Backend:
    """pycuda where installed, else the CUDA runtime library; ``prefer`` (or QBENCH_CUDA_BACKEND) picks one."""
    choice = prefer or os.environ.get("QBENCH_CUDA_BACKEND")
    if choice:
        if choice not in _BACKENDS:
            raise QbenchError(f"unknown CUDA backend {choice!r} (known: {', '.join(_BACKENDS)})")
        return _BACKENDS[choice]()
    missing = []
    for cls in (PycudaBackend, CudartBackend):
        try:
            return cls()
        except MissingDependencyError as exc:
            missing.append(str(exc))
    raise MissingDependencyError("no usable CUDA: " + "; ".join(dict.fromkeys(missing)))
