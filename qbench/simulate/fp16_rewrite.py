"""ONNX rewrites that make a model safe to store and run in FP16 without changing what it computes,
and the re-run that proves it.

Two rewrites, both exact in real arithmetic and done in float32 (numpy) on a copy of the model:

- ``fold_batchnorm``: BatchNormalization into the preceding Conv, as TensorRT would do it:
  with k = scale / sqrt(var + eps), W' = W * k (per output channel) and b' = (b - mean) * k + bias.
  The BN node disappears and the Conv writes its output tensor, so the statistics are never stored
  in FP16 (what the ``likely`` FP16 mode assumes the engine does).
- ``rescale_pair``: a Conv and the BatchNormalization reading it, by a power of two s: W/s and b/s
  make the Conv's output s times smaller; mean/s and var/s^2 make the BN give the same result
  (BN((x - m)/s) with var/s^2 is BN(x - m) with var, up to eps, whose weight grows by s^2 and stays
  negligible beside the variance). With s a power of two the divisions are exact in float32, the
  Conv's output gains headroom and the variance comes back inside FP16's range. Tensor names are
  kept; the Conv's output holds the scaled value (``scaled``).

``make_fp16_safe`` applies ``rescale_pair`` to every Conv -> BN pair whose statistics overflow FP16
or whose Conv output reaches the risk fraction, and ``prove`` re-runs the FP16 simulation of the
original and rewritten models against the original FP32 outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
import pandas as pd
from onnx import numpy_helper

from qbench import atomic
from qbench.data import iter_samples
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.runners import OrtRunner
from qbench.simulate.fp16 import build_fp16_model, fold_plan, node_name_lookup

FP16_MAX = 65504.0


@dataclass
class RewriteResult:
    model: onnx.ModelProto
    log: list[str] = field(default_factory=list)
    scaled: dict[str, float] = field(default_factory=dict)  # tensor -> factor its value was divided by
    removed: list[str] = field(default_factory=list)  # nodes folded away
    skipped: list[str] = field(default_factory=list)  # pairs at risk left alone, each with the reason

    def graph(self, name: str = "rewritten") -> ModelGraph:
        return ModelGraph.from_proto(self.model, name=name)

    def save(self, path) -> None:
        atomic.write_bytes(path, self.model.SerializeToString())


def _copy(graph: ModelGraph) -> tuple[onnx.ModelProto, dict, dict]:
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    inits = {t.name: t for t in model.graph.initializer}
    names = {graph.node_names[i]: node for i, node in enumerate(model.graph.node)}
    return model, inits, names


def _array(inits: dict, name: str) -> np.ndarray:
    if name not in inits:
        raise QbenchError(f"{name!r} is computed at run time, not a stored parameter: cannot rewrite it")
    return numpy_helper.to_array(inits[name]).astype(np.float64)


def _set(model, inits: dict, name: str, values: np.ndarray) -> None:
    """Replace initializer ``name`` (a fresh one when it is shared, so other readers keep theirs)."""
    inits[name].CopyFrom(numpy_helper.from_array(values.astype(np.float32), name))


def _pair(graph: ModelGraph, names: dict, bn_name: str):
    bn = names.get(bn_name)
    if bn is None or bn.op_type != "BatchNormalization":
        raise QbenchError(f"no BatchNormalization node named {bn_name!r} in {graph.name}")
    conv = graph.producer.get(bn.input[0])
    if conv is None or conv.op_type != "Conv" or len(graph.consumers.get(bn.input[0], [])) != 1:
        raise QbenchError(f"{bn_name} does not follow a Conv read by nothing else: nothing to fold or rescale it with")

    conv_name = node_name_lookup(graph)(conv)
    return names[conv_name], bn, conv_name


def _private(model, inits: dict, node, slot: int, graph: ModelGraph) -> str:
    """The initializer at ``node.input[slot]``, copied under a new name when another node reads it."""
    name = node.input[slot]
    if len(graph.consumers.get(name, [])) <= 1:
        return name
    fresh = f"{name}::rewritten::{node.name or node.output[0]}"
    tensor = onnx.TensorProto()
    tensor.CopyFrom(inits[name])
    tensor.name = fresh
    model.graph.initializer.append(tensor)
    inits[fresh] = model.graph.initializer[-1]
    node.input[slot] = fresh
    return fresh


def fold_batchnorm(graph: ModelGraph, bn_names) -> RewriteResult:
    """Fold each named BatchNormalization into the Conv before it, in float32 (float64 math)."""
    model, inits, names = _copy(graph)
    result = RewriteResult(model)
    for bn_name in bn_names:
        conv, bn, conv_name = _pair(graph, names, bn_name)
        scale, bias, mean, var = (_array(inits, bn.input[i]) for i in (1, 2, 3, 4))
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        k = scale / np.sqrt(var + eps)
        w_name = _private(model, inits, conv, 1, graph)
        w = _array(inits, w_name)
        _set(model, inits, w_name, w * k.reshape((-1,) + (1,) * (w.ndim - 1)))
        b = _array(inits, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros_like(k)
        b_name = f"{conv_name}::folded_bias"
        model.graph.initializer.append(numpy_helper.from_array(((b - mean) * k + bias).astype(np.float32), b_name))
        inits[b_name] = model.graph.initializer[-1]
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        model.graph.node.remove(bn)
        result.removed.append(bn_name)
        result.log.append(f"folded {bn_name} into {conv_name} in FP32 (weights x scale/sqrt(var+eps), "
                          f"variance up to {var.max():.4g} never stored)")
    _drop_unused(model)
    return result


def rescale_pair(graph: ModelGraph, bn_name: str, factor: float) -> RewriteResult:
    """Divide the Conv before ``bn_name`` by ``factor`` (a power of two) and compensate in the BN."""
    if factor <= 0 or 2 ** round(math.log2(factor)) != factor:
        raise QbenchError(f"the rescale factor must be a positive power of two (exact in float32), not {factor}")
    model, inits, names = _copy(graph)
    conv, bn, conv_name = _pair(graph, names, bn_name)
    w_name = _private(model, inits, conv, 1, graph)
    _set(model, inits, w_name, _array(inits, w_name) / factor)
    if len(conv.input) > 2 and conv.input[2]:
        b_name = _private(model, inits, conv, 2, graph)
        _set(model, inits, b_name, _array(inits, b_name) / factor)
    mean_name = _private(model, inits, bn, 3, graph)
    var_name = _private(model, inits, bn, 4, graph)
    var = _array(inits, var_name)
    _set(model, inits, mean_name, _array(inits, mean_name) / factor)
    _set(model, inits, var_name, var / factor ** 2)
    result = RewriteResult(model, scaled={conv.output[0]: float(factor)})
    result.log.append(f"rescaled {conv_name} -> {bn_name} by 1/{factor:g}: {conv_name}'s output is {factor:g}x smaller, "
                      f"variance {var.max():.4g} -> {var.max() / factor ** 2:.4g}; {bn_name}'s output is unchanged")
    _drop_unused(model)
    return result


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def pair_factor(var_max: float, conv_peak: float, fraction: float) -> float:
    """The smallest power of two that brings the variance under FP16's maximum times ``fraction``
    and the Conv's peak under the same mark (1 when both already are)."""
    budget = FP16_MAX * fraction
    need = max(math.sqrt(var_max / budget) if var_max > 0 else 1.0, conv_peak / budget if conv_peak > 0 else 1.0, 1.0)
    return float(2 ** math.ceil(math.log2(need))) if need > 1 else 1.0


