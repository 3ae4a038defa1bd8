"""What the report, the advisor and the store receive for one candidate precision."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class CandidateResult:
    """One candidate (e.g. INT8 simulated in ONNX Runtime) compared against the FP32 reference.

    ``tensors``: the comparator's frame, one row per tensor in graph order.
    ``findings``: dicts {kind, tensor, node, op_type, index, severity, message}.
    ``unmatched``: (tensor, reason) pairs for tensors that could not be compared.
    ``meta``: free-form facts about how the data was produced (``source``, ``capture_mode``, ...).
    ``task``: the task judge's result (``qbench.judge.TaskResult``), which decides the verdict.
    ``pictures``: ``qbench.compare.tap.SamplePicture`` of the worst samples by task metric.
    """

    precision: str
    tensors: pd.DataFrame
    findings: list[dict] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    latency_ms: float | None = None
    task: object = None
    pictures: list = field(default_factory=list, repr=False)
