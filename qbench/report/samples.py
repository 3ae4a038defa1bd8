"""Pictures of the samples behind a task verdict: for each of the worst samples, the input, the FP32
outputs drawn on it and the candidate's outputs drawn on it, side by side.

What is drawn follows the task (``qbench.compare.marks``, made with the judge's own steps): boxes
for ``detect``, class maps and probability maps for ``segment`` (with the mask outline at the
judge's threshold), the decoded line for ``ctc``, the top class for ``classify``, and for everything
else the first spatial output as a heat map. Drawing runs no model and no judge.

Every text on a picture that came from the model or the data (output names, sample names, decoded
text) goes through ``plots.label``: matplotlib would read '$' as the start of mathtext.
"""

from __future__ import annotations

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


def draw(picture, caption: str = "") -> bytes | None:
    """PNG of one sample (input | FP32 | candidate), or None when there is nothing to show."""
    ref, cand = picture.reference_marks, picture.candidate_marks
    if not ref or (picture.image is None and ref["map"] is None and ref["boxes"] is None and not ref["text"]):
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


