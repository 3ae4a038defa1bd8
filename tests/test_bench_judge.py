"""benchmarks/bench_judge.py --smoke runs and prints its ratios (the figures themselves are the
benchmark's business, measured side by side in one run: benchmarks/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_judge.py"


@pytest.mark.slow
def test_bench_judge_smoke_prints_the_ratio_of_run_with_and_without_task_evaluation():
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = dict(re.findall(r"ratio (\w+) / without: ([0-9.]+) wall-clock, [0-9.]+ CPU time", proc.stdout))
    assert set(ratios) == {"generic", "segment"}, proc.stdout
    assert all(float(r) > 0 for r in ratios.values())
    # the judged runs really judged: their comparisons report time spent in the task judge
    judged = re.search(r"^generic\s.*int8 [0-9.]+, fp16 [0-9.]+", proc.stdout, re.M)
    assert judged, proc.stdout
