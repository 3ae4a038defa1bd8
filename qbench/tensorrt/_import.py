"""Find TensorRT, report its version, and say which build path runs.

TensorRT's Python package is ``tensorrt`` (the full wheel or a system install); the standalone
bindings wheel ``tensorrt-cuXX-bindings`` installs the same extension as ``tensorrt_bindings``.
qbench accepts either. Major version 10 uses the classic builder-flags path (implicit INT8 with a
calibrator); major 11 removed implicit INT8 and the precision flags, so it builds strongly typed
networks from explicitly typed ONNX models (FP16 weights/casts, Q/DQ for INT8).
qbench's and not Polygraphy's: Polygraphy imports ``tensorrt`` only and has no notion of the two paths.
"""

from __future__ import annotations

import importlib
import os

from qbench.errors import MissingDependencyError

MIN_MAJOR = 10
PATH_V10 = "10.x builder flags (FP16/INT8 flags, entropy calibrator)"
PATH_V11 = "11.x strongly typed network (precision from the ONNX model: FP16 casts, Q/DQ)"

# Module names tried in order; QBENCH_TRT_MODULE picks one explicitly (tests use it to be sure
# which of two installed bindings they exercise).
_CANDIDATES = ("tensorrt", "tensorrt_bindings")


def import_trt():
    """Return the TensorRT module, or raise MissingDependencyError with one line."""
    names = [os.environ["QBENCH_TRT_MODULE"]] if os.environ.get("QBENCH_TRT_MODULE") else list(_CANDIDATES)
    problems = []
    for name in names:
        try:
            trt = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == name:
                continue  # not installed under this name
            problems.append(f"{name}: {exc}")
            continue
        except (ImportError, OSError) as exc:
            # bindings present but their libraries (libnvinfer.so.N ...) are not loadable
            problems.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        if not hasattr(trt, "__version__") or not hasattr(trt, "Builder"):
            problems.append(f"{name}: imported but is not TensorRT's Python API")
            continue
        if trt_version(trt)[0] < MIN_MAJOR:
            raise MissingDependencyError(
                f"TensorRT {trt.__version__} is too old: qbench needs TensorRT {MIN_MAJOR}.x or 11.x"
            )
        return trt
    if problems:
        raise MissingDependencyError("TensorRT is installed but cannot load: " + "; ".join(problems))
    raise MissingDependencyError(
        "TensorRT is not installed (no 'tensorrt' Python module): install TensorRT 10.x or 11.x with its "
        "Python bindings on a machine with an NVIDIA GPU (pip install 'qbench[trt]'), or import results "
        "from trtexec/Polygraphy JSON instead"
    )


def trt_version(trt) -> tuple[int, ...]:
    parts = []
    for piece in str(trt.__version__).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def api_path(trt) -> str:
    """'v10' or 'v11': which builder path this TensorRT gets."""
    return "v11" if trt_version(trt)[0] >= 11 else "v10"


def describe_path(trt) -> str:
    return PATH_V11 if api_path(trt) == "v11" else PATH_V10


def cache_header(trt, algorithm: str = "EntropyCalibration2") -> str:
    """The header line TensorRT writes on its calibration caches, e.g. 'TRT-101601-EntropyCalibration2'
    for 10.16.1 (major*10000 + minor*100 + patch). TensorRT compares it when it reads a cache, so a
    cache made by qbench on the CPU is given the running version's header before it is handed over."""
    v = trt_version(trt) + (0, 0, 0)
    return f"TRT-{v[0] * 10000 + v[1] * 100 + v[2]}-{algorithm}"
