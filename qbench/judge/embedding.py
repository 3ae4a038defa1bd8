"""embedding: feature vectors judged as a retrieval system uses them.

Per sample (each batch row, flattened to one vector): the cosine between the FP32 and the candidate
embedding. Over all samples: nearest-neighbour agreement — for every sample, is its nearest other
sample (by cosine) the same in the candidate's space as in FP32's? — which needs at least three
samples (with two, each one's neighbour is forced).

Verdict: the share of samples whose cosine is at least ``min_cosine`` (Wilson) >= ``min_agreement``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qbench.judge.base import Accumulator, Summary, check_shapes
from qbench.judge.outputs import is_float_type, pick_output
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "output": None,
    "min_cosine": 0.99,      # a sample agrees when its embedding cosine reaches this
    "min_agreement": 0.95,   # share of agreeing samples
}


def prepare(graph, options: dict) -> dict:
    o = dict(options)
    o["output"] = pick_output(graph, o["output"], "embedding", lambda n, s, e: is_float_type(e))
    return o


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def nearest_neighbours(unit: np.ndarray) -> np.ndarray:
    """Index of each row's most similar other row (cosine of unit vectors)."""
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argmax(sim, axis=1)


class EmbeddingAccumulator(Accumulator):
    def __init__(self, judge) -> None:
        super().__init__(judge)
        self.ref: list = []
        self.cand: list = []

    def measure(self, index, name, ref, cand, feed, label) -> dict:
        out = self.options["output"]
        check_shapes("embedding", out, ref[out], cand[out])
        r = np.asarray(ref[out], dtype=np.float64)
        c = np.asarray(cand[out], dtype=np.float64)
        r = r.reshape(r.shape[0], -1) if r.ndim > 1 else r.reshape(1, -1)
        c = np.nan_to_num(c.reshape(r.shape), nan=0.0, posinf=0.0, neginf=0.0)
        ru, cu = _unit(r), _unit(c)
        self.ref.append(ru)
        self.cand.append(cu)
        cos = np.sum(ru * cu, axis=1)
        ok = cos >= float(self.options["min_cosine"])
        return {"rows": r.shape[0], "agree_rows": int(ok.sum()), "cosine": float(cos.min()),
                "norm_ratio": float(np.linalg.norm(c) / np.linalg.norm(r)) if np.linalg.norm(r) else float("nan")}

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = int(frame["rows"].sum()) if len(frame) else 0
        k = float(frame["agree_rows"].sum()) if n else 0.0
        metrics = {"cosine_agreement": k / n if n else float("nan")}
        notes = []
        if n:
            metrics.update(min_cosine=float(frame["cosine"].min()), mean_cosine=float(frame["cosine"].mean()))
        if n >= 3:
            ref, cand = np.vstack(self.ref), np.vstack(self.cand)
            same = nearest_neighbours(ref) == nearest_neighbours(cand)
            metrics["nn_agreement"] = float(same.mean())
            if len(frame) == n:  # one row per sample: the per-sample column lines up
                frame["nn_same"] = same.astype(int)
        elif n:
            notes.append("nearest-neighbour agreement needs at least 3 samples")
        return Summary(metrics, "cosine_agreement", f"share of samples with embedding cosine >= {self.options['min_cosine']:g}",
                       metrics["cosine_agreement"], float(self.options["min_agreement"]), "min_agreement", True,
                       Evidence("wilson", k=k, n=n), notes, rank_column="cosine", rank_higher_is_better=True)
