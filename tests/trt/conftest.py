"""Conformance tier: the REAL TensorRT Python bindings of each targeted version, loaded over null
libraries built here from nulltrt.c (TensorRT's own libraries cannot be installed in this workplace),
with the host-memory stand-in for the CUDA runtime built from hostcudart.c (a test vehicle, not a GPU)
on the library path, so Polygraphy's CUDA wrapper and qbench's calibrator backend load it.

Both bindings wheels install the module ``tensorrt_bindings``, so each check runs in a subprocess
with PYTHONPATH=.trt-bindings/<major> and LD_LIBRARY_PATH=<null libraries of that major>.
scripts/install-trt-bindings.sh installs the wheels (scripts/test.sh runs it before pytest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINDINGS = REPO / ".trt-bindings"
VERSIONS = {"10": "10.16.1.11", "11": "11.4.0.106"}
NULL_SOURCE = Path(__file__).with_name("nulltrt.c")
CUDART_SOURCE = Path(__file__).with_name("hostcudart.c")
LIBS = {"NULLTRT_NVINFER": "libnvinfer", "NULLTRT_ONNXPARSER": "libnvonnxparser", "NULLTRT_PLUGIN": "libnvinfer_plugin"}


def _installed(major: str) -> bool:
    marker = BINDINGS / major / ".installed"
    return marker.exists() and marker.read_text().strip() == VERSIONS[major]


@pytest.fixture(scope="session")
def null_libs(tmp_path_factory) -> dict[str, Path]:
    """{major: folder holding libnvinfer.so.N, libnvonnxparser.so.N, libnvinfer_plugin.so.N}."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("the TensorRT conformance tests need gcc to build the null libraries")
    root = tmp_path_factory.mktemp("nulltrt")
    out = {}
    for major in VERSIONS:
        folder = root / major
        folder.mkdir()
        for define, lib in LIBS.items():
            soname = f"{lib}.so.{major}"
            subprocess.run([gcc, "-shared", "-fPIC", "-O1", f"-D{define}", f"-Wl,-soname,{soname}",
                            "-o", str(folder / soname), str(NULL_SOURCE)], check=True)
        out[major] = folder
    # the CUDA runtime stand-in, named as the real one so Polygraphy's search (libcudart.so*) finds it
    cudart = root / "cudart"
    cudart.mkdir()
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libcudart.so.13", "-o", str(cudart / "libcudart.so.13"),
                    str(CUDART_SOURCE)], check=True)
    out["cudart"] = cudart
    return out


@pytest.fixture(scope="session", params=sorted(VERSIONS))
def major(request) -> str:
    if not _installed(request.param):
        pytest.fail(f"TensorRT {VERSIONS[request.param]} bindings missing in {BINDINGS / request.param}: "
                    "run scripts/install-trt-bindings.sh")
    return request.param


def trt_env(major: str, null_libs: dict[str, Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BINDINGS / major), str(REPO)])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(null_libs[major]), str(null_libs["cudart"]),
                                                          env.get("LD_LIBRARY_PATH", "")]))
    env["QBENCH_TRT_MODULE"] = "tensorrt_bindings"
    env.pop("QBENCH_CUDA_BACKEND", None)
    return env


@pytest.fixture(scope="session")
def run_trt(null_libs):
    """run_trt(major, code) -> the JSON object the snippet prints on its last stdout line."""

    def run(major: str, code: str, expect_ok: bool = True):
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=trt_env(major, null_libs),
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        if expect_ok and proc.returncode != 0:
            raise AssertionError(f"TensorRT {major} snippet failed:\n{proc.stdout}\n{proc.stderr}")
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "null"
        return json.loads(last) if expect_ok else proc

    return run
