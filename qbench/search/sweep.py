"""Calibrator sweep: every calibration method from one activation pass, each judged on held-out data.

One ONNX Runtime pass over the calibration part fills one histogram per tensor; every method
(entropy, minmax, percentile, ...) reads its amax from the same histograms, so the sweep costs one
pass plus one judged run per candidate. A further candidate, ``best-of``, gives each tensor the
candidate amax with the least *local* quantization error over that tensor's own histogram:

    E(a) = sum_k n_k * e(c_k, a) / sum_k n_k,   s = a / 127,
    e(c, a) = c**2           if c < s/2        (rounds to zero: the whole value is lost)
            = s**2 / 12      if s/2 <= c <= a  (uniform rounding noise inside the range)
            = (c - a)**2     if c > a          (clipped at the range)

with ``c_k`` the centre of bin ``k`` of the |x| histogram and ``n_k`` its count. This is the
mean squared error of symmetric INT8 quantization under the usual assumption that values are
spread evenly within a quantization step (Widrow's model); it trades the clipping error that
entropy and percentile accept against the resolution MinMax gives away, tensor by tensor. It is
local: a tensor's best range for its own error is not always best for the network's output, which
is why every candidate, best-of included, is judged by the task verdict and not by this number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qbench.calibrate import METHODS, auto_batch_size, collect, ranges_from_histograms
from qbench.ranges import INT8_MAX, Ranges, TensorRange
from qbench.search.judging import rank_key
from qbench.search.models import int8_model

BEST_OF = "best-of"
TABLE_COLUMNS = ["candidate", "verdict", "score", "primary", "value", "reason", "part", "seconds"]


@dataclass
class SweepResult:
    candidates: dict[str, Ranges]  # method -> ranges, plus best-of
    results: dict[str, object]  # method -> TaskResult on the judging part
    part: str
    best: str  # the candidate ranked first (verdict, then score)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        rows = []
        for name in sorted(self.results, key=lambda n: rank_key(self.results[n])):
            r = self.results[name]
            rows.append({"candidate": f"int8-{name}", "verdict": r.verdict, "score": float(r.score),
                         "primary": r.primary, "value": r.metrics.get(r.primary), "reason": r.reason,
                         "part": self.part, "seconds": round(self.seconds.get(name, float("nan")), 2)})
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def calibrate_all(graph, calib_data, methods=None, *, batch_size: int | None = None, progress: bool = False):
    """(ranges per method, histograms): every method's ranges from ONE activation pass over
    ``calib_data`` (a dataset), read exactly as ``qbench.calibrate.calibrate_many`` reads them, and
    the histograms themselves (best-of needs the counts, which ``calibrate_many`` does not return).
    ``batch_size`` None: qbench.calibrate's automatic choice.
    Each Ranges carries provenance: which samples (the calibration part) it was computed on."""
    methods = tuple(methods or METHODS)
    if batch_size is None:  # as qbench.calibrate chooses it: the largest batch that fits memory
        batch_size = auto_batch_size(graph, calib_data)
    collector = collect(graph, calib_data.batches(batch_size), progress=progress, total=len(calib_data))
    summaries = {name: hist.summary() for name, hist in collector.histograms.items() if hist.batches}
    samples = [str(p.name) for p in calib_data.files]
    out = {}
    for method in methods:
        ranges = ranges_from_histograms(collector.histograms, method, summaries=summaries)
        ranges.model = graph.digest
        ranges.provenance = {"model": graph.name, "model_digest": graph.digest, "method": ranges.method,
                             "calibrator": ranges.header.split("-", 2)[-1], "data": str(calib_data.root),
                             "part": "calibration part (qbench.search holdout)", "samples": samples}
        out[method] = ranges
    return out, collector.histograms


def local_error(counts: np.ndarray, edges: np.ndarray, amax: float) -> float:
    """E(amax) of the module docstring over one |x| histogram (``counts`` per bin, ``edges``)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0 or amax <= 0:
        return 0.0 if total == 0 else float("inf")
    centres = (edges[:-1] + edges[1:]) / 2
    s = amax / INT8_MAX
    err = np.where(centres > amax, (centres - amax) ** 2, np.where(centres < s / 2, centres ** 2, s * s / 12))
    return float((counts * err).sum() / total)


def best_of(candidates: dict[str, Ranges], histograms: dict | None) -> Ranges:
    """Per tensor, the candidate amax with the least local error (ties: the first candidate).
    Without histograms (ranges read from files), the entries of the first candidate."""
    names = list(candidates)
    first = candidates[names[0]]
    entries = {}
    for tensor, entry in first.entries.items():
        hist = (histograms or {}).get(tensor)
        options = [(m, candidates[m][tensor]) for m in names if tensor in candidates[m]]
        if hist is not None and getattr(hist, "counts", None) is not None:
            errors = [local_error(hist.counts, hist.edges, r.amax) for _, r in options]
            method, chosen = options[int(np.argmin(errors))]
        else:
            method, chosen = options[0]
        entries[tensor] = TensorRange(tensor, chosen.amax, method=f"{BEST_OF}:{method}", samples=chosen.samples,
                                      observed_min=chosen.observed_min, observed_max=chosen.observed_max,
                                      summary=chosen.summary)
    return Ranges(entries, method=BEST_OF, header=first.header, model=first.model)


def sweep(graph, candidates: dict[str, Ranges], reference, judge, *, histograms=None, keep_float=(),
          echo=None) -> SweepResult:
    """Judge every candidate (plus best-of when there are two or more) on ``reference``'s samples."""
    say = echo or (lambda _m: None)
    candidates = dict(candidates)
    if len(candidates) > 1 and histograms:  # best-of needs the histograms the candidates were read from
        candidates[BEST_OF] = best_of(candidates, histograms)
    results, seconds = {}, {}
    for name, ranges in candidates.items():
        started = time.perf_counter()
        results[name] = reference.judge_model(judge, int8_model(graph, ranges, keep_float))
        seconds[name] = time.perf_counter() - started
        r = results[name]
        say(f"qbench: sweep: int8-{name}: {r.verdict} ({r.primary} {r.metrics.get(r.primary, float('nan')):.4g}) "
            f"on the {reference.part}")
    best = min(results, key=lambda n: rank_key(results[n]))
    return SweepResult(candidates, results, reference.part, best, seconds)
