"""ctc: text recognizers judged by the text they read.

Greedy CTC decoding (best path): the argmax class per time step, repeats collapsed, the blank
(index ``blank``, 0 by default) dropped. The classes map to characters through a charset: a file
with one character per line (``charset``), else the model's metadata (``character``, as PP-OCR
models from rapidocr carry it, or ``charset``/``vocab``). A charset of C-1 entries for C classes
skips the blank; one of C-2 gets PaddleOCR's trailing space (``use_space_char``). Without a charset
the texts are compared as index sequences (enough against FP32, not against labels). Leading and
trailing spaces are trimmed (``strip``): the blank margin of a padded line crop often reads as a
space, which is no content.

Per line (each batch row): the character error rate against FP32 (Levenshtein distance / FP32
length) and exact-line agreement; with text labels, the CER and line accuracy of FP32 and of the
candidate. Pooled over lines: CER = total edits / total reference characters.

Verdict: without labels, exact-line agreement with FP32 (Wilson) >= ``min_agreement``; with labels,
the CER increase (candidate CER − FP32 CER against the labels) <= ``max_drop``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Summary, check_shapes
from qbench.judge.outputs import is_float_type, metadata, pick_output
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "output": None,
    "blank": 0,
    "charset": None,         # path to a file of one character per line; None: the model's metadata
    "time_axis": 1,          # [B, T, C]; 0 for time-major [T, B, C]
    "strip": True,           # trim leading/trailing spaces of decoded texts (padding reads as space)
    "min_agreement": 0.95,   # exact-line agreement with FP32
    "max_drop": 0.01,        # CER increase against text labels
}

_METADATA_KEYS = ("character", "charset", "vocab", "characters")


def prepare(graph, options: dict) -> dict:
    o = dict(options)
    o["output"] = pick_output(graph, o["output"], "ctc", lambda n, s, e: is_float_type(e) and s is not None and len(s) == 3)
    o["blank"] = int(o["blank"])
    source = o["charset"]
    chars = None
    if source:
        p = Path(source)
        if not p.is_file():
            raise QbenchError(f"ctc: charset file not found: {p}")
        try:
            chars = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise QbenchError(f"ctc: charset file {p} is not UTF-8 text (one character per line)") from None
        o["_charset_source"] = str(p)
    else:
        meta = metadata(graph)
        key = next((k for k in _METADATA_KEYS if meta.get(k)), None)
        if key:
            chars = meta[key].splitlines()
            o["_charset_source"] = f"model metadata {key!r}"
    o["_chars"] = chars
    return o


def _table(chars: list | None, classes: int, blank: int) -> list | None:
    """Class index -> character ('' for the blank)."""
    if chars is None:
        return None
    if len(chars) == classes - 2:
        chars = chars + [" "]  # PaddleOCR appends the space class after the dictionary
    if len(chars) == classes - 1:
        return chars[:blank] + [""] + chars[blank:]
    if len(chars) == classes:
        table = list(chars)
        table[blank] = ""
        return table
    raise QbenchError(f"ctc: the charset has {len(chars)} entries but the model scores {classes} classes "
                      "(expected classes-1, or classes-2 with PaddleOCR's space)")


def greedy_paths(scores: np.ndarray, blank: int) -> list[np.ndarray]:
    """Best-path CTC decoding of [rows, T, C] scores -> per row the kept class indices."""
    best = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=2)
    keep = np.ones_like(best, dtype=bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    return [row[k] for row, k in zip(best, keep)]


def edit_distance(a, b) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one unit each), one row of the
    dynamic-programming table at a time."""
    a, b = list(a), list(b)
    if not a:
        return len(b)
    if not b:
        return len(a)
    prev = np.arange(len(b) + 1)
    bb = np.array([hash(x) for x in b])
    for i, x in enumerate(a, 1):
        sub = prev[:-1] + (bb != hash(x))
        cur = np.empty_like(prev)
        cur[0] = i
        best = np.minimum(sub, prev[1:] + 1)
        # insertions chain along the row: cur[j] = min(best[j-1], cur[j-1] + 1)
        for j in range(1, len(cur)):
            cur[j] = min(best[j - 1], cur[j - 1] + 1)
        prev = cur
    return int(prev[-1])


