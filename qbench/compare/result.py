"""The Comparison: the one result type the report and the store read, and its files.

``tensors.csv`` holds the per-tensor frame; ``comparison.json`` holds everything (frame, per-sample
rows, unmatched tensors, findings, meta) as standard JSON (NaN/Inf written as null / strings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qbench import atomic
from qbench.errors import QbenchError
from qbench.jsonsafe import jsonable, unjson_row
from qbench.judge.result import TaskResult

FORMAT = "qbench-comparison/1"

# Column order of ``Comparison.tensors`` (precision-specific columns are inserted before "status").
BASE_COLUMNS = ["index", "tensor", "node", "op_type", "is_output", "shape", "samples", "max_abs_err", "mean_abs_err",
                "rel_l2", "cosine", "cosine_min", "sqnr_db", "ref_zero_frac", "cand_zero_frac", "ref_nan", "ref_inf",
                "cand_nan", "cand_inf", "ref_min", "ref_max", "cand_min", "cand_max"]
INT8_COLUMNS = ["amax", "int8_saturated_frac", "int8_zero_frac"]
FP16_COLUMNS = ["fp16_overflow", "fp16_nan", "fp16_flushed"]
DIAGNOSIS_COLUMNS = ["status", "first_problem", "origin", "isolated_cosine", "isolated_rel_l2", "culprit_rank"]


@dataclass
class Comparison:
    tensors: pd.DataFrame
    per_sample: pd.DataFrame
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # the task judge's verdict on the outputs (qbench.judge.TaskResult, also after load)
    task: object = None
    # qbench.compare.tap.SamplePicture of the worst samples by task metric (not saved: arrays)
    pictures: list = field(default_factory=list, repr=False)

    @property
    def first_problem(self) -> dict | None:
        hit = [f for f in self.findings if f["kind"] == "first_problem"]
        return hit[0] if hit else None

    @property
    def culprits(self) -> pd.DataFrame:
        """Ranked culprit rows, best-ranked first."""
        return self.tensors[self.tensors["culprit_rank"].notna()].sort_values("culprit_rank")

    def row(self, tensor: str) -> pd.Series:
        hit = self.tensors[self.tensors["tensor"] == tensor]
        if hit.empty:
            raise KeyError(tensor)
        return hit.iloc[0]

    def task_line(self) -> str:
        """The judge's verdict in one console line ("no task result" when the run had no judge)."""
        if self.task is None:
            return "no task result"
        return f"task {self.task.task}: {self.task.verdict.upper()} — {self.task.reason}"

    def diagnosis_line(self) -> str:
        """The tensor diagnosis in one console line: the worst output, the flagged count, the first problem."""
        frame = self.tensors
        bad = frame[frame["status"] != "ok"]
        outputs = frame[frame["is_output"]]
        broken = outputs[outputs["status"] == "nonfinite"]
        # cosine sees only values finite on both sides: name new NaN/Inf in an output before it
        if len(broken):
            head = f"NaN/Inf in output {broken.iloc[0]['tensor']!r}"
        elif len(outputs) and outputs["cosine"].notna().any():
            head = f"output cosine {float(outputs['cosine'].min()):.4f}"
        else:  # integer outputs (an ArgMax class map) have no cosine: the task judge reads them
            head = "no float output to take a cosine of"
        first = bad.iloc[0]["tensor"] if len(bad) else None
        return f"{head}, {len(bad)} flagged tensors" + (f", first problem at {first!r}" if first else "")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "meta": self.meta,
            "findings": self.findings,
            "unmatched": [{"tensor": t, "reason": r} for t, r in self.unmatched],
            "tensors": _records(self.tensors),
            "per_sample": _records(self.per_sample),
            "task": None if self.task is None else self.task.to_dict(),
        }

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``tensors.csv`` and ``comparison.json`` into ``directory`` (atomically each)."""
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise QbenchError(f"output path is a file, not a folder: {d}")
        csv = atomic.write_text(d / "tensors.csv", self.tensors.to_csv(index=False))
        doc = atomic.write_text(d / "comparison.json", json.dumps(jsonable(self.to_dict()), indent=1, allow_nan=False))
        return {"tensors": csv, "comparison": doc}

    @classmethod
    def load(cls, directory: str | Path) -> "Comparison":
        p = Path(directory) / "comparison.json"
        if not p.exists():
            raise QbenchError(f"no comparison.json in {directory}")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError(f"a JSON {type(doc).__name__}, not an object")
            if doc.get("format") != FORMAT:
                raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
            tensors = pd.DataFrame([unjson_row(r) for r in doc["tensors"]])
            per_sample = pd.DataFrame([unjson_row(r) for r in doc["per_sample"]])
            unmatched = [(u["tensor"], u["reason"]) for u in doc["unmatched"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QbenchError(f"{p}: not a qbench comparison ({exc})") from None
        task = doc.get("task")
        return cls(tensors, per_sample, unmatched, doc.get("findings", []), doc.get("meta", {}),
                   task=TaskResult.from_dict(task) if isinstance(task, dict) else None)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _scalar(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _scalar(v):
    if hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)):
        v = v.item()
    return v


