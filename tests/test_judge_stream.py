"""The stream judge (issue 21, item 3) on the real silero-vad models: chunks of synthetic audio with
known voiced and silent segments, written in the sequence data format; FP32 and the candidate each
carry their own state from chunk to chunk; the verdict reads the speech probability at 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from qbench.data import load_dataset, write_sequence
from qbench.errors import QbenchError
from qbench.judge import make_judge
from qbench.judge.stream import judge_stream, streams, track_plot
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

SR, CHUNK, CONTEXT = 16000, 512, 64
SILERO = "silero_vad/data"
# (voiced?, seconds): speech-like harmonics with a moving pitch, and near-silence
SEGMENTS = {"a_chunk": [(0, 0.4), (1, 1.0), (0, 0.5), (1, 0.8), (0, 0.3)],
            "b_chunk": [(0, 0.3), (1, 0.7), (0, 0.6), (1, 1.0), (0, 0.4)]}


def _signal(segments, seed):
    rng = np.random.default_rng(seed)
    parts = []
    for voiced, seconds in segments:
        t = np.arange(int(seconds * SR)) / SR
        if voiced:
            pitch = 140 + 40 * np.sin(2 * np.pi * 3 * t)
            phase = 2 * np.pi * np.cumsum(pitch) / SR
            parts.append(0.3 * sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)))
        else:
            parts.append(np.zeros(t.size))
    sig = np.concatenate(parts)
    return (sig + 0.003 * rng.standard_normal(sig.size)).astype(np.float32)


def _chunks(sig):
    """silero-vad 5/6 at 16 kHz: 512 new samples with the 64 before them as context."""
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), sig])
    return [{"input": padded[i * CHUNK:i * CHUNK + CHUNK + CONTEXT][None]} for i in range(sig.size // CHUNK)]


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    from tests.corpus.models import CorpusMissing, packaged

    try:
        path = packaged("silero-vad", f"{SILERO}/silero_vad_openvino_16k.onnx")  # no If: INT8 reaches the LSTM
    except CorpusMissing as exc:
        pytest.skip(str(exc))
    graph = ModelGraph.from_path(path)
    folder = tmp_path_factory.mktemp("vad")
    fp32 = OrtRunner(graph, capture=None)
    for k, (prefix, segments) in enumerate(SEGMENTS.items()):
        write_sequence(folder, _chunks(_signal(segments, k)), fp32.run, {"state": "stateN"},
                       initial={"state": np.zeros((2, 1, 128), np.float32)},
                       constants={"sr": np.array(SR, np.int64)}, prefix=prefix)
    data = load_dataset(folder, graph.inputs)
    return graph, data, fp32


def _names(data):
    return [p.name for p in data.files]


def test_streams_follow_the_file_prefixes(vad):
    _, data, _ = vad
    groups = streams(_names(data))
    assert len(groups) == 2 and [len(g) for g in groups] == [93, 93]
    assert streams(["x/chunk0.npz", "x/chunk1.npz", "x/chunk10.npz"]) == [[0, 1, 2]]


def test_fp32_against_itself_and_each_candidate_carries_its_own_state(vad, tmp_path):
    graph, data, fp32 = vad
    judge = make_judge("stream", graph)
    assert judge.options["_state"] == {"state": "stateN"} and judge.options["output"] == "output"
    same = judge_stream(judge, data, fp32.run, fp32.run, _names(data))
    assert same.metrics["decision_agreement"] == 1.0 and same.metrics["max_abs_diff"] == 0.0
    assert same.metrics["fp32_decided"] > 10 and same.metrics["fp32_decided"] < same.metrics["chunks"] - 10
    # the FP32 track is the stream as write_sequence ran it (its stored states are FP32's own)
    stored = [float(fp32.run(data.sample(i))["output"][0, 0]) for i in range(len(data))]
    np.testing.assert_allclose(same.per_sample.sort_values("sample")["fp32_p"], stored, atol=1e-6)
    assert same.verdict == "pass", same.reason

    # a candidate whose returned state decays by 10 % each chunk: one chunk with the stored state
    # barely moves, but carried over the stream the error compounds
    def leaky(feed):
        out = fp32.run(feed)
        return {**out, "stateN": out["stateN"] * np.float32(0.9)}
    one_step = fp32.run(data.sample(30))
    assert np.allclose(leaky(data.sample(30))["output"], one_step["output"])  # same chunk, same state: no change
    res = judge_stream(judge, data, fp32.run, leaky, _names(data))
    assert res.metrics["max_abs_diff"] > 0.05 and res.verdict != "pass", res.reason
    assert "each model carrying its own state" in res.reason and "state carried stateN -> state" in res.note
    png = track_plot(res)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_int8_of_the_real_vad_over_streams(vad):
    """INT8 (entropy ranges from the same chunks) and FP16 simulations of the real model, judged over
    the streams: the verdict and tracks exist, and FP16 keeps every decision."""
    from qbench.calibrate import calibrate
    from qbench.simulate import build_fp16_model, build_int8_model

    graph, data, fp32 = vad
    judge = make_judge("stream", graph)
    half = OrtRunner(build_fp16_model(graph).model, name="fp16", capture=None, optimize=False)
    res16 = judge_stream(judge, data, fp32.run, half.run, _names(data))
    assert res16.metrics["decision_agreement"] >= 0.98 and res16.verdict != "fail", res16.reason
    ranges = calibrate(graph, data, method="entropy", progress=False)
    int8 = OrtRunner(build_int8_model(graph, ranges).model, name="int8", capture=None, optimize=False)
    res8 = judge_stream(judge, data, fp32.run, int8.run, _names(data))
    assert res8.verdict in ("pass", "fail", "inconclusive") and len(res8.per_sample) == len(data)
    assert track_plot(res8) is not None


def test_state_option_is_checked(vad):
    graph, _, _ = vad
    with pytest.raises(QbenchError, match="input:output"):
        make_judge("stream", graph, {"state": "nope:stateN"})


@pytest.mark.slow
def test_qbench_run_task_stream_reports_tracks(vad, tmp_path):
    """`qbench run --task stream` on a sequence folder: each candidate's verdict is the stream verdict,
    and the report shows the probability tracks."""
    import json
    import subprocess
    import sys

    graph, data, _ = vad
    from tests.corpus.models import packaged

    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "qbench", "run", str(packaged("silero-vad", f"{SILERO}/silero_vad_openvino_16k.onnx")),
                           "--data", str(data.files[0].parent), "--task", "stream", "--no-fallback", "--limit", "110",
                           "--fp16-mode", "likely", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    tasks = {c["precision"]: c["task"] for c in doc["candidates"]}
    for precision in ("int8", "fp16"):
        assert tasks[precision]["primary"] == "decision_agreement" and tasks[precision]["metrics"]["streams"] == 2
        assert len(tasks[precision]["per_sample"]) == 110 and "fp32_p" in tasks[precision]["per_sample"][0]
    page = (out / "index.html").read_text()
    assert "Streams: output probability tracks" in page
    assert sum(1 for k in doc["files"] if k.startswith("extra[Streams")) == 2
