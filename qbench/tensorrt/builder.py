"""Build a TensorRT engine from ONNX: FP32, FP16 or INT8, or a shipped format folder's explicit model
(FP8, W4A16, BF16: ``qbench build --from <out>/<format>-best``), through Polygraphy's loaders.

Polygraphy's part (run by NVIDIA against every TensorRT release): ONNX parsing with TensorRT's plugins
initialised (``NetworkFromOnnxBytes``), the strongly typed network flag, the builder configuration
(``CreateConfig``: TF32/FP16/INT8 flags, calibrator and calibration profile, optimization profiles,
precision constraints, timing cache, profiling verbosity, workspace), layer precisions
(``SetLayerPrecisions``), output marking that skips loop bodies (``ModifyNetworkOutputs``) and the build
itself (``EngineBytesFromNetwork``, which also saves the timing cache).

qbench's part, which Polygraphy does not cover:
- the path choice by TensorRT major version (``_import.api_path``): 10.x builds the ONNX model as it is
  with precision from builder flags and INT8 scales from qbench's entropy calibrator (fed by qbench's
  data, or answered entirely from a ranges table / calibration cache); 11.x removed implicit INT8 and
  the precision flags, so it builds a strongly typed network from a model whose types state the
  precision (``typed_models.fp16_typed_model``, or the Q/DQ model of ``qbench.simulate.build_int8_model``
  with ranges computed by qbench on the CPU when none are given);
- the optimization profile from ``--shapes`` and the calibration samples (``shapes.compute_profile``),
  which Polygraphy would otherwise fill with a default size;
- the engine cache keyed by everything that changes the engine (``engine_cache``);
- the requirement that every layer named in ``layer_precisions`` exists (Polygraphy only warns);
- the capture plan the report needs (``capture.mark_network``);
- a shipped format (a row of ``qbench.simulate.formats`` with ``shipped``) is built from that row alone,
  never from its name: 10.x sets the row's ``trt10_flags`` through CreateConfig's keyword of the same
  name (``fp8``, ``fp16``, ``bf16``) on the explicit model as shipped; 11.x builds a strongly typed
  network from a copy typed ``trt11_types`` outside the Q/DQ (``typed_models.float_typed_model``).
  Refused in one line before any build: a 10.x whose ``trt.BuilderFlag`` lacks one of the row's flags,
  and a GPU whose compute capability (when the CUDA runtime says it) is below the row's ``min_cc``.

Checked here: every keyword passed to Polygraphy exists in its signature at the lowest and newest
Polygraphy allowed, and the builder-config members Polygraphy sets exist in the real 10.16/11.4
bindings (tests/trt). NEVER run here: an actual engine build; TensorRT's libraries are not installable
in this workplace, so ``trt.Builder`` itself has only ever failed (cleanly) over null libraries.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from qbench import atomic
from qbench.calibrate import calibrate
from qbench.data import load_dataset
from qbench.errors import MissingDependencyError, QbenchError
from qbench.model import ModelGraph
from qbench.ranges import Ranges
from qbench.simulate import build_int8_model, formats
from qbench.tensorrt import capture as cap
from qbench.tensorrt import polygraphy_backend
from qbench.tensorrt._import import api_path, describe_path, import_trt
from qbench.tensorrt.calibrator import EntropyCalibrator
from qbench.tensorrt.device_buffers import default_backend
from qbench.tensorrt.engine_cache import EngineCache, cache_key
from qbench.tensorrt.shapes import check_batch_size, compute_profile, data_digest, is_dynamic, validate_shapes
from qbench.tensorrt.typed_models import float_typed_model, fp16_typed_model

PRECISIONS = ("fp32", "fp16", "int8")
# the formats whose <out>/<name>-best/ folder is built from its row of the formats table
SHIPPED = tuple(name for name, row in formats.FORMATS.items() if row.shipped)
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
    # a shipped mixed-format folder (qbench.search.format_mixed, e.g. fp8-best with layers in bf16):
    # the format of its named layers, whose flags the build needs beside the base format's
    higher_format: str | None = None


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


def create_builder(trt):
    """Initialise TensorRT's plugin library, then create a Builder: a probe run before any model work, so
    a machine whose TensorRT cannot build fails in one line. The plugins are registered first because
    ONNX models that use TensorRT's plugins fail to parse without them (``init_libnvinfer_plugins``;
    Polygraphy's network and engine loaders initialise them again, which TensorRT allows)."""
    logger = polygraphy_backend.backend(trt).get_trt_logger()  # TensorRT's messages into Polygraphy's logger
    trt.init_libnvinfer_plugins(logger, "")
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
    options = options or BuildOptions()
    row = formats.FORMATS[precision] if precision in SHIPPED else None
    higher = formats.get(options.higher_format) if row is not None and options.higher_format else None
    if precision not in PRECISIONS and row is None:
        raise QbenchError(f"precision must be one of {', '.join(PRECISIONS + SHIPPED)}, not {precision!r}")
    if row is not None and options.layer_precisions:
        raise QbenchError(f"layer precisions apply to INT8 builds, not to {row.label} (its model states what is quantized)")
    if options.capture not in CAPTURE_MODES:
        raise QbenchError(f"capture must be one of {', '.join(CAPTURE_MODES)}, not {options.capture!r}")
    unknown = sorted(set(options.layer_precisions.values()) - set(LAYER_TYPES))
    if unknown:
        raise QbenchError(f"layer precision must be one of {', '.join(LAYER_TYPES)}, not {unknown[0]!r}")
    trt = trt or import_trt()
    path = api_path(trt)
    graph = model if isinstance(model, ModelGraph) else ModelGraph.from_path(model)
    dataset = data if data is None or hasattr(data, "batches") else load_dataset(data, graph.inputs)
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
    pg = polygraphy_backend.backend(trt)
    if row is not None:
        require_format(trt, row, backend)
        if higher is not None:
            require_format(trt, higher, backend)
    create_builder(trt)
    # The profile is decided by --shapes and the data, so it is computed before the cache lookup
    # and goes into the key (a rebuild with other data must not hit an engine sized for the old).
    profile_dims = compute_profile(graph.inputs, dataset, options)
    if row is not None:
        onnx_model, more = _format_model(graph, row, path, higher)
        notes += more
    elif path == "v11":
        onnx_model, ranges, more = _typed_model_v11(graph, precision, ranges, dataset, options)
        notes += more
    else:
        onnx_model = graph.model
    # the model as qbench holds it (weights inline, which the 2 GB protobuf limit bounds: docs/TENSORRT.md)
    onnx_bytes = onnx_model.SerializeToString()

    result = BuildResult(b"", str(trt.__version__), path, describe_path(trt), precision, notes=notes)
    if options.engine_cache is not None:
        # 10.x INT8 calibrated by TensorRT has no ranges yet: the data decides them, so it keys them
        calibrating = path == "v10" and precision == "int8" and ranges is None
        data_key = data_digest(dataset, options.calib_limit) if calibrating else None
        if calibrating and data_key is None:
            notes.append("engine cache skipped: the calibration data is not a data folder qbench can fingerprint")
        else:
            key = cache_key(onnx_bytes, precision, ranges.to_trt_cache() if ranges is not None else None,
                            str(trt.__version__), _gpu_name(backend), _options_for_key(options), profile=profile_dims,
                            data=data_key)
            result.cache_key = key
            hit = EngineCache(options.engine_cache).get(key)
            if hit is not None:
                result.engine, result.from_cache = hit, True
                result.capture = cap.plan_for_cached(options.capture)
                return result

    plans: list = []
    network = pg.NetworkFromOnnxBytes(onnx_bytes, strongly_typed=path == "v11",
                                      mark_unfused_tensors_as_debug_tensors=options.capture == "unfused")
    network = pg.PostprocessNetwork(network, lambda network: plans.append(
        cap.mark_network(network, options.capture, options.capture_tensors)), "qbench capture")
    calibrator = None
    if path == "v10" and options.layer_precisions:
        network = pg.PostprocessNetwork(network, lambda network: _require_layers(network, options.layer_precisions),
                                        "qbench layer names")
        network = pg.SetLayerPrecisions(network, {name: getattr(trt, LAYER_TYPES[p])
                                                  for name, p in options.layer_precisions.items()})
    if path == "v10" and precision == "int8":
        calibrator = _calibrator_v10(trt, graph, dataset, ranges, cache_path, profile_dims, options, backend)
    config = pg.CreateConfig(**_config_keywords(trt, path, precision, options, profile_dims, calibrator, pg))
    with contextlib.ExitStack() as stack:
        # Polygraphy writes the timing cache in place; it writes a temporary file here instead, which
        # replaces the cache only after a build (the cache it started from is in the one it writes)
        timing_out = stack.enter_context(atomic.atomic_path(options.timing_cache)) if options.timing_cache else None
        if timing_out is not None:  # Polygraphy's lock file beside the temporary file would stay behind
            stack.callback(Path(f"{timing_out}.lock").unlink, missing_ok=True)
        build = pg.EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_out) if timing_out else None)
        try:
            serialized = polygraphy_backend.call(build, f"TensorRT could not build the {precision} engine")
        finally:
            # the calibrator holds device buffers; free them even when the build raises
            if calibrator is not None:
                calibrator.free()
    if calibrator is not None:
        calibrator.raise_error()
        result.ranges_written = calibrator.written
    result.engine = bytes(serialized)  # Polygraphy raised where TensorRT returned no engine
    result.capture = plans[-1] if plans else cap.plan_for_cached(options.capture)
    if options.engine_cache is not None and result.cache_key:
        EngineCache(options.engine_cache).put(result.cache_key, result.engine,
                                              {"precision": precision, "trt": result.trt_version, "path": path, "model": graph.name})
    return result


