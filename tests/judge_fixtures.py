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


def int8_runner(graph, feeds, scale: float = 1.0, keep_float=(), clip: dict | None = None):
    """An ONNX Runtime runner of the INT8 simulation of graph with MinMax ranges taken directly
    from FP32 activations on feeds (max |t| over the feeds — what MinMax calibration computes,
    without the histogram pass, to keep tests fast). scale < 1 clips every range, clip {tensor: factor}
    clips the named ones: planted faults."""
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
    clip = clip or {}
    ranges = Ranges({n: TensorRange(n, a * scale * clip.get(n, 1.0), method="minmax") for n, a in amax.items()}, method="minmax")
    sim = build_int8_model(graph, ranges, keep_float=keep_float)
    return OrtRunner(ModelGraph(sim.model, name="int8"), capture=None)


def render_chars(lines, size=(416, 416), font_size=30, spacing=8):
    """A white page with characters drawn one by one, spaced apart, and their exact boxes
    [x1, y1, x2, y2, 0] from Pillow's text metrics (the ground truth of a character detector)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    boxes = []
    y = 20
    for text in lines:
        x = 20
        for ch in text:
            if ch != " ":
                draw.text((x, y), ch, fill="black", font=font)
                x1, y1, x2, y2 = draw.textbbox((x, y), ch, font=font)
                boxes.append([float(x1), float(y1), float(x2), float(y2), 0])
            x += font.getlength(ch) + spacing
        y += font_size + 24
    return img, boxes


def bgr_tensor(img) -> np.ndarray:
    """ddddocr's detector input: BGR pixels 0-255 as float32 [1, 3, H, W]."""
    a = np.asarray(img.convert("RGB"))[:, :, ::-1]
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None].astype(np.float32))


def db_tensor(img) -> np.ndarray:
    """PP-OCR det preprocessing: RGB / 255, ImageNet mean/std, [1, 3, H, W] float32."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    a = (a - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None].astype(np.float32))


def with_argmax(graph, name="argmax"):
    """The model with its [B, 1, H, W] probability map turned into a class map the way segmentation
    exports end: Concat([1 - p, p]) over the class axis, then ArgMax -> int64 [B, H, W]."""
    import onnx
    from onnx import TensorProto, helper
    from qbench.model import ModelGraph

    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    prob = model.graph.output[0].name
    one = helper.make_tensor("judge_one", TensorProto.FLOAT, [], [1.0])
    model.graph.initializer.append(one)
    model.graph.node.extend([
        helper.make_node("Sub", ["judge_one", prob], ["judge_background"]),
        helper.make_node("Concat", ["judge_background", prob], ["judge_classes"], axis=1),
        helper.make_node("ArgMax", ["judge_classes"], ["class_map"], axis=1, keepdims=0),
    ])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("class_map", TensorProto.INT64, None))
    return ModelGraph.from_proto(model, name)
