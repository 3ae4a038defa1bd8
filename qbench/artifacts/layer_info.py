"""trtexec ``--exportLayerInfo`` / TensorRT engine-inspector JSON: pure parsing, no TensorRT needed.

``parse_layer_info`` checks the document, ``layers_frame`` gives one row per engine layer for the
report, ``tensor_formats`` the precision every engine tensor is stored in (what as-built simulation
reproduces, ``qbench.simulate.asbuilt``). Formats are TensorRT's words, e.g. "Thirty-two wide channel
vectorized row major Int8 format"; the layer names join the fused ONNX nodes with " + ".
"""

from __future__ import annotations

import json
import re

from qbench.errors import QbenchError

_PRECISIONS = [("fp32", "FP32"), ("fp16", "FP16"), ("bf16", "BF16"), ("fp8", "FP8"), ("int8", "Int8"),
               ("int32", "Int32"), ("int64", "Int64"), ("bool", "Bool"), ("fp4", "FP4"), ("int4", "Int4")]
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


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


def tensor_formats(info: dict) -> dict[str, dict]:
    """Every engine tensor named in the layer table -> {"precision", "format", "layer", "producer_type",
    "origin"}: the storage precision TensorRT chose (from the producing layer's Outputs, else from a
    consumer's Inputs for network inputs). Tensors absent here were fused away inside a layer."""
    out: dict[str, dict] = {}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        for t in layer.get("Outputs") or []:
            name = t.get("Name", "")
            if name:
                out[name] = {"precision": precision_of(t.get("Format/Datatype", "")), "format": t.get("Format/Datatype", ""),
                             "layer": layer.get("Name", ""), "producer_type": layer.get("LayerType", ""),
                             "origin": layer.get("Origin", "")}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        for t in layer.get("Inputs") or []:
            name = t.get("Name", "")
            if name and name not in out:
                out[name] = {"precision": precision_of(t.get("Format/Datatype", "")), "format": t.get("Format/Datatype", ""),
                             "layer": "", "producer_type": "", "origin": ""}
    return out
