"""stream: recurrent models (a VAD, a streaming recognizer) judged over whole streams, as they run.

A chunk-by-chunk comparison feeds FP32 and the candidate the same stored state, so it never sees
what a user of the model sees: each chunk run with the state the model itself returned on the chunk
before, error carried through the recurrence. Here the chunks of each stream run in order, and FP32
and the candidate each carry their own state from chunk to chunk; the verdict reads the per-chunk
output a user reads — a speech probability — at its decision (p >= ``threshold``, silero-vad's 0.5).

Streams come from the sequence data format (docs/DATA.md, ``qbench.data.write_sequence``): samples in
natural order, one stream per file-name prefix (``chunk0, chunk1, ...``; ``a_chunk0, ...`` and
``b_chunk0, ...`` are two streams). The first chunk of a stream starts both models from the state
stored in it (zeros for a fresh stream); later chunks ignore the stored state and get each model's
own. State pairs (input <- output) come from option ``state`` ("state:stateN,h:hn") or are found by
name: an output named as its input plus "N"/"n"/"_out" (silero-vad: state <- stateN; h <- hn).

Per chunk: both probabilities, their difference and whether the decisions agree. Verdict: the share
of chunks whose decisions agree (pooled over streams: its interval hulls the Wilson interval of the
chunks and a bootstrap over streams, and one stream alone cannot pass — the chunks of one stream are
not independent) against ``min_agreement``. ``track_plot`` draws the probability tracks.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Summary
from qbench.judge.generic import DEFAULTS as GENERIC_DEFAULTS
from qbench.judge.generic import GenericAccumulator
from qbench.judge.generic import prepare as generic_prepare
from qbench.judge.outputs import is_float_type, output_specs
from qbench.judge.verdict import Evidence

DEFAULTS = {
    **GENERIC_DEFAULTS,      # the per-chunk comparison (stored state) is judged generically meanwhile
    "output": None,          # the per-chunk output a user reads (default: the first float output that carries no state)
    "state": None,           # "input:output,..." state pairs; None: found by name
    "threshold": 0.5,        # the decision (silero-vad's speech threshold)
    "min_agreement": 0.95,   # share of chunks whose decisions agree
}
_STATE_SUFFIXES = ("N", "n", "_out", "_new", "out", "new")


def prepare(graph, options: dict) -> dict:
    o = generic_prepare(graph, options)
    o["_state"] = state_pairs(graph, o["state"])
    carried = set(o["_state"].values())
    if o["output"] is None:
        floats = [n for n, _s, e in output_specs(graph) if is_float_type(e) and n not in carried]
        if not floats:
            raise QbenchError("stream: the model has no float output besides its state; name one with option output")
        o["output"] = floats[0]
    elif o["output"] not in graph.output_names:
        raise QbenchError(f"stream: the model has no output {o['output']!r}; its outputs are {list(graph.output_names)}")
    return o


def state_pairs(graph, option) -> dict:
    """{state input: output that carries it to the next chunk} (module docstring)."""
    inputs = [s.name for s in graph.inputs]
    outputs = list(graph.output_names)
    if option:
        pairs = {}
        for part in (option.split(",") if isinstance(option, str) else [f"{k}:{v}" for k, v in dict(option).items()]):
            name, sep, out = part.strip().partition(":")
            if not sep or name not in inputs or out not in outputs:
                raise QbenchError(f"stream: state pair {part.strip()!r} must be input:output of the model "
                                  f"(inputs {inputs}, outputs {outputs})")
            pairs[name] = out
        return pairs
    pairs = {name: name + suffix for name in inputs for suffix in _STATE_SUFFIXES if name + suffix in outputs}
    if not pairs:
        raise QbenchError(f"stream: no recurrent state found (an output named as its input plus N, n or _out); "
                          f"give option state, e.g. state:stateN (inputs {inputs}, outputs {outputs})")
    return pairs


def streams(names: list[str]) -> list[list[int]]:
    """Sample indices grouped into streams by file-name prefix, in order (module docstring)."""
    groups: list[list[int]] = []
    last = None
    for i, name in enumerate(names):
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", str(name).replace("\\", "/").rsplit("/", 1)[-1])
        key = re.sub(r"\d+$", "", stem)
        if key != last or not groups:
            groups.append([])
            last = key
        groups[-1].append(i)
    return groups


def judge_stream(judge, dataset, run_ref, run_cand, names: list[str] | None = None, limit: int | None = None):
    """Run every stream of ``dataset`` through FP32 (``run_ref``: feed -> outputs) and the candidate
    (``run_cand``), each carrying its own state, and judge the per-chunk output. Returns the
    TaskResult; its per-sample frame holds one row per chunk (stream, chunk, fp32_p, cand_p, ...)."""
    o = judge.options
    n = len(dataset) if limit is None else min(limit, len(dataset))
    names = names or [getattr(p, "name", str(p)) for p in list(getattr(dataset, "files", range(n)))[:n]]
    acc = StreamAccumulator(judge)
    for s, indices in enumerate(streams(names[:n])):
        carried = {"ref": {}, "cand": {}}
        for k, i in enumerate(indices):
            feed = dataset.sample(i)
            outs = {}
            for side, run in (("ref", run_ref), ("cand", run_cand)):
                f = dict(feed)
                if k:  # later chunks: the model's own state from the chunk before
                    f.update(carried[side])
                result = run(f)
                carried[side] = {name: np.asarray(result[out]) for name, out in o["_state"].items()}
                outs[side] = np.asarray(result[o["output"]], dtype=np.float64)
            acc.add_chunk(s, k, i, names[i], outs["ref"], outs["cand"])
    return acc.finish()


class StreamAccumulator(Accumulator):
    """Rows are chunks; made by judge_stream (the pipeline's per-chunk comparison uses the generic
    accumulator below, with the stored state, until the stream judgement replaces it)."""

    def add_chunk(self, stream: int, chunk: int, index: int, name: str, ref: np.ndarray, cand: np.ndarray) -> None:
        thr = float(self.options["threshold"])
        r, c = float(np.ravel(ref)[0]), float(np.ravel(cand)[0])
        c_ok = np.isfinite(c)
        self.rows.append({"sample": int(index), "name": str(name), "stream": int(stream), "chunk": int(chunk),
                          "fp32_p": r, "cand_p": c, "abs_diff": abs(c - r) if c_ok else float("inf"),
                          "fp32_decision": int(r >= thr), "cand_decision": int(c_ok and c >= thr),
                          "agree": int((r >= thr) == (c_ok and c >= thr))})

    def summarise(self, frame: pd.DataFrame) -> Summary:
        n = len(frame)
        thr = float(self.options["threshold"])
        label = f"chunk decisions (p >= {thr:g}) agreeing over the stream, each model carrying its own state"
        notes = [f"stream judge: output {self.options['output']!r}, state carried "
                 + ", ".join(f"{o} -> {i}" for i, o in self.options["_state"].items())]
        if not n:
            return Summary({}, "decision_agreement", label, float("nan"), float(self.options["min_agreement"]),
                           "min_agreement", True, Evidence("point"), notes)
        per_stream = frame.groupby("stream")
        agree, chunks = per_stream["agree"].sum(), per_stream["agree"].count()
        value = float(agree.sum() / chunks.sum())
        metrics = {"decision_agreement": value, "streams": int(len(chunks)), "chunks": int(n),
                   "max_abs_diff": float(frame["abs_diff"].max()), "mean_abs_diff": float(frame["abs_diff"].mean()),
                   "fp32_decided": int(frame["fp32_decision"].sum()), "cand_decided": int(frame["cand_decision"].sum())}
        notes.append(f"{len(chunks)} stream(s), {n} chunks; largest probability change {metrics['max_abs_diff']:.3g}")
        ev = Evidence("ratio", num=tuple(float(a) for a in agree), den=tuple(float(c) for c in chunks), n=len(chunks),
                      counts=True, unit="streams")
        return Summary(metrics, "decision_agreement", label, value, float(self.options["min_agreement"]),
                       "min_agreement", True, ev, notes, rank_column="abs_diff", rank_higher_is_better=False)


class StreamChunkAccumulator(GenericAccumulator):
    """What the pipeline's chunk-by-chunk comparison (stored state for both) records until the
    stream judgement replaces it: the generic reading of every output."""


def track_plot(result, title: str = "") -> bytes | None:
    """PNG of the probability tracks: FP32 and candidate per stream, the threshold, disagreeing
    chunks marked. None without rows."""
    frame = result.per_sample
    if frame is None or frame.empty or "fp32_p" not in frame:
        return None
    import io

    import matplotlib  # heavy third-party import: only when a plot is drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(frame.groupby("stream"))
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.9 * len(groups) + 0.6), squeeze=False, sharey=True)
    thr = float((result.options or {}).get("threshold", 0.5))
    for ax, (stream, rows) in zip(axes[:, 0], groups):
        ax.plot(rows["chunk"], rows["fp32_p"], color="black", lw=1.4, label="FP32")
        ax.plot(rows["chunk"], rows["cand_p"], color="tab:red", lw=1.0, ls="--", label="candidate")
        ax.axhline(thr, color="grey", lw=0.8, ls=":")
        bad = rows[rows["agree"] == 0]
        ax.scatter(bad["chunk"], bad["cand_p"], color="tab:red", s=14, zorder=3, label="decision differs")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(f"stream {stream}")
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("chunk")
    fig.suptitle(title or "output probability over each stream (each model carries its own state)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
