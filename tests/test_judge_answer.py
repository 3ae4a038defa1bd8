"""One answer (issue 21, item 5): the recommendation takes the search's shipped INT8 (int8-best)
into account, names it, and the report header, results.json and the console print the same one."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from qbench.advise import SHIPPED, recommend, shipped_from_search
from qbench.report import write_report
from test_advise_task import cand, graph, judged  # noqa: F401  (graph is a fixture)


def _search(result, calibrator="percentile", keep=(), folder="reports/m/int8-best"):
    best = SimpleNamespace(result=result, calibrator=calibrator, keep_float=list(keep), part="judging part (held out)")
    return SimpleNamespace(best=best, folder=folder)


def test_a_passing_int8_best_is_the_int8_answer_and_is_named(graph, tmp_path):
    good, bad = judged(graph, 80, 0.0), judged(graph, 80, 0.5)
    candidates = [cand("int8", 0.999, bad), cand("fp16", 0.9999, good)]
    assert recommend(candidates).precision == "fp16"  # without the search: the run's own INT8 fails

    rec = recommend(candidates, shipped=shipped_from_search(_search(good)))
    assert rec.precision == SHIPPED
    assert "INT8 with percentile ranges" in rec.reason and SHIPPED in rec.reason and "reports/m/int8-best" in rec.reason
    table = rec.table.set_index("precision")
    assert table.loc[SHIPPED, "verdict"] == "pass" and table.loc["int8", "verdict"] == "fail"

    # the writer prints this object as it is: header and results.json agree with it
    page = write_report(tmp_path / "rep", "tiny", candidates, meta={}, recommendation=rec)
    text = html.unescape(page.read_text())
    assert re.search(r'id="recommended">\s*INT8-BEST\s*<', text)
    assert rec.reason in text
    doc = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert doc["recommendation"]["precision"] == SHIPPED and doc["recommendation"]["reason"] == rec.reason
    assert doc["recommendation"]["shipped"]["calibrator"] == "percentile"


def test_a_failing_int8_best_is_said_beside_the_fp16_answer(graph):
    good, bad = judged(graph, 80, 0.0), judged(graph, 80, 0.5)
    rec = recommend([cand("int8", 0.999, bad), cand("fp16", 0.9999, good)], shipped=shipped_from_search(_search(bad)))
    assert rec.precision == "fp16"
    # the search's int8-best is named among the rejected lower precisions, beside the FP16 answer
    assert f"{SHIPPED.upper()} rejected: INT8 with percentile ranges ({SHIPPED}" in rec.reason
    # an int8-best with layers in float ranks as a mixed INT8: above a plain INT8 that passes
    mixed = shipped_from_search(_search(good, keep=["conv1"]))
    rec = recommend([cand("int8", 0.999, good), cand("fp16", 0.9999, good)], shipped=mixed)
    assert rec.precision == "int8"


@pytest.mark.slow
def test_console_report_and_results_json_give_one_answer(tmp_path, model_path, small_data_dir):
    """A real run on the embedded detector: the console's recommendation line, the report header and
    results.json carry the same precision and reason, and results.json names the shipped int8-best."""
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "qbench", "run", str(model_path), "--data", str(small_data_dir),
                           "--out", str(out), "--limit", "4", "--no-fallback", "--precision", "int8",
                           "--task", "segment"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(l for l in proc.stderr.splitlines() if l.startswith("recommendation: "))
    precision, reason = line[len("recommendation: "):].split(" — ", 1)
    doc = json.loads((out / "results.json").read_text())
    assert doc["recommendation"]["precision"] == precision and doc["recommendation"]["reason"] == reason
    assert doc["recommendation"]["shipped"]["name"] == SHIPPED
    text = html.unescape((out / "index.html").read_text())
    assert re.search(rf'id="recommended">\s*{re.escape(precision.upper())}\s*<', text) and reason in text
