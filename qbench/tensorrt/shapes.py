"""Pure-Python shape work for the TensorRT builder (no TensorRT needed, tested in tests/test_trt_helpers.py).
qbench's, not Polygraphy's: Polygraphy fills a dynamic dimension it is not given with one default size;
qbench sizes the profile from its calibration data, which Polygraphy does not know.

- ``validate_shapes``: ``--shapes`` entries must name model inputs and match their rank and fixed dims.
- ``check_batch_size``: a calibration batch size > 1 needs a dynamic batch dimension.
- ``sample_shapes`` / ``profile_from_shapes`` / ``compute_profile``: the optimization profile of each
  dynamic input, min/max over the calibration batches (shapes only: image samples share the
  manifest's size, array files are sized from their .npy headers without reading the data).
- ``data_digest``: a fingerprint of the calibration data (paths, sizes, mtimes, preprocessing) for
  the engine cache key, where the data decides the INT8 ranges.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from qbench.errors import QbenchError

Dims = tuple[int, ...]


def _fixed(dim) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def is_dynamic(spec) -> bool:
    return spec.shape is None or not all(_fixed(d) for d in spec.shape)


def _fmt(shape) -> str:
    return "x".join(str(d) if _fixed(d) else "?" for d in shape)


def validate_shapes(shapes: dict, inputs: list) -> None:
    """Refuse --shapes entries for unknown inputs, of another rank, that contradict a fixed
    dimension, or whose min/opt/max are not ordered (TensorRT would fail later, less clearly)."""
    specs = {s.name: s for s in inputs}
    for name, triple in shapes.items():
        if name not in specs:
            raise QbenchError(f"--shapes names input {name!r}, but the model's inputs are {sorted(specs)}")
        spec = specs[name]
        lo, opt, hi = (tuple(int(d) for d in s) for s in triple)
        if not (len(lo) == len(opt) == len(hi)):
            raise QbenchError(f"--shapes {name}: min, opt and max must have the same rank")
        if spec.shape is not None and len(opt) != len(spec.shape):
            raise QbenchError(f"--shapes {name}: rank {len(opt)}, but the input is {len(spec.shape)}-D ({_fmt(spec.shape)})")
        for axis in range(len(opt)):
            if not 1 <= lo[axis] <= opt[axis] <= hi[axis]:
                raise QbenchError(f"--shapes {name}: dimension {axis} must satisfy 1 <= min <= opt <= max")
            want = spec.shape[axis] if spec.shape is not None else None
            if _fixed(want) and not lo[axis] == opt[axis] == hi[axis] == want:
                raise QbenchError(f"--shapes {name}: dimension {axis} is fixed at {want} in the model ({_fmt(spec.shape)})")


def check_batch_size(inputs: list, batch_size: int) -> None:
    """A network whose batch dimension is fixed takes exactly that batch; TensorRT's calibrator would
    hand it batch_size samples per batch."""
    if batch_size <= 1:
        return
    for spec in inputs:
        if spec.shape and _fixed(spec.shape[0]):
            raise QbenchError(f"--batch-size {batch_size}: input {spec.name!r} has a fixed batch dimension "
                              f"({_fmt(spec.shape)}); use --batch-size 1 or export the model with a dynamic batch")


def profile_from_shapes(inputs: list, shapes: list[dict[str, Dims]], batch_size: int,
                        user: dict | None = None) -> dict[str, tuple[Dims, Dims, Dims]]:
    """{input: (min, opt, max)} for every dynamic input.

    shapes: each calibration sample's {input: shape} in data order. Samples are grouped as
    ``Dataset.batches(batch_size, ...)`` groups them (the batch dimension adds up inside a batch);
    min/max cover every batch (the short last one included), opt is the first batch's shape.
    ``user`` (--shapes) wins for the inputs it names."""
    user = user or {}
    out = {}
    for spec in inputs:
        if not is_dynamic(spec):
            continue
        if spec.name in user:
            out[spec.name] = tuple(tuple(int(d) for d in s) for s in user[spec.name])
            continue
        if not shapes or spec.name not in shapes[0]:
            shape = _fmt(spec.shape) if spec.shape is not None else "of unknown rank"
            raise QbenchError(f"input {spec.name!r} has dynamic shape {shape}: give --shapes or calibration data to size it")
        batches = []
        for start in range(0, len(shapes), batch_size):
            group = [tuple(int(d) for d in s[spec.name]) for s in shapes[start:start + batch_size]]
            if any(len(g) == 0 for g in group):
                raise QbenchError(f"input {spec.name!r}: calibration data holds scalars, the input needs a batch dimension")
            batches.append((sum(g[0] for g in group),) + group[0][1:])
        ranks = {len(b) for b in batches}
        if len(ranks) != 1 or (spec.shape is not None and ranks != {len(spec.shape)}):
            raise QbenchError(f"input {spec.name!r}: calibration data ranks {sorted(ranks)} do not match the model input")
        lo = tuple(min(b[a] for b in batches) for a in range(len(batches[0])))
        hi = tuple(max(b[a] for b in batches) for a in range(len(batches[0])))
        out[spec.name] = (lo, batches[0], hi)
    return out


def sample_shapes(dataset, limit: int | None = None) -> list[dict[str, Dims]]:
    """Each sample's {input: shape}, without decoding what need not be decoded."""
    if dataset is None:
        return []
    files = getattr(dataset, "files", None)
    kind = getattr(dataset, "kind", None)
    if files is None or kind not in ("images", "arrays"):
        # another batch source: only its first batch can be afforded (shape of one sample)
        first = next(iter(dataset.batches(1, 1)), {})
        return [{k: tuple(np.shape(v)) for k, v in first.items()}] if first else []
    n = len(files) if limit is None else min(limit, len(files))
    if n == 0:
        return []
    if kind == "images":
        # one manifest preprocessing, one output size: every image gives the first one's shape
        first = {k: tuple(np.shape(v)) for k, v in dataset.sample(0).items()}
        return [first] * n
    out = []
    for i in range(n):
        try:
            out.append(_array_file_shapes(Path(files[i]), dataset.inputs))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            # unusual file: load it the normal way, which says what is wrong in one line
            out.append({k: tuple(np.shape(v)) for k, v in dataset.sample(i).items()})
    return out


