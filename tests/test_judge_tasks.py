"""auto guesses on real models, the embedding adapter on real features (the PP-OCR orientation
classifier's pooled feature vector: no package here ships a small embedding model), and custom
evaluators loaded from a file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from judge_fixtures import LINES, int8_runner, ppocr_line_tensor, render_line, with_argmax
from qbench.defaults import DEFAULT_MODEL
from qbench.errors import QbenchError
from qbench.judge import make_judge
from qbench.model import ModelGraph
from qbench.runners.ort import OrtRunner

CLS = "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _rapid(name):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    return os.path.join(os.path.dirname(rapidocr.__file__), "models", name)


def test_auto_guesses_real_models_and_says_why():
    ddddocr = pytest.importorskip("ddddocr")
    cases = {
        _rapid("ch_PP-OCRv4_rec_infer.onnx"): ("ctc", "charset"),
        str(DEFAULT_MODEL): ("segment", "Sigmoid"),
        CLS: ("classify", "2 scores"),
        str(Path(ddddocr.__file__).parent / "common_det.onnx"): ("detect", "YOLO head"),
    }
    for path, (task, why) in cases.items():
        judge = make_judge("auto", ModelGraph.from_path(path))
        assert judge.task == task and why in judge.note and judge.note.startswith("auto: guessed")
    judge = make_judge("auto", with_argmax(ModelGraph.from_path(DEFAULT_MODEL)))
    assert judge.task == "segment" and "ArgMax" in judge.note


def _feature_model(graph: ModelGraph) -> ModelGraph:
    """The classifier cut at its pooled feature vector (the input of its last weighted layer)."""
    last = [n for n in graph.model.graph.node if n.op_type in ("MatMul", "Gemm")][-1]
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    width = graph.initializer(last.input[1]).shape[0]  # the feature width the last layer reads
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(last.input[0], onnx.TensorProto.FLOAT, ["N", width]))
    return ModelGraph.from_proto(model, "features")


def test_embedding_on_real_features():
    graph = _feature_model(ModelGraph.from_path(CLS))
    feeds = []
    for text in LINES[:3]:
        img = render_line(text)
        feeds += [{"x": ppocr_line_tensor(img)}, {"x": ppocr_line_tensor(img.rotate(180))}]
    out = graph.output_names[0]
    ref = [OrtRunner(graph, capture=None).run(f) for f in feeds]
    assert ref[0][out].size >= 64
    cand = [int8_runner(graph, feeds[:2]).run(f) for f in feeds]
    acc = make_judge("embedding", graph, {"min_cosine": 0.9}).start()
    for i, (f, r, c) in enumerate(zip(feeds, ref, cand)):
        acc.add(i, f"s{i}", r, c, f)
    res = acc.finish()
    assert res.primary == "cosine_agreement" and res.metrics["min_cosine"] > 0.9
    assert res.metrics["nn_agreement"] >= 0.5
    # a candidate whose embeddings are shuffled between samples keeps every norm but loses retrieval
    shuffled = [cand[(i + 2) % len(cand)] for i in range(len(cand))]
    acc = make_judge("embedding", graph).start()
    for i, (f, r, c) in enumerate(zip(feeds, ref, shuffled)):
        acc.add(i, f"s{i}", r, c, f)
    bad = acc.finish()
    assert bad.metrics["mean_cosine"] < res.metrics["mean_cosine"] and bad.verdict == "fail"


EVALUATOR = '''
import numpy as np

def top1(ref, cand, feed, label):
    r, c = next(iter(ref.values())), next(iter(cand.values()))
    return {"same": bool(np.argmax(r) == np.argmax(c)), "gap": float(np.abs(r - c).max())}

top1.tolerance = 0.5

def broken(ref, cand, feed, label):
    raise ValueError("bad sample")
'''


def test_custom_evaluator_from_a_file(tmp_path):
    path = tmp_path / "myeval.py"
    path.write_text(EVALUATOR)
    graph = ModelGraph.from_path(CLS)
    out = graph.output_names[0]
    judge = make_judge(f"{path}:top1", graph)
    assert judge.task.startswith("custom:")
    acc = judge.start()
    for i in range(4):
        r = np.array([[0.9, 0.1]], np.float32)
        c = r if i < 3 else r[:, ::-1]
        acc.add(i, f"s{i}", {out: r}, {out: c}, {})
    res = acc.finish()
    assert res.primary == "same" and res.metrics["same"] == 0.75 and res.metrics["gap"] == pytest.approx(0.2)
    assert res.verdict in ("pass", "inconclusive") and res.reason.startswith("same 0.750")
    res2 = make_judge(f"{path}:top1", graph, {"primary": "gap", "tolerance": 0.1, "higher_is_better": False}).start()
    res2.add(0, "a", {out: np.array([[0.9, 0.1]])}, {out: np.array([[0.1, 0.9]])}, {})
    assert res2.finish().verdict == "fail"
    with pytest.raises(QbenchError, match="failed on sample 'a': ValueError: bad sample"):
        make_judge(f"{path}:broken", graph, {"tolerance": 1}).start().add(0, "a", {out: 1}, {out: 1}, {})
    with pytest.raises(QbenchError, match="has no function"):
        make_judge(f"{path}:nothing", graph)
    with pytest.raises(QbenchError, match="evaluator file not found"):
        make_judge("missing/eval.py:f", graph)


def test_custom_evaluator_from_an_entry_point(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    import qbench.judge.custom as custom

    (tmp_path / "judge_ep_eval.py").write_text(EVALUATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [EntryPoint(name="top1-agreement", value="judge_ep_eval:top1", group=custom.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(custom.importlib_metadata, "entry_points", lambda group=None: fake if group == custom.ENTRY_POINT_GROUP else [])
    graph = ModelGraph.from_path(CLS)
    out = graph.output_names[0]
    acc = make_judge("top1-agreement", graph).start()
    acc.add(0, "a", {out: np.array([[0.9, 0.1]])}, {out: np.array([[0.8, 0.2]])}, {})
    res = acc.finish()
    assert res.task == "custom:top1-agreement" and res.metrics["same"] == 1.0
    with pytest.raises(QbenchError, match="unknown task 'top2'"):
        make_judge("top2", graph)
