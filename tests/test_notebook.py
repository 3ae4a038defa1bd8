"""The quickstart notebook is documentation that must keep working: run its code cells in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells
    namespace: dict = {}
    for index, cell in enumerate(cells):
        code = "".join(cell["source"]).replace("/tmp/", f"{tmp_path}/")
        exec(compile(code, f"quickstart cell {index}", "exec"), namespace)
    # the planted fault cell: the comparator must name the planted tensor first, as introduced
    victim = namespace["victim"]
    first = namespace["cmp_bad"].first_problem
    assert first is not None and first["tensor"] == victim
    assert namespace["cmp_bad"].tensors.set_index("tensor").loc[victim, "origin"] == "introduced"
    assert Path(namespace["outcome"].report).is_file()