def make_fp16_safe(graph: ModelGraph, peaks: dict[str, float], fraction: float = 1 / 8) -> RewriteResult:
    """Rescale every Conv -> BatchNormalization pair whose BN statistics overflow FP16 or whose Conv
    output peaks above ``fraction`` of 65504 (``peaks``: FP32 tensor peaks)."""
    current = graph
    total = RewriteResult(graph.model)
    for bn_name, target in fold_plan(graph):
        if target is None:
            continue
        names = {current.node_names[i]: n for i, n in enumerate(current.model.graph.node)}
        conv, bn, conv_name = _pair(current, names, bn_name)
        # weights made by a node (ConstantOfShape, a Cast of FP16 weights, ...) cannot be rescaled here
        computed = [n for n in (*conv.input[1:3], *bn.input[3:5]) if n and n not in current.initializer_names]
        if computed:
            total.skipped.append(f"{conv_name} -> {bn_name}: {computed[0]!r} is computed at run time, "
                                 "not a stored parameter")
            continue
        var = current.initializer(bn.input[4])
        factor = pair_factor(float(np.max(var)), float(peaks.get(bn.input[0], 0.0)), fraction)
        if factor == 1.0:
            continue
        step = rescale_pair(current, bn_name, factor)
        total.log += step.log
        total.scaled.update(step.scaled)
        current = step.graph(graph.name)
    total.model = current.model
    if not total.log:
        total.log.append("nothing to rewrite: no Conv -> BatchNormalization pair beyond FP16's headroom")
    return total


def prove(graph: ModelGraph, result: RewriteResult, dataset, *, limit: int | None = 2, accumulate=()) -> pd.DataFrame:
    """Re-run: the original model's FP32 outputs against (a) the rewritten model in FP32 and (b) the
    FP16 simulation, both modes, of the original and of the rewritten model. One row per variant
    and output; a fix is proven when the rewritten rows pass where the original ones fail."""
    rewritten = result.graph(graph.name)
    variants = {"rewritten FP32": OrtRunner(rewritten, name="rewritten", capture=None)}
    for label, g in (("original", graph), ("rewritten", rewritten)):
        for mode in ("likely", "worst"):
            acc = [a for a in accumulate if a in set(g.node_names)] if mode == "worst" else ()
            sim = build_fp16_model(g, mode=mode, accumulate=acc)
            variants[f"{label} FP16 {mode}"] = OrtRunner(sim.model, name=label, capture=None, optimize=False)
    reference = OrtRunner(graph, name="fp32", capture=None)
    sums: dict = {}
    for feed in iter_samples(dataset, limit):
        ref = reference.run(feed)
        for label, runner in variants.items():
            out = runner.run(feed)
            for name in graph.output_names:
                r = ref[name].astype(np.float64).reshape(-1)
                c = out[name].astype(np.float64).reshape(-1)
                s = sums.setdefault((label, name), {"dot": 0.0, "rr": 0.0, "cc": 0.0, "ee": 0.0, "bad": 0, "max_err": 0.0})
                finite = np.isfinite(c)
                s["bad"] += int((~finite).sum())
                c = np.where(finite, c, 0.0)
                s["dot"] += float(r @ c)
                s["rr"] += float(r @ r)
                s["cc"] += float(c @ c)
                s["ee"] += float((c - r) @ (c - r))
                s["max_err"] = max(s["max_err"], float(np.abs(c - r).max()) if r.size else 0.0)
    rows = []
    for (label, name), s in sums.items():
        cos = s["dot"] / math.sqrt(s["rr"] * s["cc"]) if s["rr"] > 0 and s["cc"] > 0 else (1.0 if s["rr"] == s["cc"] else 0.0)
        rows.append({"variant": label, "output": name, "cosine": cos, "rel_l2": math.sqrt(s["ee"] / s["rr"]) if s["rr"] else 0.0,
                     "max_abs_err": s["max_err"], "nonfinite": s["bad"]})
    return pd.DataFrame(rows)
