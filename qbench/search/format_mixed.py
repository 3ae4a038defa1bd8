"""Mixed formats in the search: the fewest layers moved from a format F to a higher format H so that
the task verdict passes (FP8 with layers in BF16/FP16, INT8 with layers in FP8).

Which H may hold layers of F is the table's ``fallback`` column (qbench.simulate.formats), tried in
its order until one passes; the model is qbench.simulate.mixed_format's (F's simulation with the
layers kept, then H's own simulation of exactly those layers). The loop is the INT8 search's
(``qbench.search.mixed.search``: grow 1, 2, 4, ... ranked layers, bisect, prune, every set judged by
the task); only the runner differs: each set is one mixed model built and judged on the samples.

Ranking (no gated model exists for these formats, so no per-layer task measurement): the layers that
both F and H treat (F's quantized readers that H also rounds), the diagnosis's culprits of F's
comparison first (its culprit order), then by the error each layer adds in F's comparison: the
relative L2 error of its output minus the largest of its inputs' (``rel_l2`` of the comparison's
tensor table; a layer whose output error grows most is where F hurts). That is the figure that
names the detector's depthwise Convs under FP8 (docs/FORMATS.md).

The samples judged are the run's own (the same the candidate F was judged on; F's activation scales
were calibrated on them too), so the figures are not held out; every table says so in ``part``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from onnx import TensorProto

from qbench.search import mixed as mixed_search
from qbench.search.judging import acceptable, rank_key
from qbench.simulate import formats
from qbench.simulate.mixed_format import mixed_name

PART = "the run's samples (also its calibration samples; not held out)"


@dataclass
class FormatMixed:
    name: str  # candidate name, "<base>-<higher>"
    base: str
    higher: str
    ranked: list[str]
    mixed: object  # qbench.search.mixed.MixedResult

    @property
    def kept(self) -> list[str]:
        return self.mixed.kept

    @property
    def result(self):
        return self.mixed.result


class FormatRunner:
    """Judges the base format with a set of layers in the higher format (``mixed.search``'s runner)."""

    def __init__(self, graph, base, higher, ranges, reference, judge, keep_float=(), options=None):
        self.graph, self.base, self.higher, self.ranges = graph, base, higher, ranges
        self.reference, self.judge = reference, judge
        self.keep_float, self.options = tuple(keep_float), dict(options or {})
        self.runs = 0

    def model(self, kept):
        return self.base.simulate(self.graph, self.ranges, self.keep_float, higher=self.higher.name,
                                  higher_layers=list(kept), **self.options).model

    def evaluate(self, kept):
        self.runs += 1
        return self.reference.judge_model(self.judge, self.model(kept))


def movable_layers(graph, base, higher, ranges, keep_float=(), options=None) -> list[str]:
    """Node names (graph order) that read a tensor ``base`` quantizes or rounds and one ``higher``
    treats too, and compute a float output (a Shape reading a quantized tensor is no layer to move)."""
    types = graph.elem_types

    def readers(fmt):
        sim = fmt.simulate(graph, ranges, keep_float, **dict(options or {}))
        touched = set(sim.quantized) | set(sim.quantized_inputs) | set(sim.weights)
        return [graph.node_names[i] for i, n in enumerate(graph.model.graph.node)
                if touched & set(n.input) and any(types.get(o) == TensorProto.FLOAT for o in n.output)]
    theirs = set(readers(higher))
    return [n for n in dict.fromkeys(readers(base)) if n in theirs]


def rank_layers(graph, layers: list[str], comparison) -> list[str]:
    """The culprits of ``comparison`` first, then by the error each layer adds (module docstring)."""
    frame = comparison.tensors
    rel = {t: float(v) for t, v in zip(frame["tensor"], frame["rel_l2"])}
    culprit_rank = {}
    if "culprit_rank" in frame:
        for t, r in zip(frame["tensor"], frame["culprit_rank"]):
            if r == r:
                culprit_rank[t] = float(r)
    nodes = {graph.node_names[i]: n for i, n in enumerate(graph.model.graph.node)}

    def key(name):
        node = nodes[name]
        ranks = [culprit_rank[t] for t in [*node.output, *node.input] if t in culprit_rank]
        out = max((rel.get(t, math.nan) for t in node.output), default=math.nan)
        before = max((rel[t] for t in node.input if t in rel and rel[t] == rel[t]), default=0.0)
        added = out - before if out == out else -math.inf
        return (min(ranks) if ranks else math.inf, -added)
    return sorted(layers, key=key)


def usable(base, higher, requested=()) -> bool:
    """A higher format serves a base on every GPU the base runs on (its compute capability is no
    higher), or when the run asked for it too (INT8 runs on Turing, FP8 needs Ada: INT8 with layers in
    FP8 is searched only when FP8 is one of the run's precisions, i.e. the user's GPU has it)."""
    return higher.min_cc <= base.min_cc or higher.name in tuple(requested)


def search(graph, base_name: str, ranges, reference, judge, comparison, *, keep_float=(), options=None,
           max_float: int = 8, time_budget_s: float | None = None, echo=None, requested=()) -> FormatMixed | None:
    """The smallest set of layers of ``base_name`` moved to a higher format of its ``fallback`` for
    which the task passes; None when the format has no usable fallback (``usable``; ``requested``:
    the run's precisions). Each higher format is tried in the table's order until one passes (the
    time budget shared); the best found is returned either way."""
    base = formats.FORMATS[base_name]
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    best = None
    for higher_name in base.fallback:
        higher = formats.FORMATS[higher_name]
        if not usable(base, higher, requested):
            continue
        left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - started)
        if left is not None and left <= 0:
            break
        layers = movable_layers(graph, base, higher, ranges, keep_float, options)
        ranked = rank_layers(graph, layers, comparison)
        name = mixed_name(base, higher)
        say(f"qbench: {name}: searching the fewest of {len(layers)} {base.label} layer(s) to run in {higher.label}")
        runner = FormatRunner(graph, base, higher, ranges, reference, judge, keep_float, options)
        result = mixed_search.search(runner, ranked, max_float=max_float, time_budget_s=left,
                                     echo=lambda m, n=name: say(m.replace("qbench: mixed:", f"qbench: {n}:")),
                                     start_result=comparison.task if comparison.task is not None else None,
                                     start=f"{base.label} alone", kept_in=higher.label)
        found = FormatMixed(name, base.name, higher.name, ranked, result)
        if best is None or (found.kept and (not best.kept or rank_key(found.result) < rank_key(best.result))):
            best = found
        if acceptable(result.result):
            break
    return best
