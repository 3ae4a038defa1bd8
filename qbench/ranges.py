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
from qbench.provenance import provenance_warnings as sidecar_warnings
from qbench.provenance import read_sidecar, sidecar_path

INT8_MAX = 127.0
DEFAULT_TRT_VERSION = "100300"  # NV_TENSORRT_VERSION of 10.3.0 (TensorRT 10 writes six digits)
DEFAULT_TRT_HEADER = f"TRT-{DEFAULT_TRT_VERSION}-EntropyCalibration2"
_HEADER_RE = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE_RE = re.compile(r"^(.+): ([0-9a-fA-F]{1,8})$")
# Names TensorRT gives its own tensors (broadcast constants, unnamed layers): real caches list them,
# an ONNX graph never has them, so they count neither as "unknown" nor as a sign of a foreign model.
_TRT_INTERNAL_RE = re.compile(r"^(ONNXTRT_|\(Unnamed Layer\* \d+\))|_output$")
ABSURD_AMAX = 1e6  # |activations| beyond this in an INT8 network mean a broken range, not data
TINY_AMAX = 1e-20  # scales this small only come from truncation or bit rot


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
    final_newline: bool = True  # TensorRT ends every line with one; kept so a re-write is byte-identical
    provenance: dict | None = None  # how the ranges were made (qbench.provenance); None: unknown
    notes: list[str] = field(default_factory=list)  # warnings about the calibration, for console and report

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
        return Ranges(entries, self.method, self.header, self.model, self.final_newline, self.provenance, list(self.notes))

    # -- TensorRT calibration cache -------------------------------------------------------------
    def to_trt_cache(self) -> bytes:
        lines = [self.header]
        for entry in self.entries.values():
            lines.append(f"{entry.name}: {float_to_hex(entry.scale)}")
        # TensorRT writes a tensor's name as its bytes, i.e. UTF-8 for ONNX names (protobuf strings are
        # UTF-8): a non-ASCII name must round-trip, not crash the writer
        return ("\n".join(lines) + ("\n" if self.final_newline else "")).encode("utf-8")

    def write_trt_cache(self, path: str | Path) -> Path:
        """The cache, and next to it its provenance sidecar (``<cache>.provenance.json``)."""
        written = atomic.write_bytes(path, self.to_trt_cache())
        sidecar = {"format": "qbench-provenance/1", "header": self.header, "method": self.method,
                   "model_digest": self.model or None, "tensors": len(self.entries),
                   **(self.provenance or {"note": "made from ranges without provenance (e.g. converted)"}),
                   "notes": list(self.notes)}
        atomic.write_text(sidecar_path(written), json.dumps(sidecar, indent=1, default=str))
        return written

    @classmethod
    def from_trt_cache(cls, data: bytes, source: str = "cache") -> "Ranges":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise QbenchError(f"{source}: not a TensorRT calibration cache (binary data, expected text lines 'name: hex')") from None
        lines = text.split("\n")
        final_newline = text.endswith("\n")
        if final_newline:
            lines.pop()
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
            last = number == len(lines)
            if not m:
                if last and not final_newline:
                    raise QbenchError(f"{source}: the cache is truncated (its last line {line[:60]!r} is cut off)")
                raise QbenchError(f"{source}: line {number} is not 'name: hex' ({line[:60]!r}); the cache is corrupt")
            name, hexbits = m.group(1), m.group(2)
            if last and not final_newline and len(hexbits) < 8 and hexbits != "0":
                # TensorRT writes 8 hex digits for every scale it could use; fewer at the very end of
                # a file without its final newline means the file was cut mid-number
                raise QbenchError(f"{source}: the cache is truncated (its last line {line[:60]!r} is cut off)")
            if name in entries:
                raise QbenchError(f"{source}: line {number}: tensor {name!r} appears twice; the cache is corrupt")
            scale = hex_to_float(hexbits)
            entries[name] = TensorRange(name, scale * INT8_MAX, method=method)
        if not entries:
            raise QbenchError(f"{source}: the cache has a header but no tensor ranges")
        return cls(entries, method=method, header=header, final_newline=final_newline)

    @classmethod
    def read_trt_cache(cls, path: str | Path, graph=None) -> "Ranges":
        """Read a TensorRT cache (and its provenance sidecar, if any); with ``graph``, also check it
        against that model (see ``check_against``) and raise ``QbenchError`` if it does not fit."""
        p = Path(path)
        if not p.exists():
            raise QbenchError(f"calibration cache not found: {p}")
        if p.is_dir():
            raise QbenchError(f"expected a calibration cache file, got a folder: {p}")
        ranges = cls.from_trt_cache(p.read_bytes(), source=str(p))
        ranges._attach_sidecar(p)
        if graph is not None:
            ranges.check_against(graph, source=str(p)).raise_for_errors()
        return ranges

    def _attach_sidecar(self, path: Path) -> None:
        self.provenance = read_sidecar(path)
        if self.provenance and not self.model:
            self.model = self.provenance.get("model_digest") or ""

    def provenance_warnings(self, graph=None, data_digest: str | None = None, trt_version=None,
                            source: str = "ranges") -> list[str]:
        """Warnings for using these ranges on ``graph`` with data of ``data_digest`` and TensorRT
        ``trt_version``: another model, other data, another TensorRT major version, or no sidecar."""
        return sidecar_warnings(self.provenance, self.header, model_digest=graph.digest if graph is not None else None,
                                data=data_digest, trt_version=trt_version, source=source)

    # -- JSON -------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "qbench-ranges/1",
                "method": self.method,
                "header": self.header,
                "model": self.model,
                "provenance": self.provenance,
                "notes": self.notes,
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
                t = {k: (float(v) if k in _FLOAT_FIELDS and isinstance(v, str) else v) for k, v in t.items()}
                entries[t["name"]] = TensorRange(**t)
                if not isinstance(entries[t["name"]].amax, (int, float)):
                    raise ValueError(f"tensor {t['name']!r} has amax {t['amax']!r}, not a number")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QbenchError(f"{source}: not a qbench ranges file ({exc})") from None
        provenance = doc.get("provenance")
        notes = doc.get("notes") or []
        return cls(entries, doc.get("method", ""), doc.get("header", DEFAULT_TRT_HEADER), doc.get("model", ""),
                   provenance=provenance if isinstance(provenance, dict) else None,
                   notes=[str(n) for n in notes] if isinstance(notes, list) else [])

    @classmethod
    def read(cls, path: str | Path, graph=None) -> "Ranges":
        """Read ranges from a TensorRT cache or a qbench JSON file, whichever ``path`` holds; with
        ``graph``, raise ``QbenchError`` unless they fit that model (see ``check_against``)."""
        p = Path(path)
        if not p.exists():
            raise QbenchError(f"ranges file not found: {p}")
        if p.is_dir():
            raise QbenchError(f"expected a ranges file, got a folder: {p}")
        data = p.read_bytes()
        if data.lstrip()[:1] == b"{":
            ranges = cls.from_json(data.decode("utf-8", "replace"), source=str(p))
        else:
            ranges = cls.from_trt_cache(data, source=str(p))
            ranges._attach_sidecar(p)
        if graph is not None:
            ranges.check_against(graph, source=str(p)).raise_for_errors()
        return ranges

    # -- checking against a model -----------------------------------------------------------------
    def check_against(self, graph, source: str = "ranges") -> "RangeCheck":
        """Compare these ranges with a model: names the model lacks (and whether the whole table looks
        made for another model), model tensors without a range, and unusable values (NaN, infinite,
        negative, zero, absurdly large or small). Reports; ``raise_for_errors()`` turns it into one line."""
        model_names = graph.range_tensors  # the same list calibration fills: no int64 inputs
        known = set(model_names) | {s.name for s in graph.inputs} | {t.name for t in graph.tensors}
        check = RangeCheck(source=source, model=getattr(graph, "name", "model"), total=len(self.entries))
        for name, entry in self.entries.items():
            if name not in known:
                (check.internal if _TRT_INTERNAL_RE.search(name) else check.unknown).append(name)
                continue
            check.matched.append(name)
            amax = entry.amax
            if math.isnan(amax):
                check.problems.append(RangeProblem(name, "nan", "error", "range is NaN"))
            elif math.isinf(amax):
                check.problems.append(RangeProblem(name, "infinite", "error", "range is infinite"))
            elif amax < 0:
                check.problems.append(RangeProblem(name, "negative", "error", f"range is negative ({amax:g})"))
            elif amax == 0:
                check.problems.append(RangeProblem(name, "zero", "warning", "range is 0: every value quantizes to 0"))
            elif amax > ABSURD_AMAX:
                check.problems.append(RangeProblem(name, "absurd", "error", f"range {amax:g} is absurdly large"))
            elif amax < TINY_AMAX:
                check.problems.append(RangeProblem(name, "absurd", "error", f"range {amax:g} is absurdly small"))
        check.missing = [n for n in model_names if n not in self.entries]
        return check

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