LAYER_TYPES = {"fp32": "float32", "fp16": "float16"}


def _trt10_flags(row, higher=None) -> tuple[str, ...]:
    """The 10.x builder flags of a shipped format, and of the format its named layers are in (mixed)."""
    return tuple(dict.fromkeys(row.trt10_flags + (higher.trt10_flags if higher is not None else ())))


def _config_keywords(trt, path: str, precision: str, options: BuildOptions, profile_dims: dict, calibrator, pg) -> dict:
    """The keywords handed to Polygraphy's ``CreateConfig`` (tests/trt checks each against its signature).

    ``tf32=True``: Polygraphy clears TensorRT's default TF32 flag unless asked, and qbench's FP32 engines
    have always been built with TensorRT's defaults. 11.x has no FP16/INT8 flags and no precision
    constraints flag: the typed model carries the precision there."""
    keywords = {
        "tf32": True,
        "profiles": [_profile(pg, profile_dims)] if profile_dims else None,
        "load_timing_cache": str(options.timing_cache) if options.timing_cache else None,
        "profiling_verbosity": trt.ProfilingVerbosity.DETAILED,  # the inspector reports per-layer precision
        "memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: int(options.workspace_mb) << 20},
    }
    row = formats.FORMATS[precision] if precision in SHIPPED else None
    higher = formats.get(options.higher_format) if row is not None and options.higher_format else None
    if path == "v10" and row is not None:
        # the row's builder flags, each through CreateConfig's keyword of the same name (tests/trt
        # checks every one against Polygraphy's signature and the real trt.BuilderFlag)
        keywords.update({flag.lower(): True for flag in _trt10_flags(row, higher)})
    elif path == "v10":
        keywords["fp16"] = (precision == "fp16" or (precision == "int8" and options.fp16_fallback)
                            or "fp16" in options.layer_precisions.values())
        keywords["int8"] = precision == "int8"
        keywords["calibrator"] = calibrator
        # NVIDIA's developer guide, "Layer Level Control of Precision": layer.precision is obeyed only
        # with OBEY_PRECISION_CONSTRAINTS
        keywords["precision_constraints"] = "obey" if options.layer_precisions else None
    return keywords


