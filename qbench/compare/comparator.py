"""Streaming layer-by-layer comparison of a reference runner and a candidate runner.

Per sample: run both with every tensor captured, fold each tensor's error sums into a small
accumulator, keep a per-sample metric row, drop the arrays. Only one sample's activations (two
runs' worth) are ever in memory. After the pass: classify tensors, find the first problem, and
replay the flagged nodes alone on the reference inputs of one sample (re-running the reference
for it) to tell introduced from inherited error.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np
import onnx
import pandas as pd

from qbench.compare import diagnose
from qbench.compare.diagnose import Thresholds
from qbench.compare.kernels import FP16_FLUSH_AT, FP16_OVERFLOW_AT, fp16_counts, int8_counts
from qbench.compare.matching import match_tensors, mismatch_reason
from qbench.compare.metrics import SumsAccumulator, derive, pair_sums
from qbench.compare.replay import ModelIndex, replay_tensor
from qbench.compare.result import BASE_COLUMNS, DIAGNOSIS_COLUMNS, FP16_COLUMNS, INT8_COLUMNS, Comparison
from qbench.compare.tap import OutputsTap
from qbench.cpu import cpu_threads
from qbench.data import count_samples, iter_samples
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.ranges import INT8_MAX

DEFAULT_MAX_REPLAY = 20


class _PrecisionStats:
    """What the candidate's precision does to the REFERENCE values (saturation, flushing...),
    accumulated per tensor: the "why" beside the comparator's "how much"."""

    def __init__(self, precision: str | None, ranges, quantized: set[str] | None):
        self.precision = precision
        self.ranges = ranges
        self.quantized = quantized
        self.totals: dict[str, dict] = {}
        self.fn = None
        if precision == "int8":
            self.fn = int8_counts
        elif precision == "fp16":
            self.fn = fp16_counts

    @property
    def columns(self) -> list[str]:
        return INT8_COLUMNS if self.precision == "int8" else FP16_COLUMNS if self.precision == "fp16" else []

    def add(self, name: str, ref: np.ndarray, n: int, nonzero: int) -> None:
        if self.fn is None:
            return
        if self.precision == "int8" and (self.ranges is None or name not in self.ranges
                                         or (self.quantized is not None and name not in self.quantized)):
            return
        t = self.totals.setdefault(name, {"n": 0, "nonzero": 0})
        flat = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
        if self.precision == "int8":
            # the definitions of qbench.simulate.int8_stats, in one fused pass (20x faster; a test
            # holds the two equal)
            amax = float(self.ranges.amax(name))
            saturated, zero_code, nonzero_values = self.fn(flat, np.float32(amax), np.float32(amax / INT8_MAX))
            if amax <= 0:
                zero_code = nonzero_values
            t["sat"] = t.get("sat", 0) + saturated
            t["zero"] = t.get("zero", 0) + zero_code
            t["nonzero_values"] = t.get("nonzero_values", 0) + nonzero_values
        else:
            # the definitions of qbench.simulate.fp16_stats in one fused pass, without its float16
            # copy and boolean temporaries (~15x faster; a test holds the two equal)

            overflow, nan, flushed = self.fn(flat, FP16_OVERFLOW_AT, FP16_FLUSH_AT)
            t["fp16_overflow"] = t.get("fp16_overflow", 0) + overflow
            t["fp16_nan"] = t.get("fp16_nan", 0) + nan
            t["fp16_flushed"] = t.get("fp16_flushed", 0) + flushed
        t["n"] += n
        t["nonzero"] += nonzero

    def row(self, name: str) -> dict:
        t = self.totals.get(name)
        if self.precision == "int8":
            if not t or "sat" not in t:
                return dict.fromkeys(INT8_COLUMNS, math.nan)
            return {"amax": self.ranges.amax(name), "int8_saturated_frac": t["sat"] / max(t["n"], 1),
                    "int8_zero_frac": t["zero"] / t["nonzero_values"] if t["nonzero_values"] else 0.0}
        if self.precision == "fp16":
            return {k: (t or {}).get(k, 0) for k in FP16_COLUMNS}
        return {}


