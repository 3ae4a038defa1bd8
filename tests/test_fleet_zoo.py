"""The zoo: zoo.toml names every model of tests/corpus/zoo.py with its package and data folder (fast);
the sweep's Markdown table (fast); a 3-model subset of zoo.toml swept end to end through
``qbench sweep``, writing the table and the index page (slow: CI's zoo run)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from qbench.cli import main
from qbench.fleet.table import render_table
from tests.corpus.models import PACKAGES, CorpusMissing, packaged
from tests.corpus.zoo import ZOO, ZOO_SAMPLES, make_all

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "zoo.toml"
CI_SUBSET = ["ppocr-cls", "ppocr-det", "silero-vad-op18"]  # a classifier with exact labels, a text detector, a stateful VAD


def test_zoo_toml_names_every_zoo_model_with_its_package_task_and_data():
    doc = tomllib.loads(SPEC.read_text())
    assert doc["table"] == "docs/ZOO.md" and doc["limit"] >= 64
    entries = {m["name"]: m for m in doc["models"]}
    assert list(entries) == [m.name for m in ZOO]
    for model in ZOO:
        entry = entries[model.name]
        assert entry["path"] == f".corpus/{model.package}/{model.file}"
        assert entry["data"] == f".zoo/{model.name}"
        assert entry["package"] == f"{model.package} {PACKAGES[model.package]}"
        assert entry["tasks"] == [model.task]
    assert set(CI_SUBSET) <= set(entries)


def test_the_table_has_one_row_per_model_and_one_verdict_column_per_format():
    rows = [
        {"model": "cls | v2", "precision": "int8", "calibrator": "entropy", "task": "classify", "status": "done",
         "verdict": "pass", "deciding_metric": "task.accuracy_drop", "value": 0.0, "samples": 64},
        {"model": "cls | v2", "precision": "fp16", "calibrator": "", "task": "classify", "status": "done",
         "verdict": "fail", "deciding_metric": "task.accuracy_drop", "value": 0.5, "samples": 64},
        {"model": "vad", "precision": "int8", "calibrator": "entropy", "task": "", "status": "failed",
         "error": "qbench: cannot read\nthe data folder x", "samples": None},
    ]
    text = render_table(["cls | v2", "vad"], {"cls | v2": "rapidocr 1.4.4"}, rows, "zoo")
    lines = text.splitlines()
    assert lines[0] == "# zoo"
    assert lines[2] == "| model | package | task | samples | int8 | fp16 |"
    assert lines[4] == ("| cls \\| v2 | rapidocr 1.4.4 | classify | 64 | pass accuracy_drop (0.0000) | "
                        "fail accuracy_drop (0.5000) |")
    assert lines[5] == "| vad |  |  |  | failed: qbench: cannot read the data folder x | — |"
    # two calibrators of one precision: the column names the calibrator
    two = render_table(["m"], {}, [dict(rows[0], model="m"), dict(rows[0], model="m", calibrator="minmax")])
    assert two.splitlines()[0] == "| model | package | task | samples | int8-entropy | int8-minmax |"


@pytest.mark.slow
def test_a_three_model_subset_of_the_zoo_writes_its_table_and_index(tmp_path, capsys):
    try:
        for name in CI_SUBSET:
            model = next(m for m in ZOO if m.name == name)
            packaged(model.package, model.file)
    except CorpusMissing as exc:
        pytest.skip(str(exc))
    data = tmp_path / "data"
    made = make_all(data, CI_SUBSET)
    for folder in made:  # 64 samples each, and the classifier's exact labels
        samples = [p for p in folder.rglob("*") if p.suffix in (".png", ".npz")]
        assert len(samples) == ZOO_SAMPLES, folder
    labels = json.loads((data / "ppocr-cls" / "labels.json").read_text())
    assert len(labels) == ZOO_SAMPLES and sorted(set(labels.values())) == [0, 1]

    # zoo.toml itself, its data and outputs moved into tmp: the spec's paths are what is tested
    text = SPEC.read_text().replace('data = ".zoo/', f'data = "{data}/').replace('path = ".corpus/', f'path = "{REPO}/.corpus/')
    text = text.replace('table = "docs/ZOO.md"', 'table = "ZOO.md"').replace('out = "reports/zoo"', 'out = "out"')
    # the zoo judges every simulated format; CI's subset two of them (its time), the columns the same way
    from qbench.simulate import formats

    line = next(line for line in text.splitlines() if line.startswith("precisions = "))
    assert set(json.loads(line.split("=", 1)[1])) == set(formats.names())
    text = text.replace(line, 'precisions = ["int8", "fp16"]')
    spec = tmp_path / "zoo.toml"
    spec.write_text(text)
    args = ["sweep", str(spec), "--limit", "4", "--jobs", "2", "--quiet"]
    for name in CI_SUBSET:
        args += ["--model", name]
    rc = main(args)
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    table = (tmp_path / "ZOO.md").read_text().splitlines()
    assert table[0] == "# qbench model zoo"
    assert table[2].startswith(f"Written by `qbench sweep zoo.toml`; 3 of the spec's {len(ZOO)} models (not swept: ")
    assert table[4] == "| model | package | task | samples | int8 | fp16 |"
    body = [line.split(" | ") for line in table[6:]]
    assert [cells[0].lstrip("| ") for cells in body] == CI_SUBSET
    tasks = {cells[0].lstrip("| "): cells[2] for cells in body}
    assert tasks == {"ppocr-cls": "classify", "ppocr-det": "segment", "silero-vad-op18": "generic"}
    for cells in body:
        assert cells[3] == "4"  # --limit 4 samples judged
        verdicts = [c.rstrip(" |").split(" ")[0] for c in cells[4:]]
        assert all(v in ("pass", "fail", "inconclusive") for v in verdicts), cells
    index = json.loads((tmp_path / "out" / "index.json").read_text())["cells"]
    assert len(index) == 6 and all(r["status"] == "done" for r in index)
    assert (tmp_path / "out" / "index.html").is_file()
    # a name the spec does not have is one error line
    assert main(["sweep", str(spec), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qbench: error:") and "no model called 'no-such-model'" in err and err.count("\n") == 1
