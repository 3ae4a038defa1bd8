"""Run on a GPU machine WITHOUT TensorRT: qbench's calibrator device-buffer path on real batches.

For each available CUDA binding (pycuda, libcudart through Polygraphy), it allocates device buffers through
qbench.tensorrt.device_buffers exactly as the calibrator does (the calibrator's own _next_pointers
code, driven through a stand-in base class because TensorRT is absent on that machine), copies each
batch of the bundled calibration images to the device, copies the bytes back device -> host with
the binding's own memcpy, and compares them with the batch.

Usage: python tests/device/check_calibrator_device.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


class _StandInBase:
    """Only for this GPU check: the machine has no TensorRT, so the real IInt8EntropyCalibrator2 (whose
    subclassing is proven under the real bindings in tests/trt) is replaced by a plain class."""

    def __init__(self):
        pass


def main() -> int:
    from qbench.data import load_dataset
    from qbench.model import InputSpec
    from qbench.tensorrt import device_buffers as db
    from qbench.tensorrt.calibrator import EntropyCalibrator

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "calib_data"
    # the embedded model's input: x, float32, N x 3 x H x W (no onnx load needed here)
    inputs = [InputSpec("x", 1, (None, 3, None, None))]
    dataset = load_dataset(data, inputs)
    fake_trt = types.SimpleNamespace(__version__="10.16.1.11", IInt8EntropyCalibrator2=_StandInBase,
                                     CalibrationAlgoType=types.SimpleNamespace(ENTROPY_CALIBRATION_2="E2"))
    failures = 0
    ran = 0
    for name, cls in (("pycuda", db.PycudaBackend), ("cudart", db.CudartBackend)):
        try:
            backend = cls()
        except Exception as exc:  # noqa: BLE001
            print(f"[{name}] unavailable: {exc}")
            continue
        ran += 1
        print(f"[{name}] device: {backend.device_name()}")
        for batch_size in (1, 2):
            calib = EntropyCalibrator(dataset, batch_size=batch_size, backend=backend, trt=fake_trt,
                                      input_dtypes={"x": np.float32})
            reference = dataset.batches(batch_size)
            n = 0
            while True:
                ptrs = calib.get_batch(["x"])
                if ptrs is None:
                    break
                want = np.ascontiguousarray(next(reference)["x"], dtype=np.float32)
                got = np.empty_like(want)
                backend.dtoh(got, ptrs[0])  # device -> host with the binding's memcpy
                same = got.tobytes() == want.tobytes()
                failures += not same
                print(f"[{name}] batch_size={batch_size} batch {n}: shape={want.shape} bytes={want.nbytes} "
                      f"ptr=0x{ptrs[0]:x} device->host equal={same}")
                n += 1
            if calib.error is not None:
                print(f"[{name}] calibrator error: {calib.error}")
                failures += 1
            print(f"[{name}] batch_size={batch_size}: {n} batches served, end of data -> None")
    if not ran:
        failures += 1
        print("no CUDA binding usable")
    print("RESULT:", "PASS" if failures == 0 else f"FAIL ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
