"""Benchmarks that cannot rot: every script in benchmarks/ runs in its --smoke mode (tiny sizes) and
prints its side-by-side ratios. A new benchmark is picked up here without being listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
# known breakage being fixed on another branch; non-strict, so the fix turns it green without an edit
KNOWN_BROKEN = {"bench_calibrate.py": "ImportError since the calibration refactor (fixed on wt-calib, which "
                                      "must also give it --smoke)"}


def _param(path: Path):
    marks = [pytest.mark.slow]
    if path.name in KNOWN_BROKEN:
        marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[path.name], strict=False))
    return pytest.param(path, id=path.name, marks=marks)


def test_benchmarks_exist():
    assert SCRIPTS, "no benchmarks/*.py found"


@pytest.mark.parametrize("script", [_param(p) for p in SCRIPTS])
def test_benchmark_smoke(script, tmp_path):
    assert "--smoke" in script.read_text(encoding="utf-8"), f"{script.name} has no --smoke mode"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # every benchmark prints ratios measured side by side
    assert re.search(r"ratio|\d\.\d+\s*[x×]", proc.stdout), proc.stdout[-2000:]


def test_readme_blocks_are_replaced_in_place_or_appended():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from bench_readme import render, replace_block
    finally:
        sys.path.pop(0)
    readme = "# Benchmarks\n\nprose\n"
    first = replace_block(readme, "bench_x.py", render("bench_x.py", "python benchmarks/bench_x.py", "ratio 1.00", 0))
    assert "## Latest outputs" in first and "ratio 1.00" in first and first.startswith("# Benchmarks\n\nprose\n")
    second = replace_block(first, "bench_x.py", render("bench_x.py", "python benchmarks/bench_x.py", "ratio 2.00", 0))
    assert "ratio 2.00" in second and "ratio 1.00" not in second and second.count("<!-- bench-output:") == 1
    third = replace_block(second, "bench_y.py", render("bench_y.py", "c", "boom", 1))
    assert third.count("<!-- bench-output:") == 2 and "exited 1" in third and "ratio 2.00" in third