class _PerSample:
    """Per-sample, per-tensor metric rows, stored as one small numpy block per sample (a few tens
    of kB for the default model) rather than as Python dicts, so thousands of samples stay cheap."""

    FLOATS = ("max_abs_err", "mean_abs_err", "rel_l2", "cosine", "sqnr_db", "ref_zero_frac", "cand_zero_frac")

    def __init__(self) -> None:
        self.blocks: list[tuple[int, list[str], np.ndarray, np.ndarray, list[str]]] = []
        self._rows: list[tuple] = []
        self._names: list[str] = []
        self._nonfinite: list[int] = []
        self._status: list[str] = []

    def add(self, name: str, m: dict, nonfinite: int, status: str) -> None:
        self._names.append(name)
        self._rows.append(tuple(m[k] for k in self.FLOATS))
        self._nonfinite.append(nonfinite)
        self._status.append(status)

    def end_sample(self, sample: int) -> None:
        self.blocks.append((sample, self._names, np.array(self._rows, dtype=np.float64).reshape(-1, len(self.FLOATS)),
                            np.array(self._nonfinite, dtype=np.int64), self._status))
        self._rows, self._names, self._nonfinite, self._status = [], [], [], []

    def frame(self) -> pd.DataFrame:
        parts = []
        for sample, names, values, nonfinite, status in self.blocks:
            part = pd.DataFrame(values, columns=list(self.FLOATS))
            part.insert(0, "tensor", names)
            part.insert(0, "sample", sample)
            part["cand_nonfinite"] = nonfinite
            part["status"] = status
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _progress(total, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, disable=not enabled, leave=False)


def _candidate_model(candidate, candidate_model) -> onnx.ModelProto | None:
    """The whole candidate model, when we can see it: given, or the one an OrtRunner runs."""
    if candidate_model is not None:
        return candidate_model.model if isinstance(candidate_model, ModelGraph) else candidate_model
    graph = getattr(candidate, "graph", None)
    return graph.model if isinstance(graph, ModelGraph) else None


def compare_runs(graph: ModelGraph, reference, candidate, dataset, *, limit: int | None = None,
                 thresholds: Thresholds | None = None, replay: bool = True, max_replay: int = DEFAULT_MAX_REPLAY,
                 candidate_model: onnx.ModelProto | ModelGraph | None = None,
                 make_candidate_model: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None,
                 precision: str | None = None, ranges=None, quantized: Iterable[str] | None = None,
                 tensors: Iterable[str] | None = None, progress: bool = True, workers: int | None = None,
                 judge=None, pictures: int = 4, stream=None) -> Comparison:
    """Compare ``candidate`` against ``reference`` tensor by tensor over the samples of ``dataset``.

    ``reference``/``candidate``: runners (``.name``, ``.run(feed) -> {tensor: array}``) capturing
    tensors under the original names of ``graph``. ``dataset``: a ``qbench.data.Dataset`` or any
    iterable of feeds. Replay of flagged nodes uses ``make_candidate_model`` (one FP32 node model ->
    candidate precision) when given, else the node cut out of ``candidate_model`` (default: the
    model of an OrtRunner candidate). ``precision``/``ranges``/``quantized`` add the INT8/FP16
    statistics columns (computed on the reference values). ``workers``: threads measuring tensors
    (default: 2, or fewer when ``QBENCH_THREADS`` allows fewer).
    ``judge``: a task judge (``qbench.judge.make_judge``); each sample's graph outputs go to its
    accumulator and the result is ``Comparison.task``, with pictures of the ``pictures`` worst
    samples for the report (``qbench.compare.tap``).
    ``stream``: a shared pass over the samples (``qbench.compare.stream``) that runs the FP32
    reference once per sample for several candidates; this candidate joins it, and the samples
    (``dataset``, ``limit``) are the stream's. Without one, this comparison runs its own pass.
    """
    th = thresholds or Thresholds()
    if limit is not None and limit < 1:
        raise QbenchError(f"--limit must be at least 1, not {limit}")
    started = time.perf_counter()
    fold = CandidateFold(graph, dataset, reference.name, candidate.name, th,
                         _PrecisionStats(precision, ranges, set(quantized) if quantized is not None else None),
                         tensors, judge, workers)
    shared = False
    try:
        shared = stream is not None and stream.follow(fold, candidate)
        if not shared:
            _own_pass(fold, reference, candidate, dataset, limit, progress)
    finally:
        fold.close()
    if shared:  # its timing as its own pass would have taken it (the shared pass ran other candidates too)
        started = time.perf_counter() - fold.t_run - fold.t_wait
    return fold.comparison(reference, candidate, started=started, replay=replay, max_replay=max_replay,
                           candidate_model=candidate_model, make_candidate_model=make_candidate_model,
                           precision=precision, ranges=ranges, progress=progress, pictures=pictures)


