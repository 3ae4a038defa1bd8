"""Per-layer precision and fusions of an engine, for the report.

``engine_information(engine, trt)`` asks TensorRT's engine inspector for its JSON (the engine must be
built with ProfilingVerbosity.DETAILED, which builder.py sets). ``layers_frame(info)`` turns that JSON
into a DataFrame, one row per engine layer. trtexec's ``--exportLayerInfo`` writes the same JSON, so
``qbench.runners.imported`` reads trtexec files through the same function. The parsing is tested on
real trtexec output (tests/data/trtexec); the inspector call itself was never run on real TensorRT.
"""

from __future__ import annotations

# The parsing needs no TensorRT: it lives in qbench.artifacts (re-exported here for existing callers).
from qbench.artifacts.layer_info import fused_nodes, layers_frame, parse_layer_info, precision_of  # noqa: F401
from qbench.errors import QbenchError



class LoadedEngine:
    """A deserialized engine with the Runtime that made it: the engine must not outlive its
    Runtime, so both are held here for as long as the engine is used."""

    def __init__(self, runtime, engine, logger):
        self.runtime, self.engine, self.logger = runtime, engine, logger


def load_engine(path, trt=None) -> LoadedEngine:
    """Only deserialize an engine file (for inspection): no execution context, CUDA stream or device
    buffers, unlike runner.TrtRunner, so nothing needs closing."""
    from pathlib import Path

    from qbench.errors import MissingDependencyError
    from qbench.tensorrt._import import import_trt
    from qbench.tensorrt.builder import make_logger

    trt = trt or import_trt()
    data = Path(path).read_bytes()
    logger = make_logger(trt)
    try:
        runtime = trt.Runtime(logger)
    except TypeError as exc:  # the bindings raise TypeError when libnvinfer returns no runtime
        raise MissingDependencyError(f"TensorRT could not create a Runtime ({exc}): its libraries or a GPU are missing") from None
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        why = logger.errors[-1] if logger.errors else "built by another TensorRT version or for another GPU?"
        raise QbenchError(f"TensorRT could not deserialize {path}: {why}")
    return LoadedEngine(runtime, engine, logger)


def engine_information(engine, trt) -> dict:
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return parse_layer_info(text, source="engine inspector")
