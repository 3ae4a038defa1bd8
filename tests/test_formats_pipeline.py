"""The newer formats through the whole job: candidates, recommendation ranking, shipped folders (on
rapidocr-onnxruntime's PP-OCRv4 recognizer with exactly rendered labels), BF16 against the detector's
FP16 overflow, and the CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from qbench.compare.entry import compare_precision
from qbench.data import load_dataset
from qbench.format_stage import broken_outputs, range_note
from qbench.model import ModelGraph
from qbench.pipeline import RunConfig, run_pipeline
from qbench.runners import OrtRunner
from tests.conftest import make_small_data_dir
from tests.search_textdata import recognition_folder

pytestmark = pytest.mark.filterwarnings("ignore:FP16", "ignore:BF16")


def _rec_path() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"


@pytest.mark.slow
def test_fp8_w4a16_bf16_candidates_ranking_and_shipped_folders(tmp_path):
    data = tmp_path / "lines"
    recognition_folder(data, n_lines=6)
    # fallback=False: FP8 fails here; its mixed-format search (fp8-bf16) is tests/test_formats_mixed.py's
    cfg = RunConfig(model=_rec_path(), data=data, out=tmp_path / "out", precisions=("fp8", "w4a16", "bf16"),
                    task="ctc", progress=False, fp16_mode="likely", store=tmp_path / "q.sqlite", fallback=False)
    outcome = run_pipeline(cfg, echo=lambda _m: None)
    results = json.loads(outcome.results_json.read_text())
    assert [c["precision"] for c in results["candidates"]] == ["fp8", "w4a16", "bf16"]
    reason = outcome.recommendation.reason
    assert "Formats by" in reason and "Ada or newer, compute capability 8.9+" in reason and "Ampere or newer" in reason
    # shipped: the FP8 folder holds an explicit float8 Q/DQ model that ONNX Runtime runs
    fp8 = tmp_path / "out" / "fp8-best"
    assert {p.name for p in fp8.iterdir()} >= {"model.onnx", "model_qdq.onnx", "trtexec_flags.txt", "polygraphy_flags.txt",
                                               "build_trt10.py", "verdict.json", "README.txt"}
    qdq = onnx.load(fp8 / "model_qdq.onnx")
    zero_points = [t for t in qdq.graph.initializer if t.name.endswith("::zero_point")]
    assert zero_points and {t.data_type for t in zero_points} == {onnx.TensorProto.FLOAT8E4M3FN}
    assert "--fp8" in (fp8 / "trtexec_flags.txt").read_text()
    verdict = json.loads((fp8 / "verdict.json").read_text())
    table = outcome.recommendation.table.set_index("precision")
    assert verdict["format"] == "fp8" and verdict["verdict"] == table.loc["fp8", "verdict"]
    x = np.load(sorted(data.glob("*.npy"))[0], allow_pickle=False)
    out = OrtRunner(qdq, name="fp8", capture=None, optimize=False).run({"x": x})
    assert all(np.isfinite(v).all() for v in out.values())
    w4 = onnx.load(tmp_path / "out" / "w4a16-best" / "model_qdq.onnx")
    blockwise = [n for n in w4.graph.node if n.op_type == "DequantizeLinear"]
    assert blockwise and all(any(a.name == "block_size" and a.i == 128 for a in n.attribute) for n in blockwise)
    assert not any(t.name.endswith("::float") for t in w4.graph.initializer)  # the float weights are gone
    assert "--bf16" in (tmp_path / "out" / "bf16-best" / "trtexec_flags.txt").read_text()
    assert not (tmp_path / "out" / "bf16-best" / "model_qdq.onnx").exists()


@pytest.mark.slow
def test_bf16_worst_stays_finite_where_fp16_worst_collapses_on_the_detector(tmp_path, model_path):
    graph = ModelGraph.from_path(model_path)
    dataset = load_dataset(make_small_data_dir(tmp_path / "page", size=640, count=1), graph.inputs)
    ref = OrtRunner(graph, name="fp32")
    common = dict(reference=ref, progress=False, replay=False)
    comparisons = {"fp16-worst": compare_precision(graph, dataset, "fp16", fp16_mode="worst", **common),
                   "bf16": compare_precision(graph, dataset, "bf16", **common),
                   "bf16-worst": compare_precision(graph, dataset, "bf16", fp16_mode="worst", **common)}
    assert broken_outputs(comparisons["fp16-worst"]) == 1
    assert broken_outputs(comparisons["bf16"]) == 0 and broken_outputs(comparisons["bf16-worst"]) == 0
    note = range_note(comparisons)
    assert "bf16-worst: 0 output(s) with NaN/Inf or all zeros where fp16-worst has 1" in note


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, timeout=300)


def test_cli_formats_errors(tmp_path, model_path):
    proc = _cli("simulate", str(model_path), "--precision", "fp8", "-o", str(tmp_path / "x.onnx"))
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("qbench: error: --precision fp8 needs --ranges")
    assert "Traceback" not in proc.stderr
    proc = _cli("simulate", str(model_path), "--precision", "fp4", "-o", str(tmp_path / "x.onnx"))
    assert proc.returncode != 0 and "fp4" in proc.stderr
    proc = _cli("simulate", str(model_path), "--precision", "bf16", "-o", str(tmp_path / "b.onnx"))
    assert proc.returncode == 0 and "bf16:" in proc.stdout
    cast = [n for n in onnx.load(tmp_path / "b.onnx").graph.node if n.op_type == "Cast"]
    assert any(a.i == onnx.TensorProto.BFLOAT16 for n in cast for a in n.attribute if a.name == "to")


def test_build_from_a_format_folder_is_read_then_needs_tensorrt(tmp_path, model_path):
    """``qbench build --from bf16-best`` reads the folder and goes to TensorRT, which this machine lacks
    (one line); the build itself is tested under the real bindings in tests/trt/test_build_from_formats.py."""
    from qbench.search import format_deploy
    from qbench.simulate.formats import FORMATS

    graph = ModelGraph.from_path(model_path)
    row = {"verdict": "pass", "why": "test row", "task": "segment", "task_metric": "iou", "task_value": 0.99}
    folder = format_deploy.write(tmp_path, graph, FORMATS["bf16"], row)
    assert format_deploy.read(folder)["format"] == "bf16" and format_deploy.read(tmp_path) is None
    proc = _cli("build", "--from", str(folder), "-o", str(tmp_path / "m.engine"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == f"qbench: building {folder}: bf16 from model.onnx (verdict: pass)"
    assert lines[-1].startswith("qbench: error: TensorRT is not installed") and not (tmp_path / "m.engine").exists()
    assert "--bf16" in (folder / "trtexec_flags.txt").read_text()  # the flags beside it, for trtexec