def _own_pass(fold: "CandidateFold", reference, candidate, dataset, limit: int | None, progress: bool) -> None:
    """One comparison's pass: both runners on every sample. The metrics of sample i are folded on a
    background thread while both runners run sample i+1 (ONNX Runtime's single-threaded stretches,
    e.g. copying out the captured tensors, leave a core free); at most two samples' activations are
    alive, and folds stay in sample order."""
    bar = _progress(count_samples(dataset, limit), progress, f"compare {reference.name} vs {candidate.name}")
    pipe = ThreadPoolExecutor(1)
    pending = None
    try:
        for sample_index, feed in enumerate(iter_samples(dataset, limit)):
            t0 = time.perf_counter()
            ref = reference.run(feed)
            cand = candidate.run(feed)
            t1 = time.perf_counter()
            fold.t_run += t1 - t0
            if pending is not None:  # the previous sample's fold: it owns the accumulators until it is done
                fold.t_metrics += pending.result()
                pending = None
            fold.t_wait += time.perf_counter() - t1
            todo, outs = fold.prepare(sample_index, ref, cand)
            pending = pipe.submit(fold.fold, sample_index, feed, ref, cand, todo, outs)
            del ref, cand, outs
            bar.update(1)
        if pending is not None:
            t1 = time.perf_counter()
            fold.t_metrics += pending.result()
            pending = None
            fold.t_wait += time.perf_counter() - t1
    finally:
        bar.close()
        pipe.shutdown()  # waits for a fold still running (after an error), so its arrays are freed


