#!/usr/bin/env python
"""Regenerate the measured figures in benchmarks/README.md: run every benchmarks/*.py and put its
printed output, with the date, machine and command, between that script's markers

    <!-- bench-output: bench_compare.py -->
    ...replaced on every run...
    <!-- /bench-output -->

(added at the end of the README when absent). The prose around the blocks, which interprets the
figures, is left alone: reread it when the numbers move.

    python scripts/bench_readme.py                 # every benchmark, full size (tens of minutes)
    python scripts/bench_readme.py bench_compare.py --args "--samples 8"
    python scripts/bench_readme.py --smoke         # tiny sizes: checks the plumbing, not figures
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qbench import atomic  # noqa: E402

BLOCK = re.compile(r"<!-- bench-output: (?P<name>[\w.-]+) -->\n.*?<!-- /bench-output -->", re.S)


def render(name: str, command: str, output: str, rc: int) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    status = "" if rc == 0 else f" — **exited {rc}**"
    return (f"<!-- bench-output: {name} -->\nLatest output of `{command}` ({when}, {platform.machine()}, {cores} "
            f"CPU cores, Python {platform.python_version()}){status}:\n\n```\n{output.rstrip()}\n```\n<!-- /bench-output -->")


def replace_block(readme: str, name: str, block: str) -> str:
    """The README with ``name``'s block replaced, or appended under 'Latest outputs' when new."""
    for match in BLOCK.finditer(readme):
        if match.group("name") == name:
            return readme[:match.start()] + block + readme[match.end():]
    if "\n## Latest outputs\n" not in readme:
        readme = readme.rstrip("\n") + "\n\n## Latest outputs\n\nWritten by `python scripts/bench_readme.py`.\n"
    return readme.rstrip("\n") + f"\n\n### {name}\n\n{block}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", help="benchmark file names (default: every benchmarks/*.py)")
    parser.add_argument("--smoke", action="store_true", help="run each with --smoke")
    parser.add_argument("--args", default="", help="extra arguments for the benchmark(s)")
    parser.add_argument("--readme", type=Path, default=REPO / "benchmarks" / "README.md")
    args = parser.parse_args()
    scripts = [REPO / "benchmarks" / s for s in args.scripts] or sorted((REPO / "benchmarks").glob("*.py"))
    failed = 0
    for script in scripts:
        argv = [sys.executable, str(script), *(["--smoke"] if args.smoke else []), *shlex.split(args.args)]
        command = "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{script.name}", *argv[2:]])
        print(f"bench_readme: {command}", file=sys.stderr, flush=True)
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        output = proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr[-2000:]
        failed += proc.returncode != 0
        readme = args.readme.read_text(encoding="utf-8")
        atomic.write_text(args.readme, replace_block(readme, script.name, render(script.name, command, output, proc.returncode)))
    print(args.readme)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
