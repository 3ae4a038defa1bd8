"""Engines cached on disk, keyed by everything that changes what TensorRT builds: the ONNX model
handed to the parser, the precision, the ranges, the TensorRT version, the GPU, the build
options, the optimization profile (which the data can decide) and, where TensorRT calibrates
(10.x INT8 without a ranges table), a digest of the calibration data. A key never matches an engine built by another TensorRT or for another GPU, which would
fail to deserialize (or, worse, run slower than it should). Polygraphy has no engine cache (only the
timing cache, which qbench hands to it)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from qbench import atomic


def default_dir() -> Path:
    env = os.environ.get("QBENCH_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qbench" / "engines"


def cache_key(onnx_bytes: bytes, precision: str, ranges_bytes: bytes | None, trt_version: str, gpu: str,
              options: dict | None = None, *, profile: dict | None = None, data: str | None = None) -> str:
    h = hashlib.sha256()
    for part in (
        hashlib.sha256(onnx_bytes).hexdigest(),
        precision,
        hashlib.sha256(ranges_bytes).hexdigest() if ranges_bytes else "-",
        trt_version,
        gpu,
        json.dumps(options or {}, sort_keys=True, default=str),
        json.dumps({k: [list(d) for d in v] for k, v in (profile or {}).items()}, sort_keys=True),
        data or "-",
    ):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


class EngineCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def get(self, key: str) -> bytes | None:
        p = self.path(key)
        return p.read_bytes() if p.is_file() and p.stat().st_size else None

    def put(self, key: str, engine: bytes, meta: dict | None = None) -> Path:
        if meta is not None:
            atomic.write_text(self.root / f"{key}.json", json.dumps(meta, indent=1, default=str))
        return atomic.write_bytes(self.path(key), engine)
