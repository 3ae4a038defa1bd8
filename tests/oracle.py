"""NVIDIA's reproduction of TensorRT's entropy calibration as a test oracle, fetched from its
published package at test time (never stored in this repository).

``entropy_oracle()`` downloads the ``nvidia-modelopt`` wheel with ``pip download --no-deps`` (cached
per session), reads ``modelopt/torch/quantization/calib/histogram.py`` out of the zip, extracts the
source of ``_compute_amax_entropy`` alone with ``ast`` and executes it with numpy, ``Counter``,
scipy's ``entropy`` and a minimal stand-in for the one torch call it makes (``torch.tensor`` to wrap
the result). When the package registry cannot be reached the test is skipped with that reason printed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

PACKAGE = "nvidia-modelopt"
VERSION = "0.47.0"  # pinned: the oracle must not change under the test
SOURCE = "modelopt/torch/quantization/calib/histogram.py"
FUNCTION = "_compute_amax_entropy"


class _TorchStandIn:
    """The only torch use in the function: ``torch.tensor(python_float)`` around the result."""

    @staticmethod
    def tensor(value):
        return np.float64(value)


def fetch_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob("nvidia_modelopt-*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), f"{PACKAGE}=={VERSION}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        out = None
    found = sorted(dest.glob("nvidia_modelopt-*.whl"))
    if out is None or out.returncode != 0 or not found:
        reason = "timed out" if out is None else (out.stderr.strip().splitlines() or ["no wheel"])[-1]
        message = f"cannot fetch the {PACKAGE} wheel from the package registry ({reason}); oracle test skipped"
        print(message)
        pytest.skip(message)
    return found[-1]


def load_function(wheel: Path, name: str = FUNCTION):
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read(SOURCE).decode("utf-8")
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None:
        raise AssertionError(f"{wheel.name}: {SOURCE} no longer defines {name}")
    from scipy.stats import entropy

    namespace = {"np": np, "Counter": Counter, "entropy": entropy, "torch": _TorchStandIn()}
    exec(compile(ast.Module(body=[node], type_ignores=[]), f"{wheel.name}:{SOURCE}", "exec"), namespace)
    return namespace[name], wheel.name
