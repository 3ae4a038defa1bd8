"""`qbench build --from <out>/int8-best` against the REAL TensorRT bindings over null libraries: the
folder is read (model, cache, kept layers) and the build reaches TensorRT, which fails in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.trt.conftest import REPO, VERSIONS, trt_env


@pytest.fixture(scope="module")
def int8_best(tmp_path_factory):
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.search import deploy
    from qbench.search.judging import Reference, make_task_judge
    from qbench.search.models import quantized_layers
    from qbench.search.sweep import calibrate_all
    from tests.search_textdata import orientation_folder

    root = tmp_path_factory.mktemp("build_from")
    orientation_folder(root / "data", n_lines=1)
    graph = ModelGraph.from_path(REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    data = load_dataset(root / "data", graph.inputs)
    ranges = calibrate_all(graph, data, ("minmax",))[0]["minmax"]
    result = Reference(graph, data, part="test").judge_model(make_task_judge("generic", graph), graph.model)
    layers = quantized_layers(graph)
    config = deploy.Int8Config(ranges, "minmax", [layers[0]], result, "test", len(layers))
    return deploy.write(root / "out", graph, config)


def test_build_from_int8_best_reaches_tensorrt(major, null_libs, int8_best, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", "--from", str(int8_best), "-o", str(tmp_path / "m.engine")],
                          env=trt_env(major, null_libs), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"qbench: building {int8_best}: INT8, 1 layer(s) kept in fp32")
    assert "could not create a Builder" in lines[-1] and VERSIONS[major] in lines[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.engine").exists()


def test_build_from_refuses_model_and_precision(int8_best, tmp_path):
    model = REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", str(model), "--from", str(int8_best), "-o",
                           str(tmp_path / "m.engine")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "qbench: error: --from gives the model" in proc.stderr


def test_builder_snippet_names_exist_in_10x(run_trt):
    """Every trt.X.Y chain of int8-best/build_trt10.py exists in the real 10.x bindings."""
    import ast

    from qbench.search.deploy import BUILDER_SNIPPET

    chains = set()
    for node in ast.walk(ast.parse(BUILDER_SNIPPET.format(keep={"a": "float32"}))):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                chains.add(".".join(reversed(parts)))
    chains |= {"float32", "float16"}  # the layer precisions the snippet sets by name
    assert {"BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "IInt8EntropyCalibrator2"} <= chains
    missing = run_trt("10", f"""
        import json, functools, tensorrt_bindings as trt
        def has(path):
            try:
                functools.reduce(getattr, path.split("."), trt)
                return True
            except AttributeError:
                return False
        print(json.dumps([c for c in {sorted(chains)!r} if not has(c)]))
    """)
    assert missing == []
