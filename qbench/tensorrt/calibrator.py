"""INT8 entropy calibrator for TensorRT 10.x (implicit INT8 was removed in 11.x: see builder.py).

``EntropyCalibrator(...)`` returns an instance of a subclass of the real ``trt.IInt8EntropyCalibrator2``
(the class is made at call time, since the base class exists only once TensorRT is imported). It
feeds qbench's calibration batches, from the same ``Dataset.batches`` the CPU calibrator reads, into
one device buffer per input, and answers ``get_batch(names)`` with their addresses in the order
TensorRT asks. The calibration cache goes through qbench's ranges table both ways, so a cache made on
the CPU can feed an engine build and a cache TensorRT writes can be read by every CPU stage.

Verified here: subclassing and instantiating under the real 10.16.1.11 bindings, and ``get_batch``
returning addresses whose bytes equal the batch (host allocator, tests/trt) and device addresses
whose bytes, copied back, equal the batch (cuda-python on a GPU, tests/device). Never run: TensorRT's
C++ builder actually calling these methods during a real calibration.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from qbench.errors import QbenchError
from qbench.ranges import Ranges

TRT_PATH = "v10"  # conformance tests: every TensorRT name in this module must exist in 10.x


def EntropyCalibrator(
    batches: "Iterable[dict] | object",
    *,
    batch_size: int = 1,
    cache: str | Path | None = None,
    ranges: Ranges | None = None,
    input_dtypes: dict[str, np.dtype] | None = None,
    backend=None,
    limit: int | None = None,
    trt=None,
):
    """Make a calibrator.

    batches: a ``qbench.data.Dataset`` (its ``batches(batch_size, limit)`` is used, and re-read on
        ``reset()``) or a callable returning an iterator of {input name: array} batches.
    cache: path of the calibration cache, read before calibrating (a TensorRT cache or qbench ranges
        JSON) and written, atomically, after. ``ranges`` gives the table directly instead.
    input_dtypes: the dtype each network input wants (the builder passes the network's); batches are
        cast to it. backend: a device_buffers backend (default: pycuda, else cuda-python).
    """
    from qbench.tensorrt._import import cache_header, import_trt
    from qbench.tensorrt.device_buffers import default_backend

    trt = trt or import_trt()
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:  # TensorRT 11 removed implicit INT8; builder.py takes the strongly typed path there
        raise QbenchError(f"TensorRT {trt.__version__} has no INT8 calibrator (removed in 11.x): "
                          "INT8 engines are built from qbench's Q/DQ model instead")

    if hasattr(batches, "batches"):
        dataset = batches
        make_iter = lambda: dataset.batches(batch_size, limit)  # noqa: E731
    elif callable(batches):
        make_iter = batches
    else:
        raise QbenchError("calibrator: batches must be a Dataset or a callable returning batches")

    class _EntropyCalibrator(base):
        """TensorRT's entropy calibrator 2, fed by qbench (see the module docstring)."""

        def __init__(self):
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.batch_size = int(batch_size)
            self.cache_path = Path(cache) if cache is not None else None
            self.ranges = ranges
            self.input_dtypes = {k: np.dtype(v) for k, v in (input_dtypes or {}).items()}
            self.backend = backend if backend is not None else default_backend()
            self.buffers = {}
            self.batches_served = 0
            self.error: Exception | None = None  # raised by the builder after TensorRT returns
            self.written: Ranges | None = None
            self._iter: Iterator | None = None

        # -- what TensorRT calls --------------------------------------------------------------
        def get_batch_size(self):
            return self.batch_size

        def get_algorithm(self):
            return trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2

        def get_batch(self, names):
            # Exceptions must not cross back into TensorRT's C++ code: keep the first one for the
            # builder to raise, and end calibration.
            try:
                return self._next_pointers(list(names))
            except Exception as exc:  # noqa: BLE001 - re-raised by the builder
                self.error = self.error or exc
                self.free()
                return None

        def read_calibration_cache(self):
            try:
                table = self.ranges
                if table is None and self.cache_path is not None and self.cache_path.exists() and self.cache_path.stat().st_size:
                    table = Ranges.read(self.cache_path)
                if table is None:
                    return None
                table = dataclasses.replace(table, header=cache_header(trt))
                return table.to_trt_cache()
            except Exception as exc:  # noqa: BLE001
                self.error = self.error or exc
                return None

        def write_calibration_cache(self, cache):
            try:
                data = bytes(cache)
                table = Ranges.from_trt_cache(data, source="TensorRT calibration cache")
                self.written = table
                if self.cache_path is not None:
                    table.write(self.cache_path)  # atomic; JSON or TensorRT text by suffix
            except Exception as exc:  # noqa: BLE001
                self.error = self.error or exc

        # -- qbench side ------------------------------------------------------------------------
        def _next_pointers(self, names: list[str]):
            if self._iter is None:
                self._iter = iter(make_iter())
            try:
                batch = next(self._iter)
            except StopIteration:
                if not self.batches_served:
                    raise QbenchError("calibration data gave no batch") from None
                self.free()
                return None
            lead = {np.shape(v)[0] if np.ndim(v) else 1 for v in batch.values()}
            if self.batches_served and max(lead) < self.batch_size:
                # a short last batch would not match the engine's calibration shape: stop here
                self.free()
                return None
            pointers = []
            for name in names:
                if name not in batch:
                    raise QbenchError(f"calibration data has no array for network input {name!r} (has {sorted(batch)})")
                arr = np.ascontiguousarray(batch[name], dtype=self.input_dtypes.get(name, np.asarray(batch[name]).dtype))
                buf = self.buffers.get(name)
                if buf is None or buf.nbytes < arr.nbytes:
                    if buf is not None:
                        buf.free()
                    buf = self.buffers[name] = self.backend.alloc(arr.nbytes)
                buf.copy_from_host(arr)  # synchronous: the data is on the device when we return
                pointers.append(int(buf.ptr))
            self.batches_served += 1
            return pointers

        def reset(self):
            self.free()
            self._iter = None
            self.batches_served = 0

        def free(self):
            for buf in self.buffers.values():
                buf.free()
            self.buffers.clear()

        def raise_error(self):
            if self.error is not None:
                err = self.error
                if isinstance(err, QbenchError):
                    raise err
                raise QbenchError(f"calibration failed: {type(err).__name__}: {err}")

    return _EntropyCalibrator()