class CandidateFold:
    """What one comparison keeps while the samples stream past: per tensor a small error
    accumulator, the precision statistics, one per-sample metric row block, the task judge's
    accumulator (``OutputsTap``) and the feed of the most damaged sample (for replay). Nothing in it
    grows with the samples except the per-sample rows (a few tens of kB each).

    The pass that drives it (``_own_pass`` or a shared ``qbench.compare.stream``) calls ``prepare``
    on its own thread with sample i's reference and candidate captures, then ``fold`` (on a
    background thread, in sample order), which pops and frees the arrays it measured: give each
    fold its own dict when several candidates share one reference run (the arrays themselves are
    shared and freed when the last fold drops them)."""

    def __init__(self, graph: ModelGraph, dataset, reference_name: str, candidate_name: str, th: Thresholds,
                 stats: _PrecisionStats, tensors: Iterable[str] | None, judge, workers: int | None):
        self.graph = graph
        self.dataset = dataset
        self.reference_name = reference_name
        self.candidate_name = candidate_name
        self.th = th
        self.stats = stats
        self.wanted = list(tensors) if tensors is not None else None
        self.matched = None
        self.unmatched: list[tuple[str, str]] = []
        self.acc: dict[str, SumsAccumulator] = {}
        self.shapes: dict[str, tuple] = {}
        self.per_sample = _PerSample()
        self.worst = [-1.0, None]  # (damage score, feed) of the sample kept for replay
        self.t_run = self.t_metrics = self.t_wait = 0.0
        self.n_samples = 0
        workers = workers if workers is not None else min(2, cpu_threads())
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.tap = OutputsTap(judge, graph.output_names, _channel_order(dataset)) if judge is not None else None

    def prepare(self, sample_index: int, ref: dict, cand: dict):
        """(tensors to measure, the task judge's outputs or None) for one sample; reads, never
        changes, ``ref`` and ``cand``."""
        if self.matched is None:
            self.matched, self.unmatched = match_tensors(self.graph, ref, cand, self.wanted)
            if not self.matched:
                raise QbenchError(f"no tensor of {self.graph.name} could be matched between {self.reference_name} and "
                                  f"{self.candidate_name}"
                                  + (f" (first: {self.unmatched[0][0]}: {self.unmatched[0][1]})" if self.unmatched else ""))
            self.acc = {t.name: SumsAccumulator() for t in self.matched}
        todo = []
        for info in self.matched:
            name = info.name
            if name not in self.acc:
                continue
            reason = mismatch_reason(name, ref, cand)
            if reason:  # a later sample disagrees: the tensor cannot be compared over the dataset
                self.unmatched.append((name, f"sample {sample_index}: {reason}"))
                del self.acc[name]
                continue
            todo.append(name)
        self.n_samples += 1
        outs = (self.tap.take(ref), self.tap.take(cand)) if self.tap is not None else None
        return todo, outs

    def _measure(self, name: str, ref: dict, cand: dict):
        # pop, so each pair of arrays is freed as soon as it is measured
        r = ref.pop(name)
        c = cand.pop(name)
        s = pair_sums(r, c)
        self.stats.add(name, r, s["n"], s["n"] - s["ref_zeros"])
        return name, s, tuple(np.shape(r))

    def fold(self, sample_index: int, feed: dict, ref: dict, cand: dict, todo: list[str], outs) -> float:
        """Measure sample ``sample_index``'s tensors into the accumulators; empties ``ref`` and
        ``cand``. Returns the seconds it took."""
        t0 = time.perf_counter()
        if outs is not None:  # the task judge sees the outputs before _measure() pops them
            self.tap.add(sample_index, sample_name(self.dataset, sample_index), outs[0], outs[1], feed)
        damage = 0.0
        # numpy/BLAS/numba release the GIL: a second thread uses the second core (results in order)
        jobs = (self.pool.map(lambda name: self._measure(name, ref, cand), todo) if self.pool
                else (self._measure(name, ref, cand) for name in todo))
        th = self.th
        for name, s, shape in jobs:
            m = derive(s)
            # a sample that differs by no more than atol is identical for diagnosis, whatever its cosine
            self.acc[name].add(s, m["cosine"] if not m["max_abs_err"] <= th.atol else 1.0)
            self.shapes.setdefault(name, shape)
            full = {**s, **m}
            self.per_sample.add(name, m, s["cand_nan"] + s["cand_inf"], diagnose.status_of(full, th))
            damage += diagnose.error_score(full)
        ref.clear()
        cand.clear()
        self.per_sample.end_sample(sample_index)
        if damage > self.worst[0]:
            self.worst[:] = [damage, feed]
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def comparison(self, reference, candidate, *, started: float, replay: bool, max_replay: int, candidate_model,
                   make_candidate_model, precision: str | None, ranges, progress: bool, pictures: int) -> Comparison:
        """After the pass: the per-tensor frame, diagnosis, culprit replay and task result."""
        if self.matched is None:
            raise QbenchError("the dataset yielded no samples to compare")
        graph, th, acc, stats, unmatched = self.graph, self.th, self.acc, self.stats, self.unmatched
        matched = [t for t in self.matched if t.name in acc]
        rows = []
        for info in matched:
            a = acc[info.name]
            s = a.sums
            row = {"index": info.index, "tensor": info.name, "node": info.node, "op_type": info.op_type,
                   "is_output": info.is_output, "shape": "x".join(str(d) for d in self.shapes[info.name]),
                   "samples": a.samples, **derive(s), "cosine_min": a.cosine_min}
            row.update({k: s[k] for k in ("ref_nan", "ref_inf", "cand_nan", "cand_inf", "ref_min", "ref_max", "cand_min", "cand_max")})
            row.update(stats.row(info.name))
            row["status"] = diagnose.status_of(row, th)
            rows.append(row)
        columns = BASE_COLUMNS + stats.columns + DIAGNOSIS_COLUMNS
        frame = pd.DataFrame(rows)
        frame["first_problem"] = False
        flagged = frame.index[frame["status"] != "ok"]
        if len(flagged):
            frame.loc[flagged[0], "first_problem"] = True
        frame["origin"] = ""
        frame["isolated_cosine"] = math.nan
        frame["isolated_rel_l2"] = math.nan
        frame["culprit_rank"] = math.nan
        frame = frame[columns].copy()
        findings = diagnose.status_findings(frame)

        t_replay = 0.0
        replay_meta = {"done": False, "reason": "replay disabled" if not replay else "no flagged tensor"}
        cmodel = _candidate_model(candidate, candidate_model)
        if replay and len(flagged):
            t0 = time.perf_counter()
            replay_meta = _replay(frame, graph, reference, self.worst[1], th, max_replay, cmodel, make_candidate_model,
                                  progress)
            t_replay = time.perf_counter() - t0
            findings += diagnose.culprit_findings(frame)
            diagnose.annotate_first_problem(findings, frame, replay_meta.get("note", replay_meta.get("reason", "")))
        self.worst[1] = None

        meta = {
            "model": graph.name, "model_digest": graph.digest, "reference": reference.name, "candidate": candidate.name,
            "precision": precision or "", "samples": self.n_samples, "tensors_compared": len(frame),
            "tensors_unmatched": len(unmatched), "thresholds": th.to_dict(), "replay": replay_meta,
            "status_counts": {k: int(v) for k, v in frame["status"].value_counts().items()},
            # metrics: time spent folding samples (mostly hidden behind the next sample's runs);
            # metrics_wait: the part the runs waited for
            "timing_s": {"runs": round(self.t_run, 3), "metrics": round(self.t_metrics, 3),
                         "metrics_wait": round(self.t_wait, 3), "replay": round(t_replay, 3),
                         "total": round(time.perf_counter() - started, 3)},
        }
        if ranges is not None:
            meta["ranges_method"] = getattr(ranges, "method", "")
        task = None
        sample_pictures: list = []
        tap = self.tap
        if tap is not None:
            t0 = time.perf_counter()
            task, wanted = tap.finish(pictures)
            sample_pictures = _pictures(tap, wanted, self.dataset, reference, candidate)
            meta["timing_s"]["task"] = round(tap.seconds + time.perf_counter() - t0, 3)
            meta["task"] = task.task if task is not None else ""
            if tap.unjudged:
                findings.append({"kind": "task_unjudged", "tensor": None, "node": None, "op_type": None, "index": None,
                                 "severity": "warning", "message": tap.unjudged})
        return Comparison(frame, self.per_sample.frame(), unmatched, findings, meta, task=task, pictures=sample_pictures)


