"""qbench.compare.stream: several candidates in one pass give exactly the comparisons they give one
after another, with the FP32 reference run once per sample instead of once per candidate."""

from __future__ import annotations

import pandas as pd
import pytest

from qbench.compare import compare_precision
from qbench.compare.entry import dataset_judge
from qbench.compare.stream import compare_together
from qbench.errors import QbenchError
from qbench.runners import OrtRunner


class CountingRunner:
    """The FP32 runner, counting its runs."""

    def __init__(self, runner):
        self.runner, self.name, self.graph, self.runs = runner, runner.name, runner.graph, 0

    def run(self, feed):
        self.runs += 1
        return self.runner.run(feed)


@pytest.fixture(scope="module")
def ranges(graph, small_dataset):
    from qbench.calibrate import calibrate

    return calibrate(graph, small_dataset, method="minmax", progress=False)


def _jobs(graph, dataset, ranges, judge, limit):
    kw = dict(limit=limit, progress=False, judge=judge)
    return [lambda reference, stream: compare_precision(graph, dataset, "int8", ranges, reference=reference, stream=stream, **kw),
            lambda reference, stream: compare_precision(graph, dataset, "fp16", reference=reference, stream=stream, **kw),
            # the worst FP16 mode with its peaks given: one more candidate, generic to the pass
            lambda reference, stream: compare_precision(graph, dataset, "fp16", fp16_mode="worst",
                                                        peaks={n: ranges.amax(n) for n in ranges.entries},
                                                        reference=reference, stream=stream, **kw)]


def test_one_pass_gives_the_same_comparisons_with_one_reference_run_per_sample(graph, small_dataset, ranges):
    limit = 2
    judge = dataset_judge(graph, small_dataset, "generic", limit=limit)
    alone_ref = CountingRunner(OrtRunner(graph, name="fp32"))
    alone = [job(alone_ref, None) for job in _jobs(graph, small_dataset, ranges, judge, limit)]
    shared_ref = CountingRunner(OrtRunner(graph, name="fp32"))
    together = compare_together(shared_ref, small_dataset, _jobs(graph, small_dataset, ranges, judge, limit), limit=limit,
                                progress=False)
    replays = [int(c.meta["replay"].get("done", False)) for c in together]  # one reference run each for replay
    assert shared_ref.runs == limit + sum(replays)
    assert alone_ref.runs == 3 * limit + sum(replays)
    for a, b in zip(alone, together):
        assert b.meta["samples"] == limit
        pd.testing.assert_frame_equal(a.tensors, b.tensors)
        pd.testing.assert_frame_equal(a.per_sample, b.per_sample)
        assert a.findings == b.findings and a.unmatched == b.unmatched
        assert a.task.verdict == b.task.verdict and a.task.metrics == b.task.metrics
        assert [p.index for p in a.pictures] == [p.index for p in b.pictures]
        assert {k: v for k, v in a.meta.items() if k != "timing_s"} == {k: v for k, v in b.meta.items() if k != "timing_s"}
    assert together[2].meta["fp16_mode"] == "worst" and together[1].meta["fp16_mode"] == "likely"


def test_a_failing_job_or_candidate_ends_the_pass_with_its_error(graph, small_dataset, ranges):
    def broken(reference, stream):
        raise QbenchError("broken job")

    good = _jobs(graph, small_dataset, ranges, None, 1)[0]
    with pytest.raises(QbenchError, match="broken job"):
        compare_together(OrtRunner(graph, name="fp32"), small_dataset, [good, broken], limit=1, progress=False)

    from qbench.compare.comparator import compare_runs

    class Failing:
        name, graph = "failing", None

        def run(self, feed):
            raise QbenchError("candidate failed on sample 0")

    def failing(reference, stream):
        return compare_runs(graph, reference, Failing(), small_dataset, stream=stream, progress=False)

    with pytest.raises(QbenchError, match="candidate failed"):
        compare_together(OrtRunner(graph, name="fp32"), small_dataset, [good, failing], limit=1, progress=False)