class CtcAccumulator(Accumulator):
    def __init__(self, judge) -> None:
        super().__init__(judge)
        self.table = None
        self.classes = None

    def _decode(self, x: np.ndarray) -> list:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3:
            raise QbenchError(f"ctc: output {self.options['output']!r} has shape {x.shape}; expected [B, T, C]")
        if int(self.options["time_axis"]) == 0:
            x = np.swapaxes(x, 0, 1)
        if self.classes is None:
            self.classes = x.shape[2]
            if not 0 <= self.options["blank"] < self.classes:
                raise QbenchError(f"ctc: blank {self.options['blank']} is outside the model's {self.classes} classes")
            self.table = _table(self.options["_chars"], self.classes, self.options["blank"])
        paths = greedy_paths(x, self.options["blank"])
        if self.table is None:
            return [tuple(int(i) for i in p) for p in paths]
        texts = ["".join(self.table[i] for i in p) for p in paths]
        return [t.strip() for t in texts] if self.options["strip"] else texts

    def decode(self, output: np.ndarray) -> list:
        """The texts (or class-index tuples without a charset) this judge reads in one output,
        one per batch row (for drawing)."""
        return self._decode(output)

    def measure(self, index, name, ref, cand, feed, label) -> dict:
        out = self.options["output"]
        check_shapes("ctc", out, ref[out], cand[out])
        r_texts, c_texts = self._decode(ref[out]), self._decode(cand[out])
        edits = sum(edit_distance(r, c) for r, c in zip(r_texts, c_texts))
        row = {"lines": len(r_texts), "equal_lines": sum(r == c for r, c in zip(r_texts, c_texts)),
               "fp32_chars": sum(len(r) for r in r_texts), "edits": edits}
        row["cer_vs_fp32"] = edits / row["fp32_chars"] if row["fp32_chars"] else float(edits > 0)
        row["line_agreement"] = row["equal_lines"] / row["lines"] if row["lines"] else 1.0
        if self.table is not None:
            row["fp32_text"] = r_texts[0] if len(r_texts) == 1 else " | ".join(r_texts)
            row["cand_text"] = c_texts[0] if len(c_texts) == 1 else " | ".join(c_texts)
        if label is not None:
            if self.table is None:
                raise QbenchError("ctc: text labels need a charset (option charset, or model metadata 'character')")
            if len(r_texts) != 1:
                raise QbenchError(f"ctc: sample {name!r} holds {len(r_texts)} lines but one text label; use batch size 1 with labels")
            text = str(label).strip() if self.options["strip"] else str(label)
            row.update(label=text, label_chars=len(text), fp32_edits=edit_distance(text, r_texts[0]),
                       cand_edits=edit_distance(text, c_texts[0]), fp32_correct=int(text == r_texts[0]),
                       cand_correct=int(text == c_texts[0]))
        return row

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = len(frame)
        notes = []
        if self.table is None:
            notes.append("no charset (option charset or model metadata): texts compared as class-index sequences")
        else:
            notes.append(f"charset from {self.options.get('_charset_source')}")
        if not n:
            return Summary({}, "line_agreement_vs_fp32", "exact-line agreement with FP32", float("nan"),
                           float(self.options["min_agreement"]), "min_agreement", True, Evidence("point"), notes)
        lines, equal = int(frame["lines"].sum()), float(frame["equal_lines"].sum())
        chars, edits = float(frame["fp32_chars"].sum()), float(frame["edits"].sum())
        metrics = {"line_agreement_vs_fp32": equal / lines if lines else float("nan"),
                   "cer_vs_fp32": edits / chars if chars else float(edits > 0)}
        common = dict(rank_column="cer_vs_fp32", rank_higher_is_better=False)
        if self.judge.labels is None or "label" not in frame:
            return Summary(metrics, "line_agreement_vs_fp32", "exact-line agreement with FP32", metrics["line_agreement_vs_fp32"],
                           float(self.options["min_agreement"]), "min_agreement", True, Evidence("wilson", k=equal, n=lines),
                           notes, **common)
        label_chars = float(frame["label_chars"].sum())
        cer_ref = float(frame["fp32_edits"].sum()) / label_chars if label_chars else float("nan")
        cer_cand = float(frame["cand_edits"].sum()) / label_chars if label_chars else float("nan")
        metrics.update(fp32_cer=cer_ref, cer=cer_cand, cer_increase=cer_cand - cer_ref,
                       fp32_line_accuracy=float(frame["fp32_correct"].mean()), line_accuracy=float(frame["cand_correct"].mean()))
        change = frame["cand_edits"] - frame["fp32_edits"]
        # the units are the labels' characters: edits the candidate adds and removes, paired
        ev = Evidence("ratio", num=tuple(change), den=tuple(frame["label_chars"]), n=n, unit="samples",
                      unit_changes=(float(change.clip(lower=0).sum()), float((-change).clip(lower=0).sum()), label_chars))
        return Summary(metrics, "cer_increase", "CER increase vs FP32 (labels)", metrics["cer_increase"],
                       float(self.options["max_drop"]), "max_drop", False, ev, notes, **common)
