"""Where a calibration came from: digests of the model and the data, the calibrator and its batch
size, the sample count and the versions, written as a JSON sidecar next to every cache qbench writes
(``qbench.ranges.Ranges.write_trt_cache``) and checked when a cache is read back.

A TensorRT calibration cache says nothing but its TensorRT version and algorithm; a cache made for
another model, other data or another TensorRT major version is silently wrong, so every read says so.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from qbench import __version__


def data_digest(dataset, limit: int | None = None) -> str:
    """A digest of a ``Dataset``'s samples (the first ``limit`` of them, those calibration used): file
    names (relative), contents and the manifest, so the same folder gives the same digest wherever it
    lives and any changed byte changes it."""
    h = hashlib.sha256()
    root = Path(dataset.root)
    manifest = root / "manifest.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for path in dataset.files[:limit]:
        try:
            rel = str(Path(path).relative_to(root))
        except ValueError:
            rel = Path(path).name
        h.update(rel.encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def versions() -> dict:
    out = {"qbench": __version__, "python": platform.python_version()}
    for module in ("onnxruntime", "onnx", "numpy"):
        try:
            out[module] = __import__(module).__version__
        except Exception:  # an optional or broken install must not stop a calibration
            pass
    return out


def trt_major(version: str | int | None) -> int | None:
    """The major version in an NV_TENSORRT_VERSION number: 8601 -> 8, 100300 -> 10 (TensorRT 10
    writes six digits: major * 10000 + minor * 100 + patch; earlier ones major * 1000 + ...)."""
    if version is None:
        return None
    text = str(version).strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value // 10000 if len(text) >= 6 else value // 1000


def sidecar_path(cache: str | Path) -> Path:
    return Path(str(cache) + ".provenance.json")


def read_sidecar(cache: str | Path) -> dict | None:
    path = sidecar_path(cache)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"unreadable": str(path)}
    return doc if isinstance(doc, dict) else {"unreadable": str(path)}


def provenance_warnings(provenance: dict | None, header: str = "", *, model_digest: str | None = None,
                        data: str | None = None, trt_version: str | int | None = None,
                        source: str = "cache") -> list[str]:
    """What a reader should be told before trusting a cache (an empty list: nothing)."""
    if provenance is None:
        return [f"{source}: no provenance sidecar ({sidecar_path(source).name}): which model, data and "
                "calibrator made this cache cannot be checked"]
    if "unreadable" in provenance:
        return [f"{source}: its provenance sidecar {provenance['unreadable']} is not readable JSON"]
    notes = []
    made_for = provenance.get("model_digest")
    if model_digest and made_for and made_for != model_digest:
        notes.append(f"{source}: calibrated on another model (digest {made_for}, this model {model_digest})")
    made_on = provenance.get("data_digest")
    if data and made_on and made_on != data:
        notes.append(f"{source}: calibrated on other data (digest {made_on}, this data {data})")
    cache_major = trt_major(provenance.get("trt_version") or _header_version(header))
    want_major = trt_major(trt_version)
    if cache_major is not None and want_major is not None and cache_major != want_major:
        notes.append(f"{source}: written for TensorRT {cache_major}.x, used with TensorRT {want_major}.x "
                     "(TensorRT may reject or misread a cache from another major version)")
    return notes


def _header_version(header: str) -> str | None:
    parts = header.split("-")
    return parts[1] if len(parts) >= 3 and parts[0] == "TRT" else None
