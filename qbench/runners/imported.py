"""Results of real TensorRT runs made elsewhere, brought in as files: a Runner-like candidate for the
comparator, so a user who ran TensorRT on another machine can still compare and report here.

Readers (no TensorRT needed):
- trtexec ``--exportOutput``: ``[{"name", "dimensions": "1x3x640x640", "values": [...]}, ...]``, one
  file per sample (trtexec prints floats with 6 significant digits, so expect ~1e-6 relative noise).
- trtexec ``--exportLayerInfo`` (engine inspector JSON) and ``--exportProfile`` (per-layer timing),
  as DataFrames for the report.
- Polygraphy ``--save-outputs`` JSON (RunResults). Polygraphy stores each array as base64 of a .npy
  file written with ``allow_pickle=False`` (older versions: latin-1 text, or an .npz archive); this
  reader decodes only those, with ``allow_pickle=False``, and refuses anything else (pickled payloads,
  object arrays, torch tensors, which torch.save pickles).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from qbench.artifacts.layer_info import layers_frame, parse_layer_info
from qbench.data import sorted_files
from qbench.errors import QbenchError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_BARE_NONFINITE = re.compile(r"(?<=[\[,\s])(-?)(nan|inf)(?=[\s,\]])", re.IGNORECASE)


def _read_json(path: Path, what: str):
    p = Path(path)
    if not p.is_file():
        raise QbenchError(f"{what} not found: {p}")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # trtexec writes non-finite floats as bare nan/inf, which JSON does not allow
        fixed = _BARE_NONFINITE.sub(lambda m: ("-Infinity" if m.group(1) else "Infinity") if m.group(2).lower() == "inf" else "NaN", text)
        try:
            return json.loads(fixed)
        except json.JSONDecodeError as exc:
            raise QbenchError(f"{p}: not a {what} (invalid JSON: {exc})") from None


# -- trtexec ---------------------------------------------------------------------------------------
def load_trtexec_outputs(path: str | Path) -> dict[str, np.ndarray]:
    doc = _read_json(Path(path), "trtexec --exportOutput file")
    if not isinstance(doc, list) or not all(isinstance(d, dict) and {"name", "dimensions", "values"} <= set(d) for d in doc):
        raise QbenchError(f"{path}: not trtexec --exportOutput JSON (expected a list of {{name, dimensions, values}})")
    out = {}
    for entry in doc:
        dims = str(entry["dimensions"]).strip()
        try:
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        except ValueError:
            raise QbenchError(f"{path}: tensor {entry['name']!r} has dimensions {dims!r}, expected like 1x3x640x640") from None
        try:
            values = np.asarray(entry["values"], dtype=np.float64)
        except (TypeError, ValueError):
            raise QbenchError(f"{path}: tensor {entry['name']!r} has values that are not a flat list of numbers") from None
        if values.size != int(np.prod(shape)):
            raise QbenchError(f"{path}: tensor {entry['name']!r} has {values.size} values for dimensions {dims} "
                              f"({int(np.prod(shape))} expected)")
        out[str(entry["name"])] = values.astype(np.float32).reshape(shape)
    return out


def load_trtexec_layer_info(path: str | Path):
    p = Path(path)
    if not p.is_file():
        raise QbenchError(f"trtexec --exportLayerInfo file not found: {p}")
    return layers_frame(parse_layer_info(p.read_text(encoding="utf-8", errors="replace"), source=str(p)))


def load_trtexec_profile(path: str | Path):
    import pandas as pd

    doc = _read_json(Path(path), "trtexec --exportProfile file")
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict) or "count" not in doc[0]:
        raise QbenchError(f"{path}: not trtexec --exportProfile JSON (expected [{{\"count\": N}}, {{name, timeMs, ...}}, ...])")
    rows = []
    for entry in doc[1:]:
        if not isinstance(entry, dict) or "name" not in entry:
            raise QbenchError(f"{path}: profile entry without a name: {str(entry)[:60]}")
        try:
            rows.append({"layer": entry["name"], "time_ms": float(entry.get("timeMs", 0.0)),
                         "average_ms": float(entry.get("averageMs", 0.0)),
                         "median_ms": float(entry["medianMs"]) if "medianMs" in entry else None,
                         "percentage": float(entry.get("percentage", 0.0))})
        except (TypeError, ValueError):
            raise QbenchError(f"{path}: profile entry {entry['name']!r} has a timing that is not a number") from None
    frame = pd.DataFrame(rows)
    frame.attrs["iterations"] = int(doc[0]["count"])
    return frame


# -- Polygraphy --------------------------------------------------------------------------------------
def decode_polygraphy_array(payload: dict, source: str = "polygraphy JSON") -> np.ndarray:
    """An encoded ndarray ({"array": base64-of-.npy, "polygraphy_class": "ndarray"}) -> ndarray."""
    text = payload.get("array")
    if not isinstance(text, str):
        raise QbenchError(f"{source}: array entry without an 'array' string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        data = text.encode("latin-1", errors="strict")  # Polygraphy's legacy encoding
    if data.startswith(_NPY_MAGIC) or data.startswith(_ZIP_MAGIC):
        # .npz members load lazily: reading the member is where a pickled or corrupt one fails
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                if not loaded.files:
                    raise QbenchError(f"{source}: empty .npz payload")
                return loaded[loaded.files[0]]
        except ValueError as exc:
            raise QbenchError(f"{source}: refusing an array that needs unpickling or is malformed ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise QbenchError(f"{source}: a corrupt array payload ({type(exc).__name__}: {exc})") from None
    raise QbenchError(f"{source}: refusing an array payload that is not .npy/.npz data "
                      f"(starts with {data[:8]!r}; pickled data is never loaded)")


def _decode(obj, source):
    """Walk Polygraphy's JSON, replacing encoded arrays; refuse types qbench cannot read safely."""
    if isinstance(obj, list):
        return [_decode(x, source) for x in obj]
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("polygraphy_class")
    legacy = [k for k in obj if k.startswith("__polygraphy_encoded_")]
    if kind == "ndarray" or "__polygraphy_encoded_ndarray" in legacy:
        return decode_polygraphy_array(obj, source)
    if kind == "Tensor" or "__polygraphy_encoded_Tensor" in legacy:
        raise QbenchError(f"{source}: holds torch tensors, which Polygraphy stores pickled; re-save with numpy arrays")
    return {k: _decode(v, source) for k, v in obj.items()}


