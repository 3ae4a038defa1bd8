"""The one door through which the search reads a verdict: the task judge (``qbench.judge``).

Every candidate the search considers (a calibrator, a per-tensor best-of, a set of layers kept in
float) is run on the judging part, its outputs paired with the FP32 outputs of the same samples,
and handed to the judge; the search ranks and decides only by the judge's ``TaskResult`` (verdict,
then score). FP32 outputs are computed once (``Reference``) and reused by every candidate.

Batching: when every input's batch axis is dynamic and the samples share a shape, the judging
samples run in batches (checked once against a one-sample run, since some exports fold the batch
axis into a reshape); otherwise one sample per call. A batch holds at most ``MAX_BATCH`` samples and
at most as many as ``batch_memory`` allows for the model's activations: ONNX Runtime's working
memory grows with the batch, so a batch sized by the number of judging samples would make the
run's peak memory grow with the data.

Memory: the judging samples and their FP32 outputs are kept in ``qbench.spill.SpillList`` s (in
memory up to a byte budget, on disk beyond it), so a larger judging part costs disk and reading
time, never memory.
"""

from __future__ import annotations

import numpy as np
import onnx

from qbench.calibrate.batching import activation_bytes, available_memory
from qbench.cpu import ort_threads
from qbench.errors import QbenchError
from qbench.judge import make_judge
from qbench.spill import SpillList

MAX_BATCH = 16
# Bytes of float activations (summed over every tensor, by shape inference) one judging batch may
# have: an eighth of calibration's budget, because the search runs gated models with extra nodes
# and keeps its own buffers beside it. A batch is the most samples within it (at most MAX_BATCH),
# so a larger judging part never makes a larger batch once the budget binds: PP-OCRv4 at 640x640
# (0.7 GB of activations per sample) judges one sample at a time, a 48x192 classifier 16.
JUDGING_BATCH_BYTES = 256 * 2**20


def make_task_judge(task: str, graph, options=None, labels=None):
    return make_judge(task=task, graph=graph, options=options, labels=labels)


def session(model: onnx.ModelProto, threads: int | None = None, optimize: bool = True):
    """A plain ONNX Runtime session (outputs only; the search never needs intermediate tensors).
    ``optimize=False`` for simulated models, as ``qbench.compare`` runs them: with graph optimizations
    ONNX Runtime fuses Q/DQ pairs into its own integer kernels on some models (PP-OCRv4 rec: outputs
    0.18 apart), which is ONNX Runtime's INT8, not the fake quantization qbench simulates."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = ort_threads(threads)
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise QbenchError(f"ONNX Runtime cannot load the candidate model: {str(exc).splitlines()[0]}") from None


class Reference:
    """The judging samples, their FP32 outputs, and how to run any candidate on them."""

    def __init__(self, graph, dataset, *, part: str, progress: bool = False):
        self.graph = graph
        self.part = part
        self.names = [str(p.name) for p in dataset.files]
        self.samples = SpillList()
        for i in range(len(dataset)):
            self.samples.append(dataset.sample(i))
        if not len(self.samples):
            raise QbenchError(f"the {part} holds no samples to judge on")
        self.output_names = [o.name for o in graph.model.graph.output]
        fp32 = session(graph.model)
        self.batched = self._can_batch(fp32)
        self.batch = batch_memory(graph, self.samples[0]) if self.batched else 1
        self.outputs = SpillList()
        for out in self.run(fp32):
            self.outputs.append(out)

    def _can_batch(self, sess) -> bool:
        if len(self.samples) < 2:
            return False
        first = self.samples[0]
        for name in first:
            shapes = {s[name].shape for s in self.samples}  # one sample read at a time
            # a scalar input (silero-vad's sample rate) has no batch axis to stack along
            if len(shapes) != 1 or not first[name].shape or first[name].shape[0] != 1:
                return False
        for spec in sess.get_inputs():
            if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
                return False  # a fixed batch axis
        try:  # the batched run must split into the one-sample runs (some exports fold the batch)
            both = sess.run(None, _stack(self.samples[:2]))
            one = sess.run(None, self.samples[0])
        except Exception:
            return False
        return all(b.shape[:1] == (2,) and b.shape[1:] == o.shape[1:] and np.allclose(b[:1], o, rtol=1e-4, atol=1e-5)
                   for b, o in zip(both, one))

    def subset(self, indices, part: str | None = None) -> "Reference":
        """The same reference restricted to some of its samples (FP32 outputs reused, not recomputed)."""
        sub = object.__new__(Reference)
        sub.graph, sub.part, sub.output_names, sub.batched = self.graph, part or self.part, self.output_names, self.batched
        sub.batch = self.batch
        indices = list(indices)
        sub.names = [self.names[i] for i in indices]
        sub.samples = self.samples.subset(indices)
        sub.outputs = self.outputs.subset(indices)
        sub.batched = self.batched and len(indices) > 1
        return sub

    def run(self, sess, extra: dict | None = None) -> list[dict]:
        """Outputs of ``sess`` per judging sample (``extra``: more feeds, such as gates)."""
        extra = extra or {}
        out: list[dict] = []
        try:
            if self.batched:
                for start in range(0, len(self.samples), self.batch):
                    part = self.samples[start:start + self.batch]
                    values = sess.run(self.output_names, {**_stack(part), **extra})
                    out += [{n: v[i:i + 1] for n, v in zip(self.output_names, values)} for i in range(len(part))]
            else:
                for feed in self.samples:
                    out.append(dict(zip(self.output_names, sess.run(self.output_names, {**feed, **extra}))))
        except Exception as exc:
            raise QbenchError(f"ONNX Runtime failed on a candidate: {str(exc).splitlines()[0]}") from None
        return out

    def judge(self, judge, outputs: list[dict]):
        """The judge's TaskResult for candidate ``outputs`` (one dict per judging sample)."""
        acc = judge.start()
        for i, (name, feed, ref, cand) in enumerate(zip(self.names, self.samples, self.outputs, outputs)):
            acc.add(i, name, ref, cand, feed)
        return acc.finish()

    def judge_model(self, judge, model: onnx.ModelProto):
        return self.judge(judge, self.run(session(model, optimize=False)))


