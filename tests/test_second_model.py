"""The whole job on a second real model it was not written for: an opset-11 classifier with
Reshape/MatMul/MaxPool, fed 48x192 crops of the calibration images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pandas as pd
import pytest

from qbench.model import ModelGraph
from qbench.pipeline import RunConfig, run_pipeline
from qbench.ranges import Ranges

CLASSIFIER = Path(__file__).parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.fixture(scope="module")
def crops(tmp_path_factory, calib_dir):
    folder = tmp_path_factory.mktemp("crops")
    manifest = json.loads((calib_dir / "manifest.json").read_text())
    manifest["inputs"]["x"]["size"] = [48, 192]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(calib_dir / "images", folder / "images")
    return folder


def test_classifier_end_to_end(tmp_path, crops):
    graph = ModelGraph.from_path(CLASSIFIER)
    assert graph.model.opset_import[0].version == 11 and any(n.op_type == "MatMul" for n in graph.model.graph.node)
    out = tmp_path / "report"
    outcome = run_pipeline(RunConfig(model=CLASSIFIER, data=crops, out=out, calib_limit=4, compare_limit=2,
                                     fallback=False, progress=False), echo=lambda _: None)
    ranges = Ranges.read(out / "calibration.cache")
    assert {t.name for t in graph.float_tensors} <= set(ranges.entries)
    for precision in ("int8", "fp16"):
        frame = pd.read_csv(out / precision / "tensors.csv")
        outputs = frame[frame["is_output"]]
        assert list(outputs["tensor"]) == graph.output_names
        assert outputs["cosine"].between(0.5, 1.0).all()  # plausible, not garbage, for a 2-class softmax
    assert (out / "index.html").is_file() and outcome.recommendation.precision in ("int8", "fp16", "fp32")


def test_classifier_qdq_model_is_valid_opset13(tmp_path, crops):
    from qbench.calibrate import calibrate
    from qbench.data import load_dataset
    from qbench.simulate import build_int8_model

    graph = ModelGraph.from_path(CLASSIFIER)
    ranges = calibrate(graph, load_dataset(crops, graph.inputs), method="minmax", limit=2, progress=False)
    sim = build_int8_model(graph, ranges)
    onnx.checker.check_model(sim.model, full_check=True)
    assert sim.model.opset_import[0].version >= 13 and sim.quantized
