"""Representative data: find the samples in a folder, preprocess them as its manifest says, and check
them against the model's inputs.

A data folder holds either images plus a ``manifest.json`` that states the preprocessing (resize,
channel order, scale, mean/std, layout), or ``.npz``/``.npy`` files that are already model inputs
(one sample per file; ``.npz`` keys are input names). Samples are produced one batch at a time, so
no stage ever holds the whole dataset.

Inputs that are the same for every sample need not be repeated in each file: the manifest may give
them as ``{"source": "constant", "value": 16000}`` (a scalar or integer input such as a sample rate)
or ``{"source": "zeros", "shape": [2, 1, 128]}`` (the initial state of a recurrent model). A recurrent
model's per-sample state is otherwise an ordinary input stored in each ``.npz``; ``write_sequence``
writes a stream's chunks with the state carried over from the previous chunk (docs/DATA.md).
"""

from __future__ import annotations

import json
import re
import numbers
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from qbench import atomic
from qbench.errors import QbenchError
from qbench.model import InputSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIXES = {".npy", ".npz"}
MANIFEST = "manifest.json"

Sample = dict  # input name -> np.ndarray with a leading batch dimension


@dataclass
class ImagePreprocess:
    """How one image becomes one model input; every field comes from the manifest."""

    size: tuple[int, int]  # (height, width)
    resize: str = "stretch"  # "stretch" or "letterbox"
    channel_order: str = "RGB"  # "RGB", "BGR" or "GRAY"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: dict) -> "ImagePreprocess":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known - {"glob", "source"}
        if unknown:
            raise QbenchError(f"manifest: unknown preprocessing keys {sorted(unknown)} (known: {sorted(known)})")
        if "size" not in d:
            raise QbenchError("manifest: each image input needs a 'size': [height, width]")
        d = {k: v for k, v in d.items() if k in known}
        d["size"] = _size(d["size"])
        channels = 1 if d.get("channel_order") == "GRAY" else 3
        for key in ("mean", "std"):
            if key in d:
                d[key] = _per_channel(key, d[key], channels)
        if "scale" in d:
            d["scale"] = _number("scale", d["scale"])
        if "dtype" in d:
            d["dtype"] = _float_dtype(d["dtype"])
        pre = cls(**d)
        if pre.resize not in ("stretch", "letterbox"):
            raise QbenchError(f"manifest: resize must be 'stretch' or 'letterbox', not {pre.resize!r}")
        if pre.channel_order not in ("RGB", "BGR", "GRAY"):
            raise QbenchError(f"manifest: channel_order must be RGB, BGR or GRAY, not {pre.channel_order!r}")
        if pre.layout not in ("NCHW", "NHWC"):
            raise QbenchError(f"manifest: layout must be NCHW or NHWC, not {pre.layout!r}")
        return pre

    def __call__(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channel_order == "GRAY" else "RGB")
                h, w = self.size
                if self.resize == "stretch":
                    im = im.resize((w, h), Image.BILINEAR)
                else:
                    ratio = min(w / im.width, h / im.height)
                    inner = im.resize((max(1, round(im.width * ratio)), max(1, round(im.height * ratio))), Image.BILINEAR)
                    im = Image.new(im.mode, (w, h))
                    im.paste(inner, (0, 0))
                arr = np.asarray(im, dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise QbenchError(f"cannot read image {path}: {exc}") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if self.channel_order == "BGR":
            arr = arr[:, :, ::-1]
        channels = arr.shape[2]
        mean = np.asarray(self.mean[:channels], dtype=np.float32)
        std = np.asarray(self.std[:channels], dtype=np.float32)
        arr = (arr * np.float32(self.scale) - mean) / std
        if self.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr[None], dtype=self.dtype)


def _is_number(v) -> bool:
    # bool is an int to Python, but `true` in a manifest is a mistake, not 1
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _size(value) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(_is_number(v) and v == int(v) and v > 0 for v in value)):
        raise QbenchError(f"manifest: 'size' must be [height, width], two positive integers, not {value!r}")
    return int(value[0]), int(value[1])


