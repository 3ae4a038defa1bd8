"""INTERIM, to be deleted when qbench.judge (branch wt-judge) is merged: output agreement only."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class _Result:
    task: str
    primary: str
    metrics: dict
    per_sample: pd.DataFrame
    verdict: str
    reason: str
    score: float
    note: str = ""
    interval: tuple | None = None
    more_samples: int | None = None

    def to_dict(self):
        return {"task": self.task, "primary": self.primary, "metrics": self.metrics, "verdict": self.verdict,
                "reason": self.reason, "score": self.score, "per_sample": self.per_sample.to_dict("records")}


class _Acc:
    def __init__(self):
        self.rows = []

    def add(self, i, name, ref, cand, feed):
        agree = []
        for k, r in ref.items():
            c = cand[k]
            if r.ndim >= 2 and r.shape[-1] > 1:
                agree.append(float((r.argmax(-1) == c.argmax(-1)).mean()))
            else:
                agree.append(float(np.allclose(r, c, rtol=1e-2, atol=1e-2)))
        self.rows.append({"sample": i, "name": name, "agreement": float(np.mean(agree))})

    def finish(self):
        ps = pd.DataFrame(self.rows)
        v = float(ps["agreement"].mean())
        verdict = "pass" if v >= 0.99 else "fail"
        return _Result("generic", "agreement", {"agreement": v}, ps, verdict, f"argmax agreement {v:.3f} vs 0.99", v)


class InterimJudge:
    task = "generic"
    note = "interim output agreement"

    def start(self):
        return _Acc()
