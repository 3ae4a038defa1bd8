"""Ground-truth labels for the judge: one JSON file, sample file name -> label.

A label is one of three kinds, the same kind for every entry:
* a class index (int)                                   -> classify
* a list of boxes [x1, y1, x2, y2, class] in input pixels -> detect (an empty list: no object)
* a text string                                          -> ctc

Every sample being judged needs a label (so an accuracy is never silently over a subset); labels
for files not in this run (``--limit``) are ignored. Names match by file name, with or without
folders; a sample without a label, or entries of mixed kinds, is one error line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePath

from qbench.errors import QbenchError

KINDS = ("class", "boxes", "text")


@dataclass
class Labels:
    kind: str                 # "class" | "boxes" | "text"
    by_name: dict             # sample name (as the run names it) -> label
    path: str = ""

    def get(self, name: str):
        return self.by_name.get(str(name))

    def __len__(self) -> int:
        return len(self.by_name)


def _kind(value, key: str, path) -> str:
    if isinstance(value, bool):
        raise QbenchError(f"{path}: label of {key!r} is a boolean; use a class index, a list of boxes or a text")
    if isinstance(value, int):
        if value < 0:
            raise QbenchError(f"{path}: label of {key!r} is a negative class index ({value})")
        return "class"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        for box in value:
            if not (isinstance(box, list) and len(box) == 5 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
                raise QbenchError(f"{path}: label of {key!r} must be a list of boxes [x1, y1, x2, y2, class]; got {json.dumps(box)[:60]}")
            if box[2] < box[0] or box[3] < box[1]:
                raise QbenchError(f"{path}: box {box} of {key!r} has x2 < x1 or y2 < y1 (expected [x1, y1, x2, y2, class])")
            if box[4] < 0 or box[4] != int(box[4]):
                raise QbenchError(f"{path}: box {box} of {key!r} has a class that is not a non-negative integer")
        return "boxes"
    raise QbenchError(f"{path}: label of {key!r} is a {type(value).__name__}; use a class index, a list of boxes or a text")


def _keys(name: str) -> list[str]:
    p = PurePath(str(name).replace("\\", "/"))
    return [str(name), p.as_posix(), p.name, p.stem]


def load_labels(path, sample_names) -> Labels | None:
    """Read a labels file and match it to the samples of this run; None when path is None."""
    if path is None or path == "":
        return None
    sample_names = [str(n) for n in sample_names]
    p = Path(path)
    if not p.is_file():
        raise QbenchError(f"labels file not found: {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QbenchError(f"{p}: not a JSON labels file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise QbenchError(f"{p}: a labels file is a JSON object mapping sample file names to labels")
    kinds = {}
    for key, value in raw.items():
        kinds.setdefault(_kind(value, key, p), key)
    if len(kinds) > 1:
        (k1, e1), (k2, e2) = list(kinds.items())[:2]
        raise QbenchError(f"{p}: labels of mixed kinds ({k1} for {e1!r}, {k2} for {e2!r}); one file holds one kind")
    kind = next(iter(kinds))
    index: dict = {}
    for key in raw:
        for k in _keys(key):
            index.setdefault(k, key)
    by_name, missing = {}, []
    for name in sample_names:
        found = next((index[k] for k in _keys(name) if k in index), None)
        if found is None:
            missing.append(str(name))
        else:
            by_name[str(name)] = raw[found]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise QbenchError(f"{p}: no label for {len(missing)} of {len(sample_names)} sample(s): {shown} "
                          f"(labels name e.g. {next(iter(raw))!r})")
    return Labels(kind=kind, by_name=by_name, path=str(p))