def batch_memory(graph, sample: dict, budget: int = JUDGING_BATCH_BYTES) -> int:
    """The judging batch: the most samples (at most ``MAX_BATCH``) whose float activations, by ONNX
    shape inference (``qbench.calibrate.batching.activation_bytes``), fit ``budget`` (capped at a
    quarter of the memory available now, as calibration's batch is). The sum of every activation
    over-counts what ONNX Runtime holds at once (it reuses buffers), so the bound is safe; 1 when
    the sizes are unknown. It depends on the model and the input shape only, never on how many
    samples are judged."""
    per_sample = activation_bytes(graph, {k: tuple(np.shape(v)) for k, v in sample.items()})
    if not per_sample:
        return 1
    avail = available_memory()
    if avail:
        budget = min(budget, avail // 4)
    return int(max(1, min(MAX_BATCH, budget // per_sample)))


def _stack(samples: list[dict]) -> dict:
    return {k: np.concatenate([s[k] for s in samples], axis=0) for k in samples[0]}


def meets_tolerance(result) -> bool:
    """The point estimate of the deciding metric is within the judge's tolerance (whatever its interval)."""
    value = result.metrics.get(result.primary)
    tolerance = getattr(result, "tolerance", None)
    if value is None or tolerance is None or value != value:
        return result.verdict == "pass"
    return value >= tolerance if getattr(result, "higher_is_better", True) else value <= tolerance


def acceptable(result) -> bool:
    """What the search stops at: a pass, or an inconclusive whose point estimate meets the tolerance
    (only more samples can turn it into a pass; the verdict written stays "inconclusive")."""
    return result.verdict == "pass" or (result.verdict == "inconclusive" and meets_tolerance(result))


def margin(result) -> float:
    """A finer, higher-is-better reading of the same TaskResult: the mean of the per-sample column the
    judge orders samples by (``rank_column``: e.g. the top-1 probability drop, or how far past its
    tolerance a sample's worst output slice is), signed so that higher is better. On a few samples
    the primary metric (an agreement rate) is coarse and ties; this breaks the ties by the judge's
    own per-sample measure. NaN when the result has no such column."""
    frame = getattr(result, "per_sample", None)
    column = getattr(result, "rank_column", None) or getattr(result, "primary", None)
    if frame is None or column not in getattr(frame, "columns", ()):
        return float("nan")
    values = np.asarray(frame[column], dtype=np.float64)
    values = np.where(np.isposinf(values), 1e9, np.where(np.isneginf(values), -1e9, values))
    if not len(values) or np.isnan(values).all():
        return float("nan")
    higher = getattr(result, "rank_higher_is_better", None)
    if higher is None:
        higher = getattr(result, "higher_is_better", True)
    mean = float(np.nanmean(values))
    return mean if higher else -mean


def tier(result) -> int:
    """0 pass, 1 inconclusive within tolerance, 2 inconclusive outside it, 3 fail (or unknown)."""
    if result.verdict == "pass":
        return 0
    if result.verdict == "inconclusive":
        return 1 if meets_tolerance(result) else 2
    return 3


def rank_key(result) -> tuple:
    """Sort key, best first: pass, then inconclusive within tolerance, inconclusive outside it, fail;
    then the judge's score (higher is better), then ``margin``."""
    score, fine = float(result.score), margin(result)
    return (tier(result), -score if score == score else float("inf"), -fine if fine == fine else float("inf"))
