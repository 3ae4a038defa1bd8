"""Several candidates compared in one pass over the samples: the FP32 reference runs once per sample.

A comparison of FP32 against a candidate costs one reference run and one candidate run per sample,
plus the metrics. Compared one after another, N candidates cost N reference runs per sample;
compared here, one. For every sample, in order: the reference runs once with every tensor captured;
then each candidate runs and its fold (``comparator.CandidateFold``) measures it against those same
reference arrays, on a background thread while the next candidate runs. Each fold gets its own
dict of the reference's arrays and pops what it measured, so an array is freed as soon as the last
candidate has measured it. At most the reference's captures of one sample and two candidates'
captures are alive, whatever the number of samples or of candidates.

How a candidate joins, without each comparison's own code changing: a *job* is any function that
ends in ``comparator.compare_runs`` (``compare_precision`` with its build and its post-processing,
``compare_models``...), called with ``stream=`` this pass. Each job runs on its own thread until it
reaches ``compare_runs``, which hands its fold and candidate runner to the pass (``follow``) and
waits; jobs are started one at a time (each has joined, or ended, before the next starts), so model
building happens in the same order and with the same memory as before. Once every job is waiting,
this thread runs the one pass; then the jobs finish one at a time, in order (culprit replay, task
result, pictures, each job's own post-processing: one candidate's extra runs at a time). A job that
reaches ``compare_runs`` a second time, or after the pass, simply runs its own pass there.

Generic by construction: the pass knows only runners and folds, never a format's name.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from qbench.compare.comparator import _progress
from qbench.data import count_samples, iter_samples
from qbench.errors import QbenchError


class SharedPass:
    """The meeting point of the jobs (see the module docstring)."""

    def __init__(self, reference, dataset, limit: int | None, progress: bool):
        self.reference = reference
        self.dataset = dataset
        self.limit = limit
        self.progress = progress
        self._cond = threading.Condition()
        self._members: dict[int, tuple] = {}  # job index -> (fold, candidate runner)
        self._arrived: set[int] = set()  # jobs waiting in follow() or already ended
        self._finished: set[int] = set()
        self._started = False
        self._over = False
        self._error: BaseException | None = None
        self._local = threading.local()
        self.seconds = 0.0
        self.reference_seconds = 0.0

    # -- the job threads' side ------------------------------------------------------------------
    def follow(self, fold, candidate) -> bool:
        """Called by ``compare_runs`` on a job's thread: join the pass and wait for it to end.
        False (run your own pass) when the caller is not a waiting job of this pass."""
        job = getattr(self._local, "job", None)
        with self._cond:
            if job is None or self._started or job in self._members:
                return False
            self._members[job] = (fold, candidate)
            self._arrived.add(job)
            self._cond.notify_all()
            # then, one job at a time in job order: the finishing work after the pass
            self._cond.wait_for(lambda: self._over and all(j in self._finished for j in range(job)))
            if self._error is not None:
                raise self._error
        return True

    def _run_job(self, index: int, job: Callable, results: list) -> None:
        self._local.job = index
        try:
            results[index] = job(self.reference, self)
        except BaseException as exc:  # handed to the caller, in job order, after every job has ended
            results[index] = exc
        finally:
            with self._cond:
                self._arrived.add(index)
                self._finished.add(index)
                self._cond.notify_all()

    # -- the caller's side ----------------------------------------------------------------------
    def run(self, jobs: Sequence[Callable]) -> list:
        results: list = [None] * len(jobs)
        threads = []
        try:
            for index, job in enumerate(jobs):
                thread = threading.Thread(target=self._run_job, args=(index, job, results),
                                          name=f"qbench-compare-job-{index}", daemon=True)
                threads.append(thread)
                thread.start()
                with self._cond:  # one job builds at a time: same order and memory as one after another
                    self._cond.wait_for(lambda: index in self._arrived)
            with self._cond:
                self._started = True
                members = [self._members[i] for i in sorted(self._members)]
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:  # a job failed before the pass: no pass for the others either
                self._error = failed
            elif members:
                try:
                    self._pass(members)
                except BaseException as exc:
                    self._error = exc
        finally:
            with self._cond:
                self._started = self._over = True
                self._cond.notify_all()
            for thread in threads:
                thread.join()
        if self._error is not None:
            raise self._error
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def _pass(self, members: list[tuple]) -> None:
        """For every sample: the reference once, then each candidate, each folded on the background
        thread while the next one runs (folds stay in order; at most one is pending)."""
        names = ", ".join(c.name for _, c in members)
        bar = _progress(count_samples(self.dataset, self.limit), self.progress, f"compare {self.reference.name} vs {names}")
        pipe = ThreadPoolExecutor(1)
        pending = None
        started = time.perf_counter()

        def settle(fold) -> None:
            nonlocal pending
            if pending is not None:
                t1 = time.perf_counter()
                done_fold, future = pending
                done_fold.t_metrics += future.result()
                pending = None
                fold.t_wait += time.perf_counter() - t1

        try:
            for sample_index, feed in enumerate(iter_samples(self.dataset, self.limit)):
                t0 = time.perf_counter()
                ref = self.reference.run(feed)
                t_ref = time.perf_counter() - t0
                self.reference_seconds += t_ref
                for fold, candidate in members:
                    t0 = time.perf_counter()
                    cand = candidate.run(feed)
                    fold.t_run += t_ref + time.perf_counter() - t0  # what its own pass would have spent
                    settle(fold)
                    todo, outs = fold.prepare(sample_index, ref, cand)
                    pending = (fold, pipe.submit(fold.fold, sample_index, feed, dict(ref), cand, todo, outs))
                    del cand, outs
                del ref
                bar.update(1)
            settle(members[-1][0])
        finally:
            bar.close()
            pipe.shutdown()  # waits for a fold still running (after an error), so its arrays are freed
            self.seconds = time.perf_counter() - started


def compare_together(reference, dataset, jobs: Sequence[Callable], *, limit: int | None = None,
                     progress: bool = True) -> list:
    """Run ``jobs`` (each ``job(reference, stream) -> Comparison``, passing ``reference=`` and
    ``stream=`` on to ``compare_runs``) with one shared pass over ``dataset``'s samples (the first
    ``limit``); their results, in order. Every job must compare over these samples with this
    reference. The first error of the pass, else of a job in job order, is raised after all ended."""
    if limit is not None and limit < 1:
        raise QbenchError(f"--limit must be at least 1, not {limit}")
    return SharedPass(reference, dataset, limit, progress).run(list(jobs))