def load_polygraphy_outputs(path: str | Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """{runner name: [ {tensor name: array} per iteration ]} from ``polygraphy run --save-outputs``."""
    doc = _decode(_read_json(Path(path), "Polygraphy --save-outputs file"), str(path))
    if not isinstance(doc, dict) or doc.get("polygraphy_class") != "RunResults" or not isinstance(doc.get("lst"), list):
        raise QbenchError(f"{path}: not Polygraphy RunResults JSON (from polygraphy run --save-outputs)")
    runs = {}
    for item in doc["lst"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
            raise QbenchError(f"{path}: malformed RunResults entry")
        name, iterations = item
        samples = []
        for it in iterations:
            outputs = it.get("outputs", {}) if isinstance(it, dict) else {}
            sample = {}
            for tname, value in outputs.items():
                if isinstance(value, dict) and "values" in value:  # LazyArray wrapper
                    value = value["values"]
                if not isinstance(value, np.ndarray):
                    raise QbenchError(f"{path}: output {tname!r} of {name!r} is not an array")
                sample[tname] = value
            samples.append(sample)
        runs[str(name)] = samples
    return runs


# -- the Runner-like candidate -------------------------------------------------------------------
class ImportedRunner:
    """Replays imported per-sample results in order: the i-th ``run(feed)`` returns sample i.

    The feed is not used (the results were computed elsewhere), so the caller must feed the same
    samples in the same order as the run that produced the files; ``len(runner)`` says how many.
    """

    def __init__(self, name: str, samples: list[dict[str, np.ndarray]], source: str = ""):
        if not samples:
            raise QbenchError(f"{name}: no imported samples{f' in {source}' if source else ''}")
        self.name = name
        self.samples = samples
        self.source = source
        self._next = 0

    def __len__(self) -> int:
        return len(self.samples)

    def reset(self) -> None:
        self._next = 0

    def run(self, feed: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if self._next >= len(self.samples):
            raise QbenchError(f"{self.name}: asked for sample {self._next + 1} but only {len(self.samples)} were imported"
                              f"{f' from {self.source}' if self.source else ''}")
        sample = self.samples[self._next]
        self._next += 1
        return dict(sample)

    @classmethod
    def from_trtexec(cls, paths, name: str = "tensorrt (trtexec)") -> "ImportedRunner":
        paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
        if len(paths) == 1 and paths[0].is_dir():
            paths = sorted_files(paths[0].glob("*.json"))  # the same order as the --data samples
        return cls(name, [load_trtexec_outputs(p) for p in paths], source=", ".join(map(str, paths[:3])))

    @classmethod
    def from_polygraphy(cls, path, runner: str | None = None, name: str | None = None) -> "ImportedRunner":
        runs = load_polygraphy_outputs(path)
        if runner is None:
            trt_runs = [r for r in runs if "trt" in r.lower() or "tensorrt" in r.lower()]
            if len(runs) == 1:
                runner = next(iter(runs))
            elif len(trt_runs) == 1:
                runner = trt_runs[0]
            else:
                raise QbenchError(f"{path}: holds runners {sorted(runs)}; say which one to import")
        if runner not in runs:
            raise QbenchError(f"{path}: no runner {runner!r} (has {sorted(runs)})")
        return cls(name or f"{runner} (polygraphy)", runs[runner], source=str(path))
