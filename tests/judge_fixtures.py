"""Real inputs with exactly known labels for the judge tests: text rendered with Pillow (so the
string and its orientation are known by construction), preprocessed as PP-OCR does."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LINES = ["Quantization", "hello world 42", "TensorRT INT8", "judge verdict", "calibrate ranges", "ONNX Runtime"]


def render_line(text: str, height: int = 48, size: int = 34) -> Image.Image:
    """Black text on white, tightly cropped with a small margin (a text-line crop as a detector
    would hand it to the classifier/recognizer)."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 16, bottom - top + 16), "white")
    ImageDraw.Draw(img).text((8 - left, 8 - top), text, fill="black", font=font)
    return img


def ppocr_line_tensor(img: Image.Image, height: int = 48, width: int = 192) -> np.ndarray:
    """PP-OCR's line preprocessing: resize to the height keeping the aspect (at most width), scale to
    [-1, 1], pad the right with zeros. Returns [1, 3, height, width] float32."""
    w = min(width, max(1, int(round(img.width * height / img.height))))
    arr = np.asarray(img.convert("RGB").resize((w, height), Image.BILINEAR), dtype=np.float32)
    arr = (arr / 255.0 - 0.5) / 0.5
    out = np.zeros((1, 3, height, width), dtype=np.float32)
    out[0, :, :, :w] = arr.transpose(2, 0, 1)
    return out


def render_page(lines, size=(256, 256), font_size=22) -> Image.Image:
    """A white page with the given lines of text (a text-free page when lines is empty)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    for i, text in enumerate(lines):
        draw.text((12, 16 + i * (font_size + 14)), text, fill="black", font=font)
    return img


def int8_runner(graph, feeds, scale: float = 1.0, keep_float=()):
    """An ONNX Runtime runner of the INT8 simulation of graph with MinMax ranges taken directly
    from FP32 activations on feeds (max |t| over the feeds — what MinMax calibration computes,
    without the histogram pass, to keep tests fast). scale < 1 clips every range: a planted fault."""
    from qbench.ranges import Ranges, TensorRange
    from qbench.runners.ort import OrtRunner
    from qbench.model import ModelGraph
    from qbench.simulate import build_int8_model

    fp32 = OrtRunner(graph, capture=graph.range_tensors)
    amax: dict = {}
    for feed in feeds:
        for name, value in fp32.run(feed).items():
            if name in graph.range_tensors and np.asarray(value).dtype.kind == "f":
                amax[name] = max(amax.get(name, 0.0), float(np.max(np.abs(value))) if np.size(value) else 0.0)
    ranges = Ranges({n: TensorRange(n, a * scale, method="minmax") for n, a in amax.items()}, method="minmax")
    sim = build_int8_model(graph, ranges, keep_float=keep_float)
    return OrtRunner(ModelGraph(sim.model, name="int8"), capture=None)
