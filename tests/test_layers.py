"""Imports follow the layers of docs/ARCHITECTURE.md: import-linter's contracts in pyproject.toml
(a ``layers`` contract over qbench's top-level modules, and no import cycle inside any package) hold,
and they do catch an import against the layers; qbench-internal imports sit at module top."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# issue 18: at most 25 qbench-internal imports inside functions outside qbench/cli/ (where they keep
# `qbench --help` fast); each remaining one is justified by a comment or a cycle-free lazy backend
MAX_INNER_IMPORTS = 25


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    exe = str(found) if found.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' (import-linter)")
    return exe


def _run(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([_lint_imports(), "--no-cache", "--no-logo", "pyproject.toml"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_imports_keep_the_layers_and_have_no_cycles():
    result = _run(ROOT, ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "2 kept" in result.stdout


def test_an_import_against_the_layers_is_caught(tmp_path):
    """A copy of the package with one upward import (data -> pipeline) breaks the contract."""
    shutil.copytree(ROOT / "qbench", tmp_path / "qbench", ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    data = tmp_path / "qbench" / "data.py"
    data.write_text(data.read_text() + "\nfrom qbench import pipeline  # planted: data must not import pipeline\n")
    result = _run(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "qbench.data is not allowed to import qbench.pipeline" in result.stdout


def _inner_imports(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        if rel.parts[1] == "cli":
            continue
        for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("qbench")):
                    found.append(f"{rel}:{node.lineno} {node.module}")
                elif isinstance(node, ast.Import) and any(a.name.startswith("qbench") for a in node.names):
                    found.append(f"{rel}:{node.lineno} {', '.join(a.name for a in node.names)}")
    return found


def test_qbench_imports_sit_at_module_top():
    inner = _inner_imports(ROOT / "qbench")
    assert len(inner) <= MAX_INNER_IMPORTS, "qbench imports inside functions (move them to the top):\n" + "\n".join(inner)
