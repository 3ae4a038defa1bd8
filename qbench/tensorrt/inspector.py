"""Per-layer precision and fusions of an engine, for the report.

``engine_information(engine, trt)`` asks TensorRT's engine inspector for its JSON (the engine must be
built with ProfilingVerbosity.DETAILED, which builder.py sets). ``layers_frame(info)`` turns that JSON
into a DataFrame, one row per engine layer. trtexec's ``--exportLayerInfo`` writes the same JSON, so
``qbench.runners.imported`` reads trtexec files through the same function. The parsing is tested on
real trtexec output (tests/data/trtexec); the inspector call itself was never run on real TensorRT.
"""

from __future__ import annotations

import json
import re

from qbench.errors import QbenchError

_PRECISIONS = [("fp32", "FP32"), ("fp16", "FP16"), ("bf16", "BF16"), ("fp8", "FP8"), ("int8", "Int8"),
               ("int32", "Int32"), ("int64", "Int64"), ("bool", "Bool"), ("fp4", "FP4"), ("int4", "Int4")]
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


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


def parse_layer_info(text: str, source: str = "layer info") -> dict:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QbenchError(f"{source}: not JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise QbenchError(f"{source}: expected TensorRT layer information (a JSON object with 'Layers')")
    # layers_frame reads dict layers' Inputs/Outputs as lists of dicts: check that here, so a
    # malformed file is one line instead of an AttributeError
    for i, layer in enumerate(info["Layers"]):
        if isinstance(layer, str):
            continue
        ok = isinstance(layer, dict) and all(
            layer.get(key) is None or (isinstance(layer[key], list) and all(isinstance(t, dict) for t in layer[key]))
            for key in ("Inputs", "Outputs"))
        if not ok:
            raise QbenchError(f"{source}: layer {i} is malformed")
    return info


def precision_of(format_text: str) -> str:
    """'Thirty-two wide channel vectorized row major Int8 format' -> 'int8'."""
    for short, word in _PRECISIONS:
        if re.search(rf"\b{word}\b", format_text or "", flags=re.IGNORECASE):
            return short
    if re.search(r"\bfloat\b|\bhalf\b", format_text or "", flags=re.IGNORECASE):
        return "fp16" if "half" in format_text.lower() else "fp32"
    return ""


def fused_nodes(layer: dict) -> list[str]:
    """The ONNX nodes a layer implements: from 'Metadata' ([ONNX Layer: X] per fused node, TensorRT
    >= 8.6 with detailed verbosity), else from the ' + '-joined layer name."""
    meta = layer.get("Metadata") or ""
    found = _ONNX_LAYER.findall(meta)
    if found:
        return found
    name = layer.get("Name", "")
    return [part.strip() for part in name.split(" + ")] if " + " in name else [name]


def layers_frame(info: dict):
    import pandas as pd

    rows = []
    for index, layer in enumerate(info["Layers"]):
        if isinstance(layer, str):  # low verbosity: names only
            rows.append({"index": index, "layer": layer, "type": "", "precision": "", "inputs": "", "outputs": "",
                         "fused": 1, "onnx_nodes": layer, "tactic": ""})
            continue
        outs = layer.get("Outputs") or []
        ins = layer.get("Inputs") or []
        out_prec = sorted({precision_of(o.get("Format/Datatype", "")) for o in outs} - {""})
        in_prec = sorted({precision_of(i.get("Format/Datatype", "")) for i in ins} - {""})
        nodes = fused_nodes(layer)
        rows.append({
            "index": index,
            "layer": layer.get("Name", ""),
            "type": layer.get("LayerType", ""),
            "precision": "/".join(out_prec or in_prec),
            "input_precision": "/".join(in_prec),
            "inputs": ", ".join(i.get("Name", "") for i in ins),
            "outputs": ", ".join(o.get("Name", "") for o in outs),
            "fused": len(nodes),
            "onnx_nodes": ", ".join(nodes),
            "tactic": layer.get("TacticName", layer.get("TacticValue", "")),
        })
    return pd.DataFrame(rows)
