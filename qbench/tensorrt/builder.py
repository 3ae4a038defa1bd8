"""Build a TensorRT engine from ONNX: FP32, FP16 or INT8.

Two paths, chosen by the TensorRT major version (``_import.api_path``):
- 10.x (``_build_network_v10`` / ``_configure_v10``): the ONNX model as it is, precision from builder
  flags (FP16, INT8), INT8 scales from the entropy calibrator (fed by qbench's data, or answered
  entirely from a ranges table / calibration cache), calibration profile for dynamic shapes.
- 11.x (``_build_network_v11``): implicit INT8 and the precision flags are gone, so the network is
  created STRONGLY_TYPED from a model whose types state the precision: the float16-typed model
  (typed_models.fp16_typed_model) for FP16, the Q/DQ model of ``qbench.simulate.build_int8_model`` for
  INT8 (scales from the ranges table, which qbench computes on the CPU when none is given).
Shared: optimization profiles for dynamic inputs (``shapes.compute_profile``: --shapes, else min/max
over the calibration samples), timing cache, engine cache, detailed profiling
verbosity (so the inspector can report per-layer precision and fusions), layer-wise capture marks.

Checked here: every TensorRT name used exists in the real bindings of the version whose path uses
it (tests/trt). NEVER run here: an actual engine build; TensorRT's libraries are not installable in
this workplace, so ``trt.Builder`` itself has only ever failed (cleanly) over null libraries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qbench import atomic
from qbench.errors import MissingDependencyError, QbenchError
from qbench.model import ModelGraph
from qbench.ranges import Ranges
from qbench.tensorrt.shapes import check_batch_size, compute_profile, data_digest, validate_shapes

PRECISIONS = ("fp32", "fp16", "int8")
CAPTURE_MODES = ("none", "debug", "unfused", "outputs")


@dataclass
class BuildOptions:
    workspace_mb: int = 4096
    calib_batch_size: int = 1
    calib_limit: int | None = None
    # input name -> (min, opt, max) shapes; dynamic inputs without an entry get theirs from the data
    shapes: dict[str, tuple[tuple, tuple, tuple]] = field(default_factory=dict)
    timing_cache: Path | None = None
    engine_cache: Path | None = None  # a folder; None = no engine cache
    capture: str = "none"
    capture_tensors: list[str] | None = None  # None = every tensor
    fp16_fallback: bool = False  # 10.x INT8: also allow FP16 for layers left unquantized
    # layer (ONNX node) name -> "fp32" | "fp16": layers kept out of INT8 (qbench.search's int8-best).
    # 10.x: layer.precision with OBEY_PRECISION_CONSTRAINTS; 11.x: no Q/DQ on those nodes.
    layer_precisions: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    engine: bytes
    trt_version: str
    path: str  # "v10" or "v11"
    path_description: str
    precision: str
    from_cache: bool = False
    cache_key: str = ""
    capture: object = None  # capture.CapturePlan
    ranges_written: Ranges | None = None
    notes: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        return atomic.write_bytes(path, self.engine)


def make_logger(trt):
    """A TensorRT logger that keeps error messages, so a failed build can say why in one line."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))

    return _Logger()


def create_builder(trt, logger):
    try:
        return trt.Builder(logger)
    except TypeError as exc:  # the bindings raise TypeError when libnvinfer returns no builder
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} could not create a Builder ({exc}): its libraries or a GPU are missing"
        ) from None