def sample_name(dataset, index: int) -> str:
    """A sample's name as labels files key it: its file path relative to the data folder."""
    files = getattr(dataset, "files", None)
    root = getattr(dataset, "root", None)
    if files is not None and index < len(files):
        path = files[index]
        try:
            return path.relative_to(root).as_posix() if root is not None else path.name
        except ValueError:
            return path.name
    return f"sample{index}"


def _channel_order(dataset) -> str:
    pre = getattr(dataset, "preprocess", None) or {}
    return next((p.channel_order for p in pre.values()), "RGB")


def _pictures(tap: OutputsTap, wanted: list[int], dataset, reference, candidate) -> list:
    """Pictures of the worst samples: kept during the pass, or (beyond the tap's memory budget)
    made now by running just those samples again — only for a candidate that computes (an ONNX
    model); imported results are read in sample order and cannot be asked for one sample twice."""
    missing = [i for i in wanted if i not in tap.pictures]
    if missing and hasattr(dataset, "sample") and getattr(candidate, "graph", None) is not None:
        for i in missing:
            feed = dataset.sample(i)
            ref, cand = reference.run(feed), candidate.run(feed)
            tap.pictures[i] = tap.picture(i, sample_name(dataset, i), tap.take(ref), tap.take(cand), feed)
            del ref, cand
    return tap.keep_only(wanted)


def _replay(frame: pd.DataFrame, graph: ModelGraph, reference, feed: dict, th: Thresholds, max_replay: int,
            cmodel, make_candidate_model, progress: bool) -> dict:
    """Replay the selected flagged tensors on one sample; fill origin/isolated/culprit columns."""
    if cmodel is None and make_candidate_model is None:
        return {"done": False, "reason": "the candidate model is not visible (pass candidate_model or make_candidate_model)"}
    inputs_of = {t: [i for i in graph.producer[t].input if i] for t in frame["tensor"] if t in graph.producer}
    chosen = diagnose.select_for_replay(frame, inputs_of, max_replay)
    n_flagged = int((frame["status"] != "ok").sum())
    ref_values = dict(reference.run(feed))  # one more reference run: cheaper than holding every sample
    ref_values.update(feed)
    notes = {}
    if make_candidate_model is None:
        cmodel = ModelIndex(cmodel)
    position = {t: i for i, t in enumerate(frame["tensor"])}
    bar = _progress(len(chosen), progress, "replay flagged nodes")
    for tensor in chosen:
        result = replay_tensor(tensor, ref_values, graph=graph, candidate_model=cmodel, make_candidate_model=make_candidate_model)
        bar.update(1)
        if result.isolated is None:
            notes[tensor] = result.note
            continue
        i = position[tensor]
        frame.loc[i, "isolated_cosine"] = result.isolated["cosine"]
        frame.loc[i, "isolated_rel_l2"] = result.isolated["rel_l2"]
        frame.loc[i, "origin"] = diagnose.origin_of(result.isolated, th)
        frame.loc[i, "_score"] = diagnose.error_score(result.isolated)
    bar.close()
    del ref_values
    introduced = frame[frame["origin"] == "introduced"]
    if len(introduced):
        order = introduced.sort_values(["_score", "index"], ascending=[False, True]).index
        for rank, i in enumerate(order, start=1):
            frame.loc[i, "culprit_rank"] = float(rank)
    if "_score" in frame:
        del frame["_score"]
    return {"done": True, "sample": "the sample with the largest total error", "flagged": n_flagged,
            "replayed": len(chosen) - len(notes), "limit": max_replay, "skipped": notes,
            "method": "make_candidate_model" if make_candidate_model is not None else "extracted from candidate model",
            "note": (f"culprit replay: {len(chosen) - len(notes)} of {n_flagged} flagged tensor(s) on one sample, limit {max_replay}; "
                     "first problem and first of each status, then largest error growth over inputs")}
