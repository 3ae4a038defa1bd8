"""Find an INT8 that ships: held-out split → calibrator sweep → (sensitivity → mixed search) → int8-best.

``find_int8`` is the search stage of ``qbench run`` and the Python entry point. Every figure it
returns comes from the judging part (held out from calibration) and says so; every decision reads
only the judge's TaskResult.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge import load_labels
from qbench.search import deploy, holdout as ho, mixed as mixed_search, sensitivity as sens_mod, sweep as sweep_mod
from qbench.search.judging import Reference, acceptable, make_task_judge, rank_key
from qbench.search.models import int8_model, quantized_layers

SENSITIVITY_MODES = ("auto", "always", "never")
DEFAULT_TIME_BUDGET_S = 600.0
# share of the time budget the sensitivity may plan for; the rest is for the mixed search's sets
SENSITIVITY_SHARE = 0.7
MIXED = "int8-mixed"


@dataclass
class SearchOptions:
    task: str = "auto"
    judge_options: dict | None = None
    labels: object = None  # path of a labels file (matched to the judging part's samples), or None
    calib_fraction: float = ho.DEFAULT_FRACTION
    seed: int = ho.DEFAULT_SEED
    methods: tuple | None = None  # None: every method of qbench.calibrate.METHODS
    batch_size: int | None = None  # calibration batch; None: qbench.calibrate's automatic choice
    keep_float: tuple = ()  # the user's own names: kept in every candidate
    max_float: int = 8
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S  # sensitivity + mixed search together (None: no limit)
    sensitivity: str = "auto"  # auto: only when no calibrator passes alone
    sensitivity_samples: int | None = 8  # rank layers on the worst N judging samples (None: all)
    sensitivity_layers: int | None = None  # measure at most N layers by the task (culprits, then local noise first)
    search: bool = True  # False: the sweep only (``--no-fallback``)
    progress: bool = False
    culprits: tuple = ()  # tensor names the diagnosis blamed (marked on the sensitivity chart)
    extra_candidates: dict | None = None  # name -> Ranges swept too (e.g. the user's --ranges as "given")


@dataclass
class SearchOutcome:
    holdout: ho.Holdout
    sweep: object  # sweep.SweepResult
    sensitivity: object = None  # sensitivity.Sensitivity or None
    mixed: object = None  # mixed.MixedResult or None
    best: deploy.Int8Config | None = None
    folder: Path | None = None
    chart: Path | None = None
    explanation: list[str] = field(default_factory=list)  # why no INT8 passes (layer: cause)
    max_float: int = 0  # the set-size budget the mixed search had
    seconds: float = 0.0

    def rows(self) -> pd.DataFrame:
        """Recommendation rows (one per INT8 candidate judged), best first: candidate, verdict,
        score, primary, value, keep_float, part. For the recommendation table beside FP32/FP16."""
        rows = []
        for _, r in self.sweep.table().iterrows():
            rows.append({**r[["candidate", "verdict", "score", "primary", "value", "reason", "part"]].to_dict(),
                         "keep_float": 0})
        if self.mixed is not None and self.best is not None and self.best.keep_float:
            r = self.best.result
            rows.append({"candidate": MIXED, "verdict": r.verdict, "score": float(r.score), "primary": r.primary,
                         "value": r.metrics.get(r.primary), "reason": r.reason, "part": self.best.part,
                         "keep_float": len(self.best.keep_float)})
        frame = pd.DataFrame(rows)
        order = sorted(range(len(rows)), key=lambda i: (_tier(rows[i]), -rows[i]["score"], rows[i]["keep_float"]))
        return frame.iloc[order].reset_index(drop=True)

    def sentence(self) -> str:
        """What to ship of INT8, in one sentence."""
        b = self.best
        if b is None:
            return "No INT8 configuration could be built."
        what = f"INT8 with {b.calibrator} ranges" + (f" and {len(b.keep_float)} layer(s) kept in {b.float_precision} "
                                                     f"({', '.join(b.keep_float[:4])}{', ...' if len(b.keep_float) > 4 else ''})"
                                                     if b.keep_float else "")
        r = b.result
        if r.verdict == "pass":
            return f"Ship {what}: it passes on the {b.part} ({r.reason})."
        if acceptable(r):
            return (f"{what} meets the tolerance on the {b.part} but the verdict is inconclusive ({r.reason}); "
                    f"judge more samples before shipping it.")
        why = "; ".join(self.explanation) if self.explanation else "no layer ranking explains the error"
        tried = (f"with up to {self.max_float} layer(s) kept in float" if self.mixed is not None
                 else "from any calibrator (no mixed search: --no-fallback)")
        return (f"No INT8 passes {tried}: the best, {what}, is "
                f"{r.verdict} on the {b.part} ({r.reason}); ship FP16 instead if it passes. Hardest layers: {why}.")


def _tier(row) -> int:
    return {"pass": 0, "inconclusive": 1, "fail": 3}.get(row["verdict"], 4)


def find_int8(graph, dataset, out=None, options: SearchOptions | None = None, *, model_path=None,
              echo=None) -> SearchOutcome:
    """The whole search (module docstring). ``out``: where ``int8-best/`` and the chart go (None:
    nothing written). ``dataset``: every sample; the split decides which calibrate and which judge."""
    o = options or SearchOptions()
    if o.sensitivity_samples is not None and o.sensitivity_samples < 1:
        raise QbenchError(f"--sensitivity-samples must be at least 1, not {o.sensitivity_samples}")
    if o.sensitivity_layers is not None and o.sensitivity_layers < 1:
        raise QbenchError(f"--sensitivity-layers must be at least 1, not {o.sensitivity_layers}")
    if o.sensitivity not in SENSITIVITY_MODES:
        raise QbenchError(f"--sensitivity must be one of {', '.join(SENSITIVITY_MODES)}, not {o.sensitivity!r}")
    if o.time_budget_s is not None and o.time_budget_s <= 0:
        raise QbenchError(f"--search-time must be positive, not {o.time_budget_s}")
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    split = ho.split(len(dataset), o.calib_fraction, o.seed)
    say(f"qbench: search: {split.describe()}" + ("" if ho.held_out(split) else " (one sample: NOT held out)"))
    candidates, histograms = sweep_mod.calibrate_all(graph, ho.subset(dataset, split.calib), o.methods,
                                           batch_size=o.batch_size, progress=o.progress)
    candidates.update(o.extra_candidates or {})
    reference = Reference(graph, ho.subset(dataset, split.judge), part=ho.JUDGE if ho.held_out(split) else ho.CALIB)
    labels = load_labels(o.labels, reference.names) if o.labels else None
    judge = make_task_judge(o.task, graph, o.judge_options, labels)
    swept = sweep_mod.sweep(graph, candidates, reference, judge, histograms=histograms, keep_float=o.keep_float, echo=say)
    outcome = SearchOutcome(split, swept, max_float=o.max_float)
    ranges = swept.candidates[swept.best]
    best_result = swept.results[swept.best]
    layers = quantized_layers(graph, o.keep_float)
    keep: list[str] = []
    need_search = not acceptable(best_result)
    if o.search and (o.sensitivity == "always" or (o.sensitivity == "auto" and need_search)) and layers:
        deadline = None if o.time_budget_s is None else started + o.time_budget_s
        noise = sens_mod.local_noise(graph, ranges, histograms, layers, o.keep_float)
        marked = sens_mod.culprit_layers(graph, o.culprits, layers)
        limit = o.sensitivity_layers
        if limit is None and o.time_budget_s is not None:
            limit = _affordable_layers(swept, reference, o, len(layers))
            if limit < len(layers):
                say(f"qbench: search: {len(layers)} layers would not fit the {o.time_budget_s:g} s budget; measuring "
                    f"{limit} by the task (culprits, then the noisiest), the rest by local noise only")
        order = sens_mod.screen(layers, noise, marked, limit)
        only = None if limit is None or limit >= len(layers) else order
        runner = sens_mod.GatedRunner(graph, ranges, reference, judge, o.keep_float, only=only)
        ranking_runner, full_int8 = sens_mod.worst_samples(runner, o.sensitivity_samples)
        outcome.sensitivity = sens_mod.measure(ranking_runner, graph, culprits=o.culprits, progress=o.progress,
                                               echo=say, deadline=deadline, all_layers=layers, noise=noise,
                                               order=order)
        if out is not None:
            outcome.chart = sens_mod.chart(outcome.sensitivity, Path(out) / "sensitivity.png")
        if need_search:
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            outcome.mixed = mixed_search.search(runner, outcome.sensitivity.ranked(), max_float=o.max_float,
                                                time_budget_s=left, echo=say, start_result=full_int8)
            keep = outcome.mixed.kept
    if keep:
        # the gated model decided; the model that ships is judged once more as it is written
        final = reference.judge_model(judge, _int8(graph, ranges, [*o.keep_float, *keep]))
        if rank_key(final) > rank_key(best_result) and not acceptable(final):
            say("qbench: search: the mixed set does not improve the shipped Q/DQ model; shipping the sweep's best")
            keep, final = [], best_result
    else:
        final = best_result
    if outcome.sensitivity is not None and not acceptable(final):
        outcome.explanation = explain(graph, outcome.sensitivity, ranges, histograms)
    outcome.best = deploy.Int8Config(ranges, swept.best, [*o.keep_float, *keep], final, reference.part, len(layers),
                                     extra={"holdout": split.to_dict(),
                                            "sweep": swept.table().to_dict("records"),
                                            "search": outcome.mixed.stopped if outcome.mixed else "not needed"})
    if out is not None:
        outcome.folder = deploy.write(out, graph, outcome.best, model_path=model_path)
        say(f"qbench: search: wrote {outcome.folder} ({final.verdict})")
    outcome.seconds = time.perf_counter() - started
    return outcome


def _affordable_layers(swept, reference, o: SearchOptions, total: int) -> int:
    """How many layers' two variants fit the sensitivity's share of the time budget, from what one
    judged run of the sweep cost on the judging part (scaled to the samples sensitivity uses; the
    gating adds about a third)."""
    per_run = float(np.median(list(swept.seconds.values()))) if swept.seconds else 1.0
    n = len(reference.samples)
    used = n if o.sensitivity_samples is None else min(n, o.sensitivity_samples)
    per_variant = max(per_run * used / max(n, 1) * 1.3, 1e-3)
    fit = int((o.time_budget_s * SENSITIVITY_SHARE / per_variant - 2) // 2)
    return max(1, min(total, fit))


def _int8(graph, ranges, keep):
    return int8_model(graph, ranges, keep)


def explain(graph, sens, ranges, histograms, top: int = 3) -> list[str]:
    """For the most sensitive layers: why INT8 hurts there, from their quantized inputs' histograms:
    values beyond FP16's range (FP32 needed), a clipped share (saturation), or a range so wide that
    most values fall in the lowest INT8 steps (range)."""
    out = []
    producer_inputs = {name: node for name, node in zip(graph.node_names, graph.model.graph.node)}
    for layer in sens.frame.head(top)["layer"]:
        node = producer_inputs.get(layer)
        causes = []
        for tensor in (node.input if node is not None else []):
            if tensor not in ranges:
                continue
            amax = ranges.amax(tensor)
            hist = histograms.get(tensor) if histograms else None
            if hist is None or getattr(hist, "counts", None) is None:
                continue
            if hist.amax > 65504:
                causes.append(f"{tensor} reaches {hist.amax:.3g}, beyond FP16 (needs FP32)")
                continue
            centres = (hist.edges[:-1] + hist.edges[1:]) / 2
            total = hist.counts.sum()
            clipped = float(hist.counts[centres > amax].sum() / total) if total else 0.0
            low = float(hist.counts[centres < 4 * amax / 127].sum() / total) if total else 0.0
            if clipped > 0.001:
                causes.append(f"{tensor}: range {amax:.3g} clips {clipped:.1%} of values (saturation)")
            elif low > 0.9:
                causes.append(f"{tensor}: range {amax:.3g} (max {hist.amax:.3g}) leaves {low:.0%} of values in the "
                              f"lowest 4 INT8 steps (range too wide)")
        out.append(f"{layer} ({'; '.join(causes) or 'error compounds downstream'})")
    return out