def _per_channel(key: str, value, channels: int) -> tuple:
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, channels) or not all(_is_number(v) for v in values):
        raise QbenchError(f"manifest: {key!r} must be 1 or {channels} numbers (one per channel), not {value!r}")
    return tuple(float(v) for v in values) * (channels if len(values) == 1 else 1)


def _number(key: str, value) -> float:
    if not _is_number(value):
        raise QbenchError(f"manifest: {key!r} must be a number, not {value!r}")
    return float(value)


def _float_dtype(value) -> str:
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise QbenchError(f"manifest: 'dtype' must be a float type such as 'float32' or 'float16', not {value!r}")
    return dtype.name


@dataclass
class Dataset:
    """The samples of one data folder, checked against one model's inputs."""

    root: Path
    inputs: list[InputSpec]
    files: list[Path]
    kind: str  # "images" or "arrays"
    preprocess: dict[str, ImagePreprocess] = field(default_factory=dict)
    # inputs the manifest fills the same way for every sample ("constant" or "zeros"), with a batch of one
    fills: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, index: int) -> Sample:
        path = self.files[index]
        if self.kind == "images":
            (name, pre), = self.preprocess.items()
            sample = {name: pre(path)}
        else:
            sample = _load_arrays(path, [i for i in self.inputs if i.name not in self.fills])
        sample.update({name: value.copy() for name, value in self.fills.items()})
        check_sample(sample, self.inputs, source=path)
        return sample

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.sample(i)

    def batches(self, batch_size: int = 1, limit: int | None = None) -> Iterator[Sample]:
        """Stack consecutive samples into batches; the last batch may be smaller."""
        if batch_size < 1:
            raise QbenchError(f"batch size must be at least 1, not {batch_size}")
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            indices = range(start, min(start + batch_size, n))
            parts = [self.sample(i) for i in indices]
            yield {k: self._stack(k, parts, indices) for k in parts[0]}

    def _stack(self, name: str, parts: list[Sample], indices: range) -> np.ndarray:
        if len(parts) == 1:
            return parts[0][name]  # nothing to stack: scalars and odd layouts pass through untouched
        arrays = [p[name] for p in parts]
        spec = next((i for i in self.inputs if i.name == name), None)
        if arrays[0].ndim == 0:
            # a scalar input (a sample rate, a threshold) has no batch axis: one value serves the batch
            if any(not np.array_equal(a, arrays[0]) for a in arrays[1:]):
                raise QbenchError(f"input {name!r} is a scalar that differs between {self.files[indices[0]]} and "
                                  "the samples batched with it; use batch size 1")
            return arrays[0]
        axis = batch_axis(spec)
        if axis is None:
            raise QbenchError(f"input {name!r} has no free axis to batch along (shape {_fmt_shape(spec.shape)}); "
                              "use batch size 1")
        first = arrays[0].shape[:axis] + arrays[0].shape[axis + 1:]
        for arr, i in zip(arrays, indices):
            if arr.shape[:axis] + arr.shape[axis + 1:] != first:
                raise QbenchError(
                    f"{self.files[i]}: input {name!r} has shape {arr.shape}, but {self.files[indices[0]]} has "
                    f"{arrays[0].shape}; batch_size > 1 needs samples of equal shapes (use batch size 1)")
        return np.concatenate(arrays, axis=axis)


def iter_samples(dataset, limit: int | None = None) -> Iterator[Sample]:
    """The feeds of ``dataset`` one sample at a time, at most ``limit``: a Dataset's as its batches of
    one (the same arrays calibration and every runner see), any other iterable of feeds as it comes.
    A generator, so no stage holds more than the sample at hand."""
    if hasattr(dataset, "batches"):
        yield from dataset.batches(1, limit=limit)
        return
    for i, feed in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield feed


