"""The HTML report: files on disk, machine-readable results, and the page in a real headless Chromium."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest

from qbench.advise import recommend
from qbench.errors import QbenchError
from qbench.ranges import Ranges, TensorRange
from qbench.report import CandidateResult, ExtraSection, write_report
from test_report_frames import real_candidates

EVIL = "<img src=x onerror=window.__pwned=1>"
EVIL_SCRIPT = "<script>window.__pwned2=1</script>"


@pytest.fixture(scope="module")
def real(graph, small_dataset):
    return real_candidates(graph, small_dataset)


@pytest.fixture(scope="module")
def real_report(real, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "ch_PP-OCRv4_det_infer"
    ranges = Ranges({k: TensorRange(k, v, "max", 2, -v, v) for k, v in list(real["amax"].items())[:40]}, method="max")
    int8, fp16 = real["int8"], real["fp16"]
    page = write_report(out, "ch_PP-OCRv4_det_infer", [int8, fp16], ranges=ranges,
                        meta={"data": "calib_data (256×256)", "samples": 2, "reference": "ONNX Runtime CPU FP32"})
    return page, ranges


def _strict_json(text: str):
    def reject(name):
        raise AssertionError(f"results.json holds non-standard JSON constant {name}")
    return json.loads(text, parse_constant=reject)


def test_report_writes_every_file_and_machine_readable_results(real_report, real):
    page, ranges = real_report
    out = page.parent
    assert page.name == "index.html" and page.stat().st_size > 0
    doc = _strict_json((out / "results.json").read_text())
    assert doc["model"] == "ch_PP-OCRv4_det_infer"
    assert [c["precision"] for c in doc["candidates"]] == ["int8", "fp16"]
    for cand, name in zip(doc["candidates"], ("int8", "fp16")):
        frame = real[name].tensors
        assert [t["tensor"] for t in cand["tensors"]] == list(frame["tensor"])
        assert len(cand["findings"]) == len(real[name].findings)
        with open(out / f"tensors_{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["tensor"] for r in rows] == list(frame["tensor"])
        assert {"max_abs_err", "cosine", "cand_zero_frac", "ref_zero_frac", "status", "origin"} <= set(rows[0])
        first = frame[frame["first_problem"]]
        expected = None if first.empty else first["tensor"].iloc[0]
        got = cand["summary"]["first_problem"]
        assert (got and got["tensor"]) == expected
    # the recommendation in the file is the advisor's, not a second opinion
    assert doc["recommendation"]["precision"] == recommend([real["int8"], real["fp16"]]).precision
    with open(out / "ranges.csv", newline="") as fh:
        assert [r["tensor"] for r in csv.DictReader(fh)] == list(ranges.entries)
    for name in doc["files"].values():
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "plot_outputs.png" in pngs and "plot_error_int8.png" in pngs and "plot_int8_int8.png" in pngs
    assert not list(out.glob(".*.tmp")), "an atomic write left a temporary file behind"
    html = page.read_text()
    assert "http://" not in html and "https://" not in html, "the page must not reach the network"


def test_report_in_chromium_shows_every_tensor_in_graph_order(real_report, real, tmp_path):
    from browser import open_page

    page, _ = real_report
    with open_page(page) as p:
        assert p.console_errors == [] and p.page_errors == [] and p.requests == []
        for i, name in enumerate(("int8", "fp16")):
            frame = real[name].tensors
            names = p.page.eval_on_selector_all(f"#cand-{i}-table tbody tr", "rs => rs.map(r => r.cells[1].querySelector('code').textContent)")
            assert names == list(frame["tensor"])
            idx = p.page.eval_on_selector_all(f"#cand-{i}-table tbody tr", "rs => rs.map(r => r.cells[0].dataset.v)")
            assert [float(v) for v in idx] == sorted(float(v) for v in idx)
        widths = p.page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 5 and all(w > 0 for w in widths)
        # the first problem of the damaged candidate is highlighted, and it is the frame's first non-ok row
        frame = real["int8"].tensors
        first = frame[frame["status"] != "ok"]["tensor"].iloc[0]
        marked = p.page.eval_on_selector_all("#cand-0-table tr.first", "rs => rs.map(r => r.cells[1].querySelector('code').textContent)")
        assert marked == [first]
        assert first in p.page.inner_text("#verdict")
        assert p.page.inner_text("#recommended").strip() == recommend([real["int8"], real["fp16"]]).precision.upper()
        # the inline filter keeps only problem rows
        p.page.select_option("#cand-0 .tools select", "problems")
        visible = p.page.eval_on_selector_all("#cand-0-table tbody tr", "rs => rs.filter(r => r.offsetParent !== null).length")
        assert visible == int((frame["status"] != "ok").sum())
        p.page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_is_readable_without_javascript(real_report, real):
    from browser import open_page

    page, _ = real_report
    with open_page(page, javascript=False) as p:
        rows = p.page.eval_on_selector_all("#cand-1-table tbody tr", "rs => rs.filter(r => r.offsetParent !== null).length")
        assert rows == len(real["fp16"].tensors)


def _evil_candidate() -> CandidateResult:
    frame = pd.DataFrame({
        "index": [2, 0, 1],  # out of order on purpose: the report sorts by graph order
        "tensor": ["out_" + EVIL, EVIL, EVIL_SCRIPT],
        "node": [EVIL_SCRIPT, "n&amp;0", "n1"],
        "op_type": ["Conv\"'<", "Relu", "Add"],
        "is_output": [True, False, False],
        "cosine": [0.5, np.nan, 0.999],
        "max_abs_err": [1.5, np.inf, 0.01],
        "status": ["divergent", "nonfinite", "ok"],
        "origin": ["inherited", "introduced", ""],
    })
    findings = [{"kind": "nonfinite", "tensor": EVIL, "node": "n", "op_type": "Relu", "index": 0, "severity": "error",
                 "message": "NaN in " + EVIL}]
    return CandidateResult("int8" + EVIL, frame, findings, [(EVIL_SCRIPT, "missing in " + EVIL)], {"note": EVIL})


def test_model_supplied_names_are_escaped_in_a_real_browser(tmp_path):
    from browser import open_page

    out = tmp_path / "evil"
    page = write_report(out, "model" + EVIL, [_evil_candidate()], meta={"data": EVIL},
                        extra_sections=[ExtraSection(EVIL, pd.DataFrame({EVIL: [EVIL_SCRIPT]}), EVIL)])
    html = page.read_text()
    assert "<img src=x" not in html and "<script>window.__pwned2" not in html
    with open_page(page) as p:
        assert p.page_errors == [] and p.console_errors == []
        assert p.page.evaluate("typeof window.__pwned") == "undefined"
        assert p.page.evaluate("typeof window.__pwned2") == "undefined"
        assert p.page.query_selector_all("img[src='x']") == []
        assert len(p.page.query_selector_all("script")) == 1  # the report's own
        names = p.page.eval_on_selector_all("#cand-0-table tbody tr", "rs => rs.map(r => r.cells[1].querySelector('code').textContent)")
        assert names == [EVIL, EVIL_SCRIPT, "out_" + EVIL]
        assert EVIL in p.page.inner_text("h1")
        assert EVIL_SCRIPT in p.page.inner_text("#extra-1")
    # file names derived from the candidate name stay inside the folder
    assert all(f.parent == out for f in out.iterdir())
    assert not any("<" in f.name or "/" in f.name for f in out.iterdir())


def test_missing_columns_nan_metrics_and_empty_findings(tmp_path):
    bare = CandidateResult("fp16", pd.DataFrame({"tensor": ["a", "b"], "cosine": [np.nan, 0.995]}), [], [], {})
    empty = CandidateResult("int8", pd.DataFrame(), [], [("lost", "not captured")], {})
    page = write_report(tmp_path / "r", "m", [bare, empty])
    doc = _strict_json((tmp_path / "r" / "results.json").read_text())
    rows = doc["candidates"][0]["tensors"]
    assert [r["tensor"] for r in rows] == ["a", "b"] and rows[0]["cosine"] is None
    assert doc["candidates"][1]["tensors"] == [] and doc["candidates"][1]["unmatched"] == [{"tensor": "lost", "reason": "not captured"}]
    html = page.read_text()
    assert "No findings" in html and "lost" in html
    assert ">nan<" not in html.lower() and ">—<" in html  # a missing metric reads as a dash


def test_no_candidates_still_writes_a_page(tmp_path):
    page = write_report(tmp_path / "r", "m", [])
    doc = _strict_json((tmp_path / "r" / "results.json").read_text())
    assert doc["candidates"] == [] and doc["recommendation"]["precision"] == "fp32"
    assert "No candidates" in page.read_text()


def test_infinities_are_encoded_as_strings_in_results_json(tmp_path):
    frame = pd.DataFrame({"tensor": ["same"], "cosine": [1.0], "sqnr_db": [math.inf], "is_output": [True]})
    write_report(tmp_path / "r", "m", [CandidateResult("fp16", frame, [], [], {})])
    doc = _strict_json((tmp_path / "r" / "results.json").read_text())
    assert doc["candidates"][0]["tensors"][0]["sqnr_db"] == "inf"


def test_simulated_and_tensorrt_sources_are_told_apart(tmp_path):
    frame = pd.DataFrame({"tensor": ["a"], "cosine": [1.0]})
    sim = CandidateResult("int8", frame, meta={"source": "ONNX Runtime CPU simulation of INT8 (not TensorRT)"})
    trt = CandidateResult("int8-trt", frame, meta={"source": "TensorRT 10.3 engine", "capture_mode": "mark-all-outputs"})
    html = write_report(tmp_path / "a", "m", [sim]).read_text()
    assert 'class="sim"' in html
    html = write_report(tmp_path / "b", "m", [trt]).read_text()
    assert 'class="sim"' not in html and "mark-all-outputs" in html


def test_bad_input_is_one_clear_error(tmp_path):
    frame = pd.DataFrame({"tensor": ["a"], "cosine": [1.0]})
    (tmp_path / "file").write_text("x")
    with pytest.raises(QbenchError, match="is a file"):
        write_report(tmp_path / "file", "m", [])
    with pytest.raises(QbenchError, match="unique"):
        write_report(tmp_path / "r", "m", [CandidateResult("int8", frame), CandidateResult("int8", frame)])
    with pytest.raises(QbenchError, match="extra section"):
        write_report(tmp_path / "r", "m", [], extra_sections=[42])
    assert not (tmp_path / "r" / "index.html").exists()


def test_output_with_new_inf_is_not_shown_as_a_clean_cosine(tmp_path, graph, small_dataset):
    """Metrics see only values finite on both sides, so an output that overflowed can score cosine
    1.0: the verdict, the headline figures and the output plot must say NaN/Inf first."""
    import numpy as np
    import pandas as pd

    from qbench.report import CandidateResult, write_report

    outputs = [t for t in graph.tensors if t.is_output]
    rows = [{"index": t.index, "tensor": t.name, "node": t.node, "op_type": t.op_type, "is_output": True,
             "max_abs_err": 0.0, "cosine": 1.0, "cosine_min": 1.0, "sqnr_db": np.inf, "rel_l2": 0.0,
             "ref_zero_frac": 0.0, "cand_zero_frac": 0.0, "ref_nan": 0, "ref_inf": 0, "cand_nan": 0, "cand_inf": 7,
             "status": "nonfinite"} for t in outputs]
    page = write_report(tmp_path, "m", [CandidateResult("fp16", pd.DataFrame(rows), [], [], {})]).read_text()
    verdict = page[page.index("Verdict"):page.index("Candidates: task verdict, then tensor diagnosis")]
    assert "NaN/Inf in 1 output(s)" in verdict
    assert "finite values only" in page


def test_extra_section_images_are_shown_and_written_beside_the_page(tmp_path):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = buf.getvalue()
    page = write_report(tmp_path / "r", "m", [], extra_sections=[ExtraSection("Chart", None, "t", images=(("a <b>", png),))])
    html = page.read_text()
    assert "a &lt;b&gt;" in html and html.count("data:image/png;base64,") >= 1
    assert (tmp_path / "r" / "plot_extra1_1.png").read_bytes() == png
    with pytest.raises(QbenchError, match="PNG"):
        write_report(tmp_path / "r2", "m", [], extra_sections=[ExtraSection("x", images=(("c", b"GIF89a"),))])
