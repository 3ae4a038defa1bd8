"""Mixed-precision fallback: which tensors must stay in float for the INT8 simulation to pass?

A greedy search over the INT8 Q/DQ simulation (``compare_precision(..., "int8", keep_float=...)``).
Each step keeps one more name in float (a quantized tensor, or the node whose quantized inputs and
weights introduce the error), re-runs the comparison on the same samples and stops as soon as the
outputs pass ``qbench.advise.evaluate``. Candidates are re-read from each new comparison, because
the next culprit often shows only once the first is fixed. An optional pruning pass drops kept
names that turn out not to be needed. Cost: at most ``max_float`` + 1 comparisons for the search
and ``len(kept)`` for pruning. See docs/FALLBACK.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import pandas as pd

from qbench.advise import Thresholds, evaluate, passes
from qbench.compare.diagnose import error_growth
from qbench.errors import QbenchError

STEP_COLUMNS = ["step", "action", "added", "tensor", "op_type", "why", "kept", "output_cosine_min", "output_sqnr_db",
                "flagged", "passed"]
# More "introduced" culprits than this at one step: add two per step, so a model with many
# independent culprits still gets somewhere within the budget of comparisons.
BATCH_WHEN = 3
# Saturation below this is ordinary clipping of a long tail; above it the range is suspect.
SUSPECT_SATURATION = 0.01


@dataclass
class FallbackResult:
    kept: list[str]
    passed: bool
    steps: pd.DataFrame
    comparison: object  # the final Comparison (with ``kept`` in float)
    base_keep_float: list[str] = field(default_factory=list)

    @property
    def keep_float(self) -> list[str]:
        """Everything left in float: the user's own --keep-float names, then the search's."""
        return list(dict.fromkeys([*self.base_keep_float, *self.kept]))

    def flags(self) -> str:
        return keep_float_flags(self.keep_float)


def keep_float_flags(names) -> str:
    import shlex

    return " ".join(f"--keep-float {shlex.quote(n)}" for n in names)


def search_fallback(graph, dataset, ranges, comparison, *, thresholds=None, max_float: int = 8, limit=None,
                    progress: bool = True, prune: bool = True, keep_float=(), echo=None, reference=None) -> FallbackResult:
    """Greedy search for the names to keep in float so INT8 passes (see module docstring).

    ``comparison``: the INT8 comparison to start from (made with ``keep_float``, the user's own
    names, which stay kept). ``limit``: the samples of that comparison. ``echo``: a callable for
    one line per step (None: silent). ``reference``: the FP32 runner to reuse (built if None)."""
    if max_float < 0:
        raise QbenchError(f"--max-float must be at least 0, not {max_float}")
    th = Thresholds.from_any(thresholds)
    say = echo or (lambda _msg: None)
    base = list(keep_float)
    fixes = _Fixes(graph, ranges, base)
    reference = reference or _reference(graph)  # one FP32 session for every step
    steps = [_step_row(0, "start", [], None, "", "INT8 as calibrated", 0, comparison, th)]
    kept: list[str] = []
    current = comparison
    passed = _passes(current, th)
    say(f"qbench: fallback: start: {_describe(steps[-1])}")
    while not passed and len(kept) < max_float:
        picks = _next_picks(current, fixes, kept, max_float - len(kept))
        if not picks:
            say("qbench: fallback: no further tensor to keep in float explains the error; stopping")
            break
        for names, tensor, op_type, why in picks:
            kept += names
        current = _compare(graph, dataset, ranges, base + kept, limit, progress, reference)
        passed = _passes(current, th)
        added = [n for p in picks for n in p[0]]
        steps.append(_step_row(len(steps), "keep", added, picks[0][1], picks[0][2], "; ".join(p[3] for p in picks),
                               len(kept), current, th))
        say(f"qbench: fallback: step {len(steps) - 1}: keep {', '.join(added)} in float: {_describe(steps[-1])}")
    if passed and prune and len(kept) > 1:
        kept, current = _prune(graph, dataset, ranges, base, kept, current, limit, progress, th, steps, say, reference)
    if not passed:
        say(f"qbench: fallback: INT8 does not pass with {len(kept)} tensor(s) kept in float (max {max_float})")
    return FallbackResult(kept, passed, pd.DataFrame(steps, columns=STEP_COLUMNS), current, base)


# -- one step -------------------------------------------------------------------------------------
def _reference(graph):
    from qbench.runners import OrtRunner

    return OrtRunner(graph, name="fp32")


def _compare(graph, dataset, ranges, keep, limit, progress, reference):
    from qbench.compare import compare_precision

    return compare_precision(graph, dataset, "int8", ranges, keep_float=keep, limit=limit, progress=progress,
                             reference=reference)


def _passes(cmp, th: Thresholds) -> bool:
    return passes(_candidate(cmp), th)


def _candidate(cmp):
    # advise reads candidates by attribute; no need for the report's CandidateResult here
    return SimpleNamespace(precision="int8-mixed", tensors=cmp.tensors, findings=cmp.findings, latency_ms=None)


def _prune(graph, dataset, ranges, base, kept, current, limit, progress, th, steps, say, reference):
    """Try the search without each kept name, earliest first (the later ones were chosen with it
    already fixed, so an early pick is the one most likely made redundant)."""
    for name in list(kept):
        if len(kept) <= 1:
            break
        trial = [n for n in kept if n != name]
        cmp = _compare(graph, dataset, ranges, base + trial, limit, progress, reference)
        ok = _passes(cmp, th)
        if ok:
            kept, current = trial, cmp
        steps.append(_step_row(len(steps), "prune", [name], None, "", "not needed: removed" if ok else "needed: kept",
                               len(kept), cmp, th))
        say(f"qbench: fallback: prune {name}: {'not needed, removed' if ok else 'needed'}")
    return kept, current


def _step_row(step, action, added, tensor, op_type, why, n_kept, cmp, th) -> dict:
    row = evaluate(_candidate(cmp), th)
    flagged = int((cmp.tensors["status"] != "ok").sum()) if "status" in cmp.tensors else 0
    return {"step": step, "action": action, "added": ", ".join(added), "tensor": tensor or "", "op_type": op_type,
            "why": why, "kept": n_kept, "output_cosine_min": row["output_cosine_min"],
            "output_sqnr_db": _output_sqnr(cmp), "flagged": flagged, "passed": row["verdict"] == "pass"}


def _describe(row: dict) -> str:
    verdict = "passes" if row["passed"] else "fails"
    return (f"output cosine (worst sample) {row['output_cosine_min']:.4f}, SQNR {row['output_sqnr_db']:.1f} dB, "
            f"{row['flagged']} flagged tensors: {verdict}")


def _output_sqnr(cmp) -> float:
    """Worst sample's output SQNR, over the samples that differ at all (see ``_differing_outputs``)."""
    rows = _differing_outputs(cmp)
    values = pd.to_numeric(rows["sqnr_db"], errors="coerce").dropna() if "sqnr_db" in rows else pd.Series(dtype=float)
    return float(values.min()) if len(values) else math.inf