def _profile(pg, profile_dims: dict):
    profile = pg.Profile()
    for name, (lo, opt, hi) in profile_dims.items():
        profile.add(name, min=lo, opt=opt, max=hi)
    return profile


def _require_layers(network, layer_precisions: dict) -> None:
    """Every layer kept in float must exist: a misspelt name would silently build an all-INT8 engine
    (Polygraphy's SetLayerPrecisions only warns). The parser names layers after the ONNX nodes."""
    found = {network.get_layer(i).name for i in range(network.num_layers)}
    missing = sorted(set(layer_precisions) - found)
    if missing:
        raise QbenchError(f"no TensorRT layer named {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                          + ": the ONNX parser names layers after the model's nodes; build from the int8-best folder's model.onnx")


# -- shipped formats (fp8-best, w4a16-best, bf16-best): the row of the formats table decides -----
def require_format(trt, row, backend=None) -> None:
    """One line instead of a build TensorRT would refuse or silently run in another precision: a 10.x
    whose bindings lack one of the row's builder flags (the 10.16 bindings checked in tests/trt have
    FP8 and BF16; a build without them must not quietly become FP16 or FP32), an 11.x without strongly
    typed networks,
    and a GPU below the row's compute capability (checked only when the CUDA runtime reports it)."""
    if api_path(trt) == "v10":
        missing = [flag for flag in row.trt10_flags if not hasattr(trt.BuilderFlag, flag)]
        if missing:
            raise QbenchError(f"TensorRT {trt.__version__} has no BuilderFlag.{missing[0]}, which a {row.label} build "
                              f"needs: use a TensorRT release that has it")
    elif not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise QbenchError(f"TensorRT {trt.__version__} has no strongly typed networks, which a {row.label} build needs")
    try:
        device = backend or default_backend()
        capability = device.compute_capability()
    except QbenchError:
        return  # no GPU known here: TensorRT itself will say what it lacks
    if capability is not None and capability < row.min_cc:
        raise QbenchError(f"{row.label} needs a GPU of compute capability {row.min_cc:.1f} or newer ({row.gpus}); "
                          f"this GPU ({_gpu_name(device)}) has {capability:.1f}")


def _format_model(graph: ModelGraph, row, path: str, higher=None):
    """The ONNX model a shipped format's engine is built from, and the note saying how. A mixed folder
    (``higher``: the format of its named layers) is built on 11.x from the model as shipped: typing the
    rest to the base format's float type would retype the Casts that put those layers in ``higher``."""
    if path == "v10":
        flags = " + ".join(f"BuilderFlag.{flag}" for flag in _trt10_flags(row, higher))
        return graph.model, [f"10.x {row.label}: {flags} on the model as shipped"]
    if higher is not None:
        return graph.model, [f"11.x {row.label} with layers in {higher.label}: strongly typed network from the model as "
                             f"shipped (its Casts state the {higher.label} layers; the rest outside Q/DQ stays float32)"]
    if not row.trt11_types:
        return graph.model, [f"11.x {row.label}: strongly typed network from the model as shipped"]
    return float_typed_model(graph, row.trt11_types), [
        f"11.x {row.label}: strongly typed network from a copy of the model typed {row.trt11_types} outside its Q/DQ"]


# -- TensorRT 10.x: the entropy calibrator -----------------------------------------------------------
def _calibrator_v10(trt, graph: ModelGraph, dataset, ranges, cache_path, profile_dims: dict, options: BuildOptions, backend):
    """qbench's IInt8EntropyCalibrator2, fed batches of the calibration profile's OPT shape (the profile
    Polygraphy sets as calibration profile is the only one qbench gives)."""
    opt_shapes = {}
    for spec in graph.inputs:
        if spec.name in profile_dims:
            opt_shapes[spec.name] = tuple(profile_dims[spec.name][1])
        elif not is_dynamic(spec):
            opt_shapes[spec.name] = tuple(int(d) for d in spec.shape)
    source = dataset if dataset is not None else (lambda: iter(()))  # every scale comes from the ranges table
    return EntropyCalibrator(source, batch_size=options.calib_batch_size, cache=cache_path, ranges=ranges,
                             input_dtypes={s.name: s.dtype for s in graph.inputs}, opt_shapes=opt_shapes, backend=backend,
                             limit=options.calib_limit, trt=trt)


# -- TensorRT 11.x: strongly typed networks ------------------------------------------------------
def _typed_model_v11(graph: ModelGraph, precision: str, ranges, dataset, options):
    notes = []
    if precision == "fp32":
        return graph.model, ranges, notes
    if precision == "fp16":
        notes.append("11.x FP16: strongly typed network from a float16-typed copy of the model")
        return fp16_typed_model(graph), ranges, notes
    if ranges is None:
        ranges = calibrate(graph, dataset, method="entropy", batch_size=options.calib_batch_size,
                           limit=options.calib_limit, progress=False)
        notes.append("11.x INT8: ranges computed by qbench on the CPU (entropy), TensorRT 11 has no calibrator")
    notes.append("11.x INT8: strongly typed network from qbench's Q/DQ model; unquantized layers run in FP32")
    keep = list(options.layer_precisions)
    if keep:
        notes.append(f"11.x INT8: {len(keep)} layer(s) kept in float (no Q/DQ on them)")
    return build_int8_model(graph, ranges, keep_float=keep).model, ranges, notes


# -- shared ----------------------------------------------------------------------------------------
def _gpu_name(backend) -> str:
    try:
        return (backend or default_backend()).device_name()
    except QbenchError:
        return "unknown-gpu"


def _options_for_key(options: BuildOptions) -> dict:
    d = dataclasses.asdict(options)
    for k in ("timing_cache", "engine_cache"):
        d.pop(k, None)  # where caches live does not change the engine
    return d