def count_samples(dataset, limit: int | None = None) -> int | None:
    """How many feeds ``iter_samples(dataset, limit)`` yields; ``limit`` (None: unknown) for an
    iterable without a length."""
    try:
        n = len(dataset)
    except TypeError:
        return limit
    return n if limit is None else min(n, limit)


def batch_axis(spec: InputSpec | None) -> int | None:
    """The axis samples are stacked along: 0, unless the model fixes axis 0 to more than one (a
    recurrent state laid out [layers, batch, hidden], say), then the first axis the model leaves free;
    None when every axis is fixed and the first is not 1 either."""
    if spec is None or spec.shape is None or not spec.shape:
        return 0
    lead = spec.shape[0]
    if not (isinstance(lead, int) and lead > 1):
        return 0
    free = [a for a, d in enumerate(spec.shape) if not (isinstance(d, int) and d > 0)]
    return free[0] if free else None


def sorted_files(paths) -> list[Path]:
    """Files in natural order (sample2 before sample10): the order of the samples is the order a user
    fed them elsewhere (to trtexec, say), and results imported from there are matched by position."""
    def key(path: Path):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]

    return sorted(paths, key=key)


def load_dataset(root: str | Path, inputs: list[InputSpec]) -> Dataset:
    """Find the samples in ``root`` for a model with these inputs."""
    root = Path(root)
    if not root.exists():
        raise QbenchError(f"data folder not found: {root}")
    if not root.is_dir():
        raise QbenchError(f"expected a data folder, got a file: {root}")
    manifest = _read_manifest(root)
    if manifest is not None:
        return _dataset_from_manifest(root, manifest, inputs)
    arrays = sorted_files(p for p in root.rglob("*") if p.suffix.lower() in ARRAY_SUFFIXES)
    if arrays:
        return Dataset(root, inputs, arrays, "arrays")
    images = sorted_files(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        raise QbenchError(
            f"{root} holds images but no {MANIFEST}: write one that states size, channel_order, scale, mean and std "
            f"(see calib_data/{MANIFEST} for an example)"
        )
    raise QbenchError(f"no samples in {root}: expected images with a {MANIFEST}, or .npy/.npz files")


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QbenchError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("inputs"), dict):
        raise QbenchError(f"{path} must be a JSON object with an 'inputs' object")
    return manifest


FILL_SOURCES = ("constant", "zeros")


