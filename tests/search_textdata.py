"""Exactly labelled text data for the search tests and the benchmark, made at test time.

Orientation: known strings rendered with Pillow onto crops of the bundled photographs
(calib_data/images), as 48x192 lines; each line appears upright (class 0, "0") and turned by 180
degrees (class 1, "180"), so the label is known by construction. Recognition: the same strings,
upright, with the string itself as the label.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "calib_data" / "images"
WORDS = ["invoice", "total", "2024", "market", "HELLO", "station", "quantize", "Road 17", "coffee", "exit",
         "tensor", "river", "NO PARKING", "open 9-5", "library", "price 3.50", "garden", "delta", "ticket", "north"]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no scalable default font
        return ImageFont.truetype("DejaVuSans.ttf", size)


def text_line(text: str, seed: int, height: int = 48, width: int = 192) -> Image.Image:
    """One dark-on-light text line on a lightened crop of a real photograph."""
    rng = random.Random(seed)
    photos = sorted(PHOTOS.glob("*"))
    photo = Image.open(photos[seed % len(photos)]).convert("RGB")
    x = rng.randrange(0, max(1, photo.width - width))
    y = rng.randrange(0, max(1, photo.height - height))
    crop = photo.crop((x, y, x + width, y + height)).resize((width, height))
    canvas = Image.blend(crop, Image.new("RGB", (width, height), (235, 235, 230)), 0.75)
    draw = ImageDraw.Draw(canvas)
    size = rng.randrange(26, 34)
    ink = tuple(rng.randrange(0, 60) for _ in range(3))
    draw.text((rng.randrange(2, 12), (height - size) // 2 - 2), text, fill=ink, font=_font(size))
    return canvas


def orientation_folder(root: Path, n_lines: int = 16, seed: int = 0) -> dict[str, int]:
    """``n_lines`` lines, each upright and turned: 2 x n_lines PNGs, a manifest for the PP-OCR
    classifier (48x192, BGR, (x/255 - 0.5)/0.5) and labels.json (file name -> class)."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n_lines):
        line = text_line(WORDS[i % len(WORDS)], seed * 1000 + i)
        for turned in (0, 1):
            name = f"line{i:03d}_{180 * turned}.png"
            (line.rotate(180) if turned else line).save(root / name)
            labels[name] = turned
    manifest = {"inputs": {"x": {"source": "images", "glob": "*.png", "size": [48, 192], "resize": "stretch",
                                 "channel_order": "BGR", "layout": "NCHW", "scale": 1 / 255,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "dtype": "float32"}}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def top1_accuracy(model_path, folder: Path) -> float:
    """Top-1 accuracy of a classifier (ONNX file) on ``folder`` against its labels.json."""
    import onnxruntime as ort

    from qbench.data import load_dataset
    from qbench.model import ModelGraph

    graph = ModelGraph.from_path(model_path)
    data = load_dataset(folder, graph.inputs)
    labels = json.loads((folder / "labels.json").read_text())
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    right = 0
    for i, path in enumerate(data.files):
        out = sess.run(None, data.sample(i))[0]
        right += int(np.argmax(out.reshape(-1)) == labels[path.name])
    return right / len(data)


RECOGNITION_WORDS = ["Invoice 2024", "total 38.50", "market street", "HELLO world", "station 7", "quantize me",
                     "Road 17 north", "coffee shop", "exit only", "tensor core", "river bank", "NO PARKING",
                     "open 9-5 daily", "public library", "price 3.50", "garden gate", "delta 42", "ticket office",
                     "north wing", "room 101", "bus stop 12", "fresh bread", "lane closed", "platform 3"]


def ppocr_line(img: Image.Image, height: int = 48, width: int = 320) -> np.ndarray:
    """PP-OCR's recognizer preprocessing: resize to ``height`` keeping the aspect ratio (at most
    ``width``), scale to [-1, 1], pad the right with zeros; [1, 3, height, width] float32."""
    w = min(width, max(1, int(round(img.width * height / img.height))))
    arr = np.asarray(img.convert("RGB").resize((w, height), Image.BILINEAR), dtype=np.float32)
    out = np.zeros((1, 3, height, width), dtype=np.float32)
    out[0, :, :, :w] = ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def recognition_folder(root: Path, n_lines: int = 24, seed: int = 0) -> dict[str, str]:
    """``n_lines`` text lines as .npy model inputs for the PP-OCRv4 recognizer (48x320) on crops of
    the bundled photographs, and labels.json (file name -> the rendered string)."""
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n_lines):
        text = RECOGNITION_WORDS[i % len(RECOGNITION_WORDS)]
        img = text_line(text, seed * 1000 + i, height=48, width=320)
        name = f"line{i:03d}.npy"
        np.save(root / name, ppocr_line(img))
        labels[name] = text
    (root / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels
