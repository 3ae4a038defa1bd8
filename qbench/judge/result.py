"""TaskResult: what a judge concludes about one candidate — the numbers a user of the task reads,
per sample and overall, and a verdict that rests on them alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from qbench.jsonsafe import jsonable, unjson_row, unjson_value

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass
class TaskResult:
    task: str
    primary: str
    metrics: dict
    per_sample: pd.DataFrame
    verdict: str
    reason: str
    interval: tuple | None = None
    more_samples: int | None = None
    score: float = float("nan")
    note: str = ""
    higher_is_better: bool = True  # direction of the primary metric (its per-sample column too)
    tolerance: float | None = None
    options: dict = field(default_factory=dict)  # the task options in force (defaults filled in)
    rank_column: str | None = None  # per-sample column that orders worst() (default: the primary)
    rank_higher_is_better: bool | None = None

    def worst(self, k: int = 5) -> pd.DataFrame:
        """The k worst samples by the primary metric's per-sample column (all rows if it has none)."""
        frame = self.per_sample
        column = self.rank_column or self.primary
        ascending = self.higher_is_better if self.rank_higher_is_better is None else self.rank_higher_is_better
        if column not in frame.columns or frame.empty:
            return frame.head(k)
        return frame.sort_values(column, ascending=ascending, kind="stable", na_position="first").head(k)

    def to_dict(self) -> dict:
        return jsonable({
            "task": self.task,
            "note": self.note,
            "primary": self.primary,
            "higher_is_better": self.higher_is_better,
            "tolerance": self.tolerance,
            "rank_column": self.rank_column or self.primary,
            "rank_higher_is_better": self.rank_higher_is_better,
            "verdict": self.verdict,
            "reason": self.reason,
            "interval": list(self.interval) if self.interval is not None else None,
            "more_samples": self.more_samples,
            "score": self.score,
            "metrics": self.metrics,
            "options": self.options,
            "per_sample": self.per_sample,
        })

    @classmethod
    def from_dict(cls, doc: dict) -> "TaskResult":
        """The result ``to_dict`` saved (comparison.json, results.json), read back whole: the advisor,
        the report and ``worst()`` then see what the judge concluded, without running it again."""
        interval = doc.get("interval")
        rank_hib = doc.get("rank_higher_is_better")
        return cls(
            task=str(doc.get("task") or ""), primary=str(doc.get("primary") or ""),
            metrics={k: unjson_value(v) for k, v in (doc.get("metrics") or {}).items()},
            per_sample=pd.DataFrame([unjson_row(r) for r in doc.get("per_sample") or []]),
            verdict=str(doc.get("verdict") or ""), reason=str(doc.get("reason") or ""),
            interval=tuple(unjson_value(v) for v in interval) if interval is not None else None,
            more_samples=doc.get("more_samples"), score=float(unjson_value(doc.get("score"))),
            note=str(doc.get("note") or ""), higher_is_better=bool(doc.get("higher_is_better", True)),
            tolerance=unjson_value(doc["tolerance"]) if doc.get("tolerance") is not None else None,
            options=dict(doc.get("options") or {}), rank_column=doc.get("rank_column"),
            rank_higher_is_better=None if rank_hib is None else bool(rank_hib))
