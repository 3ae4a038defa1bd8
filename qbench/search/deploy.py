"""Deployable output: ``<out>/int8-best/``, the best INT8 configuration found, with its verdict.

Written whenever an INT8 configuration exists, whether it passes, fails or is inconclusive; the
verdict says which (``verdict.json``, and the first line of ``README.txt``). The folder is
self-contained, so ``qbench build --from <out>/int8-best`` (or trtexec/Polygraphy run inside it)
needs nothing else:

- ``model.onnx``: the float model, with every unnamed node given the name qbench shows for it, so
  the layer names in ``keep_float.txt`` and the flags name layers TensorRT's ONNX parser creates
  (the parser names each layer after its ONNX node).
- ``calibration.cache``: the chosen ranges in TensorRT's calibration-cache text format, and
  ``ranges.json``: the same ranges with their provenance (method, samples, histogram summary).
- ``keep_float.txt``: one layer name per line, the layers kept out of INT8.
- ``model_qdq.onnx``: the explicit-quantization model (Q/DQ from the same ranges, no Q/DQ on the
  kept layers): the input for TensorRT 10's explicit path and TensorRT 11's strongly typed networks.
- ``trtexec_flags.txt`` / ``polygraphy_flags.txt``: TensorRT 10 implicit quantization with the
  calibration cache and the kept layers constrained (``--precisionConstraints=obey``).
- ``build_trt10.py``: the same with the TensorRT 10 Python API.
None of these has been run on real TensorRT here (no machine of this workplace has it).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qbench import atomic
from qbench.errors import QbenchError
from qbench.jsonsafe import jsonable
from qbench.search.models import int8_model

FOLDER = "int8-best"
PRECISION_NAMES = {"fp32": ("fp32", "float32", "trt.float32"), "fp16": ("fp16", "float16", "trt.float16")}


@dataclass
class Int8Config:
    """What ``write`` needs: the ranges, the layers kept in float, and the judged result."""

    ranges: object  # qbench.ranges.Ranges
    calibrator: str  # method name of the ranges (e.g. "minmax", "best-of")
    keep_float: list[str]  # node display names (qbench.model.ModelGraph.node_names)
    result: object  # TaskResult on the judging part
    part: str
    layers_quantized: int  # quantized layers of the model (the denominator of the float share)
    float_precision: str = "fp32"
    extra: dict = field(default_factory=dict)  # holdout, search summary, ...

    @property
    def float_share(self) -> float:
        return len(self.keep_float) / self.layers_quantized if self.layers_quantized else 0.0


def named_model(graph) -> onnx.ModelProto:
    """A copy of the float model where every unnamed node carries its display name."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    for node, name in zip(model.graph.node, graph.node_names):
        if not node.name:
            node.name = name
    return model


def trtexec_flags(keep_float, precision: str = "fp32") -> str:
    spec = ",".join(f"{n}:{PRECISION_NAMES[precision][0]}" for n in keep_float)
    flags = ["--onnx=model.onnx", "--int8", "--fp16", "--calib=calibration.cache"]
    if spec:
        flags += [f"--layerPrecisions={spec}", "--precisionConstraints=obey"]
    return " ".join(shlex.quote(f) for f in flags + ["--saveEngine=model.engine"])


def polygraphy_flags(keep_float, precision: str = "fp32") -> str:
    flags = ["convert", "model.onnx", "--int8", "--fp16", "--calibration-cache", "calibration.cache"]
    if keep_float:
        flags += ["--layer-precisions", *[f"{n}:{PRECISION_NAMES[precision][1]}" for n in keep_float],
                  "--precision-constraints", "obey"]
    return " ".join(shlex.quote(f) for f in flags + ["-o", "model.engine"])


