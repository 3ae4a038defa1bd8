"""Per-layer precision and fusions of an engine, for the report.

``load_engine(path)`` only deserializes an engine file (Polygraphy's ``EngineFromBytes``, plugins
initialised); ``engine_information(engine, trt)`` asks TensorRT's engine inspector for its JSON (the
engine must be built with ProfilingVerbosity.DETAILED, which builder.py sets). The JSON is parsed by
``qbench.artifacts.layer_info``, which reads trtexec's ``--exportLayerInfo`` files the same way and needs
no TensorRT. qbench's and not Polygraphy's: Polygraphy's inspect tool prints text for people, qbench
needs the JSON as a table. The inspector call itself was never run on real TensorRT.
"""

from __future__ import annotations

from pathlib import Path

from qbench.artifacts.layer_info import parse_layer_info
from qbench.errors import MissingDependencyError
from qbench.tensorrt import polygraphy_backend
from qbench.tensorrt._import import import_trt


class LoadedEngine:
    """A deserialized engine with the Runtime that made it: the engine must not outlive its
    Runtime, so both are held here for as long as the engine is used."""

    def __init__(self, runtime, engine):
        self.runtime, self.engine = runtime, engine


def load_engine(path, trt=None) -> LoadedEngine:
    """Only deserialize an engine file (for inspection): no execution context, CUDA stream or device
    buffers, unlike runner.TrtRunner, so nothing needs closing."""
    trt = trt or import_trt()
    pg = polygraphy_backend.backend(trt)
    try:
        runtime = trt.Runtime(pg.get_trt_logger())
    except TypeError as exc:  # the bindings raise TypeError when libnvinfer returns no runtime
        raise MissingDependencyError(f"TensorRT could not create a Runtime ({exc}): its libraries or a GPU are missing") from None
    engine = polygraphy_backend.call(pg.EngineFromBytes(Path(path).read_bytes(), runtime=runtime),
                                     f"TensorRT could not deserialize {path} (another TensorRT version or GPU?)")
    return LoadedEngine(runtime, engine)


def engine_information(engine, trt) -> dict:
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return parse_layer_info(text, source="engine inspector")
