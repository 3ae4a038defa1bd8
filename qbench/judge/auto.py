"""auto: guess the task from the graph alone (output shapes, element types, the op that produces
each output, metadata), before any data runs, and say what was guessed and why. A guess that finds
nothing convincing falls back to generic and says that too; the user settles it with --task.

Rules, first match wins (the first output decides unless an earlier rule names another):
1. an integer or bool output of rank >= 3 (or made by ArgMax) -> segment (a class map, e.g. a model ending in ArgMax);
2. a raw anchor head — regressors [B, N, K] and scores [B, N, C] over the same N anchors
   (qbench.judge.heads; SSD, RetinaFace, BlazeFace) -> detect, checked before the YOLO rule, which
   would read BlazeFace's [1, 896, 16] regressors as [B, N, 5+C] class scores;
2b. a rank-3 float output and a charset in the metadata, or a rank-3 output produced by a Softmax /
   LogSoftmax whose last axis is the long one -> ctc ([B, T, classes]);
3. a rank-3 float output with one axis of 5..300 channels and another of >= 100 candidates ->
   detect ([B, 4+C, N] or [B, N, 5+C]);
4. a rank-4 float output produced by Sigmoid/Softmax, or whose spatial size follows the input's ->
   segment (a probability map with one channel, class scores with more);
5. a rank-2 output: produced by Softmax, or with at most 1000 classes and no normalisation ->
   classify; produced by a normalisation (LpNormalization, a division by a norm) -> embedding;
6. otherwise generic, and the note says "generic, because ..." (what was looked at, what did not match).
"""

from __future__ import annotations

from qbench.judge.heads import find_anchor_head
from qbench.judge.outputs import is_float_type, metadata, output_specs

_NORMALISING = {"LpNormalization"}


def _producer(graph, name: str) -> str:
    node = graph.producer.get(name)
    return node.op_type if node is not None else ""


def _normalised(graph, name: str) -> bool:
    node = graph.producer.get(name)
    if node is None:
        return False
    if node.op_type in _NORMALISING:
        return True
    if node.op_type == "Div" and len(node.input) == 2:
        den = graph.producer.get(node.input[1])
        return den is not None and den.op_type in ("ReduceL2", "Sqrt", "Clip", "Max", "Expand")
    return False


def _dims(shape) -> str:
    return "[" + ", ".join("?" if d is None or d <= 0 else str(d) for d in shape) + "]" if shape is not None else "[?]"


def guess_task(graph, labels=None) -> tuple[str, str]:
    """(task, one-sentence note saying what was guessed and why)."""
    if graph is None:
        return "generic", "auto: generic, because there is no model graph to look at"
    specs = output_specs(graph)
    if labels is not None:
        by_label = {"class": "classify", "boxes": "detect", "text": "ctc"}[labels.kind]
        return by_label, f"auto: guessed {by_label} because the labels hold {labels.kind} labels"
    meta = metadata(graph)
    has_charset = any(meta.get(k) for k in ("character", "charset", "vocab", "characters"))
    for name, shape, elem in specs:
        if elem != 0 and not is_float_type(elem) and ((shape is not None and len(shape) >= 3) or _producer(graph, name) == "ArgMax"):
            return "segment", f"auto: guessed segment because output {name!r} is an integer map {_dims(shape)} (a class map, e.g. from ArgMax)"
    head = find_anchor_head(graph)
    if head is not None:
        # before the YOLO rule: BlazeFace's regressors [1, 896, 16] look like a [B, N, 5+C] head
        return "detect", f"auto: guessed detect because {head.why}"
    name, shape, elem = specs[0]
    op = _producer(graph, name)
    known = lambda d: isinstance(d, int) and d > 0
    if shape is not None and len(shape) == 3 and is_float_type(elem):
        d1, d2 = shape[1], shape[2]
        if has_charset:
            return "ctc", f"auto: guessed ctc because output {name!r} is {_dims(shape)} and the model's metadata carries a charset"
        if op in ("Softmax", "LogSoftmax") and known(d2) and (not known(d1) or d2 > d1):
            return "ctc", f"auto: guessed ctc because output {name!r} {_dims(shape)} ends in {op} over its long last axis ([B, T, classes])"
        if known(d1) and known(d2):
            small, large = min(d1, d2), max(d1, d2)
            if 5 <= small <= 300 and large >= 100:
                layout = "[B, 4+C, N]" if d1 < d2 else "[B, N, 5+C]"
                return "detect", f"auto: guessed detect because output {name!r} {_dims(shape)} looks like a YOLO head {layout}"
    if shape is not None and len(shape) == 4 and is_float_type(elem):
        inputs = [s for s in graph.inputs if s.shape and len(s.shape) == 4]
        follows = bool(inputs) and (shape[2] == inputs[0].shape[2] or not known(shape[2]))
        if op in ("Sigmoid", "Softmax") or follows:
            kind = "a probability map" if shape[1] == 1 else "class scores per pixel"
            why = f"is produced by {op}" if op in ("Sigmoid", "Softmax") else "follows the input's spatial size"
            return "segment", f"auto: guessed segment because output {name!r} {_dims(shape)} {why} ({kind})"
    if shape is not None and len(shape) == 2 and is_float_type(elem):
        if _normalised(graph, name):
            return "embedding", f"auto: guessed embedding because output {name!r} {_dims(shape)} is a normalised vector ({op})"
        if op in ("Softmax", "LogSoftmax"):
            return "classify", f"auto: guessed classify because output {name!r} {_dims(shape)} ends in {op}"
        if known(shape[1]) and shape[1] <= 1000:
            return "classify", f"auto: guessed classify because output {name!r} {_dims(shape)} holds {shape[1]} scores per sample"
    return "generic", (f"auto: generic, because output {name!r} {_dims(shape)} (produced by {op or 'an input'}) matches no "
                       "family qbench knows (YOLO/DETR-style or anchor heads, class or probability maps, CTC, logits, "
                       "embeddings) — each output is read on its own; give --task to say what it is")
