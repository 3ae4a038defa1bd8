"""Recognising a raw anchor head from the graph: SSD, RetinaFace and BlazeFace exports end in two
(or more) rank-3 outputs over the same N anchors — regressors [B, N, K] (box offsets, K >= 4, often
followed by landmark offsets) and scores [B, N, C] (C classes, as logits or probabilities) — with
the decoding (anchors, variances, NMS) left to the application.

Read from names and producers, and from the static anchor count when the export has one (many
exports leave N dynamic, e.g. RetinaFace's [batch, Concatloc_dim_1, 4]): an output is the scores
when it is produced by Softmax/Sigmoid or named as scores (score, conf, cls, class, prob, logit), the
regressors when named as boxes (box, bbox, loc, reg, delta, offset); with names that say neither,
two rank-3 outputs with the same static N, one with K >= 4 and one with C < K, are taken as
regressors and scores. Also used by auto (qbench.judge.auto) and by detect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qbench.judge.outputs import is_float_type, output_specs
from qbench.judge.reading import source_op

_SCORES = re.compile(r"score|conf|cls|class|prob|logit", re.IGNORECASE)
_BOXES = re.compile(r"box|loc|reg|delta|offset", re.IGNORECASE)


@dataclass
class AnchorHead:
    boxes: str
    scores: str
    boxes_shape: tuple | None
    scores_shape: tuple | None
    why: str


def _known(d) -> bool:
    return isinstance(d, int) and d > 0


def find_anchor_head(graph) -> AnchorHead | None:
    """The anchor head of the graph (module docstring), or None."""
    specs = [(n, s, e) for n, s, e in output_specs(graph) if is_float_type(e) and s is not None and len(s) == 3]
    if len(specs) < 2:
        return None
    role = {}
    for name, shape, _ in specs:
        op = source_op(graph, name)
        if op in ("Softmax", "Sigmoid") or _SCORES.search(name):
            role.setdefault("scores", (name, shape, f"{op or 'its name'}"))
        elif _BOXES.search(name):
            role.setdefault("boxes", (name, shape, "its name"))
    if "scores" not in role or "boxes" not in role:
        # names say nothing: two outputs over the same static N, regressors K >= 4, scores C < K
        for name, shape, _ in specs:
            for other, oshape, _ in specs:
                if other == name or not all(_known(d) for d in (shape[1], shape[2], oshape[1], oshape[2])):
                    continue
                if shape[1] == oshape[1] and shape[2] >= 4 and oshape[2] < shape[2] and shape[1] >= 100:
                    return AnchorHead(name, other, shape, oshape,
                                      f"outputs {name!r} {_dims(shape)} and {other!r} {_dims(oshape)} share N = {shape[1]} "
                                      f"anchors: a raw anchor head, regressors [B, N, K] and scores [B, N, C]")
        return None
    (b, bs, bwhy), (s, ss, swhy) = role["boxes"], role["scores"]
    if _known(bs[1]) and _known(ss[1]) and bs[1] != ss[1]:
        return None  # different anchor counts: not one head
    if _known(bs[2]) and bs[2] < 4:
        return None
    n = f"N = {bs[1]}" if _known(bs[1]) else "the same N"
    return AnchorHead(b, s, bs, ss, f"outputs {b!r} {_dims(bs)} (regressors, by {bwhy}) and {s!r} {_dims(ss)} "
                                    f"(scores, by {swhy}) over {n} anchors: a raw anchor head [B, N, K] + [B, N, C]")


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) if _known(d) else "?" for d in shape) + "]"
