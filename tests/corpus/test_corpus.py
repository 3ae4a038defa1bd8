"""The model corpus end to end: ``qbench run`` on real models from packages, on two samples each.

Every entry carries the ``slow`` marker (each is a whole ``qbench run``, 5-30 s on 2 cores). The
``heavy`` entries (two detectors and the 54 MB recognizer) run only with ``QBENCH_CORPUS=all``, to keep
CI within its time (README: "Test tiers"); ``python scripts/corpus_table.py`` runs them all. A missing
package is a skip locally and a failure in CI, where scripts/test.sh installs the corpus first.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.corpus.models import CORPUS, CorpusMissing, by_name, in_ci, run_entry


import os

HEAVY = os.environ.get("QBENCH_CORPUS", "") == "all"


def _params():
    heavy_skip = pytest.mark.skipif(not HEAVY, reason="heavy corpus tier: set QBENCH_CORPUS=all")
    return [pytest.param(e, id=e.name, marks=[pytest.mark.slow] + ([heavy_skip] if e.heavy else [])) for e in CORPUS]


@pytest.mark.parametrize("entry", _params())
def test_qbench_run_ends_with_a_report(entry, tmp_path):
    try:
        row = run_entry(entry, tmp_path)
    except CorpusMissing as exc:
        if in_ci():
            raise
        pytest.skip(str(exc))
    assert row["rc"] == 0, row["stderr"][-2000:]
    assert "Traceback" not in row["stderr"] and "internal error" not in row["stderr"]
    assert row["report"].is_file() and row["stdout"].strip().splitlines()[-1] == str(row["report"])
    results = json.loads((row["report"].parent / "results.json").read_text())
    # fp16-worst joins when the FP16 headroom analysis finds a risk (--fp16-mode auto)
    assert {c["precision"] for c in results["candidates"]} - {"fp16-worst"} == {"int8", "fp16"}
    # every float output of the model is compared (integer outputs such as an ArgMax index are not
    # tensor-compared: their agreement is a task-level verdict, see docs/CORPUS.md)
    model = onnx.load(str(entry.model(tmp_path)), load_external_data=False)
    compared = {t["tensor"] for c in results["candidates"] for t in c["tensors"]}
    floats = {o.name for o in model.graph.output
              if o.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    assert floats and floats <= compared
    for precision, (verdict, cosine) in row["verdicts"].items():
        assert verdict in ("pass", "fail", "inconclusive") and (cosine is None or -1.0 <= cosine <= 1.0 + 1e-9)


def test_corpus_covers_what_the_issue_asks():
    text = " ".join(e.exercises for e in CORPUS)
    for needed in ("scalar", "state", "If", "external data", "integer", "already quantized", "dynamic",
                   "opset 11", "opset 17", "opset 18", "3 inputs"):
        assert needed in text, needed
    assert len({e.name for e in CORPUS}) >= 8


def test_silero_state_carried_from_the_previous_chunk(tmp_path):
    """The documented way to calibrate a recurrent model on the states it meets in use: write_sequence
    feeds each chunk the state the FP32 model produced on the chunk before."""
    from qbench.data import load_dataset, write_sequence
    from qbench.model import ModelGraph
    from qbench.runners import OrtRunner
    from tests.corpus.models import audio_chunks, packaged

    try:
        path = packaged("silero-vad", "silero_vad/data/silero_vad.onnx")
    except CorpusMissing as exc:
        if in_ci():
            raise
        pytest.skip(str(exc))
    graph = ModelGraph.from_path(path)
    plain = load_dataset(audio_chunks(tmp_path / "plain"), graph.inputs)
    chunks = [{"input": plain.sample(i)["input"]} for i in range(len(plain))]
    runner = OrtRunner(graph, name="fp32")
    run = lambda feed: runner.run(feed)  # noqa: E731
    files = write_sequence(tmp_path / "seq", chunks, run, {"state": "stateN"},
                           initial={"state": np.zeros((2, 1, 128), np.float32)},
                           constants={"sr": np.array(16000, np.int64)})
    seq = load_dataset(tmp_path / "seq", graph.inputs)
    assert [p.name for p in seq.files] == [p.name for p in files]
    first, second = seq.sample(0), seq.sample(1)
    assert not first["state"].any() and second["state"].any()  # zeros, then the carried state
    expected = runner.run({"input": first["input"], "state": first["state"], "sr": first["sr"]})["stateN"]
    np.testing.assert_array_equal(second["state"], expected)