@dataclass
class RangeProblem:
    tensor: str
    kind: str  # nan, infinite, negative, zero, absurd
    severity: str  # "error": unusable; "warning": usable but suspicious
    detail: str


@dataclass
class RangeCheck:
    """What ``Ranges.check_against(graph)`` found."""

    source: str
    model: str
    total: int = 0
    matched: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # names the model does not have
    internal: list[str] = field(default_factory=list)  # TensorRT-internal names (ONNXTRT_*, Unnamed Layer)
    missing: list[str] = field(default_factory=list)  # model tensors without a range
    problems: list[RangeProblem] = field(default_factory=list)

    @property
    def foreign(self) -> bool:
        """Most names are unknown to the model: the table was made for another model."""
        considered = len(self.matched) + len(self.unknown)
        return considered > 0 and len(self.unknown) > len(self.matched)

    @property
    def errors(self) -> list[RangeProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[str]:
        notes = [f"{p.tensor}: {p.detail}" for p in self.problems if p.severity == "warning"]
        if self.unknown and not self.foreign:
            notes.append(f"{len(self.unknown)} tensor(s) not in the model, ignored (e.g. {self.unknown[0]!r})")
        if self.missing:
            notes.append(f"{len(self.missing)} model tensor(s) have no range (e.g. {self.missing[0]!r})")
        return notes

    @property
    def ok(self) -> bool:
        return not self.foreign and not self.errors and bool(self.matched)

    def message(self) -> str:
        """One line: the most important thing wrong, or a summary when nothing is."""
        if not self.matched and not self.unknown:
            return f"{self.source}: no tensor of {self.model} has a range"
        if self.foreign or not self.matched:
            return (f"{self.source}: this cache was made for another model: {len(self.unknown)} of "
                    f"{len(self.matched) + len(self.unknown)} tensor names are not in {self.model} "
                    f"(e.g. {self.unknown[0]!r})")
        errors = self.errors
        if errors:
            first = errors[0]
            more = f" and {len(errors) - 1} more unusable range(s)" if len(errors) > 1 else ""
            return f"{self.source}: tensor {first.tensor!r}: {first.detail}{more}"
        return (f"{self.source}: {len(self.matched)} ranges match {self.model}"
                + (f"; {len(self.warnings)} warning(s)" if self.warnings else ""))

    def raise_for_errors(self) -> "RangeCheck":
        if not self.ok:
            raise QbenchError(self.message())
        return self


def float_to_hex(value: float) -> str:
    """TensorRT writes the float32 bit pattern as lower-case hex without leading zeros."""
    (bits,) = struct.unpack(">I", struct.pack(">f", value))
    return format(bits, "x")


def hex_to_float(text: str) -> float:
    (value,) = struct.unpack(">f", struct.pack(">I", int(text, 16)))
    return value


_FLOAT_FIELDS = ("amax", "observed_min", "observed_max")


def _finite_dict(d: dict) -> dict:
    """JSON has no NaN/Inf; store them as strings so the file stays standard JSON."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
