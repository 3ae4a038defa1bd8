"""Per-layer sensitivity by the task metric: what each quantized layer costs, and what keeping it buys.

For every quantized layer L (``models.quantized_layers``), on the judging part:

- ``quant_only``: the judge's score with only L quantized (everything else FP32), minus the score of
  FP32 itself (``loss_alone``, <= 0 when L hurts on its own);
- ``float_only``: the score with every layer quantized except L, minus the full-INT8 score
  (``gain_if_float``, > 0 when keeping L in float helps).

The two disagree on purpose: a layer can be harmless alone yet the one whose float keeping repairs
the network (errors that compound), or ruinous alone and still not enough to fix (errors spread over
many layers). The ranking sorts by ``gain_if_float``, then by the same change in the judge's finer
per-sample measure (``judging.margin``: on a few samples an agreement rate is coarse and ties),
then by ``-loss_alone``.

Economy: one gated model and one ONNX Runtime session for all 2 x L + 2 variants
(``models.gated_model``); the FP32 outputs of the judging samples are computed once
(``judging.Reference``), and each variant runs the whole judging part as one batch where the model
allows it. Nothing is rebuilt or reloaded between variants. On a large judging part the ranking is
measured on the ``samples`` worst samples of full INT8 (by the judge's own per-sample order,
``TaskResult.worst``): the samples INT8 already gets right say little about which layer repairs it,
and every set the search then keeps is verified on the whole judging part. Screening
(``local_noise``, ``screen``): when only N layers can be afforded, the diagnosis's culprits and then
the layers reading the noisiest quantized values are measured; the others carry the proxy only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qbench import atomic
from qbench.search.judging import margin, session
from qbench.search.models import GATE, PLACEMENT, gated_model
from qbench.search.sweep import local_error
from qbench.simulate.common import resolve_keep_float
from qbench.simulate.placement import plan_int8
from qbench.simulate.qdq import quantize_weight

COLUMNS = ["rank", "layer", "op_type", "gain_if_float", "loss_alone", "margin_gain_if_float", "margin_loss_alone",
           "score_float_only", "score_quant_only", "verdict_float_only", "local_nsr_db", "measured", "culprit", "part"]


class GatedRunner:
    """Runs the gated model with a set of layers kept in float (gate 0) and judges the outputs."""

    def __init__(self, graph, ranges, reference, judge, keep_float=(), only=None):
        model, self.layers = gated_model(graph, ranges, keep_float, only)
        self.session = session(model, optimize=False)
        # "only this layer quantized" needs every other layer in float, the ungated ones too: a
        # second session where they are fixed in float (the same one when every layer is gated)
        self.alone_session = self.session if only is None else session(gated_model(graph, ranges, keep_float, only,
                                                                                   rest="float")[0], optimize=False)
        self.reference = reference
        self.judge = judge
        self._gate = GATE
        self.runs = 0

    def on(self, reference) -> "GatedRunner":
        """The same gated session judging another reference (e.g. a subset of the samples)."""
        other = object.__new__(GatedRunner)
        other.__dict__.update(self.__dict__)
        other.reference = reference
        return other

    def evaluate(self, kept) -> object:
        """TaskResult with the layers in ``kept`` (names) in float and every other layer quantized."""
        kept = set(kept)
        return self._judge(self.session, {n: n not in kept for n in self.layers})

    def evaluate_alone(self, quantized) -> object:
        """TaskResult with only the layers in ``quantized`` quantized and every other layer in float."""
        quantized = set(quantized)
        return self._judge(self.alone_session, {n: n in quantized for n in self.layers})

    def _judge(self, sess, on: dict):
        gates = {f"{self._gate}{i}": np.array(1.0 if on[name] else 0.0, dtype=np.float32)
                 for i, name in enumerate(self.layers)}
        self.runs += 1
        return self.reference.judge(self.judge, self.reference.run(sess, gates))


@dataclass
class Sensitivity:
    frame: pd.DataFrame  # one row per layer, ranked (COLUMNS)
    int8: object  # TaskResult of full INT8
    fp32: object  # TaskResult of FP32 against itself (all gates 0)
    part: str
    seconds: float
    runs: int
    culprits: list[str] = field(default_factory=list)

    def ranked(self) -> list[str]:
        """Measured layers, best gain first (the mixed search can only keep layers it can vary)."""
        return list(self.frame.loc[self.frame["measured"], "layer"])


def worst_samples(runner: GatedRunner, k: int | None):
    """(runner on the ``k`` worst judging samples of full INT8, the full-INT8 result on all of them)."""
    full = runner.evaluate(())
    n = len(runner.reference.samples)
    if k is None or k >= n:
        return runner, full
    rows = full.worst(k)
    picked = sorted(int(i) for i in rows["sample"]) if "sample" in rows else list(range(k))
    part = f"{runner.reference.part}, {len(picked)} worst of {n} samples"
    return runner.on(runner.reference.subset(picked, part)), full


def local_noise(graph, ranges, histograms, layers, keep_float=()) -> dict[str, float]:
    """Per layer, the quantization noise-to-signal ratio (dB) of what it reads, with no model run:
    for each quantized input activation, E(amax) / mean(x**2) from its calibration histogram
    (``sweep.local_error``); for its weight, ||w - dq(q(w))||**2 / ||w||**2. Summed over the inputs.
    A screening proxy only (it ignores how the error propagates): it orders which layers are
    measured by the task first when not all of them can be."""
    keep_tensors, keep_nodes = resolve_keep_float(graph, keep_float)
    plan = plan_int8(graph, keep_tensors, keep_nodes, PLACEMENT)
    cache: dict[str, float] = {}

    def tensor_nsr(name: str) -> float:
        if name in cache:
            return cache[name]
        value = 0.0
        if name in plan.weights:
            w = graph.initializer(name).astype(np.float64)
            codes, scale = quantize_weight(w, plan.weights[name])
            axis = plan.weights[name]
            shape = [1] * w.ndim
            if axis is not None:
                shape[axis] = -1
            deq = codes.astype(np.float64) * np.asarray(scale, np.float64).reshape(shape if axis is not None else ())
            power = float((w ** 2).sum())
            value = float(((w - deq) ** 2).sum()) / power if power > 0 else 0.0
        else:
            hist = (histograms or {}).get(plan.range_tensor(name))
            rng = plan.range_tensor(name)
            if hist is not None and getattr(hist, "counts", None) is not None and rng in ranges:
                centres = (hist.edges[:-1] + hist.edges[1:]) / 2
                power = float((hist.counts * centres ** 2).sum() / max(hist.counts.sum(), 1))
                value = local_error(hist.counts, hist.edges, ranges.amax(rng)) / power if power > 0 else 0.0
        cache[name] = value
        return value

    quantized = set(plan.activations) | set(plan.weights)
    wanted = set(layers)
    out = {}
    for name, node in zip(graph.node_names, graph.model.graph.node):
        if name in wanted:
            nsr = sum(tensor_nsr(i) for i in node.input if i in quantized)
            out[name] = 10 * np.log10(nsr) if nsr > 0 else -np.inf
    return out


def screen(layers, noise: dict, culprits=(), limit: int | None = None) -> list[str]:
    """The layers to measure by the task, in order: the diagnosis's culprit layers, then by local
    noise (worst first); at most ``limit`` (None: all)."""
    marked = set(culprits)
    order = sorted(layers, key=lambda n: (n not in marked, -noise.get(n, -np.inf)))
    return order if limit is None else order[:limit]


def measure(runner: GatedRunner, graph, *, culprits=(), progress: bool = False, echo=None,
            deadline: float | None = None, all_layers=None, noise: dict | None = None, order=None) -> Sensitivity:
    """Both variants for every layer the runner gates (see module docstring), in the runner's order.
    ``all_layers``: every quantized layer (rows for those not measured carry only the local noise);
    ``culprits``: tensor names from the diagnosis, marked on the layers that produce or read them;
    ``deadline``: a ``time.perf_counter`` value after which the remaining layers are not measured;
    ``order``: the order to measure them in (``screen``; default the graph order)."""
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    layers = runner.layers
    int8 = runner.evaluate(())
    fp32 = runner.evaluate_alone(())
    ops = dict(zip(graph.node_names, (n.op_type for n in graph.model.graph.node)))
    every = list(all_layers or layers)
    marked = culprit_layers(graph, culprits, every)
    noise = noise or {}
    rows = []
    bar = _bar(len(layers), progress)
    measured = 0
    for name in [n for n in (order or layers) if n in set(layers)]:
        if deadline is not None and time.perf_counter() > deadline:
            break
        float_only = runner.evaluate([name])
        quant_only = runner.evaluate_alone([name])
        rows.append(_row(name, ops, float_only, quant_only, int8, fp32, marked, noise))
        measured += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    done = {r["layer"] for r in rows}
    rows += [_row(name, ops, None, None, int8, fp32, marked, noise) for name in every if name not in done]
    frame = pd.DataFrame(rows)
    frame["_noise"] = frame["local_nsr_db"].fillna(-np.inf)
    frame = frame.sort_values(["measured", "gain_if_float", "margin_gain_if_float", "loss_alone", "margin_loss_alone", "_noise"],
                              ascending=[False, False, False, True, True, False], kind="stable",
                              na_position="last").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["part"] = runner.reference.part
    seconds = time.perf_counter() - started
    runs = 2 * measured + 2
    say(f"qbench: sensitivity: {measured} of {len(every)} layers measured by the task ({runs} variants) in "
        f"{seconds:.1f} s on the {runner.reference.part}")
    return Sensitivity(frame[COLUMNS], int8, fp32, runner.reference.part, seconds, runs, sorted(marked))


def _row(name, ops, float_only, quant_only, int8, fp32, marked, noise) -> dict:
    nan = float("nan")
    return {"layer": name, "op_type": ops.get(name, ""),
            "gain_if_float": float(float_only.score) - float(int8.score) if float_only else nan,
            "loss_alone": float(quant_only.score) - float(fp32.score) if quant_only else nan,
            "margin_gain_if_float": margin(float_only) - margin(int8) if float_only else nan,
            "margin_loss_alone": margin(quant_only) - margin(fp32) if quant_only else nan,
            "score_float_only": float(float_only.score) if float_only else nan,
            "score_quant_only": float(quant_only.score) if quant_only else nan,
            "verdict_float_only": float_only.verdict if float_only else "not measured",
            "local_nsr_db": float(noise.get(name, nan)), "measured": float_only is not None,
            "culprit": name in marked}


def culprit_layers(graph, tensors, layers) -> set[str]:
    """Layers that produce or read a culprit tensor of the diagnosis."""
    layers = set(layers)
    wanted = set(tensors)
    out = set()
    for index, node in enumerate(graph.model.graph.node):
        name = graph.node_names[index]
        if name in layers and (wanted & set(node.output) or wanted & set(node.input)):
            out.add(name)
    return out


def chart(sens: Sensitivity, path, top: int = 30):
    """Ranked horizontal bars: gain if kept in float, loss when quantized alone; the diagnosis's
    culprits in red with a star. Written atomically as PNG; returns the path."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = sens.frame.head(top).iloc[::-1]
    # the judge's score where it moves at all; its finer per-sample margin where the score ties
    coarse = frame["gain_if_float"].abs().max() > 0 or frame["loss_alone"].abs().max() > 0
    gain, loss = ("gain_if_float", "loss_alone") if coarse else ("margin_gain_if_float", "margin_loss_alone")
    labels = [("★ " if c else "") + str(n)[:40] for n, c in zip(frame["layer"], frame["culprit"])]
    y = np.arange(len(frame))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(frame) + 1.6))
    colors = ["#c0392b" if c else "#2e86c1" for c in frame["culprit"]]
    ax.barh(y + 0.2, frame[gain].fillna(0), height=0.4, color=colors, label="gain if kept in float")
    ax.barh(y - 0.2, frame[loss].fillna(0), height=0.4, color="#999999", label="change when quantized alone")
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"{'task score' if coarse else 'judge per-sample margin'} change ({sens.part})")
    ax.set_title("Layer sensitivity (★ red: culprit of the diagnosis)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return path


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="sensitivity", unit="layer", leave=False)
