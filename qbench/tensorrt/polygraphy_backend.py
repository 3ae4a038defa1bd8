"""Polygraphy's TensorRT backend, imported over the TensorRT module qbench found, logging through Python.

Why qbench has this module (Polygraphy does not cover it):
- Polygraphy imports TensorRT by the name ``tensorrt`` (``mod.lazy_import("tensorrt>=8.5")``), while the
  standalone bindings wheel installs the same extension as ``tensorrt_bindings`` and qbench accepts both
  (``_import.import_trt``). The module qbench found is registered as ``tensorrt`` before Polygraphy
  resolves its lazy import, so both sides hold one module: one ``IInt8EntropyCalibrator2`` class, one
  ``ICudaEngine`` class (Polygraphy's ``isinstance`` checks would fail across two).
- Polygraphy's ``G_LOGGER`` prints to stdout by default, which would corrupt ``--format json`` output.
  ``G_LOGGER.use_python_logging_system = True`` (present from Polygraphy 0.50 on) sends every message to
  the Python logger ``"Polygraphy"`` instead, which the CLI's logging configuration writes to stderr;
  colours are turned off, since without the optional ``colored`` package Polygraphy prints a warning
  about it with a bare ``print`` to stdout.
- ``G_LOGGER.critical`` raises ``PolygraphyException`` with a multi-line message; ``one_line`` keeps the
  first line for qbench's ``qbench: error: ...``.
"""

from __future__ import annotations

import sys

from qbench.errors import MissingDependencyError, QbenchError
from qbench.tensorrt._import import import_trt

MIN_POLYGRAPHY = "0.50.3"  # strongly_typed/mark_unfused loaders, TrtRunner debug listener, python logging


def backend(trt=None):
    """Return ``polygraphy.backend.trt`` bound to ``trt`` (default: ``import_trt()``)."""
    trt = trt or import_trt()
    registered = sys.modules.get("tensorrt")
    if registered is None:
        sys.modules["tensorrt"] = trt  # the bindings wheel's module, under the name Polygraphy imports
    elif registered is not trt:
        raise QbenchError(f"two TensorRT modules are loaded ({registered.__name__} and {trt.__name__}); "
                          "set QBENCH_TRT_MODULE to the one named tensorrt")
    route_logging()
    from polygraphy.backend import trt as pg  # heavy third-party: only once an engine is built or run

    return pg


def route_logging() -> None:
    """Send Polygraphy's log to the Python logger "Polygraphy" (never stdout); call before any other
    Polygraphy module is used."""
    try:
        from polygraphy.logger import G_LOGGER  # heavy third-party: only once TensorRT or CUDA is used
    except ImportError as exc:
        raise MissingDependencyError(f"Polygraphy is not importable ({exc}): pip install 'polygraphy>={MIN_POLYGRAPHY}'") from None
    G_LOGGER.use_python_logging_system = True
    # Colours are for terminals; asking for them without the optional 'colored' package makes Polygraphy
    # print a warning with a bare print() to stdout, bypassing even its own logger.
    G_LOGGER.colors = False


def mark_all():
    """Polygraphy's ``constants.MARK_ALL`` (every tensor outside loop bodies becomes an output)."""
    from polygraphy import constants  # heavy third-party, see backend()

    return constants.MARK_ALL


def call(loader, what: str):
    """Run a Polygraphy loader; its ``PolygraphyException`` becomes one ``QbenchError`` line."""
    from polygraphy.exception import PolygraphyException  # heavy third-party, see backend()

    try:
        return loader()
    except PolygraphyException as exc:
        raise QbenchError(f"{what}: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