def build_engine(model, precision: str, *, data=None, ranges: Ranges | None = None, cache: str | Path | None = None,
                 options: BuildOptions | None = None, trt=None, backend=None) -> BuildResult:
    """Build an engine for ``model`` (path or ModelGraph) at ``precision``.

    data: a calibration data folder or ``qbench.data.Dataset`` (INT8; also gives dynamic shapes).
    ranges / cache: the INT8 ranges table, or the path of a calibration cache / ranges JSON, read
    before building and (10.x calibration) written after.
    """
    from qbench.tensorrt import capture as cap
    from qbench.tensorrt._import import api_path, describe_path, import_trt
    from qbench.tensorrt.engine_cache import EngineCache, cache_key

    options = options or BuildOptions()
    if precision not in PRECISIONS:
        raise QbenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if options.capture not in CAPTURE_MODES:
        raise QbenchError(f"capture must be one of {', '.join(CAPTURE_MODES)}, not {options.capture!r}")
    trt = trt or import_trt()
    path = api_path(trt)
    graph = model if isinstance(model, ModelGraph) else ModelGraph.from_path(model)
    dataset = _dataset(data, graph)
    cache_path = Path(cache) if cache is not None else None
    if ranges is None and cache_path is not None and cache_path.exists():
        ranges = Ranges.read(cache_path)  # fail on a corrupt cache before any TensorRT work
    notes: list[str] = []
    if precision == "int8" and ranges is None and dataset is None:
        raise QbenchError("INT8 needs calibration data (--data DIR) or a calibration cache/ranges file (--cache FILE)")

    # user errors in --shapes / --batch-size are one line, before TensorRT or any model work
    validate_shapes(options.shapes, graph.inputs)
    check_batch_size(graph.inputs, options.calib_batch_size)

    # fail fast (one line) where TensorRT cannot build at all, before any CPU-side model work
    logger = make_logger(trt)
    builder = create_builder(trt, logger)
    # The profile is decided by --shapes and the data, so it is computed before the cache lookup
    # and goes into the key (a rebuild with other data must not hit an engine sized for the old).
    profile_dims = compute_profile(graph.inputs, dataset, options)
    if path == "v11":
        onnx_model, ranges, more = _typed_model_v11(graph, precision, ranges, dataset, options)
        notes += more
    else:
        onnx_model = graph.model
    onnx_bytes = onnx_model.SerializeToString()
    # 10.x parses the model file's own graph, so TensorRT can resolve external-data weights
    # relative to the file; 11.x parses a typed copy made in memory (weights inline, which the
    # 2 GB protobuf limit bounds: see docs/TENSORRT.md).
    parse_path = str(Path(model)) if path == "v10" and isinstance(model, (str, Path)) else None

    result = BuildResult(b"", str(trt.__version__), path, describe_path(trt), precision, notes=notes)
    if options.engine_cache is not None:
        # 10.x INT8 calibrated by TensorRT has no ranges yet: the data decides them, so it keys them
        calibrating = path == "v10" and precision == "int8" and ranges is None
        data_key = data_digest(dataset, options.calib_limit) if calibrating else None
        if calibrating and data_key is None:
            notes.append("engine cache skipped: the calibration data is not a data folder qbench can fingerprint")
        else:
            gpu = _gpu_name(backend)
            key = cache_key(onnx_bytes, precision, ranges.to_trt_cache() if ranges is not None else None,
                            str(trt.__version__), gpu, _options_for_key(options), profile=profile_dims, data=data_key)
            result.cache_key = key
            hit = EngineCache(options.engine_cache).get(key)
            if hit is not None:
                result.engine, result.from_cache = hit, True
                result.capture = cap.plan_for_cached(options.capture)
                return result

    network = (_build_network_v11 if path == "v11" else _build_network_v10)(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes, path=parse_path):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise QbenchError(f"TensorRT's ONNX parser rejected the model: {errors[0] if errors else 'no detail'}"
                          + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = _add_profile(builder, network, config, profile_dims)
    timing = _load_timing_cache(config, options.timing_cache)
    calibrator = None
    try:
        if path == "v10":
            calibrator = _configure_v10(trt, config, network, precision, profile, dataset, ranges, cache_path, options, backend)
        result.capture = cap.mark_network(network, options.capture, options.capture_tensors)
        serialized = builder.build_serialized_network(network, config)
    finally:
        # the calibrator holds device buffers; free them even when the build raises
        if calibrator is not None:
            _release_calibrator_v10(config, calibrator)
    if calibrator is not None:
        calibrator.raise_error()
        result.ranges_written = calibrator.written
    if serialized is None:
        why = logger.errors[-1] if logger.errors else "no error message from TensorRT"
        raise QbenchError(f"TensorRT could not build the {precision} engine: {why}")
    result.engine = bytes(serialized)
    if timing is not None and options.timing_cache is not None:
        atomic.write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    if options.engine_cache is not None and result.cache_key:
        EngineCache(options.engine_cache).put(result.cache_key, result.engine,
                                              {"precision": precision, "trt": result.trt_version, "path": path, "model": graph.name})
    return result


# -- TensorRT 10.x: builder flags ----------------------------------------------------------------
def _build_network_v10(trt, builder):
    # 10.x networks are explicit-batch by default; EXPLICIT_BATCH is deprecated there (gone in 11).
    return builder.create_network(0)


def _configure_v10(trt, config, network, precision, profile, dataset, ranges, cache_path, options, backend):
    if precision == "fp16" or (precision == "int8" and options.fp16_fallback):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision != "int8":
        return None
    from qbench.tensorrt.calibrator import EntropyCalibrator

    config.set_flag(trt.BuilderFlag.INT8)
    dtypes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dtypes[t.name] = np.dtype(trt.nptype(t.dtype))
    if dataset is not None:
        source = dataset
    else:
        source = lambda: iter(())  # noqa: E731 - every scale comes from the ranges table
    calibrator = EntropyCalibrator(source, batch_size=options.calib_batch_size, cache=cache_path, ranges=ranges,
                                   input_dtypes=dtypes, backend=backend, limit=options.calib_limit, trt=trt)
    config.int8_calibrator = calibrator
    if profile is not None:
        config.set_calibration_profile(profile)
    _constrain_layers_v10(trt, config, network, options.layer_precisions)
    return calibrator


LAYER_TYPES = {"fp32": "float32", "fp16": "float16"}


def _constrain_layers_v10(trt, config, network, layer_precisions: dict) -> list[str]:
    """Pin the named layers to FP32/FP16 and make TensorRT obey (NVIDIA's developer guide, "Layer
    Level Control of Precision": ``layer.precision`` + ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``).
    Returns the names no layer of the network carries (the parser names layers after ONNX nodes)."""
    if not layer_precisions:
        return []
    unknown = sorted(set(layer_precisions.values()) - set(LAYER_TYPES))
    if unknown:
        raise QbenchError(f"layer precision must be one of {', '.join(LAYER_TYPES)}, not {unknown[0]!r}")
    if "fp16" in layer_precisions.values():
        config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    found = set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in layer_precisions:
            layer.precision = getattr(trt, LAYER_TYPES[layer_precisions[layer.name]])
            found.add(layer.name)
    missing = sorted(set(layer_precisions) - found)
    if missing:
        raise QbenchError(f"no TensorRT layer named {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                          + ": the ONNX parser names layers after the model's nodes; build from the int8-best folder's model.onnx")
    return missing


def _release_calibrator_v10(config, calibrator):
    calibrator.free()
    # the config keeps the Python calibrator alive through the bindings; drop it with its buffers
    config.int8_calibrator = None


# -- TensorRT 11.x: strongly typed networks ------------------------------------------------------
def _build_network_v11(trt, builder):
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def _typed_model_v11(graph: ModelGraph, precision: str, ranges, dataset, options):
    notes = []
    if precision == "fp32":
        return graph.model, ranges, notes
    if precision == "fp16":
        from qbench.tensorrt.typed_models import fp16_typed_model

        notes.append("11.x FP16: strongly typed network from a float16-typed copy of the model")
        return fp16_typed_model(graph), ranges, notes
    if ranges is None:
        from qbench.calibrate import calibrate

        ranges = calibrate(graph, dataset, method="entropy", batch_size=options.calib_batch_size,
                           limit=options.calib_limit, progress=False)
        notes.append("11.x INT8: ranges computed by qbench on the CPU (entropy), TensorRT 11 has no calibrator")
    from qbench.simulate import build_int8_model

    notes.append("11.x INT8: strongly typed network from qbench's Q/DQ model; unquantized layers run in FP32")
    keep = list(options.layer_precisions)
    if keep:
        notes.append(f"11.x INT8: {len(keep)} layer(s) kept in float (no Q/DQ on them)")
    return build_int8_model(graph, ranges, keep_float=keep).model, ranges, notes


# -- shared ----------------------------------------------------------------------------------------
def _dataset(data, graph: ModelGraph):
    if data is None or hasattr(data, "batches"):
        return data
    from qbench.data import load_dataset

    return load_dataset(data, graph.inputs)


def _add_profile(builder, network, config, profile_dims: dict):
    """One optimization profile covering every dynamic network input, or None when all shapes are fixed."""
    dynamic = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(t.shape)
        if any(d < 0 for d in shape):
            dynamic[t.name] = shape
    if not dynamic:
        return None
    profile = builder.create_optimization_profile()
    for name, shape in dynamic.items():
        if name not in profile_dims:
            raise QbenchError(f"input {name!r} has dynamic shape {shape}: give --shapes or calibration data to size it")
        lo, opt, hi = profile_dims[name]
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    return profile


def _load_timing_cache(config, path: Path | None):
    data = Path(path).read_bytes() if path is not None and Path(path).exists() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def _gpu_name(backend) -> str:
    from qbench.tensorrt.device_buffers import default_backend

    try:
        return (backend or default_backend()).device_name()
    except QbenchError:
        return "unknown-gpu"


def _options_for_key(options: BuildOptions) -> dict:
    d = dataclasses.asdict(options)
    for k in ("timing_cache", "engine_cache"):
        d.pop(k, None)  # where caches live does not change the engine
    return d