def _dataset_from_manifest(root: Path, manifest: dict, inputs: list[InputSpec]) -> Dataset:
    specs = manifest["inputs"]
    model_names = [i.name for i in inputs]
    bad = [k for k, v in specs.items() if not isinstance(v, dict)
           or v.get("source", "images") not in ("images", "arrays") + FILL_SOURCES]
    if bad:
        raise QbenchError(f"{root / MANIFEST}: input {bad[0]!r} needs an object whose 'source' is images, arrays, "
                          "constant or zeros")
    fills = {k: v for k, v in specs.items() if v.get("source") in FILL_SOURCES}
    unknown = [k for k in fills if k not in model_names]
    if unknown:
        raise QbenchError(f"{root / MANIFEST} fills input {unknown[0]!r}, which the model does not have (it has {model_names})")
    filled = {k: _fill(root, k, v, next(i for i in inputs if i.name == k)) for k, v in fills.items()}
    rest = [i for i in inputs if i.name not in filled]
    image_inputs = {k: v for k, v in specs.items() if v.get("source", "images") == "images"}
    if not image_inputs:
        # .npy/.npz samples for the other inputs (each file as without a manifest)
        arrays = sorted_files(p for p in root.rglob("*") if p.suffix.lower() in ARRAY_SUFFIXES)
        if not arrays and rest:
            raise QbenchError(f"no .npy/.npz samples in {root} for inputs {[i.name for i in rest]}")
        if not arrays:
            raise QbenchError(f"{root / MANIFEST} fills every input; give at least one .npz sample per chunk")
        return Dataset(root, inputs, arrays, "arrays", fills=filled)
    if len(rest) == 1 and len(image_inputs) == 1 and rest[0].name not in specs:
        # a manifest written for a model whose input has another name still describes the only input
        image_inputs = {rest[0].name: next(iter(image_inputs.values()))}
    missing = [i.name for i in rest if i.name not in image_inputs]
    if missing or len(image_inputs) != 1:
        raise QbenchError(
            f"{root / MANIFEST} describes inputs {sorted(specs)} but the model needs {model_names}; "
            "image manifests read one image input (others may be 'constant' or 'zeros'); use .npz files for several"
        )
    name, spec = next(iter(image_inputs.items()))
    pattern = spec.get("glob", "*")
    if not isinstance(pattern, str) or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise QbenchError(f"{root / MANIFEST}: 'glob' must be a pattern inside the data folder, like 'images/*', not {pattern!r}")
    files = sorted_files(p for p in root.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QbenchError(f"no images match {pattern!r} in {root}")
    return Dataset(root, inputs, files, "images", {name: ImagePreprocess.from_dict(spec)}, fills=filled)


def _fill(root: Path, name: str, spec: dict, model_input: InputSpec) -> np.ndarray:
    """The array a manifest states for an input that is the same in every sample: a scalar such as a
    sample rate ("constant"), or the zero initial state of a recurrent model ("zeros")."""
    where = f"{root / MANIFEST}: input {name!r}"
    known = {"source", "value", "shape"}
    if set(spec) - known:
        raise QbenchError(f"{where}: unknown keys {sorted(set(spec) - known)} (known: {sorted(known)})")
    dtype = model_input.dtype
    if spec["source"] == "constant":
        if "value" not in spec:
            raise QbenchError(f"{where}: a 'constant' input needs a 'value' (a number or nested list)")
        try:
            value = np.asarray(spec["value"])
            if value.dtype.kind not in "biuf" or (value.dtype.kind == "f" and dtype.kind in "iu" and not
                                                  np.array_equal(value, np.round(value))):
                raise ValueError
            value = value.astype(dtype)
        except (ValueError, TypeError):
            raise QbenchError(f"{where}: 'value' must be numbers the model's {dtype} can hold, not {spec['value']!r}") from None
        return value
    shape = spec.get("shape")
    if shape is None:
        dims = model_input.shape or ()
        if model_input.shape is None or not all(isinstance(d, int) and d > 0 for d in dims):
            raise QbenchError(f"{where}: the model leaves its shape open ({_fmt_shape(dims)}); state 'shape', e.g. [2, 1, 128]")
        shape = list(dims)
    if not isinstance(shape, list) or not all(_is_number(d) and d == int(d) and d >= 0 for d in shape):
        raise QbenchError(f"{where}: 'shape' must be a list of non-negative integers, not {shape!r}")
    return np.zeros([int(d) for d in shape], dtype=dtype)


def write_sequence(folder: str | Path, chunks, run, state: dict[str, str], *, initial: dict | None = None,
                   constants: dict | None = None, prefix: str = "chunk") -> list[Path]:
    """Write one ``.npz`` sample per chunk of a stream, each carrying the recurrent state the model
    had when that chunk arrived: the first chunk gets ``initial`` (zeros when absent), every later
    chunk the state outputs of running ``run`` on the previous one.

    ``chunks``: the per-chunk inputs (dicts of arrays, batch axis included); ``run``: feed -> dict of
    outputs (e.g. ``OrtRunner(graph).run``); ``state``: state input name -> the output that carries it
    to the next chunk (silero-vad: ``{"state": "stateN"}``); ``constants``: inputs the same for every
    chunk (``{"sr": np.array(16000)}``). This is how a recurrent model is calibrated on the states it
    meets in use; a folder whose manifest gives the state as ``"zeros"`` calibrates every chunk from a
    fresh stream instead (cheaper, but it only sees the start-of-stream state). Files are written
    atomically in natural order (chunk2 before chunk10), so the samples stay in stream order.
    """
    folder = atomic.ensure_dir(folder)
    constants = dict(constants or {})
    carried = dict(initial or {})
    paths = []
    for index, chunk in enumerate(chunks):
        feed = {**constants, **chunk}
        for name in state:
            if name not in carried:
                raise QbenchError(f"write_sequence: no initial value for state input {name!r}; pass initial={{{name!r}: zeros}}")
            feed[name] = carried[name]
        path = folder / f"{prefix}{index}.npz"
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **feed)
        paths.append(path)
        outputs = run(feed)
        for name, output in state.items():
            if output not in outputs:
                raise QbenchError(f"write_sequence: the model has no output {output!r} to carry into {name!r}")
            carried[name] = np.asarray(outputs[output])
    return paths


