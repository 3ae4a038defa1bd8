"""Real models and exactly-made data for the judge integration tests.

* ``decoded_detector``: the YOLOX-style character detector shipped in the ``ddddocr`` wheel
  (``common_det.onnx``, raw head [1, 3549, 6]: x, y, w, h as grid offsets, objectness, one class),
  with the YOLOX decode appended IN the graph, as YOLOX exports with ``decode_in_inference`` do:
  xy = (xy + grid) * stride, wh = exp(wh) * stride, strides 8/16/32 at 416x416. Box coordinates in
  the hundreds of pixels then dominate any whole-output cosine, which is what hides lost detections.
* ``text_images``: text rendered with Pillow onto the detector's letterbox grey (114), as BGR 0-255
  NCHW float arrays (the preprocessing ddddocr itself applies), saved as .npy samples.
* ``argmax_segmenter``: the embedded PP-OCRv4 text detector ending in ArgMax over [background,
  text] logits (p - 0.3 against 0.3 - p): an int64 class map, as segmentation nets exported through
  tf2onnx often end. Class 1 exactly where the probability map exceeds 0.3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

DET_SIZE = 416
STRIDES = (8, 16, 32)


def ddddocr_detector_path() -> Path:
    """The detector inside the installed ddddocr package (a dev dependency); skip without it
    (fail under CI, where the dev extra is installed)."""
    import os

    try:
        import ddddocr  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ddddocr (dev extra) is not installed")
        pytest.skip("ddddocr is not installed (pip install -e '.[dev]')")
    path = Path(ddddocr.__file__).resolve().parent / "common_det.onnx"
    assert path.is_file(), path
    return path


def _grid_and_strides(size: int = DET_SIZE) -> tuple[np.ndarray, np.ndarray]:
    grids, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return (np.concatenate(grids)[None].astype(np.float32), np.concatenate(strides)[None].astype(np.float32))


def decoded_detector(dest: Path) -> Path:
    model = onnx.load(str(ddddocr_detector_path()))
    g = model.graph
    raw = g.output[0].name
    grid, stride = _grid_and_strides()
    g.initializer.extend([numpy_helper.from_array(grid, "qb_grid"), numpy_helper.from_array(stride, "qb_stride")])
    g.node.extend([
        # opset 11 (the model's): the split sizes are an attribute
        helper.make_node("Split", [raw], ["qb_xy", "qb_wh", "qb_scores"], axis=2, split=[2, 2, 2], name="decode_split"),
        helper.make_node("Add", ["qb_xy", "qb_grid"], ["qb_xy_cells"], name="decode_add_grid"),
        helper.make_node("Mul", ["qb_xy_cells", "qb_stride"], ["qb_xy_px"], name="decode_xy_px"),
        helper.make_node("Exp", ["qb_wh"], ["qb_wh_cells"], name="decode_exp"),
        helper.make_node("Mul", ["qb_wh_cells", "qb_stride"], ["qb_wh_px"], name="decode_wh_px"),
        helper.make_node("Concat", ["qb_xy_px", "qb_wh_px", "qb_scores"], ["detections"], axis=2, name="decode_concat"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, 3549, 6]))
    onnx.checker.check_model(model)
    path = dest / "char_detector_decoded.onnx"
    onnx.save(model, str(path))
    return path


def text_images(dest: Path, lines: list[list[str]], size: int = DET_SIZE) -> Path:
    """One .npy sample per entry of ``lines`` (a list of text lines each), in file order s0, s1..."""
    from PIL import Image, ImageDraw, ImageFont

    dest.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=36)
    for i, text_lines in enumerate(lines):
        im = Image.new("RGB", (size, size), (114, 114, 114))
        draw = ImageDraw.Draw(im)
        if text_lines:
            draw.rectangle([20, 100, size - 20, 100 + 90 * len(text_lines)], fill=(240, 240, 230))
        for j, text in enumerate(text_lines):
            draw.text((40, 130 + 80 * j), text, fill=(10, 10, 10), font=font)
        arr = np.asarray(im)[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # BGR NCHW, 0-255
        np.save(dest / f"s{i}.npy", arr)
    return dest


def argmax_segmenter(source: Path, dest: Path, threshold: float = 0.3) -> Path:
    model = onnx.load(str(source))
    g = model.graph
    prob = g.output[0].name
    g.initializer.append(numpy_helper.from_array(np.array(threshold, dtype=np.float32), "qb_threshold"))
    g.node.extend([
        helper.make_node("Sub", ["qb_threshold", prob], ["qb_background"], name="background_logit"),
        helper.make_node("Sub", [prob, "qb_threshold"], ["qb_text"], name="text_logit"),
        helper.make_node("Concat", ["qb_background", "qb_text"], ["qb_logits"], axis=1, name="class_logits"),
        helper.make_node("ArgMax", ["qb_logits"], ["class_map"], axis=1, keepdims=0, name="argmax"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("class_map", TensorProto.INT64, None))
    path = dest / "text_segmenter_argmax.onnx"
    onnx.save(model, str(path))
    return path
