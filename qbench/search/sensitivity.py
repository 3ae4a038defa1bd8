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
and every set the search then keeps is verified on the whole judging part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS = ["rank", "layer", "op_type", "gain_if_float", "loss_alone", "margin_gain_if_float", "margin_loss_alone",
           "score_float_only", "score_quant_only", "verdict_float_only", "culprit", "part"]


class GatedRunner:
    """Runs the gated model with a set of layers kept in float (gate 0) and judges the outputs."""

    def __init__(self, graph, ranges, reference, judge, keep_float=()):
        from qbench.search.judging import session
        from qbench.search.models import GATE, gated_model

        model, self.layers = gated_model(graph, ranges, keep_float)
        self.session = session(model)
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
        gates = {f"{self._gate}{i}": np.array(0.0 if name in kept else 1.0, dtype=np.float32)
                 for i, name in enumerate(self.layers)}
        self.runs += 1
        return self.reference.judge(self.judge, self.reference.run(self.session, gates))


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
        return list(self.frame["layer"])


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


def measure(runner: GatedRunner, graph, *, culprits=(), progress: bool = False, echo=None,
            deadline: float | None = None) -> Sensitivity:
    """Both variants for every layer (see module docstring). ``culprits``: tensor names from the
    diagnosis, marked on the layers that produce or read them. ``deadline``: a ``time.perf_counter``
    value after which the remaining layers are not measured (they rank last, with NaN)."""
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    layers = runner.layers
    int8 = runner.evaluate(())
    fp32 = runner.evaluate(layers)
    ops = dict(zip(graph.node_names, (n.op_type for n in graph.model.graph.node)))
    marked = culprit_layers(graph, culprits, layers)
    rows = []
    bar = _bar(len(layers), progress)
    for name in layers:
        if deadline is not None and time.perf_counter() > deadline:
            rows.append(_row(name, ops, None, None, int8, fp32, marked))
            continue
        float_only = runner.evaluate([name])
        quant_only = runner.evaluate([n for n in layers if n != name])
        rows.append(_row(name, ops, float_only, quant_only, int8, fp32, marked))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["gain_if_float", "margin_gain_if_float", "loss_alone", "margin_loss_alone"],
                              ascending=[False, False, True, True], kind="stable", na_position="last").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["part"] = runner.reference.part
    seconds = time.perf_counter() - started
    say(f"qbench: sensitivity: {len(layers)} layers, {2 * len(layers) + 2} variants in {seconds:.1f} s "
        f"on the {runner.reference.part}")
    return Sensitivity(frame[COLUMNS], int8, fp32, runner.reference.part, seconds, 2 * len(layers) + 2,
                       sorted(marked))


def _row(name, ops, float_only, quant_only, int8, fp32, marked) -> dict:
    from qbench.search.judging import margin

    nan = float("nan")
    return {"layer": name, "op_type": ops.get(name, ""),
            "gain_if_float": float(float_only.score) - float(int8.score) if float_only else nan,
            "loss_alone": float(quant_only.score) - float(fp32.score) if quant_only else nan,
            "margin_gain_if_float": margin(float_only) - margin(int8) if float_only else nan,
            "margin_loss_alone": margin(quant_only) - margin(fp32) if quant_only else nan,
            "score_float_only": float(float_only.score) if float_only else nan,
            "score_quant_only": float(quant_only.score) if quant_only else nan,
            "verdict_float_only": float_only.verdict if float_only else "not measured (time budget)",
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

    from qbench import atomic

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