def _differing_outputs(cmp) -> pd.DataFrame:
    """Per-sample output rows that differ by more than the comparator's atol. An image with nothing
    to detect has a near-zero map where 1e-8 of noise scores cosine 0 and SQNR -inf; the comparator
    counts such a sample as identical (cosine_min), and so does the search."""
    ps = cmp.per_sample
    if ps is None or ps.empty:
        return pd.DataFrame(columns=["sample", "tensor", "cosine", "sqnr_db", "status"])
    atol = float((cmp.meta.get("thresholds") or {}).get("atol", 0.0))
    outputs = set(cmp.tensors.loc[cmp.tensors["is_output"].astype(bool), "tensor"])
    return ps[ps["tensor"].isin(outputs) & (pd.to_numeric(ps["max_abs_err"], errors="coerce") > atol)]


# -- what to keep next ------------------------------------------------------------------------------
class _Fixes:
    """Maps a tensor in error to the names whose float keeping removes its own quantization error:
    the tensor itself when it gets Q/DQ, and its producer when that node reads quantized inputs or
    weights (an introduced error of a Conv comes from those, not from its float output)."""

    def __init__(self, graph, ranges, base):
        from qbench.simulate.common import resolve_keep_float
        from qbench.simulate.placement import plan_int8

        keep_tensors, keep_nodes = resolve_keep_float(graph, base)
        plan = plan_int8(graph, keep_tensors, keep_nodes)
        self.graph = graph
        self.producer_info = {t.name: t for t in graph.tensors}
        self.base = set(base)
        self.quantized = set(plan.activations)
        self.weights = set(plan.weights)

    def options(self, tensor: str) -> list[str]:
        """The tensor first (one Q/DQ less), then its node (inputs and weights too): if keeping the
        tensor is not enough, the tensor stays flagged and the next step takes the node."""
        names = [tensor] if tensor in self.quantized else []
        info = self.producer_info.get(tensor)
        node = self.graph.producer.get(tensor)
        # the display name, which --keep-float accepts for unnamed nodes too
        if info is not None and node is not None and any(i in self.quantized or i in self.weights for i in node.input):
            names.append(info.node)
        return names


