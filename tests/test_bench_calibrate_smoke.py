"""The calibration benchmark's --smoke mode runs and prints the ratios the issue asks for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_calibrate.py"


@pytest.mark.slow
def test_bench_calibrate_smoke():
    env = {**os.environ, "PYTHONPATH": str(BENCH.parents[1])}
    out = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "entropy calibration / one ORT pass with all activations exposed:" in out.stdout
    assert "all 5 calibrators from one pass / entropy alone:" in out.stdout
