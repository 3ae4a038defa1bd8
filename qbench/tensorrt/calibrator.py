"""INT8 entropy calibrator for TensorRT 10.x (implicit INT8 was removed in 11.x: see builder.py).

``EntropyCalibrator(...)`` returns an instance of a subclass of the real ``trt.IInt8EntropyCalibrator2``
(the class is made at call time, since the base class exists only once TensorRT is imported). It
feeds qbench's calibration batches, from the same ``Dataset.batches`` the CPU calibrator reads, into
one device buffer per input, and answers ``get_batch(names)`` with their addresses in the order
TensorRT asks. The calibration cache goes through qbench's ranges table both ways, so a cache made on
the CPU can feed an engine build and a cache TensorRT writes can be read by every CPU stage. The
builder hands it to Polygraphy's ``CreateConfig(calibrator=...)``, which sets it on the builder config
with the calibration profile.

Why this is qbench's and not Polygraphy's ``Calibrator``: qbench's data pipeline, the ranges-table cache
in both directions, the pycuda device memory users asked for, and TensorRT's rules enforced with one
clear error where Polygraphy's calibrator ends calibration silently (it returns None on any error):
- every non-index input (float16 and bfloat16 ones included) is fed as float32, index inputs (int32,
  int64, bool) in their own type: TensorRT reads calibration data as float32 whatever the network
  input's type (``calibration_dtype``; docs/TENSORRT.md cites the source);
- every batch must have the calibration profile's OPT shape, the only shape TensorRT calibrates with
  (Polygraphy's ``get_input_metadata_from_network(..., force_opt_shapes=True)`` states the same); a
  batch of another shape would be read with the wrong layout, so it is an error, except a short last
  batch, which is left out with a warning saying how many samples were not used.

Verified here: subclassing and instantiating under the real 10.16.1.11 bindings, and ``get_batch``
returning addresses whose bytes equal the batch (host allocator, tests/trt) and device addresses
whose bytes, copied back, equal the batch (cuda-python on a GPU, tests/device). Never run: TensorRT's
C++ builder actually calling these methods during a real calibration.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from qbench.errors import QbenchError
from qbench.ranges import Ranges
from qbench.tensorrt._import import cache_header, import_trt
from qbench.tensorrt.device_buffers import default_backend

log = logging.getLogger(__name__)
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_))

TRT_PATH = "v10"  # conformance tests: every TensorRT name in this module must exist in 10.x


def EntropyCalibrator(
    batches: "Iterable[dict] | object",
    *,
    batch_size: int = 1,
    cache: str | Path | None = None,
    ranges: Ranges | None = None,
    input_dtypes: dict[str, np.dtype] | None = None,
    opt_shapes: dict[str, tuple] | None = None,
    backend=None,
    limit: int | None = None,
    trt=None,
):
    """Make a calibrator.

    batches: a ``qbench.data.Dataset`` (its ``batches(batch_size, limit)`` is read) or a callable
        returning an iterator of {input name: array} batches.
    cache: path of the calibration cache, read before calibrating (a TensorRT cache or qbench ranges
        JSON) and written, atomically, after. ``ranges`` gives the table directly instead.
    input_dtypes: each network input's dtype; batches are fed as ``calibration_dtype`` of it (float32
        for every non-index input). opt_shapes: each input's shape in the calibration profile (OPT);
        every batch must have it. backend: a device_buffers backend (default: pycuda, else libcudart).
    """
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
            self.input_dtypes = {k: calibration_dtype(v) for k, v in (input_dtypes or {}).items()}
            self.opt_shapes = {k: tuple(int(d) for d in v) for k, v in (opt_shapes or {}).items()}
            self.backend = backend if backend is not None else default_backend()
            self.buffers: dict[str, tuple[int, int]] = {}  # input name -> (device address, bytes)
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
            if self._short_last_batch(batch):
                self.free()
                return None
            pointers = []
            for name in names:
                if name not in batch:
                    raise QbenchError(f"calibration data has no array for network input {name!r} (has {sorted(batch)})")
                arr = np.ascontiguousarray(batch[name], dtype=self.input_dtypes.get(name, calibration_dtype(np.asarray(batch[name]).dtype)))
                want = self.opt_shapes.get(name)
                if want is not None and tuple(arr.shape) != want:
                    raise QbenchError(f"calibration batch {self.batches_served + 1}: input {name!r} has shape "
                                      f"{'x'.join(map(str, arr.shape))}, but TensorRT calibrates at the calibration "
                                      f"profile's OPT shape {'x'.join(map(str, want))} and would read other shapes with the "
                                      "wrong layout: give samples of one size or --shapes with that OPT shape")
                ptr, size = self.buffers.get(name, (0, 0))
                if size < arr.nbytes:  # grow; a batch of the same size reuses the buffer
                    if ptr:
                        self.backend.free(ptr)
                    ptr, size = self.buffers[name] = (int(self.backend.malloc(arr.nbytes)), arr.nbytes)
                self.backend.htod(ptr, arr)  # synchronous: the data is on the device when we return
                pointers.append(ptr)
            self.batches_served += 1
            return pointers

        def _short_last_batch(self, batch) -> bool:
            """True for the last batch when it only lacks samples (a dataset whose size is not a multiple
            of the batch size): it is left out, and the warning says so."""
            short = [n for n, want in self.opt_shapes.items() if n in batch and np.ndim(batch[n])
                     and np.shape(batch[n])[1:] == want[1:] and np.shape(batch[n])[0] < want[0]]
            if not short or not self.batches_served:
                return False
            try:
                following = next(self._iter)
            except StopIteration:
                log.warning("calibration: the last batch holds %d sample(s), fewer than the batch size %d; "
                            "TensorRT calibrates at one shape, so they were left out",
                            int(np.shape(batch[short[0]])[0]), self.batch_size)
                return True
            self._iter = _chain_one(following, self._iter)
            return False

        def free(self):
            for ptr, _ in self.buffers.values():
                self.backend.free(ptr)
            self.buffers.clear()

        def raise_error(self):
            if self.error is not None:
                err = self.error
                if isinstance(err, QbenchError):
                    raise err
                raise QbenchError(f"calibration failed: {type(err).__name__}: {err}")

    return _EntropyCalibrator()


def calibration_dtype(dtype) -> np.dtype:
    """The type TensorRT reads a calibration input in: the input's own type for index inputs (int32,
    int64, bool), float32 for every other input (float16, bfloat16, uint8, ...). The rule and the set
    of index types are those of Polygraphy's ``Calibrator.set_input_metadata`` (0.50.3 to 0.53.6),
    which states "TensorRT requires non-index calibration inputs to be provided in float32"."""
    dtype = np.dtype(dtype)
    return dtype if dtype in INDEX_DTYPES else np.dtype(np.float32)


def _chain_one(first, rest):
    yield first
    yield from rest
