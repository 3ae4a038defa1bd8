"""The machinery every task adapter shares: a Judge (task, options, labels) starts one
Accumulator per candidate; the accumulator measures each sample as it streams past (outputs only,
nothing kept but a row of numbers, unless the task needs cross-sample state), then turns the rows
into a TaskResult whose verdict rests on the adapter's primary metric."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.result import TaskResult
from qbench.judge.verdict import Decision, Evidence, decide


@dataclass
class Summary:
    """An adapter's conclusion before the verdict: its aggregate metrics and which one decides."""

    metrics: dict
    primary: str          # metric key (and per-sample column, where one exists)
    label: str            # how the reason names it
    value: float
    tolerance: float
    option: str           # the option that sets the tolerance
    higher_is_better: bool
    evidence: Evidence
    notes: list = field(default_factory=list)
    rank_column: str | None = None         # per-sample column for worst(), when not the primary
    rank_higher_is_better: bool | None = None


class Accumulator:
    """One candidate's running judgement. Subclasses implement measure() and summarise()."""

    def __init__(self, judge: "Judge") -> None:
        self.judge = judge
        self.options = judge.options
        self.rows: list[dict] = []

    def add(self, sample_index: int, sample_name: str, ref_outputs: dict, cand_outputs: dict, feed: dict | None = None) -> dict:
        label = self.judge.labels.get(sample_name) if self.judge.labels is not None else None
        missing = [n for n in self.judge.output_names if n not in ref_outputs or n not in cand_outputs]
        if missing:
            raise QbenchError(f"judge: sample {sample_name!r} lacks output(s) {missing[:3]} in the reference or the candidate")
        row = {"sample": int(sample_index), "name": str(sample_name)}
        row.update(self.measure(sample_index, sample_name, ref_outputs, cand_outputs, feed or {}, label))
        self.rows.append(row)
        return row

    def measure(self, index, name, ref: dict, cand: dict, feed: dict, label) -> dict:  # pragma: no cover
        raise NotImplementedError

    def summarise(self, frame: pd.DataFrame) -> Summary:  # pragma: no cover
        raise NotImplementedError

    def finish(self) -> TaskResult:
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            frame = pd.DataFrame(columns=["sample", "name"])
        else:
            frame = frame.sort_values("sample", kind="stable").reset_index(drop=True)
        summary = self.summarise(frame)
        decision: Decision = decide(summary.label, summary.value, summary.tolerance, summary.higher_is_better,
                                    summary.evidence, summary.option)
        notes = [n for n in [self.judge.note, *summary.notes] if n]
        value = summary.value
        score = float("nan") if value is None or math.isnan(value) else (value if summary.higher_is_better else -value)
        metrics = dict(summary.metrics)
        metrics.setdefault(summary.primary, value)
        metrics["samples"] = int(len(frame))
        return TaskResult(task=self.judge.task, primary=summary.primary, metrics=metrics, per_sample=frame,
                          verdict=decision.verdict, reason=decision.reason, interval=decision.interval,
                          more_samples=decision.more_samples, score=score, note="; ".join(notes),
                          higher_is_better=summary.higher_is_better, tolerance=summary.tolerance,
                          options={k: v for k, v in self.options.items() if not k.startswith('_')}, rank_column=summary.rank_column,
                          rank_higher_is_better=summary.rank_higher_is_better)


class Judge:
    """A task, its options (defaults filled in) and the labels; start() one accumulator per candidate."""

    def __init__(self, task: str, graph, options: dict, labels, accumulator: type, note: str = "") -> None:
        self.task = task
        self.graph = graph
        self.options = options
        self.labels = labels
        self.note = note
        self._accumulator = accumulator
        self.output_names = list(graph.output_names) if graph is not None else []

    def start(self) -> Accumulator:
        return self._accumulator(self)

    def __repr__(self) -> str:
        return f"Judge(task={self.task!r}, note={self.note!r})"


def check_shapes(task: str, output: str, ref, cand) -> None:
    """One error line when the candidate's output is shaped unlike FP32's (a broken candidate or
    a mismatched run, not something a task metric can score)."""
    if np.shape(ref) != np.shape(cand):
        raise QbenchError(f"{task}: output {output!r} has shape {np.shape(cand)} in the candidate and {np.shape(ref)} in FP32")
