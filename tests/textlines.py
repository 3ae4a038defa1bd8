"""Labelled text lines for the PP-OCR direction classifier: strings rendered with Pillow's built-in
FreeType font, upright (class 0, "0") or turned 180 degrees (class 1, "180"), preprocessed as
RapidOCR does for that model (48x192, BGR, x/255, mean 0.5, std 0.5, NCHW). Exact labels, no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("invoice", "total", "receipt", "quantity", "address", "payment", "shipping", "number", "customer", "amount",
         "station", "network", "signal", "calibration", "engine", "tensor", "layer", "output", "detector", "window")
CLASSIFIER = Path(__file__).parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def text_line(text: str, rotated: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=int(rng.integers(26, 34)))
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 12))
    ink, paper = int(rng.integers(0, 60)), int(rng.integers(190, 256))
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), paper)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, fill=ink, font=font)
    if rotated:
        image = image.rotate(180)
    # RapidOCR's classifier input: height 48, width scaled with the aspect ratio up to 192, right-padded with 0
    width = min(192, max(1, round(image.width * 48 / image.height)))
    line = np.asarray(image.resize((width, 48), Image.BILINEAR), dtype=np.float32)
    x = np.zeros((3, 48, 192), dtype=np.float32)
    x[:, :, :width] = ((line / 255.0 - 0.5) / 0.5)[None]
    return x


def labelled_lines(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` lines (N, 3, 48, 192) and their labels (0 upright, 1 turned 180 degrees), half each."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(count):
        words = rng.choice(WORDS, size=int(rng.integers(1, 3)), replace=False)
        text = " ".join(words) + (f" {int(rng.integers(0, 1000))}" if rng.random() < 0.5 else "")
        label = i % 2
        xs.append(text_line(text, bool(label), seed * 100_000 + i))
        ys.append(label)
    return np.stack(xs), np.array(ys)


def write_npy_folder(folder: Path, lines: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(lines):
        np.save(folder / f"line_{i:03d}.npy", x[None])
    return folder
