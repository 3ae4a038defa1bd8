"""Pictures of the samples behind a task verdict: for each of the worst samples, the input, the FP32
outputs drawn on it and the candidate's outputs drawn on it, side by side.

What is drawn follows the task (``qbench.compare.marks``, made with the judge's own steps): boxes
for ``detect``, class maps and probability maps for ``segment`` (with the mask outline at the
judge's threshold), the decoded line for ``ctc``, the top class for ``classify``, and for everything
else the first spatial output as a heat map. Drawing runs no model and no judge.

Drawn with Pillow rather than matplotlib: a picture is a few array blends and rectangles, and
Pillow makes one in milliseconds where a matplotlib figure takes a good part of a second — this
runs for every candidate of every `qbench run` (benchmarks/bench_judge.py). Text from the model or
the data is drawn as plain pixels (no markup language involved) and cut to the panel's width.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL = 256            # longest side of one panel, pixels
TITLE_H = 18           # one line of text above each panel
CAPTION_H = 20
GAP = 8
REF_COLOUR = (67, 160, 71)
CAND_COLOUR = (229, 57, 53)
MAX_BOXES = 100
# class maps: background (class 0) clear, then 15 distinct colours
CLASS_RGB = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                      [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
                      [220, 190, 255], [170, 110, 40], [128, 0, 0], [170, 255, 195]], dtype=np.float32)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def draw(picture, caption: str = "") -> bytes | None:
    """PNG of one sample (input | FP32 | candidate), or None when there is nothing to show."""
    ref, cand = picture.reference_marks, picture.candidate_marks
    if not ref or (picture.image is None and ref["map"] is None and ref["boxes"] is None and not ref["text"]):
        return None
    hw = _frame_hw(picture, ref)
    scale = PANEL / max(hw)
    size = (max(1, round(hw[1] * scale)), max(1, round(hw[0] * scale)))  # (width, height)
    base = _base(picture.image, size)
    panels = [("input", base)] if picture.image is not None else []
    panels += [(_title("FP32", ref), _overlay(base, ref, hw, size, REF_COLOUR)),
               (_title("candidate", cand), _overlay(base, cand, hw, size, CAND_COLOUR))]
    width = len(panels) * size[0] + (len(panels) + 1) * GAP
    canvas = Image.new("RGB", (max(width, 320), CAPTION_H + TITLE_H + size[1] + GAP), "white")
    pen = ImageDraw.Draw(canvas)
    small = _font(12)
    pen.text((GAP, 3), _fit(caption, small, canvas.width - 2 * GAP), fill=(31, 41, 51), font=small)
    for i, (title, img) in enumerate(panels):
        x = GAP + i * (size[0] + GAP)
        pen.text((x, CAPTION_H), _fit(title, small, size[0]), fill=(31, 41, 51), font=small)
        canvas.paste(img, (x, CAPTION_H + TITLE_H))
        pen.rectangle([x - 1, CAPTION_H + TITLE_H - 1, x + size[0], CAPTION_H + TITLE_H + size[1]], outline=(190, 190, 190))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _title(side: str, marks: dict) -> str:
    return f"{side}: {marks['text']}" if marks.get("text") else side


def _fit(text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels, on one line."""
    text = " ".join(str(text).split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _frame_hw(picture, marks: dict) -> tuple[int, int]:
    """The coordinate frame of a panel: the model input's pixels when known, else the map's."""
    if picture.input_hw is not None:
        return picture.input_hw
    if marks.get("map") is not None:
        return tuple(int(d) for d in marks["map"].shape[:2])
    return (PANEL, PANEL)


def _base(image, size) -> Image.Image:
    if image is None:
        return Image.new("RGB", size, (236, 239, 241))
    return Image.fromarray(image).convert("RGB").resize(size, Image.BILINEAR)


def _overlay(base: Image.Image, marks: dict, hw, size, colour) -> Image.Image:
    img = base.copy()
    m = marks.get("map")
    if m is not None:
        img = _blend_map(img, np.asarray(m), marks["kind"], marks.get("threshold"), size, colour)
    boxes = marks.get("boxes")
    if boxes is not None and len(boxes):
        pen = ImageDraw.Draw(img)
        sy, sx = size[1] / hw[0], size[0] / hw[1]
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64)[:MAX_BOXES, :4]:
            if np.all(np.isfinite([x1, y1, x2, y2])):
                pen.rectangle([x1 * sx, y1 * sy, max(x1, x2) * sx, max(y1, y2) * sy], outline=colour, width=2)
    return img


def _resize_nearest(a: np.ndarray, size) -> np.ndarray:
    """A 2-D array resampled to (width, height) by nearest neighbour (labels must not blend)."""
    rows = np.minimum((np.arange(size[1]) * a.shape[0] / size[1]).astype(np.int64), a.shape[0] - 1)
    cols = np.minimum((np.arange(size[0]) * a.shape[1] / size[0]).astype(np.int64), a.shape[1] - 1)
    return a[rows][:, cols]


def _blend_map(img: Image.Image, m: np.ndarray, kind: str, threshold, size, colour) -> Image.Image:
    from matplotlib import colormaps

    base = np.asarray(img, dtype=np.float32)
    m = _resize_nearest(m, size)
    if kind == "class":
        k = np.mod(m.astype(np.int64), len(CLASS_RGB))
        alpha = np.where(k > 0, 0.55, 0.0)[..., None]
        out = base * (1 - alpha) + CLASS_RGB[k] * alpha
    else:
        v = np.where(np.isfinite(m), m, np.nan).astype(np.float64)
        if kind == "prob":
            lo, hi = 0.0, 1.0
        else:
            finite = v[np.isfinite(v)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = np.clip((np.nan_to_num(v, nan=lo) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        heat = colormaps["magma"](norm)[..., :3].astype(np.float32) * 255.0
        out = base * 0.45 + heat * 0.55
        if threshold is not None:  # the mask outline the judge scored
            mask = np.nan_to_num(v, nan=-np.inf) >= threshold
            inner = mask.copy()
            inner[1:, :] &= mask[:-1, :]
            inner[:-1, :] &= mask[1:, :]
            inner[:, 1:] &= mask[:, :-1]
            inner[:, :-1] &= mask[:, 1:]
            out[mask & ~inner] = colour
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
