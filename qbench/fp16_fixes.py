"""Deployable remedies for FP16 risks: per-layer FP32 constraints written for trtexec, Polygraphy
and the TensorRT 10 Python builder API, and the ONNX rewrite qbench can do instead.

TensorRT's ONNX parser names each network layer after the ONNX node it comes from, so the node
names of the headroom analysis are the layer names the constraints need. Constraining a layer to
FP32 takes two settings: the layer's precision, and a builder flag that makes TensorRT obey it
(``--precisionConstraints=obey`` / ``--precision-constraints obey`` /
``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``); without the flag the precision is only a preference.
See docs/FP16.md for the sources and what was never run on real TensorRT.
"""

from __future__ import annotations

import shlex

import pandas as pd

FIX_COLUMNS = ["risk", "node", "remedy", "how"]


def precision_flags(layers, model: str = "model.onnx") -> dict[str, str]:
    """The same FP32 constraint on ``layers`` in three deployable forms."""
    layers = list(dict.fromkeys(layers))
    if not layers:
        return {}
    spec = ",".join(f"{name}:fp32" for name in layers)
    trtexec = (f"trtexec --onnx={shlex.quote(model)} --fp16 --precisionConstraints=obey "
               f"--layerPrecisions={shlex.quote(spec)} --layerOutputTypes={shlex.quote(spec)}")
    polygraphy = (f"polygraphy convert {shlex.quote(model)} --fp16 --precision-constraints obey --layer-precisions "
                  + " ".join(shlex.quote(f"{name}:float32") for name in layers) + " -o model.engine")
    builder = "\n".join([
        "import tensorrt as trt  # TensorRT 10",
        f"FP32_LAYERS = {set(layers)!r}",
        "config.set_flag(trt.BuilderFlag.FP16)",
        "config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)",
        "for i in range(network.num_layers):",
        "    layer = network.get_layer(i)",
        "    if layer.name in FP32_LAYERS:",
        "        layer.precision = trt.float32",
        "        for j in range(layer.num_outputs):",
        "            layer.set_output_type(j, trt.float32)",
    ])
    return {"trtexec": trtexec, "polygraphy": polygraphy, "tensorrt": builder}


def fix_table(headroom, rewrite=None) -> pd.DataFrame:
    """One row per risk of ``headroom`` (qbench.compare.headroom.Headroom): the layer(s) to keep in
    FP32, and the rewrite that removes the risk where qbench has one (``rewrite``: a RewriteResult
    from qbench.simulate.fp16_rewrite.make_fp16_safe, whose log names the pairs it rescaled)."""
    rewritten = " ".join(rewrite.log) if rewrite is not None else ""
    rows = []
    for _, row in headroom.parameters.iterrows():
        layers = [row["node"]] + ([row["folded_into"]] if row["folded_into"] else [])
        how = (f"keep {', '.join(layers)} in FP32: --layerPrecisions=" + ",".join(f"{n}:fp32" for n in layers)
               + " --precisionConstraints=obey")
        remedy = "FP32 layer constraint"
        if row["op_type"] == "BatchNormalization" and row["node"] in rewritten:
            remedy, how = "ONNX rewrite (qbench)", f"{how}; or the rewrite: {rewritten}"
        elif row["op_type"] == "BatchNormalization" and row["folded_into"]:
            how += f"; or fold {row['node']} into {row['folded_into']} (qbench.simulate.fp16_rewrite.fold_batchnorm)"
        rows.append({"risk": f"{row['role']} {row['parameter']} {row['issue']} ({row['value']})", "node": row["node"],
                     "remedy": remedy, "how": how})
    for _, row in headroom.risky_tensors.iterrows():
        how = f"--layerPrecisions={row['node']}:fp32 --layerOutputTypes={row['node']}:fp32 --precisionConstraints=obey"
        remedy = "FP32 layer constraint"
        if row["node"] in rewritten:
            remedy, how = "ONNX rewrite (qbench)", f"{how}; or the rewrite: {rewritten}"
        rows.append({"risk": f"{row['tensor']} peaks at {row['fp32_peak']:.6g} ({100 * row['fp16_fraction']:.0f} % of 65504)",
                     "node": row["node"], "remedy": remedy, "how": how})
    return pd.DataFrame(rows, columns=FIX_COLUMNS)