BUILDER_SNIPPET = '''"""Build the INT8 engine of this folder with the TensorRT 10 Python API (implicit quantization:
calibration cache + layer precision constraints). Written by qbench; never run by qbench itself."""
import tensorrt as trt

HERE = __import__("pathlib").Path(__file__).resolve().parent
KEEP_FLOAT = {keep!r}  # layer name -> precision, from keep_float.txt
WORKSPACE = 4 << 30


class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
    """Answers every scale from calibration.cache; asks for no data."""

    def __init__(self):
        trt.IInt8EntropyCalibrator2.__init__(self)

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        return None

    def read_calibration_cache(self):
        return (HERE / "calibration.cache").read_bytes()

    def write_calibration_cache(self, cache):
        pass


logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
if not parser.parse_from_file(str(HERE / "model.onnx")):
    raise SystemExit("; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors)))
config = builder.create_builder_config()
config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
config.set_flag(trt.BuilderFlag.INT8)
config.set_flag(trt.BuilderFlag.FP16)
config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
config.int8_calibrator = CacheOnlyCalibrator()
found = set()
for i in range(network.num_layers):
    layer = network.get_layer(i)
    if layer.name in KEEP_FLOAT:
        layer.precision = getattr(trt, KEEP_FLOAT[layer.name])
        found.add(layer.name)
missing = sorted(set(KEEP_FLOAT) - found)
if missing:
    print("warning: no TensorRT layer named", ", ".join(missing))
# dynamic inputs need an optimization profile (and a calibration profile): add them here, e.g.
# profile = builder.create_optimization_profile(); profile.set_shape("x", MIN, OPT, MAX)
# config.add_optimization_profile(profile); config.set_calibration_profile(profile)
engine = builder.build_serialized_network(network, config)
if engine is None:
    raise SystemExit("TensorRT could not build the engine")
(HERE / "model.engine").write_bytes(bytes(engine))
print(HERE / "model.engine")
'''


def write(out, graph, config: Int8Config, *, model_path=None) -> Path:
    """Write ``<out>/int8-best/`` for ``config``; returns the folder. Each file is written atomically,
    and the verdict last, so a folder with a verdict.json is complete."""
    folder = atomic.ensure_dir(Path(out) / FOLDER)
    atomic.write_bytes(folder / "model.onnx", named_model(graph).SerializeToString())
    config.ranges.write_trt_cache(folder / "calibration.cache")
    config.ranges.write_json(folder / "ranges.json")
    atomic.write_text(folder / "keep_float.txt", "".join(f"{n}\n" for n in config.keep_float))
    qdq = int8_model(graph, config.ranges, config.keep_float)
    atomic.write_bytes(folder / "model_qdq.onnx", qdq.SerializeToString())
    atomic.write_text(folder / "trtexec_flags.txt", trtexec_flags(config.keep_float, config.float_precision) + "\n")
    atomic.write_text(folder / "polygraphy_flags.txt", polygraphy_flags(config.keep_float, config.float_precision) + "\n")
    keep = {n: PRECISION_NAMES[config.float_precision][1] for n in config.keep_float}
    atomic.write_text(folder / "build_trt10.py", BUILDER_SNIPPET.format(keep=keep))
    r = config.result
    verdict = {
        "verdict": r.verdict, "reason": r.reason, "task": getattr(r, "task", ""), "primary": r.primary,
        "metrics": dict(r.metrics), "part": config.part, "calibrator": config.calibrator,
        "keep_float": list(config.keep_float), "float_precision": config.float_precision,
        "layers_quantized": config.layers_quantized, "float_share": round(config.float_share, 4),
        "model": str(model_path) if model_path else "", "model_digest": graph.digest, **config.extra,
    }
    atomic.write_text(folder / "README.txt", readme(verdict))
    atomic.write_text(folder / "verdict.json", json.dumps(jsonable(verdict), indent=1))
    return folder


def readme(v: dict) -> str:
    kept = ", ".join(v["keep_float"]) or "none"
    return (f"INT8 ({v['calibrator']} ranges) with {len(v['keep_float'])} of {v['layers_quantized']} quantized layers kept "
            f"in {v['float_precision']}: {v['verdict'].upper()} on the {v['part']}.\n{v['reason']}\n\n"
            f"Kept in float: {kept}\n\n"
            "Build (TensorRT 10, implicit quantization):  trtexec $(cat trtexec_flags.txt)\n"
            "                                        or:  polygraphy $(cat polygraphy_flags.txt)\n"
            "                                        or:  python build_trt10.py\n"
            "                                        or:  qbench build --from .  -o model.engine\n"
            "Explicit quantization (TensorRT 10 explicit / 11 strongly typed):  trtexec --onnx=model_qdq.onnx --int8 --fp16\n"
            "None of these was run on real TensorRT by qbench; the verdict comes from ONNX Runtime CPU simulation.\n")


def read(folder) -> dict:
    """What ``qbench build --from`` needs: paths and the kept layers; one clear error when incomplete."""
    folder = Path(folder)
    need = ["model.onnx", "calibration.cache", "keep_float.txt", "verdict.json"]
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        raise QbenchError(f"--from {folder}: not an int8-best folder (missing {', '.join(missing)})")
    try:
        verdict = json.loads((folder / "verdict.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QbenchError(f"--from {folder}: verdict.json is not JSON ({type(exc).__name__})") from None
    keep = [line.strip() for line in (folder / "keep_float.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    return {"model": folder / "model.onnx", "cache": folder / "calibration.cache", "keep_float": keep,
            "float_precision": verdict.get("float_precision", "fp32"), "verdict": verdict}