def _read_arrays(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a .npy file, or every member of a .npz file. An .npz member is only read when
    it is indexed, so that happens here too, where its errors become one clear line."""
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle user data
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            members = {k: loaded[k] for k in loaded.files}
    except ValueError as exc:
        if "pickle" not in str(exc):  # numpy says allow_pickle=False for object arrays; else a bad header
            raise QbenchError(f"{path}: not a readable .npy/.npz file ({exc})") from None
        raise QbenchError(f"{path}: cannot load without unpickling ({exc}); save plain numeric arrays "
                          "(data is never unpickled)") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise QbenchError(f"{path}: not a readable .npy/.npz file ({exc})") from None
    # numpy hands back the raw bytes of a member that is not a .npy array
    odd = [k for k, v in members.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise QbenchError(f"{path}: not a readable .npy/.npz file (member {odd[0]!r} is not a .npy array)")
    return members


def _load_arrays(path: Path, inputs: list[InputSpec]) -> Sample:
    loaded = _read_arrays(path)
    if isinstance(loaded, np.ndarray):
        if len(inputs) != 1:
            raise QbenchError(f"{path}: a .npy file feeds one input, but the model has {len(inputs)}; use .npz with one key per input")
        sample = {inputs[0].name: loaded}
    else:
        sample = loaded
        missing = [i.name for i in inputs if i.name not in sample]
        if missing:
            raise QbenchError(f"{path}: missing arrays for inputs {missing} (has {sorted(sample)})")
        sample = {i.name: sample[i.name] for i in inputs}
    for spec in inputs:
        arr = sample[spec.name]
        if spec.shape is not None and arr.ndim == len(spec.shape) - 1:
            sample[spec.name] = arr[None]  # a single sample saved without its batch dimension
    return sample


def check_sample(sample: Sample, inputs: list[InputSpec], source: object = "sample") -> None:
    """Refuse data that the model would reject or silently misread: wrong dtype, rank, fixed
    dimension, or non-finite values."""
    for spec in inputs:
        arr = sample[spec.name]
        if arr.dtype != spec.dtype:
            raise QbenchError(f"{source}: input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}")
        if spec.shape is not None:
            _check_shape(arr, spec, source)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.isfinite(arr).sum())
            raise QbenchError(f"{source}: input {spec.name!r} holds {bad} NaN/Inf values")


def _check_shape(arr: np.ndarray, spec: InputSpec, source: object) -> None:
    if arr.ndim != len(spec.shape):
        raise QbenchError(
            f"{source}: input {spec.name!r} has shape {arr.shape} ({arr.ndim}-D), the model expects {len(spec.shape)}-D {_fmt_shape(spec.shape)}"
        )
    for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
        if isinstance(want, int) and want > 0 and got != want and axis > 0:
            raise QbenchError(f"{source}: input {spec.name!r} has shape {arr.shape}, the model expects {_fmt_shape(spec.shape)}")


def _fmt_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape) + ")"
