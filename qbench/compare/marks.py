"""What the judge saw in one sample's outputs, in a form the report can draw without the model or
the judge: boxes (``detect``), a class or probability map (``segment``, and a heat map of the first
spatial output for other tasks), or a line of text (``ctc``: the decoded line; ``classify``: the top
class).

Made with the judge's own decoders on that one sample (``detections`` / ``decode`` of a fresh
accumulator, so the judge's running state is untouched): the picture shows exactly the detections, masks and texts that were
scored, with the options in force (charset, strides, thresholds). Only the few worst samples are
marked, after the pass, so this costs nothing per sample.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BOXES = 100


def empty() -> dict:
    return {"map": None, "kind": "heat", "threshold": None, "boxes": None, "text": ""}


def marks(outputs: dict, judge, feed: dict) -> dict:
    """{"map", "kind" (prob | class | heat), "threshold", "boxes" (N x 4 xyxy, input pixels), "text"}."""
    task = getattr(judge, "task", "")
    options = getattr(judge, "options", None) or {}
    if task == "detect":
        return _detect(outputs, judge, feed)
    if task == "ctc":
        return _ctc(outputs, judge)
    if task == "classify":
        return {**empty(), "text": _top1(outputs.get(options.get("output")) if options.get("output") in outputs else None)}
    return _map(outputs, options, task)


def _detect(outputs: dict, judge, feed: dict) -> dict:
    out = judge.options.get("output")
    if out not in outputs:
        return empty()
    # a raw anchor head reads two outputs (regressors and scores): it gets them all
    found = judge.start().detections(outputs if judge.options.get("_anchor_head") else outputs[out], feed)
    if found is None:  # a raw head judged by score agreement: anchors, not boxes
        return {**empty(), "text": "raw head: judged by scores, no boxes"}
    boxes = np.asarray(found[0][0], dtype=np.float64).reshape(-1, 4) if found else np.zeros((0, 4))
    return {**empty(), "boxes": boxes[:MAX_BOXES], "text": f"{len(boxes)} detection(s)"}


def _ctc(outputs: dict, judge) -> dict:
    out = judge.options.get("output")
    if out not in outputs:
        return empty()
    texts = judge.start().decode(outputs[out])
    text = texts[0] if texts else ""
    return {**empty(), "text": repr(text) if isinstance(text, str) else f"classes {list(text)[:20]}"}


def _top1(scores) -> str:
    if scores is None:
        return ""
    a = np.asarray(scores, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).any():
        return "no finite score"
    k = int(np.nanargmax(np.where(np.isfinite(a), a, -np.inf)))
    prob = 0 <= np.nanmin(a) and np.nanmax(a) <= 1 and math.isclose(float(np.nansum(a)), 1.0, rel_tol=0.05)
    return f"class {k} ({'p' if prob else 'score'} {a[k]:.3g})"


def _map(outputs: dict, options: dict, task: str) -> dict:
    name = options.get("output") if options.get("output") in outputs else None
    if name is None:  # other tasks: the first spatial output
        name = next((k for k, v in outputs.items() if np.ndim(v) >= 3 and min(np.shape(v)[-2:]) >= 8), None)
    if name is None:
        return empty()
    a = np.asarray(outputs[name])
    a = a.reshape((-1,) + a.shape[-3:]) if a.ndim >= 4 else a.reshape((-1, 1) + a.shape[-2:])
    sample = a[0]  # C x H x W of the first batch row
    if sample.dtype.kind in "iub":
        return {**empty(), "map": sample[0].astype(np.int64), "kind": "class"}
    if task == "segment" and sample.shape[0] > 1 and options.get("mode") != "probability":
        return {**empty(), "map": np.argmax(np.nan_to_num(sample, nan=-np.inf), axis=0), "kind": "class"}
    m = sample[0].astype(np.float32)
    finite = m[np.isfinite(m)]
    is_prob = finite.size > 0 and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0
    threshold = float(options.get("threshold", 0.3)) if is_prob and task == "segment" else None
    return {**empty(), "map": m, "kind": "prob" if is_prob else "heat", "threshold": threshold}
