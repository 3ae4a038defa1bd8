"""`qbench build --from <out>/<format>-best` for every shipped format of the formats table (fp8, w4a16,
bf16), against the REAL TensorRT bindings of 10.16.1.11 and 11.4.0.106 over null libraries.

The folders are written by qbench.search.format_deploy on the PP-OCR direction classifier (a real
model with Conv and MatMul layers) with FP8 ranges calibrated on rendered text lines, as a run writes
them. Through Polygraphy's loaders with doubles for the Builder and parser only
(tests/trt/build_from_with_doubles.py): 10.x sets exactly the row's builder flags on the explicit
model as shipped; 11.x sets none and builds a strongly typed network from a copy typed as the row
says. Then the one-line refusals: a GPU below the row's compute capability, a TensorRT without the flag.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import onnx
import pytest

from qbench.simulate.formats import FORMATS
from qbench.tensorrt.builder import SHIPPED
from tests.trt.conftest import REPO, trt_env

pytestmark = pytest.mark.trt_bindings

CLS = REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
# what NVIDIA documents for each shipped format's TensorRT 10 build (docs/FORMATS.md, docs/TENSORRT.md):
# FP8 from explicit float8 Q/DQ with the FP8 flag, FP16 for the layers outside the Q/DQ; INT4 weight-only
# from the blockwise DequantizeLinear with FP16 activations; BF16 by its flag
DOCUMENTED = {"fp8": ["FP16", "FP8", "TF32"], "w4a16": ["FP16", "TF32"], "bf16": ["BF16", "TF32"]}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    """{format: its <out>/<format>-best folder}, written by format_deploy as a run writes them."""
    from qbench.calibrate import calibrate
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.search import format_deploy
    from tests.search_textdata import orientation_folder

    root = tmp_path_factory.mktemp("build_from_formats")
    orientation_folder(root / "data", n_lines=1)
    graph = ModelGraph.from_path(CLS)
    ranges = calibrate(graph, load_dataset(root / "data", graph.inputs), method="minmax", progress=False)
    out = {}
    for name in SHIPPED:
        fmt = FORMATS[name]
        row = {"verdict": "pass", "why": "test row", "task": "classify", "task_metric": "accuracy", "task_value": 1.0}
        qdq = fmt.deploy_model(graph, ranges, ()) if fmt.deploy_model else None
        out[name] = format_deploy.write(root / "out", graph, fmt, row, qdq)
    return out


def _build(major, null_libs, folder, engine, hide=None, cc=None):
    env = trt_env(major, null_libs)
    env.pop("HOSTCUDART_CC", None)
    if cc is not None:
        env["HOSTCUDART_CC"] = cc
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "trt" / "build_from_with_doubles.py"), str(folder),
                           str(engine), *([hide] if hide else [])], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_every_shipped_format_is_covered():
    assert set(SHIPPED) == set(DOCUMENTED) == {n for n, f in FORMATS.items() if f.shipped}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_build_from_sets_the_rows_flags_on_10x(name, null_libs, shipped, tmp_path):
    out, err = _build("10", null_libs, shipped[name], tmp_path / "m.engine")
    assert out["error"] is None and out["engine"] == "engine built by the double"
    assert out["flags"] == DOCUMENTED[name]  # set by Polygraphy on the double of the real IBuilderConfig
    assert out["true_keywords"] == sorted(f.lower() for f in DOCUMENTED[name])
    assert out["network_flags"] == [0]  # not strongly typed: 10.x takes the precision from the flags
    assert f"qbench: building {shipped[name]}: {name} from" in err
    model = onnx.load(shipped[name] / json.loads((shipped[name] / "verdict.json").read_text())["model"])
    # the model parsed is the folder's, untouched: its Q/DQ (float8 for FP8, INT4 blockwise for W4A16)
    assert out["qdq"] == sorted({n.op_type for n in model.graph.node if "QuantizeLinear" in n.op_type or
                                 n.op_type == "DequantizeLinear"})
    assert bool(out["qdq"]) is (FORMATS[name].deploy_model is not None)
    assert "float32" in out["float_initializers"]


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_build_from_is_strongly_typed_on_11x(name, null_libs, shipped, tmp_path):
    out, err = _build("11", null_libs, shipped[name], tmp_path / "m.engine")
    assert out["error"] is None and out["engine"] == "engine built by the double"
    assert out["flags"] == ["TF32"] and out["true_keywords"] == ["tf32"]  # 11.x has no precision flags
    assert out["network_flags"] == [out["strongly_typed_flags"]]
    typed = FORMATS[name].trt11_types
    assert typed
    # every float weight outside the edges is of the row's type; only kept float32 slots remain
    assert typed in out["float_initializers"] and set(out["float_initializers"]) <= {typed, "float16", "float32"}
    assert bool(out["qdq"]) is (FORMATS[name].deploy_model is not None)  # the Q/DQ kept
    if typed == "bfloat16":
        assert out["opset"] >= 22  # ONNX admits bfloat16 Conv from opset 22
    assert f"strongly typed network from a copy of the model typed {typed}" in err


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_refused_below_the_rows_compute_capability(name, null_libs, shipped, tmp_path):
    row = FORMATS[name]
    tenths = round(row.min_cc * 10) - 1  # one step below: 8.9 -> 8.8
    below = f"{tenths // 10}.{tenths % 10}"
    out, _ = _build("10", null_libs, shipped[name], tmp_path / "m.engine", cc=below)
    assert out["error"] == (f"{row.label} needs a GPU of compute capability {row.min_cc:.1f} or newer ({row.gpus}); "
                            f"this GPU (host-memory CUDA runtime stand-in (no GPU)) has {float(below):.1f}")
    assert out["engine"] is None and out["flags"] == []
    out, _ = _build("11", null_libs, shipped[name], tmp_path / "n.engine", cc=f"{row.min_cc:.1f}")
    assert out["error"] is None and out["engine"] == "engine built by the double"


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_refused_where_tensorrt_lacks_the_flag(name, null_libs, shipped, tmp_path):
    flag = FORMATS[name].trt10_flags[0]
    out, _ = _build("10", null_libs, shipped[name], tmp_path / "m.engine", hide=flag)
    assert out["error"] == (f"TensorRT 10.16.1.11 has no BuilderFlag.{flag}, which a {FORMATS[name].label} build "
                            "needs: use a TensorRT release that has it")
    assert out["engine"] is None and out["flags"] == []


def test_rows_flags_agree_with_their_snippets_and_exist_in_the_bindings(run_trt):
    """The row's flags are what its shipped snippet (build_trt10.py), trtexec and Polygraphy flags say,
    and each is a member of the real 10.16 trt.BuilderFlag; 11.4 has STRONGLY_TYPED."""
    for name in SHIPPED:
        row = FORMATS[name]
        assert row.trt10_flags, f"{name}: a shipped format without TensorRT 10 builder flags"
        assert sorted(re.findall(r"trt\.BuilderFlag\.(\w+)", row.builder)) == sorted(row.trt10_flags)
        assert sorted(row.trtexec.split()) == sorted(f"--{f.lower()}" for f in row.trt10_flags) == sorted(row.polygraphy.split())
    flags = sorted({f for name in SHIPPED for f in FORMATS[name].trt10_flags})
    assert run_trt("10", f"""
        import json, tensorrt_bindings as trt
        print(json.dumps([f for f in {flags!r} if not hasattr(trt.BuilderFlag, f)]))
    """) == []
    assert run_trt("11", """
        import json, tensorrt_bindings as trt
        print(json.dumps(hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")))
    """) is True


def test_build_from_a_format_folder_reaches_tensorrt(major, null_libs, shipped, tmp_path):
    """The real CLI, no doubles: the folder is read and the build reaches TensorRT, which fails in one
    line over the null libraries; --precision with --from is refused."""
    folder = shipped["fp8"]
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", "--from", str(folder), "-o", str(tmp_path / "m.engine")],
                          env=trt_env(major, null_libs), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == f"qbench: building {folder}: fp8 from model_qdq.onnx (verdict: pass)"
    assert "could not create a Builder" in lines[-1] and not (tmp_path / "m.engine").exists()
    proc = subprocess.run([sys.executable, "-m", "qbench", "build", "--from", str(folder), "--precision", "fp16", "-o",
                           str(tmp_path / "m.engine")], env=trt_env(major, null_libs), capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"qbench: error: --from gives the model, the calibration cache " \
                                                           "and the precision; drop MODEL, --cache and --precision"


def test_bfloat16_typed_model_rounds_the_weights_like_ml_dtypes():
    import ml_dtypes
    import numpy as np
    from onnx import numpy_helper

    from qbench.model import ModelGraph
    from qbench.tensorrt.typed_models import float_typed_model

    graph = ModelGraph.from_path(CLS)
    typed = float_typed_model(graph, "bfloat16")
    onnx.checker.check_model(typed, full_check=True)
    source = {t.name: numpy_helper.to_array(t) for t in graph.model.graph.initializer}
    compared = 0
    for init in typed.graph.initializer:
        if init.name in source and init.data_type == onnx.TensorProto.BFLOAT16:
            want = source[init.name].astype(ml_dtypes.bfloat16)
            assert numpy_helper.to_array(init).view(np.uint16).tobytes() == want.view(np.uint16).tobytes(), init.name
            compared += 1
    assert compared > 10
    casts = [n for n in typed.graph.node if n.op_type == "Cast"]
    assert any(a.i == onnx.TensorProto.BFLOAT16 for n in casts for a in n.attribute if a.name == "to")


def test_trt_info_says_the_compute_capability(null_libs):
    """trt-info reports what the refusals compare with: cudaDeviceGetAttribute's major.minor, or unknown."""
    for cc, want in (("8.9", "compute capability: 8.9"), (None, "compute capability: unknown")):
        env = trt_env("10", null_libs)
        env.pop("HOSTCUDART_CC", None)
        if cc:
            env["HOSTCUDART_CC"] = cc
        info = subprocess.run([sys.executable, "-m", "qbench", "trt-info"], env=env, capture_output=True, text=True,
                              cwd=REPO, timeout=120).stdout
        assert f"GPU: host-memory CUDA runtime stand-in (no GPU); {want}" in info, info


@pytest.fixture(scope="module")
def mixed_fp8(shipped, tmp_path_factory):
    """An fp8-best folder as the mixed-format search ships it (qbench.search.format_mixed): its verdict
    names the candidate, the higher format and the layers moved there."""
    import shutil

    folder = tmp_path_factory.mktemp("mixed") / "fp8-best"
    shutil.copytree(shipped["fp8"], folder)
    verdict = json.loads((folder / "verdict.json").read_text())
    verdict.update(candidate="fp8-bf16", higher_format="bf16", higher_layers=["some_conv"])
    (folder / "verdict.json").write_text(json.dumps(verdict))
    return folder


def test_mixed_folder_sets_the_higher_formats_flag_too_on_10x(mixed_fp8, null_libs, tmp_path):
    out, err = _build("10", null_libs, mixed_fp8, tmp_path / "m.engine")
    assert out["error"] is None and out["engine"] == "engine built by the double"
    # FP8 and FP16 of the fp8 row, and BF16 for the layers the search moved to bf16
    assert out["flags"] == ["BF16", "FP16", "FP8", "TF32"], out
    assert "BuilderFlag.FP8 + BuilderFlag.FP16 + BuilderFlag.BF16 on the model as shipped" in err


def test_mixed_folder_is_built_as_shipped_on_11x(mixed_fp8, null_libs, tmp_path):
    out, err = _build("11", null_libs, mixed_fp8, tmp_path / "m.engine")
    assert out["error"] is None and out["flags"] == ["TF32"]
    assert out["network_flags"] == [out["strongly_typed_flags"]]
    # not retyped to float16: that would retype the Casts that put the moved layers in bf16
    assert "float16" not in out["float_initializers"] and "float32" in out["float_initializers"]
    assert "strongly typed network from the model as shipped" in err
