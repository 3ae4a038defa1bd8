"""qbench's TensorRT code against the REAL bindings of 10.16.1.11 and 11.4.0.106 (null libraries).

What this proves: every TensorRT name qbench uses exists in the version whose path uses it; the 11.x
path uses nothing removed in 11; the calibrator subclasses the real base class and answers get_batch
with valid pointers in TensorRT's order (its default backend, on the host-memory stand-in for the CUDA
runtime); and builds fail with one clear line when the libraries cannot build. What it cannot prove: that a real
TensorRT builds or runs anything (the null libraries return no builder).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trt import api_scan
from tests.trt.conftest import REPO, VERSIONS, trt_env

pytestmark = pytest.mark.trt_bindings

PATHS = {"10": ("both", "v10"), "11": ("both", "v11")}


@pytest.fixture(scope="session")
def apis(run_trt) -> dict[str, dict]:
    out = {}
    for major in VERSIONS:
        doc = run_trt(major, open(REPO / "tests" / "trt" / "dump_api.py").read())
        assert doc["version"] == VERSIONS[major]
        out[major] = doc["api"]
    return out


@pytest.fixture(scope="session")
def used():
    return api_scan.scan()


def _members(api: dict) -> set[str]:
    return {m for members in api.values() for m in members}


def test_real_bindings_import_and_path(major, run_trt):
    doc = run_trt(major, """
        import json, numpy as np
        from qbench.tensorrt._import import import_trt, api_path, cache_header, describe_path
        trt = import_trt()
        print(json.dumps({"version": trt.__version__, "module": trt.__name__, "path": api_path(trt),
                          "header": cache_header(trt), "f16": np.dtype(trt.nptype(trt.float16)).name,
                          "vol": trt.volume((2, 3, 4)), "describe": describe_path(trt)}))
    """)
    assert doc["version"] == VERSIONS[major]
    assert doc["module"] == "tensorrt_bindings"
    assert doc["path"] == f"v{major}"
    assert doc["header"] == {"10": "TRT-101601-EntropyCalibration2", "11": "TRT-110400-EntropyCalibration2"}[major]
    assert doc["f16"] == "float16" and doc["vol"] == 24
    assert doc["describe"].startswith(f"{major}.x")


def test_every_trt_chain_exists_in_its_version(major, run_trt, used):
    chains = sorted({c for p in PATHS[major] for c in used[p]["chains"]})
    # the scan sees the 10.x path and the shared one (flags and network creation are Polygraphy's now:
    # test_polygraphy_backend checks what Polygraphy sets against the real classes)
    assert ("CalibrationAlgoType", "ENTROPY_CALIBRATION_2") in used["v10"]["chains"]
    assert ("ProfilingVerbosity", "DETAILED") in used["both"]["chains"]
    missing = run_trt(major, f"""
        import json
        from qbench.tensorrt._import import import_trt
        trt = import_trt()
        missing = []
        for chain in {json.dumps([list(c) for c in chains])}:
            obj = trt
            for part in chain:
                if not hasattr(obj, part):
                    missing.append(".".join(chain)); break
                obj = getattr(obj, part)
        print(json.dumps(missing))
    """)
    assert missing == [], f"TensorRT {VERSIONS[major]} lacks {missing}"


def test_manifest_methods_exist_in_their_versions(major, apis):
    from qbench.tensorrt._api import METHODS

    api = apis[major]
    missing = [f"{cls}.{m}" for cls, methods in METHODS.items() for m, path in methods.items()
               if path in PATHS[major] and m not in api.get(cls, [])]
    assert missing == [], f"TensorRT {VERSIONS[major]} lacks {missing}"


def test_source_uses_only_manifest_methods(apis, used):
    """Every attribute name in qbench/tensorrt that names a TensorRT member must be in the manifest."""
    from qbench.tensorrt._api import METHODS, NOT_TRT

    trt_names = _members(apis["10"]) | _members(apis["11"])
    listed = {m for methods in METHODS.values() for m in methods}
    attrs = set().union(*(used[p]["attrs"] for p in used))
    unlisted = sorted((attrs & trt_names) - listed - NOT_TRT)
    assert unlisted == [], f"add these to qbench/tensorrt/_api.py with their path: {unlisted}"


def test_11x_path_uses_no_removed_api(apis, used):
    a10, a11 = apis["10"], apis["11"]
    removed_top = set(a10) - set(a11)
    removed_members = _members(a10) - _members(a11)
    # the diff has teeth: these are what 11 removed
    assert {"IInt8EntropyCalibrator2", "IInt8Calibrator", "CalibrationAlgoType"} <= removed_top
    assert {"int8_calibrator", "set_calibration_profile", "set_dynamic_range"} <= removed_members
    assert {"INT8", "FP16"} <= set(a10["BuilderFlag"]) - set(a11["BuilderFlag"])
    v11 = {p: used[p] for p in ("both", "v11")}
    bad_chains = sorted(".".join(c) for p in v11.values() for c in p["chains"]
                        if c[0] in removed_top
                        or (len(c) > 1 and c[0] in a10 and c[1] in a10[c[0]] and c[1] not in a11.get(c[0], [])))
    bad_attrs = sorted(set().union(*(p["attrs"] for p in v11.values())) & removed_members)
    assert bad_chains == [] and bad_attrs == [], f"11.x path uses removed API: {bad_chains} {bad_attrs}"
    from qbench.tensorrt._api import METHODS

    bad_manifest = [f"{c}.{m}" for c, ms in METHODS.items() for m, p in ms.items()
                    if p in ("both", "v11") and (c in removed_top or m not in a11.get(c, []))]
    assert bad_manifest == []


CALIBRATOR_SNIPPET = """
    import ctypes, json, sys
    import numpy as np
    from qbench.data import load_dataset
    from qbench.model import InputSpec
    from qbench.ranges import Ranges, TensorRange
    from qbench.tensorrt._import import import_trt
    from qbench.tensorrt.calibrator import EntropyCalibrator

    trt = import_trt()
    data_dir, cache_path, cpu_cache = sys.argv[1], sys.argv[2], sys.argv[3]
    ds = load_dataset(data_dir, [InputSpec("x", 1, (None, 3, None, None))])
    out = {}
    calib = EntropyCalibrator(ds, batch_size=2, cache=cache_path, trt=trt,
                              input_dtypes={"x": np.float32})
    out["isinstance"] = isinstance(calib, trt.IInt8EntropyCalibrator2) and isinstance(calib, trt.IInt8Calibrator)
    out["algorithm"] = str(calib.get_algorithm())
    out["batch_size"] = calib.get_batch_size()
    out["cache_before"] = calib.read_calibration_cache()
    equal, served = [], 0
    reference = ds.batches(2)
    while True:
        ptrs = calib.get_batch(["x"])
        if ptrs is None:
            break
        want = next(reference)["x"]
        equal.append(all(isinstance(p, int) for p in ptrs) and ctypes.string_at(ptrs[0], want.nbytes) == want.tobytes())
        served += 1
    out["equal"], out["served"], out["error"] = equal, served, repr(calib.error)
    # TensorRT writes a cache: it must land, atomically, as a qbench-readable ranges table
    calib.write_calibration_cache(memoryview(b"TRT-101601-EntropyCalibration2\\nx: 3c010a14\\nconv1: 3d4ccccd\\n"))
    out["written"] = {k: v.amax for k, v in Ranges.read(cache_path).entries.items()}
    out["cache_after"] = calib.read_calibration_cache().decode().splitlines()
    # a cache made on the CPU feeds the build, with the running TensorRT's header
    cpu = EntropyCalibrator(lambda: iter(()), cache=cpu_cache, trt=trt)
    out["cpu_cache"] = cpu.read_calibration_cache().decode().splitlines()
    # several inputs: pointers come back in the order TensorRT asks, each holding its own input
    a = np.arange(12, dtype=np.float32).reshape(2, 6); b = np.arange(8, dtype=np.int32).reshape(2, 4) * 7
    multi = EntropyCalibrator(lambda: iter([{"a": a, "b": b}]), batch_size=2, trt=trt,
                              input_dtypes={"a": np.float16})
    p = multi.get_batch(["b", "a"])
    out["order"] = [ctypes.string_at(p[0], b.nbytes) == b.tobytes(),
                    ctypes.string_at(p[1], a.nbytes) == a.tobytes()]  # a float16 input is calibrated in float32
    out["end"] = multi.get_batch(["b", "a"]) is None
    bad = EntropyCalibrator(lambda: iter([{"a": a}]), trt=trt)
    out["missing_input"] = [bad.get_batch(["zzz"]) is None, str(bad.error)]
    print(json.dumps(out))