def _npy_header_shape(f) -> Dims:
    major, _minor = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _fortran, _dtype = reader(f)
    return tuple(int(d) for d in shape)


def _array_file_shapes(path: Path, inputs: list) -> dict[str, Dims]:
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] if n.endswith(".npy") else n: n for n in z.namelist()}
            raw = {}
            for spec in inputs:
                with z.open(names[spec.name]) as f:
                    raw[spec.name] = _npy_header_shape(f)
    else:
        if len(inputs) != 1:
            raise ValueError("a .npy file feeds one input")
        with open(path, "rb") as f:
            raw = {inputs[0].name: _npy_header_shape(f)}
    out = {}
    for spec in inputs:
        shape = raw[spec.name]
        # same rule as qbench.data._load_arrays: a sample saved without its batch dimension gets one
        out[spec.name] = (1,) + shape if spec.shape is not None and len(shape) == len(spec.shape) - 1 else shape
    return out


def compute_profile(inputs: list, dataset, options) -> dict[str, tuple[Dims, Dims, Dims]]:
    """The profile the builder will set, from --shapes and the calibration samples (shapes only)."""
    need_data = any(is_dynamic(s) and s.name not in options.shapes for s in inputs)
    shapes = sample_shapes(dataset, options.calib_limit) if need_data else []
    return profile_from_shapes(inputs, shapes, options.calib_batch_size, options.shapes)


def data_digest(dataset, limit: int | None = None) -> str | None:
    """A fingerprint of the calibration samples qbench will read: resolved paths, sizes and mtimes,
    plus the preprocessing (manifest). None when the source is not a data folder (nothing to stat)."""
    files = getattr(dataset, "files", None)
    if files is None:
        return None
    h = hashlib.sha256()
    h.update(f"{getattr(dataset, 'kind', '')}\0{sorted((k, repr(v)) for k, v in getattr(dataset, 'preprocess', {}).items())}\0".encode())
    used = files if limit is None else files[:limit]
    for f in used:
        p = Path(f)
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:32]
