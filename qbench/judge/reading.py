"""How the generic judge reads each output: as its user would, not as a bag of floats.

A model's outputs are different things, and an error means different things in each:

* **classes** — integer or bool outputs (an ArgMax map, labels, counts): equal or not.
* **probabilities** — produced by Sigmoid or Softmax (through shape-only ops: Reshape, Transpose,
  Concat, ...), or named as scores (``score``, ``prob``, ``conf``, ``class``, ``logit``, ``heatmap``)
  with every value in [0, 1]. A user reads a probability *at its decision*: a map (many values per
  slice, a DB text map [1, 1, 640, 640], an anchor's face scores) by the elements above
  ``threshold`` (0.5), compared as sets (IoU; two empty sets agree) — one stray pixel among 400,000
  is not a different answer; a few values (a class vector, a one-value VAD probability) by their
  absolute change in probability units against ``max_error``.
* **logits** — named as scores (as above) but not in [0, 1]: mapped to probabilities first (a
  sigmoid for one channel, a softmax over the channel axis for more), then read as probabilities.
  A background anchor whose logit moves from −100 to −400 has probability 0 either way: no error.
* **scalars** — one float per batch row that is not a probability (an energy, a count, a score
  of unknown scale): no range to normalise by, so absolute and relative tolerance,
  |cand − ref| <= ``scalar_atol`` + ``scalar_rtol`` · |ref| (as numpy.isclose).
* **regressors** — the box/landmark regressors [B, N, K] of a raw anchor head (qbench.judge.heads)
  whose scores [B, N, C] sit beside them: read only at the anchors the scores decide (p >= threshold
  in FP32 or the candidate, background class aside), each channel's error against that channel's
  range there; the regressors of background anchors are never read by any application.
* **values** — everything else (regressors, features, maps of unknown meaning): each (batch row,
  channel) slice's largest error against its own range (``generic.slice_errors``).

The reading is decided once per output, from the graph and the first FP32 sample, and the note
says how each output was read and why; option ``read`` ({output: kind}, or "name:kind,...")
overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from qbench.errors import QbenchError
from qbench.judge.outputs import is_float_type, output_specs

KINDS = ("classes", "probabilities", "logits", "scalar", "values", "regressors")
# ops that move or regroup values without changing what they mean
_SHAPE_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Concat", "Slice", "Gather",
              "Split", "Cast", "Expand", "Tile"}
_PROBABILITY_OPS = {"Sigmoid", "Softmax", "HardSigmoid"}
_SCORE_NAME = re.compile(r"score|prob|conf|class|logit|heatmap|heat_map", re.IGNORECASE)
# at least this many values in one slice make a probability "a map" read by its decisions
MAP_MIN_VALUES = 64


@dataclass
class Reading:
    output: str
    kind: str          # one of KINDS
    why: str
    softmax_axis: int | None = None   # logits with more than one channel: the axis of the softmax
    as_map: bool = False              # probabilities read by the decisions at the threshold
    scores: str | None = None         # regressors: the scores output of their anchor head

    def describe(self, shape) -> str:
        dims = "[" + ", ".join(str(d) for d in shape) + "]"
        how = {"classes": "class values, by exact agreement",
               "probabilities": "probabilities, " + ("by the decisions p >= threshold (set IoU)" if self.as_map
                                                     else "by the absolute change in probability"),
               "logits": ("logits, judged as probabilities (" + ("softmax" if self.softmax_axis is not None else "sigmoid")
                          + ("), by the decisions p >= threshold (set IoU)" if self.as_map else "), by the absolute change")),
               "scalar": "a scalar per row, by absolute + relative tolerance",
               "regressors": f"regressors of an anchor head, only at the anchors '{self.scores}' decides",
               "values": "values, by each slice's error against its own range"}[self.kind]
        return f"'{self.output}' {dims} read as {how} because {self.why}"


def source_op(graph, name: str, depth: int = 12) -> str:
    """The op that gives an output its meaning: the producer, looking through shape-only ops
    (a Concat counts only when all its inputs agree). '' for a graph input or unknown."""
    node = graph.producer.get(name)
    if node is None or depth == 0:
        return ""
    if node.op_type not in _SHAPE_OPS:
        return node.op_type
    data = [i for i in node.input if i][: (None if node.op_type == "Concat" else 1)]
    ops = {source_op(graph, i, depth - 1) for i in data if i not in graph.initializer_names}
    return ops.pop() if len(ops) == 1 else ""


def parse_read_option(value) -> dict:
    """Option ``read``: a dict {output: kind} or a string "name:kind,name:kind"."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs = [p.strip() for p in value.split(",") if p.strip()]
        value = {}
        for p in pairs:
            name, sep, kind = p.rpartition(":")
            if not sep:
                raise QbenchError(f"generic: option read takes name:kind pairs, not {p!r}")
            value[name.strip()] = kind.strip()
    if not isinstance(value, dict):
        raise QbenchError(f"generic: option read must be a mapping of output name to kind, not {type(value).__name__}")
    for name, kind in value.items():
        if kind not in KINDS:
            raise QbenchError(f"generic: read kind {kind!r} for {name!r} is not one of {', '.join(KINDS)}")
    return dict(value)