"""


def test_calibrator_under_real_10x_base_class(null_libs, small_data_dir, tmp_path):
    cpu_cache = tmp_path / "cpu.cache"
    cpu_cache.write_text("TRT-100300-EntropyCalibration2\nx: 3c010a14\n")
    cache_path = tmp_path / "trt.json"
    proc = subprocess.run([sys.executable, "-c", __import__("textwrap").dedent(CALIBRATOR_SNIPPET),
                           str(small_data_dir), str(cache_path), str(cpu_cache)],
                          env=trt_env("10", null_libs), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["isinstance"] is True
    assert out["algorithm"] == "CalibrationAlgoType.ENTROPY_CALIBRATION_2"
    assert out["batch_size"] == 2
    assert out["cache_before"] is None
    assert out["served"] == 2 and out["equal"] == [True, True]  # 4 images in batches of 2
    assert out["error"] == "None"
    assert out["written"]["x"] == pytest.approx(0.007876 * 127, rel=1e-3)
    assert set(out["written"]) == {"x", "conv1"}
    assert out["cache_after"][0] == "TRT-101601-EntropyCalibration2"
    assert out["cpu_cache"] == ["TRT-101601-EntropyCalibration2", "x: 3c010a14"]
    assert out["order"] == [True, True] and out["end"] is True
    assert out["missing_input"][0] is True and "zzz" in out["missing_input"][1]


def test_11x_has_no_calibrator_and_says_so(run_trt):
    out = run_trt("11", """
        import json
        from qbench.errors import QbenchError
        from qbench.tensorrt.calibrator import EntropyCalibrator
        try:
            EntropyCalibrator(lambda: iter(()))
            print(json.dumps("no error"))
        except QbenchError as exc:
            print(json.dumps(str(exc)))
    """)
    assert "11.4.0.106 has no INT8 calibrator" in out


def test_build_and_run_fail_in_one_line_without_libraries(major, null_libs, tmp_path):
    env = trt_env(major, null_libs)
    model = REPO / "qbench" / "models" / "ch_PP-OCRv4_det_infer.onnx"
    for args in (["build", str(model), "--precision", "fp16", "-o", str(tmp_path / "m.engine")], ["trt-info"]):
        proc = subprocess.run([sys.executable, "-m", "qbench", *args], env=env, capture_output=True, text=True,
                              cwd=REPO, timeout=120)
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "could not create a Builder" in lines[0] and VERSIONS[major] in lines[0]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m.engine").exists()
    info = subprocess.run([sys.executable, "-m", "qbench", "trt-info"], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=120).stdout
    assert f"TensorRT {VERSIONS[major]}" in info and f"build path: {major}.x" in info
