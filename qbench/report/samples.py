"""Pictures of the samples behind a task verdict: for each of the worst samples, the input, the FP32
outputs drawn on it and the candidate's outputs drawn on it, side by side.

What is drawn follows the task: boxes for ``detect`` (decoded by the judge's own decoder, so the
picture shows exactly the detections that were scored), class maps and probability maps for
``segment`` (with the mask outline at the judge's threshold), the decoded line for ``ctc``, the top
class for ``classify``, and for everything else the first spatial output as a heat map. Outputs
are what ``qbench.compare.tap`` kept (large maps strided down), so drawing runs no model.

Every text on a picture that came from the model or the data (output names, sample names, decoded
text) goes through ``plots.label``: matplotlib would read '$' as the start of mathtext.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from qbench.report.plots import _png, label

REF_COLOUR = "#43a047"
CAND_COLOUR = "#e53935"
MAX_BOXES = 60  # drawn per panel; more only hides the picture
CLASS_COLOURS = ListedColormap(np.array([
    [0, 0, 0, 0], [230, 25, 75, 150], [60, 180, 75, 150], [255, 225, 25, 150], [0, 130, 200, 150],
    [245, 130, 48, 150], [145, 30, 180, 150], [70, 240, 240, 150], [240, 50, 230, 150], [210, 245, 60, 150],
    [250, 190, 212, 150], [0, 128, 128, 150], [220, 190, 255, 150], [170, 110, 40, 150], [128, 0, 0, 150],
    [170, 255, 195, 150]]) / 255.0)


def draw(picture, task, caption: str = "") -> bytes | None:
    """PNG of one sample (input | FP32 | candidate), or None when there is nothing to show."""
    ref = overlay(picture.reference, task, picture.input_hw)
    cand = overlay(picture.candidate, task, picture.input_hw)
    if picture.image is None and ref["map"] is None and ref["boxes"] is None and not ref["text"]:
        return None
    panels = [("input", None)] if picture.image is not None else []
    panels += [("FP32", ref), ("candidate", cand)]
    fig = Figure(figsize=(2.7 * len(panels), 3.05), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, ov) in zip(axes, panels):
        ax.set_xticks([])
        ax.set_yticks([])
        hw = _extent_hw(picture, ov)
        if picture.image is not None:
            ax.imshow(picture.image, cmap="gray" if picture.image.ndim == 2 else None,
                      extent=(0, hw[1], hw[0], 0), interpolation="bilinear")
        if ov is not None:
            _draw_overlay(ax, ov, hw, REF_COLOUR if title == "FP32" else CAND_COLOUR)
            if ov["text"]:
                title = f"{title}: {ov['text']}"
        if hw is not None:
            ax.set_xlim(0, hw[1])
            ax.set_ylim(hw[0], 0)
        ax.set_title(label(title, 44), fontsize=8.5, loc="left")
    if caption:
        fig.suptitle(label(caption, 110), fontsize=8.5, x=0.01, ha="left")
    return _png(fig)


def _extent_hw(picture, ov) -> tuple[int, int] | None:
    """The coordinate frame of a panel: the model input's pixels when known, else the map's."""
    if picture.input_hw is not None:
        return picture.input_hw
    if ov is not None and ov["map"] is not None:
        return tuple(ov["map"].shape[:2])
    return None


def _draw_overlay(ax, ov: dict, hw, colour: str) -> None:
    if ov["map"] is not None:
        m = ov["map"]
        extent = (0, hw[1], hw[0], 0) if hw is not None else None
        if ov["kind"] == "class":
            ax.imshow(np.mod(m, len(CLASS_COLOURS.colors)), cmap=CLASS_COLOURS, vmin=0, vmax=len(CLASS_COLOURS.colors) - 1,
                      extent=extent, interpolation="nearest")
        else:
            finite = np.where(np.isfinite(m), m, np.nan)
            ax.imshow(finite, cmap="magma", alpha=0.55 if ov["kind"] == "prob" else 0.65, extent=extent,
                      interpolation="nearest", vmin=0 if ov["kind"] == "prob" else None, vmax=1 if ov["kind"] == "prob" else None)
            if ov["kind"] == "prob" and ov["threshold"] is not None and np.nanmax(finite, initial=-np.inf) > ov["threshold"]:
                ys = np.linspace(0, hw[0] if hw else m.shape[0], m.shape[0])
                xs = np.linspace(0, hw[1] if hw else m.shape[1], m.shape[1])
                ax.contour(xs, ys, np.nan_to_num(finite), levels=[ov["threshold"]], colors=[colour], linewidths=1.0)
    if ov["boxes"] is not None:
        for x1, y1, x2, y2 in ov["boxes"][:MAX_BOXES, :4]:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.0))


def overlay(outputs: dict, task, input_hw) -> dict:
    """What to draw of one side's outputs: {"map", "kind" (prob|class|heat), "threshold", "boxes"
    (N x 4+ xyxy in input pixels), "text"}."""
    ov = {"map": None, "kind": "heat", "threshold": None, "boxes": None, "text": ""}
    name = getattr(task, "task", "") or ""
    options = getattr(task, "options", None) or {}
    if name == "detect":
        ov["boxes"] = _boxes(outputs, options, input_hw)
        if ov["boxes"] is not None:
            ov["text"] = f"{len(ov['boxes'])} detection(s)"
        return ov
    if name == "ctc":
        ov["text"] = repr(_ctc_text(outputs, options))
        return ov
    if name == "classify":
        ov["text"] = _top1_text(outputs)
        return ov
    spatial = [(k, np.asarray(v)) for k, v in outputs.items() if np.asarray(v).ndim >= 2 and min(np.asarray(v).shape[-2:]) >= 8]
    if not spatial:
        return ov
    _, a = spatial[0]
    a = a.reshape((-1,) + a.shape[-3:]) if a.ndim >= 3 else a[None, None]
    if a.ndim == 3:
        a = a[:, None]
    sample = a[0]  # C x H x W of the first batch row
    if np.issubdtype(sample.dtype, np.integer) or sample.dtype == bool:
        ov.update(map=sample[0].astype(np.int64), kind="class")
    elif sample.shape[0] > 1 and name == "segment":
        ov.update(map=np.argmax(sample, axis=0), kind="class")
    else:
        m = sample[0].astype(np.float32)
        finite = m[np.isfinite(m)]
        is_prob = finite.size > 0 and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0
        ov.update(map=m, kind="prob" if is_prob else "heat",
                  threshold=float(options.get("threshold", 0.3)) if is_prob and name == "segment" else None)
    return ov


def _boxes(outputs: dict, options: dict, input_hw):
    """The detections the judge scored (xyxy in input pixels, after threshold and NMS), or None when
    the head was judged by score agreement (a raw head without strides: no boxes to draw)."""
    from types import SimpleNamespace

    from qbench.judge import detect

    decode = getattr(detect, "decode_detections", None)
    if decode is not None:
        return decode(outputs, options, input_hw)
    # the judge exports no decoder yet: run its accumulator's own steps on this one sample, so the
    # picture shows exactly the detections it counted
    name = options.get("output") or next(iter(outputs))
    if name not in outputs:
        return None
    shim = SimpleNamespace(options=options, labels=None, output_names=[name], task="detect", note="",
                           graph=SimpleNamespace(inputs=[]))
    acc = detect.DetectAccumulator(shim)
    rows = acc._rows(outputs[name])[0]
    feed = {"image": np.broadcast_to(np.float32(0), (1, 3, *input_hw))} if input_hw else {}
    acc._decide_mode(rows, feed)
    if acc.mode != "boxes":
        return None
    boxes, _scores, _classes = acc._detections(rows)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _ctc_text(outputs: dict, options: dict) -> str:
    try:
        from qbench.judge.ctc import decode_text
    except ImportError:
        return ""
    return str(decode_text(outputs, options))


def _top1_text(outputs: dict) -> str:
    if not outputs:
        return ""
    a = np.asarray(next(iter(outputs.values())), dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).any():
        return "no finite score"
    k = int(np.nanargmax(a))
    v = float(a[k])
    return f"class {k} ({'p' if 0 <= a.min() and a.max() <= 1 and math.isclose(a.sum(), 1, rel_tol=0.05) else 'score'} {v:.3g})"