def decide_reading(graph, name: str, ref: np.ndarray, axis: int | None, forced: str | None = None) -> Reading:
    """How to read output ``name`` (module docstring), from the graph and one FP32 sample."""
    ref = np.asarray(ref)
    op = source_op(graph, name) if graph is not None else ""
    elem = next((e for n, _s, e in output_specs(graph) if n == name), 0) if graph is not None else 0
    per_row = int(ref.size // max(ref.shape[0], 1)) if ref.ndim else 1
    channels = ref.shape[axis] if axis is not None and ref.ndim else 1
    slice_values = per_row // max(channels, 1) if axis is not None else per_row
    finite = ref[np.isfinite(ref)] if ref.dtype.kind == "f" else ref
    in_unit = bool(finite.size) and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0
    named = bool(_SCORE_NAME.search(name))
    softmax_axis = axis if axis is not None and channels > 1 else None
    # many values, each its own decision (a map, anchors): read by the decisions
    as_map = (slice_values if softmax_axis is None else per_row // max(channels, 1)) >= MAP_MIN_VALUES
    if forced:
        return Reading(name, forced, "option read says so", softmax_axis if forced == "logits" else None, as_map)
    if ref.dtype.kind in "iub" or (elem and not is_float_type(elem)):
        return Reading(name, "classes", "its values are integers")
    if op in _PROBABILITY_OPS:
        return Reading(name, "probabilities", f"it is produced by {op}", as_map=as_map)
    if named and in_unit:
        return Reading(name, "probabilities", "its name says scores and every value lies in [0, 1]", as_map=as_map)
    if named and finite.size:
        return Reading(name, "logits", f"its name says scores and its values leave [0, 1] "
                       f"({float(finite.min()):.3g} to {float(finite.max()):.3g}), so they are logits",
                       softmax_axis, as_map)
    if per_row == 1:
        return Reading(name, "scalar", "it holds one value per row (no range to normalise by)")
    return Reading(name, "values", f"nothing marks it as scores (produced by {op or 'an input'}); "
                   "give option read to say otherwise")


def to_probabilities(x: np.ndarray, reading: Reading) -> np.ndarray:
    """Logits -> probabilities (sigmoid, or softmax over reading.softmax_axis); others unchanged."""
    if reading.kind != "logits":
        return np.asarray(x, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if reading.softmax_axis is None:
            return 0.5 * (1.0 + np.tanh(0.5 * x))  # the sigmoid, without overflow for large |x|
        z = x - np.nanmax(x, axis=reading.softmax_axis, keepdims=True)
        e = np.exp(z)
        return e / np.sum(e, axis=reading.softmax_axis, keepdims=True)


def decision_iou(ref_p: np.ndarray, cand_p: np.ndarray, axis: int | None, threshold: float) -> np.ndarray:
    """Per (batch row, channel) slice: IoU of the elements with p >= threshold in FP32 and in the
    candidate (1 when both are empty). A NaN in the candidate is no decision (never above)."""
    inter, union = decision_counts(ref_p, cand_p, axis, threshold)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def decision_counts(ref_p: np.ndarray, cand_p: np.ndarray, axis: int | None, threshold: float):
    """(intersection, union) element counts of the decided sets per (batch row, channel) slice."""
    a = ref_p >= threshold
    b = cand_p >= threshold
    if axis is None or a.ndim < 2:
        a, b = a.reshape(1, 1, -1), b.reshape(1, 1, -1)
    else:
        a, b = np.moveaxis(a, axis, 1), np.moveaxis(b, axis, 1)
        a, b = a.reshape(a.shape[0], a.shape[1], -1), b.reshape(b.shape[0], b.shape[1], -1)
    return np.count_nonzero(a & b, axis=2), np.count_nonzero(a | b, axis=2)
