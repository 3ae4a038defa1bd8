"""qbench's calls into Polygraphy, at the lowest Polygraphy pyproject.toml allows and at the installed
one (the newest release when this was written), under the REAL TensorRT bindings over null libraries:
every keyword qbench passes exists in the signature it reaches, and every builder-config member
Polygraphy sets for qbench's keywords exists on the real IBuilderConfig of 10.16.1.11 and 11.4.0.106.
The lowest version's wheel is fetched from PyPI at test time into a temporary folder (never vendored);
without network access those tests skip and say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

import pytest

from qbench.simulate.formats import FORMATS
from qbench.tensorrt.builder import SHIPPED
from tests.trt.conftest import REPO, trt_env

pytestmark = pytest.mark.trt_bindings


def _floor() -> str:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r'"polygraphy>=([0-9.]+)"', text)
    assert found, "pyproject.toml must give Polygraphy a floor"
    return found.group(1)


@pytest.fixture(scope="session")
def polygraphy_sites(tmp_path_factory) -> dict[str, str | None]:
    """{"installed": None (the environment's own), "floor": folder holding the lowest allowed version}."""
    import polygraphy

    floor = _floor()
    assert tuple(map(int, polygraphy.__version__.split("."))) >= tuple(map(int, floor.split(".")))
    root = tmp_path_factory.mktemp("polygraphy_floor")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           f"polygraphy=={floor}", "-d", str(root)], capture_output=True, text=True, timeout=180)
    wheels = list(root.glob("polygraphy-*.whl"))
    if proc.returncode != 0 or not wheels:
        return {"installed": None, "floor": f"skip: pip could not download polygraphy=={floor} "
                                             f"({(proc.stderr.strip().splitlines() or ['no output'])[-1]})"}
    site = root / "site"
    with zipfile.ZipFile(wheels[0]) as wheel:  # a pure-Python wheel: unpacking it is installing it
        wheel.extractall(site)
    return {"installed": None, "floor": str(site)}


def _run(script: str, major: str, null_libs, site: str | None):
    if site is not None and site.startswith("skip: "):
        pytest.skip(site[len("skip: "):])
    env = trt_env(major, null_libs)
    if site is not None:
        env["PYTHONPATH"] = site + ":" + env["PYTHONPATH"]
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "trt" / script)], env=env, capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"something besides the JSON reached stdout: {lines[:-1]}"
    return json.loads(lines[0])


@pytest.mark.parametrize("which", ["installed", "floor"])
def test_every_keyword_qbench_passes_is_in_polygraphys_signature(which, major, null_libs, polygraphy_sites):
    out = _run("polygraphy_calls.py", major, null_libs, polygraphy_sites[which])
    if which == "floor":
        assert out["version"] == _floor() and "polygraphy_floor" in out["file"]
    assert out["teeth"] is True
    # the calls qbench makes are all seen, with their keywords
    assert {"tf32", "calibrator", "profiles", "precision_constraints", "load_timing_cache",
            "profiling_verbosity", "memory_pool_limits", "fp8", "bf16"} <= set(out["checked"]["CreateConfig"])
    assert set(out["checked"]["NetworkFromOnnxBytes"]) == {"strongly_typed", "mark_unfused_tensors_as_debug_tensors"}
    assert {"EngineBytesFromNetwork", "EngineFromBytes", "ModifyNetworkOutputs", "MarkDebug", "SetLayerPrecisions",
            "TrtRunner", "TrtRunner.infer_impl", "Profile.add"} <= set(out["checked"])
    assert out["unknown"] == {}, f"Polygraphy {out['version']} does not accept {out['unknown']}"


@pytest.mark.parametrize("which", ["installed", "floor"])
def test_builder_config_members_polygraphy_sets_exist_in_tensorrt(which, major, null_libs, polygraphy_sites):
    out = _run("config_members.py", major, null_libs, polygraphy_sites[which])
    runs = out["runs"]
    assert all(r["error"] is None for r in runs.values()), {p: r["error"] for p, r in runs.items()}
    for r in runs.values():
        assert r["verbosity"] == "ProfilingVerbosity.DETAILED"
        assert {"config.set_memory_pool_limit", "config.add_optimization_profile", "config.set_timing_cache"} <= set(r["called"])
        assert r["shapes"][0] == [[1, 3, 8, 8], [2, 3, 8, 8], [4, 3, 8, 8]]
    if major == "10":
        assert runs["fp32"]["flags"] == ["TF32"] and runs["fp16"]["flags"] == ["FP16", "TF32"]
        assert runs["int8"]["flags"] == ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "TF32"]
        assert runs["int8"]["calibrator_is_qbench"] is True
        assert "config.set_calibration_profile" in runs["int8"]["called"]
        # each shipped format's row: exactly its builder flags, set by Polygraphy on the real enum members
        for name in SHIPPED:
            assert runs[name]["flags"] == sorted({*FORMATS[name].trt10_flags, "TF32"}), name
        assert {"FP8", "BF16"} <= {f for name in SHIPPED for f in runs[name]["flags"]}
    else:  # 11.x: precision comes from the typed model; no precision flags, no calibrator
        assert all(r["flags"] == ["TF32"] and not r["calibrator_is_qbench"] for r in runs.values())
    # Polygraphy's messages went through Python logging (stdout held only the JSON: checked in _run)
    assert any("Configuring with profiles" in m for m in out["polygraphy_log"])


def test_build_and_run_end_to_end_at_the_floor(null_libs, polygraphy_sites, small_data_dir, tmp_path):
    """The end-to-end build and run of tests/trt/test_polygraphy_backend.py, at the lowest Polygraphy
    allowed: the attributes qbench reads on Polygraphy's objects (TrtRunner.context, engine,
    last_inference_time, ...) and the loaders' behaviour, not only their signatures."""
    site = polygraphy_sites["floor"]
    if site.startswith("skip: "):
        pytest.skip(site[len("skip: "):])
    env = trt_env("10", null_libs)
    env["PYTHONPATH"] = site + ":" + env["PYTHONPATH"]
    runs = {}
    for script, args in (("build_with_doubles.py", ["int8", str(small_data_dir), str(tmp_path)]),
                         ("run_with_doubles.py", ["unfused"])):
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "trt" / script), *args], env=env,
                              capture_output=True, text=True, cwd=REPO, timeout=180)
        assert proc.returncode == 0, proc.stderr
        runs[script] = json.loads(proc.stdout.strip().splitlines()[-1])
    built, ran = runs["build_with_doubles.py"], runs["run_with_doubles.py"]
    assert built["polygraphy"] == ran["polygraphy"] == _floor()
    assert built["flags"] == ["INT8", "OBEY_PRECISION_CONSTRAINTS", "TF32"] and built["from_cache"] == [False, False, True]
    assert built["served"] == [[[2, 3, 256, 256], True], [[2, 3, 256, 256], True]] and built["leftovers"] == []
    assert ran["y"] == [[0.0, 0.25, 2.0, 0.0], [3.0, 0.0, 0.5, 1.0]] and ran["first_y_unchanged"] is True
    assert ran["debug"] == {"x_times_2 [internal]": [[-3.0, 0.5, 4.0, -0.25], [6.0, -4.0, 1.0, 2.0]]}