def _next_picks(cmp, fixes: _Fixes, kept: list[str], room: int) -> list[tuple]:
    """(names, tensor, op_type, why) for this step, best first: introduced culprits by rank, the
    first problem, tensors whose error grows most on the worst sample, then the most saturated
    quantized tensors. Usually one pick; two when many culprits compete."""
    frame = cmp.tensors
    ops = dict(zip(frame["tensor"], frame["op_type"]))
    culprits = cmp.culprits
    introduced = list(culprits.loc[culprits["origin"] == "introduced", "tensor"])
    ordered = [(t, f"#{i + 1} introduced culprit") for i, t in enumerate(introduced)]
    first = cmp.first_problem
    if first:
        ordered.append((first["tensor"], "first problem"))
    ordered += [(t, "error grows most here on the worst sample") for t in _worst_growth(cmp, fixes.graph)]
    ordered += [(t, f"INT8 saturates {sat:.0%} of its values") for t, sat in _most_saturated(frame)]
    want = 2 if len(introduced) > BATCH_WHEN else 1
    picks, taken = [], set(kept) | fixes.base  # the user's own --keep-float names are kept already
    for tensor, why in ordered:
        name = next((n for n in fixes.options(tensor) if n not in taken), None)
        if name is None:
            continue
        picks.append(([name], tensor, ops.get(tensor, ""), f"{tensor}: {why}"))
        taken.add(name)
        if len(picks) >= min(want, room):
            break
    return picks


def _worst_growth(cmp, graph, top: int = 10) -> list[str]:
    """Flagged tensors of the worst sample by how much error they add over their inputs' error: a
    tensor no worse than its inputs inherited its error (the replay's rule, without a replay)."""
    ps = cmp.per_sample
    out_rows = _differing_outputs(cmp)
    if out_rows.empty or "status" not in ps:
        return []
    worst = out_rows.sort_values("cosine", kind="stable").iloc[0]["sample"]
    rows = ps[ps["sample"] == worst]
    inputs_of = {t: list(graph.producer[t].input) for t in rows["tensor"] if t in graph.producer}
    growth = error_growth(rows, inputs_of)
    return sorted(growth, key=lambda t: -growth[t])[:top]


def _most_saturated(frame: pd.DataFrame, top: int = 10) -> list[tuple[str, float]]:
    if "int8_saturated_frac" not in frame:
        return []
    sat = pd.to_numeric(frame["int8_saturated_frac"], errors="coerce")
    hit = frame.assign(_sat=sat)[sat > SUSPECT_SATURATION].sort_values("_sat", ascending=False, kind="stable")
    return list(zip(hit["tensor"], hit["_sat"]))[:top]
