"""benchmarks/bench_sweep.py --smoke runs a real sweep both ways and prints the ratio (the figure
itself is the benchmark's business: benchmarks/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sweep.py"


@pytest.mark.slow
def test_bench_sweep_smoke_prints_the_pool_to_sequential_ratio():
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^cells: 2 \(1 sample\(s\) each\)", proc.stdout, re.M), proc.stdout
    times = dict(re.findall(r"^(sequential|pool):\s+([0-9.]+) s", proc.stdout, re.M))
    ratio = re.search(r"ratio pool / sequential: ([0-9.]+)", proc.stdout)
    assert set(times) == {"sequential", "pool"} and ratio, proc.stdout
    assert abs(float(ratio.group(1)) - float(times["pool"]) / float(times["sequential"])) < 0.01
