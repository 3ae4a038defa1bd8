"""Shared fixtures: the embedded real model and real calibration images.

Model runs are the slow part of the suite, so the graph is loaded once per session and tests use
small spatial sizes (``small_data_dir``: the same images at 256x256) unless they need 640x640.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model_path() -> Path:
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def calib_dir() -> Path:
    return DEFAULT_DATA


@pytest.fixture(scope="session")
def graph(model_path):
    from qbench.model import ModelGraph

    return ModelGraph.from_path(model_path)


def make_small_data_dir(dest: Path, size: int = 256, count: int = 4) -> Path:
    """A copy of the calibration folder with ``count`` images and a manifest that resizes to
    ``size``x``size`` (same preprocessing otherwise)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    manifest = json.loads((DEFAULT_DATA / "manifest.json").read_text())
    manifest["inputs"]["x"]["size"] = [size, size]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    # documents first: they are what the detector is for, so its output is not all near zero
    preferred = ["page.png", "text.png", "coins.png", "astronaut.png", "camera.png", "coffee.png"]
    for name in preferred[:count]:
        shutil.copy(DEFAULT_DATA / "images" / name, dest / "images" / name)
    return dest


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    return make_small_data_dir(tmp_path_factory.mktemp("small_data"))


@pytest.fixture(scope="session")
def small_dataset(graph, small_data_dir):
    from qbench.data import load_dataset

    return load_dataset(small_data_dir, graph.inputs)


@pytest.fixture(scope="session")
def entropy_oracle(tmp_path_factory):
    """modelopt's ``_compute_amax_entropy``, fetched from its wheel at test time (tests/oracle.py)."""
    from oracle import fetch_wheel, load_function

    function, wheel = load_function(fetch_wheel(tmp_path_factory.getbasetemp() / "oracle_wheel"))
    print(f"entropy oracle: {wheel}")
    return function
