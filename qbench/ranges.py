"""The ranges table: tensor name -> calibrated amax, the one artefact every later stage reads.

Converts to and from TensorRT's calibration cache text format, JSON and a pandas DataFrame.
TensorRT's cache stores, per tensor, the *scale* (amax / 127) as the big-endian hex of its float32
bits, one ``name: hex`` line each after a ``TRT-<version>-<algorithm>`` header line.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qbench import atomic
from qbench.errors import QbenchError

INT8_MAX = 127.0
DEFAULT_TRT_HEADER = "TRT-100300-EntropyCalibration2"
_HEADER_RE = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE_RE = re.compile(r"^(.+): ([0-9a-fA-F]{1,8})$")


@dataclass
class TensorRange:
    name: str
    amax: float
    method: str = ""
    samples: int = 0
    observed_min: float | None = None
    observed_max: float | None = None
    summary: dict = field(default_factory=dict)  # histogram percentiles etc., for reports

    @property
    def scale(self) -> float:
        return self.amax / INT8_MAX


@dataclass
class Ranges:
    entries: dict[str, TensorRange] = field(default_factory=dict)
    method: str = ""
    header: str = DEFAULT_TRT_HEADER
    model: str = ""  # digest of the model the ranges were computed on, when known

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> TensorRange:
        return self.entries[name]

    def __len__(self) -> int:
        return len(self.entries)

    def amax(self, name: str) -> float:
        return self.entries[name].amax

    def with_override(self, name: str, amax: float) -> "Ranges":
        """A copy with one tensor's amax replaced (used to plant faults and to test fixes)."""
        entries = dict(self.entries)
        old = entries.get(name, TensorRange(name, amax))
        entries[name] = TensorRange(**{**asdict(old), "amax": float(amax), "method": "override"})
        return Ranges(entries, self.method, self.header, self.model)

    # -- TensorRT calibration cache -------------------------------------------------------------
    def to_trt_cache(self) -> bytes:
        lines = [self.header]
        for entry in self.entries.values():
            lines.append(f"{entry.name}: {float_to_hex(entry.scale)}")
        return ("\n".join(lines) + "\n").encode("ascii")

    def write_trt_cache(self, path: str | Path) -> Path:
        return atomic.write_bytes(path, self.to_trt_cache())

    @classmethod
    def from_trt_cache(cls, data: bytes, source: str = "cache") -> "Ranges":
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise QbenchError(f"{source}: not a TensorRT calibration cache (binary data, expected text lines 'name: hex')") from None
        lines = text.splitlines()
        if not lines or not _HEADER_RE.match(lines[0].strip()):
            first = lines[0][:60] if lines else ""
            raise QbenchError(f"{source}: not a TensorRT calibration cache (first line {first!r}, expected 'TRT-<version>-<algorithm>')")
        header = lines[0].strip()
        method = _HEADER_RE.match(header).group(2)
        entries: dict[str, TensorRange] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            m = _LINE_RE.match(line.rstrip("\r"))
            if not m:
                raise QbenchError(f"{source}: line {number} is not 'name: hex' ({line[:60]!r}); the cache is truncated or corrupt")
            name, hexbits = m.group(1), m.group(2)
            scale = hex_to_float(hexbits)
            entries[name] = TensorRange(name, scale * INT8_MAX, method=method)
        if not entries:
            raise QbenchError(f"{source}: the cache has a header but no tensor ranges")
        return cls(entries, method=method, header=header)

    @classmethod
    def read_trt_cache(cls, path: str | Path) -> "Ranges":
        p = Path(path)
        if not p.exists():
            raise QbenchError(f"calibration cache not found: {p}")
        return cls.from_trt_cache(p.read_bytes(), source=str(p))

    # -- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "qbench-ranges/1",
                "method": self.method,
                "header": self.header,
                "model": self.model,
                "tensors": [_finite_dict(asdict(e)) for e in self.entries.values()],
            },
            indent=1,
        )

    def write_json(self, path: str | Path) -> Path:
        return atomic.write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, source: str = "ranges") -> "Ranges":
        try:
            doc = json.loads(text)
            if doc.get("format") != "qbench-ranges/1":
                raise ValueError(f"format is {doc.get('format')!r}, expected 'qbench-ranges/1'")
            entries = {}
            for t in doc["tensors"]:
                entries[t["name"]] = TensorRange(**t)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QbenchError(f"{source}: not a qbench ranges file ({exc})") from None
        return cls(entries, doc.get("method", ""), doc.get("header", DEFAULT_TRT_HEADER), doc.get("model", ""))

    @classmethod
    def read(cls, path: str | Path) -> "Ranges":
        """Read ranges from a TensorRT cache or a qbench JSON file, whichever ``path`` holds."""
        p = Path(path)
        if not p.exists():
            raise QbenchError(f"ranges file not found: {p}")
        data = p.read_bytes()
        if data.lstrip()[:1] == b"{":
            return cls.from_json(data.decode("utf-8", "replace"), source=str(p))
        return cls.from_trt_cache(data, source=str(p))

    def write(self, path: str | Path) -> Path:
        return self.write_json(path) if str(path).endswith(".json") else self.write_trt_cache(path)

    # -- DataFrame --------------------------------------------------------------------------------
    def to_frame(self):
        import pandas as pd

        rows = []
        for e in self.entries.values():
            row = {"tensor": e.name, "amax": e.amax, "scale": e.scale, "method": e.method, "samples": e.samples,
                   "observed_min": e.observed_min, "observed_max": e.observed_max}
            row.update({f"summary_{k}": v for k, v in e.summary.items()})
            rows.append(row)
        return pd.DataFrame(rows)


def float_to_hex(value: float) -> str:
    """TensorRT writes the float32 bit pattern as lower-case hex without leading zeros."""
    (bits,) = struct.unpack(">I", struct.pack(">f", value))
    return format(bits, "x")


def hex_to_float(text: str) -> float:
    (value,) = struct.unpack(">f", struct.pack(">I", int(text, 16)))
    return value


def _finite_dict(d: dict) -> dict:
    """JSON has no NaN/Inf; store them as strings so the file stays standard JSON."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
