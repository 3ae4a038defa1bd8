"""The bad-input corpus: what a user can get wrong, across every command. Each case asserts the
message (one ``qbench: error:`` line), a non-zero exit, no traceback, and that outputs written before
the failing command are still there, byte for byte (README: "Troubleshooting" lists these messages).

Most cases fail before any model run, so they take milliseconds; the model is the real opset-11
PP-OCR classifier on one 48x64 sample.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from qbench.cli import main

REPO = Path(__file__).resolve().parents[1]
CLS = REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
CACHES = REPO / "tests" / "data" / "trt_caches"


def qbench(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Ctx:
    """Paths every case builds on: a good model, good data, and an output folder holding a previous
    run's files that no failing command may touch."""

    def __init__(self, root: Path):
        self.root = root
        self.model = CLS
        self.data = root / "data"
        self.data.mkdir()
        rng = np.random.default_rng(0)
        self.sample = rng.uniform(-1, 1, (1, 3, 48, 64)).astype(np.float32)
        np.save(self.data / "s0.npy", self.sample)
        self.out = root / "previous"
        self.out.mkdir()
        (self.out / "index.html").write_text("<p>previous report</p>")
        (self.out / "results.json").write_text('{"previous": true}')
        (self.out / "calibration.cache").write_text("TRT-100300-EntropyCalibration2\nx: 3c010a14\n")
        self.before = snapshot(self.out)

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def data_with(self, name: str, writer) -> Path:
        folder = self.root / f"data-{name}"
        folder.mkdir()
        writer(folder)
        return folder

    def npy(self, array, name="bad") -> Path:
        return self.data_with(name, lambda d: np.save(d / "s0.npy", array, allow_pickle=True))

    def model_with(self, name: str, edit) -> Path:
        model = onnx.load(str(CLS))
        edit(model)
        path = self.root / f"{name}.onnx"
        onnx.save(model, str(path))
        return path


def _unknown_op(model):  # ONNX Runtime's message names the op: "No Op registered for FrobnicateV9 ..."
    node = model.graph.node[0]
    node.op_type = "FrobnicateV9"


def _manifest(d, text):
    (d / "manifest.json").write_text(text)
    (d / "images").mkdir()
    shutil.copy(REPO / "calib_data" / "images" / "text.png", d / "images" / "text.png")


def _good_manifest(extra=None):
    spec = {"size": [48, 64], "glob": "images/*"}
    return json.dumps({"inputs": {"x": spec, **(extra or {})}})


def _truncated_npz(d):
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((1, 3, 48, 64), np.float32))
    (d / "s0.npz").write_bytes(buf.getvalue()[:200])


# a results.json that check and diff read (one passing FP16 candidate), and stores for history/diff
_RESULTS = json.dumps({"format": "qbench-report/1", "model": "cls", "candidates": [
    {"precision": "fp16", "summary": {"output_cosine_min": 0.999}}],
    "recommendation": {"precision": "fp16", "table": [{"precision": "fp16", "verdict": "pass"}]}})


def _results(c, name="good"):
    return c.file(f"{name}/results.json", _RESULTS)


def _empty_store(c) -> Path:
    from qbench.store import ResultStore

    path = c.root / "store.sqlite"
    with ResultStore(path):
        pass
    return path


def _foreign_sqlite(c) -> Path:
    import sqlite3

    path = c.root / "notes.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
        conn.commit()
    return path


def _spec(c, name, text):
    return c.file(name, text.replace("MODEL", CLS.as_posix()))


# (id, argv from ctx, expected text in the error line, expected exit code)
CASES = [
    # --- the model file
    ("run-model-missing", lambda c: ["run", c.root / "nope.onnx", "--data", c.data, "--out", c.out], "model file not found", 2),
    ("run-model-is-folder", lambda c: ["run", c.root, "--data", c.data, "--out", c.out], "got a folder", 2),
    ("run-model-garbage", lambda c: ["run", c.file("g.onnx", b"\x00\xffnot onnx at all" * 50), "--data", c.data, "--out", c.out],
     "is not a readable ONNX model", 2),
    ("calibrate-model-truncated", lambda c: ["calibrate", c.file("t.onnx", CLS.read_bytes()[:40000]), "--data", c.data,
                                             "--cache", c.out / "calibration.cache"], "is not a readable ONNX model", 2),
    ("simulate-model-empty", lambda c: ["simulate", c.file("e.onnx", b""), "--precision", "fp16", "-o", c.out / "m.onnx"],
     "not an ONNX model with a graph", 2),
    ("run-unknown-op", lambda c: ["run", c.model_with("unknown", _unknown_op), "--data", c.data, "--out", c.out],
     "No Op registered for", 2),
    ("run-engine-given-as-onnx", lambda c: ["run", c.file("model.engine", b"ftrt" + bytes(range(256)) * 40), "--data", c.data,
                                            "--out", c.out], "TensorRT engine", 2),
    ("compare-engine-as-candidate", lambda c: ["compare", c.model, "--data", c.data, "--candidate",
                                               c.file("m.plan", b"ftrt" + bytes(300)), "--out", c.out], "TensorRT engine", 2),
    ("check-ranges-model-missing", lambda c: ["check-ranges", CACHES / "vgg16_trt8400_minmax.cache", "--model", c.root / "x.onnx"],
     "model file not found", 2),
    # --- the data folder
    ("run-data-missing", lambda c: ["run", c.model, "--data", c.root / "nowhere", "--out", c.out], "data folder not found", 2),
    ("run-data-is-file", lambda c: ["run", c.model, "--data", c.data / "s0.npy", "--out", c.out], "expected a data folder", 2),
    ("run-data-empty", lambda c: ["run", c.model, "--data", c.data_with("empty", lambda d: None), "--out", c.out], "no samples in", 2),
    ("calibrate-images-no-manifest", lambda c: ["calibrate", c.model, "--data", c.data_with(
        "nomanifest", lambda d: shutil.copy(REPO / "calib_data/images/text.png", d)), "--out", c.out], "no manifest.json", 2),
    ("run-manifest-not-json", lambda c: ["run", c.model, "--data", c.data_with("badjson", lambda d: _manifest(d, "{oops")),
                                         "--out", c.out], "is not valid JSON", 2),
    ("run-manifest-unknown-key", lambda c: ["run", c.model, "--data", c.data_with(
        "badkey", lambda d: _manifest(d, json.dumps({"inputs": {"x": {"size": [48, 64], "glob": "images/*", "sizee": 1}}}))),
        "--out", c.out],
     "unknown preprocessing keys", 2),
    ("run-manifest-fills-unknown-input", lambda c: ["run", c.model, "--data", c.data_with(
        "fill", lambda d: _manifest(d, _good_manifest({"sr": {"source": "constant", "value": 16000}}))), "--out", c.out],
     "which the model does not have", 2),
    ("run-image-corrupt", lambda c: ["run", c.model, "--data", c.data_with(
        "corrupt", lambda d: (_manifest(d, _good_manifest()), (d / "images" / "text.png").write_bytes(b"\x89PNG broken"))),
        "--out", c.out], "cannot read image", 2),
    ("run-npy-pickled", lambda c: ["run", c.model, "--data", c.npy(np.array([{"x": 1}], dtype=object)), "--out", c.out],
     "without unpickling", 2),
    ("run-npy-truncated", lambda c: ["run", c.model, "--data", c.data_with(
        "trunc", lambda d: (d / "s0.npy").write_bytes((c.data / "s0.npy").read_bytes()[:100])), "--out", c.out],
     "not a readable .npy/.npz", 2),
    ("run-npz-truncated", lambda c: ["run", c.model, "--data", c.data_with("truncz", _truncated_npz), "--out", c.out],
     "not a readable .npy/.npz", 2),
    ("run-npz-missing-input", lambda c: ["run", c.model, "--data", c.data_with(
        "npzkey", lambda d: np.savez(d / "s0.npz", y=np.zeros((1, 3, 48, 64), np.float32))), "--out", c.out],
     "missing arrays for inputs ['x']", 2),
    ("run-npy-is-a-folder", lambda c: ["run", c.model, "--data", c.data_with("dirnpy", lambda d: (d / "s0.npy").mkdir()),
                                       "--out", c.out], "not a readable .npy/.npz", 2),
    ("run-npy-broken-symlink", lambda c: ["run", c.model, "--data", c.data_with(
        "link", lambda d: (d / "s0.npy").symlink_to(d / "gone.npy")), "--out", c.out], "not a readable .npy/.npz", 2),
    ("run-wrong-rank", lambda c: ["run", c.model, "--data", c.npy(np.zeros((1, 48, 64, 3, 1), np.float32)), "--out", c.out],
     "the model expects 4-D", 2),
    ("calibrate-wrong-shape", lambda c: ["calibrate", c.model, "--data", c.npy(np.zeros((1, 1, 48, 64), np.float32)),
                                         "--out", c.out], "the model expects (?, 3, ?, ?)", 2),
    ("compare-wrong-dtype", lambda c: ["compare", c.model, "--data", c.npy(np.zeros((1, 3, 48, 64), np.float64)),
                                       "--precision", "fp16", "--out", c.out], "has dtype float64, the model expects float32", 2),
    ("run-nan", lambda c: ["run", c.model, "--data", c.npy(np.full((1, 3, 48, 64), np.nan, np.float32)), "--out", c.out],
     "NaN/Inf values", 2),
    ("calibrate-inf", lambda c: ["calibrate", c.model, "--data", c.npy(np.full((1, 3, 48, 64), np.inf, np.float32)),
                                 "--cache", c.out / "calibration.cache"], "NaN/Inf values", 2),
    # --- labels (task-level judge)
    ("run-labels-not-matching-data", lambda c: ["run", c.model, "--data", c.data, "--labels", c.file("l1.json", '{"other.npy": 1}'),
                                                "--out", c.out], "no label for 1 of 1 sample(s)", 2),
    ("run-labels-wrong-kind", lambda c: ["run", c.model, "--data", c.data, "--task", "classify", "--labels",
                                         c.file("l2.json", '{"s0.npy": "hello"}'), "--out", c.out], "needs class labels", 2),
    ("run-labels-boolean", lambda c: ["run", c.model, "--data", c.data, "--labels", c.file("l3.json", '{"s0.npy": true}'),
                                      "--out", c.out], "is a boolean", 2),
    ("run-labels-not-json", lambda c: ["run", c.model, "--data", c.data, "--labels", c.file("l4.json", "{oops"),
                                           "--out", c.out], "not a JSON labels file", 2),
    ("run-labels-missing", lambda c: ["run", c.model, "--data", c.data, "--labels", c.root / "none.json", "--out", c.out],
     "labels file not found", 2),
    # --- caches and ranges
    ("run-cache-corrupt", lambda c: ["run", c.model, "--data", c.data, "--ranges", c.file("bad.cache", "TRT-8601-EntropyCalibration2\nx 12\n"),
                                     "--out", c.out], "the cache is corrupt", 2),
    ("run-cache-binary", lambda c: ["run", c.model, "--data", c.data, "--ranges", c.file("bin.cache", bytes(range(256))),
                                    "--out", c.out], "not a TensorRT calibration cache", 2),
    ("run-cache-foreign-model", lambda c: ["run", c.model, "--data", c.data, "--ranges", CACHES / "vgg16_trt8400_minmax.cache",
                                           "--out", c.out], "this cache was made for another model", 2),
    ("check-ranges-foreign", lambda c: ["check-ranges", CACHES / "retina_plate_trt8501_entropy2.cache", "--model", c.model],
     "made for another model", 2),
    ("simulate-other-version-cache-of-other-model", lambda c: ["simulate", c.model, "--precision", "int8", "--ranges",
                                                               CACHES / "radioml_transformer_trt101000_entropy2.cache", "-o", c.out / "m.onnx"],
     "made for another model", 2),
    ("run-ranges-json-other-version", lambda c: ["run", c.model, "--data", c.data, "--ranges", c.file(
        "r2.json", '{"format": "qbench-ranges/2", "tensors": []}'), "--out", c.out], "expected 'qbench-ranges/1'", 2),
    ("simulate-int8-without-ranges", lambda c: ["simulate", c.model, "--precision", "int8", "-o", c.out / "m.onnx"], "needs --ranges", 2),
    ("compare-ranges-json-truncated", lambda c: ["compare", c.model, "--data", c.data, "--precision", "int8", "--ranges",
                                                 c.file("r.json", '{"format": "qbench-ranges", "entr'), "--out", c.out], "not a qbench ranges file", 2),
    ("compare-ranges-missing", lambda c: ["compare", c.model, "--data", c.data, "--precision", "int8", "--ranges", c.root / "no.cache",
                                          "--out", c.out], "ranges file not found", 2),
    # --- output destinations
    ("run-out-is-file", lambda c: ["run", c.model, "--data", c.data, "--out", c.out / "index.html"], "it is a file, not a folder", 2),
    ("run-out-below-file", lambda c: ["run", c.model, "--data", c.data, "--out", c.out / "results.json" / "sub"], "cannot create the folder", 2),
    ("compare-out-is-file", lambda c: ["compare", c.model, "--data", c.data, "--precision", "fp16", "--out", c.out / "index.html"],
     "it is a file, not a folder", 2),
    ("calibrate-cache-is-folder", lambda c: ["calibrate", c.model, "--data", c.data, "--cache", c.out], "is a directory", 2),
    ("simulate-output-below-file", lambda c: ["simulate", c.model, "--precision", "fp16", "-o", c.out / "index.html" / "m.onnx"],
     "it is a file, not a folder", 2),
    # --- options
    ("demo-out-is-file", lambda c: ["demo", "--out", c.out / "index.html"], "it is a file, not a folder", 2),
    ("compare-no-candidate", lambda c: ["compare", c.model, "--data", c.data, "--out", c.out], "give exactly one of", 2),
    ("run-limit-zero", lambda c: ["run", c.model, "--data", c.data, "--limit", "0", "--out", c.out], "Invalid value for '--limit'", 2),
    ("run-unknown-option", lambda c: ["run", c.model, "--data", c.data, "--precison", "int8"], "No such option", 2),
    ("trt-info-limit", lambda c: ["trt-info", "--limit", "2"], "--limit does not apply to qbench trt-info", 2),
    ("build-bad-shapes", lambda c: ["build", c.model, "--shapes", "x:1x3", "-o", c.out / "m.engine", "--shapes", "x:1x3"],
     "--shapes gives input 'x' twice", 2),
    ("build-no-tensorrt", lambda c: ["build", c.model, "-o", c.out / "m.engine"], "TensorRT is not installed", 3),
    ("trt-inspect-malformed-json", lambda c: ["trt-inspect", c.file("layers.json", "{not json")], "not JSON", 2),
    ("compare-trt-outputs-malformed", lambda c: ["compare", c.model, "--data", c.data, "--trt-outputs", c.file("o.json", "[{]"),
                                                 "--out", c.out], "not a trtexec --exportOutput file", 2),
    ("compare-layer-info-malformed", lambda c: ["compare", c.model, "--data", c.data, "--precision", "fp16", "--layer-info",
                                                c.file("li.json", '{"Layers": 3}'), "--out", c.out], "expected TensorRT layer information", 2),
    # --- runs across time: check (exit 2 on an error, 1 is kept for a regression), history, diff, sweep
    ("check-results-missing", lambda c: ["check", c.root / "gone" / "results.json"], "no such results.json or report folder", 2),
    ("check-results-truncated", lambda c: ["check", c.file("cut/results.json", _RESULTS[:60])], "is not readable JSON", 2),
    ("check-not-a-qbench-report", lambda c: ["check", c.out], "is not a qbench results.json", 2),
    ("check-tolerance-malformed", lambda c: ["check", _results(c), "--min", "output_cosine_min"], "is not NAME=NUMBER", 2),
    ("check-tolerance-not-a-number", lambda c: ["check", _results(c), "--max", "output_rel_l2_max=low"], "is not NAME=NUMBER", 2),
    ("check-tolerance-unknown-metric", lambda c: ["check", _results(c), "--min", "task.top9=0.5"], "has no metric 'task.top9'", 2),
    ("check-require-pass-unknown-precision", lambda c: ["check", _results(c), "--require-pass", "int4"],
     "has no int4 candidate", 2),
    ("check-baseline-missing", lambda c: ["check", _results(c), "--baseline", c.root / "nobase"],
     "no such results.json or report folder", 2),
    ("check-baseline-previous-without-store", lambda c: ["check", _results(c), "--baseline", "previous", "--store",
                                                         c.root / "none.sqlite"], "--baseline previous needs the results store", 2),
    ("history-store-missing", lambda c: ["history", "--store", c.root / "none.sqlite"], "no results store at", 2),
    ("history-store-not-sqlite", lambda c: ["history", "--store", c.file("text.sqlite", "not a database\n" * 100)],
     "is not a qbench results store", 2),
    ("history-store-of-another-program", lambda c: ["history", "--store", _foreign_sqlite(c)], "a SQLite file of another program", 2),
    ("history-unknown-model", lambda c: ["history", "--store", _empty_store(c), "--model", "resnet"], "no runs of 'resnet'", 2),
    ("diff-unknown-run-id", lambda c: ["diff", "3", "#4", "--store", _empty_store(c)], "no run #3 in", 2),
    ("diff-run-id-without-store", lambda c: ["diff", "3", "4", "--store", c.root / "none.sqlite"], "no results store at", 2),
    ("diff-results-truncated", lambda c: ["diff", _results(c), c.file("cut/results.json", "{")], "is not readable JSON", 2),
    ("diff-out-is-file", lambda c: ["diff", _results(c), _results(c), "--out", c.out / "index.html"], "it is a file, not a folder", 2),
    ("sweep-spec-missing", lambda c: ["sweep", c.root / "none.toml"], "does not exist", 2),
    ("sweep-spec-is-folder", lambda c: ["sweep", c.out], "is a folder; expected a .toml", 2),
    ("sweep-spec-not-toml-or-yaml", lambda c: ["sweep", c.file("s.json", "{}")], "expected a .toml, .yaml or .yml file", 2),
    ("sweep-spec-bad-toml", lambda c: ["sweep", c.file("s.toml", "models = [\n")], "is not valid TOML", 2),
    ("sweep-spec-bad-yaml", lambda c: ["sweep", c.file("s.yaml", "models: [a.onnx\n  b: :\n")], "is not valid YAML", 2),
    ("sweep-spec-not-utf8", lambda c: ["sweep", c.file("s.toml", b"\xff\xfe models = 3")], "is not readable UTF-8 text", 2),
    ("sweep-spec-list", lambda c: ["sweep", c.file("s.yaml", "- a.onnx\n- b.onnx\n")], "must be a mapping of keys", 2),
    ("sweep-spec-unknown-key", lambda c: ["sweep", _spec(c, "s.toml", 'models = ["MODEL"]\ndata = "data"\nprecision = ["fp16"]\n')],
     "unknown key(s) ['precision']", 2),
    ("sweep-spec-model-missing", lambda c: ["sweep", _spec(c, "s.toml", 'models = ["gone.onnx"]\ndata = "data"\n')],
     "sweep spec: model", 2),
    ("sweep-spec-data-missing", lambda c: ["sweep", _spec(c, "s.toml", 'models = ["MODEL"]\ndata = "nodata"\n')],
     "sweep spec: data folder", 2),
    ("sweep-spec-unknown-precision", lambda c: ["sweep", _spec(c, "s.yaml", "models: [MODEL]\ndata: data\nprecisions: [int4]\n")],
     "unknown precision 'int4'", 2),
    ("sweep-out-is-file", lambda c: ["sweep", _spec(c, "s.toml", 'models = ["MODEL"]\ndata = "data"\nprecisions = ["fp16"]\n'),
                                     "--out", c.out / "index.html"], "it is a file, not a folder", 2),
]


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.delenv("QBENCH_TRT_MODULE", raising=False)
    monkeypatch.chdir(tmp_path)  # default outputs (reports/, *.cache) land here, never in the repo
    return Ctx(tmp_path)


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in CASES])
def test_bad_input(case, ctx):
    _, argv, expected, code = case
    rc, out, err = qbench(*argv(ctx))
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("qbench: error:")]
    assert rc == code, err
    assert len(errors) == 1, err
    assert expected in errors[0], errors[0]
    assert "Traceback" not in err + out and "internal error" not in err
    assert snapshot(ctx.out) == ctx.before  # the previous run's files, untouched
    assert not list(ctx.root.rglob(".*.tmp")), "a temporary file was left behind"


def test_the_corpus_covers_every_command():
    from qbench.cli import cli

    ids = [case[0] for case in CASES] + ["trt-bench-engine-missing"]
    missing = [name for name in cli.commands if not any(i.startswith(name + "-") for i in ids)]
    assert not missing, f"no bad-input case for {missing}"
    assert len(CASES) + 7 >= 40  # the table plus the tests below


# --- cases that need more than one command line


def test_unreadable_data_folder(ctx):
    if os.geteuid() == 0:
        pytest.skip("root reads any folder; the broken-symlink and folder-named-.npy cases cover unreadable entries")
    folder = ctx.data_with("locked", lambda d: np.save(d / "s0.npy", ctx.sample))
    folder.chmod(0)
    try:
        rc, _, err = qbench("run", ctx.model, "--data", folder, "--out", ctx.out)
    finally:
        folder.chmod(0o755)
    assert rc == 2 and err.startswith("qbench: error:") and "Traceback" not in err


def test_foreign_sqlite_store_is_left_untouched(ctx):
    """history/check/diff refuse another program's SQLite file before changing a byte of it (the
    store's switch to WAL mode would rewrite its header)."""
    path = _foreign_sqlite(ctx)
    before = path.read_bytes()
    for argv in (["history"], ["diff", "1", "2"], ["check", "1"]):
        rc, _, err = qbench(*argv, "--store", path)
        assert rc == 2 and "another program" in err and "Traceback" not in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in ctx.root.glob("notes.db*")) == ["notes.db"]  # no -wal/-shm beside it


def test_trt_bench_engine_missing(ctx):
    rc, _, err = qbench("trt-bench", ctx.root / "none.engine", "--model", ctx.model, "--data", ctx.data)
    assert rc == 2 and err.startswith("qbench: error:") and "does not exist" in err


def _hostile_model(root: Path) -> Path:
    """The real classifier with its tensors renamed to HTML/JS, spaces and non-ASCII, saved under a
    hostile file name too."""
    model = onnx.load(str(CLS))
    hostile = '<script>alert("x")</script> tensör 名 <img src=x onerror=alert(1)>'
    renames = {}
    for i, node in enumerate([n for n in model.graph.node if n.op_type != "Constant"][:6]):
        for j, out in enumerate(node.output):
            renames[out] = f"{hostile} {i}.{j}"
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    path = root / "mödel <img src=y onerror=alert(2)> & co.onnx"  # no "/" in a file name
    onnx.save(model, str(path))
    return path


def test_hostile_tensor_and_file_names_are_escaped(ctx):
    model = _hostile_model(ctx.root)
    out = ctx.root / "répört <x>"
    rc, stdout, err = qbench("run", model, "--data", ctx.data, "--out", out, "--precision", "fp16", "--limit", "1", "--quiet")
    assert rc == 0, err
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x onerror" not in html and "<img src=y onerror" not in html
    assert "&lt;img src=y onerror=alert(2)&gt; &amp; co" in html  # the file name is shown, escaped
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    names = {t["tensor"] for c in results["candidates"] for t in c["tensors"]}
    assert any("tensör 名" in n for n in names)  # non-ASCII kept exactly in the machine-readable files


def test_full_output_folder_keeps_previous_files(ctx):
    """A 64 KiB tmpfs (root only) filled by a previous report: the next run fails with one line and the
    previous files stay whole."""
    mnt = ctx.root / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (needs root)")
    try:
        shutil.copytree(ctx.out, mnt / "report")
        (mnt / "filler").write_bytes(b"\0" * (64 * 1024 - 12 * 1024))  # leaves too little room for a report
        before = snapshot(mnt / "report")
        rc, _, err = qbench("run", ctx.model, "--data", ctx.data, "--out", mnt / "report", "--precision", "fp16",
                            "--limit", "1", "--quiet")
        assert rc == 2, err
        assert err.strip().splitlines()[-1].startswith("qbench: error: cannot write") and "No space left" in err
        assert "Traceback" not in err
        assert snapshot(mnt / "report") == before
        assert not list((mnt / "report").rglob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_file_size_limit_is_one_line(ctx):
    """The same disk-full path without root: a process limited in file size (RLIMIT_FSIZE) writes its
    report; the kernel refuses with EFBIG, which must read as one line too."""
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
              "from qbench.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script, "simulate", str(ctx.model), "--precision", "fp16", "-o",
                           str(ctx.out / "model_fp16.onnx")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("qbench: error: cannot write")
    assert "Traceback" not in proc.stderr
    assert snapshot(ctx.out) == ctx.before and not list(ctx.out.glob(".*.tmp"))


@pytest.mark.slow
def test_sigint_during_calibration(ctx, small_data_dir, model_path):
    """A real SIGINT while the calibration pass runs: exit 130, one line, previous outputs intact."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "qbench", "run", str(model_path), "--data", str(small_data_dir),
                             "--out", str(ctx.out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    err = ""
    deadline = time.monotonic() + 120
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    while time.monotonic() < deadline and "calibrating" not in err:
        if sel.select(timeout=1):
            chunk = os.read(proc.stderr.fileno(), 4096).decode("utf-8", "replace")
            if not chunk:
                break
            err += chunk
    assert "calibrating" in err, err
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)[::-1]
    err += rest
    assert proc.returncode == 130, err
    assert "qbench: interrupted" in err and "Traceback" not in err
    assert snapshot(ctx.out) == ctx.before


def test_sigint_during_report_writing(ctx, monkeypatch):
    """SIGINT arriving while the HTML is being written (delivered as KeyboardInterrupt, here raised from
    inside the writer after part of the page is on disk): exit 130 and the previous report intact."""
    import qbench.report.writer as writer

    original = writer.atomic.write_text

    def interrupted(path, text):
        if str(path).endswith("index.html"):
            with writer.atomic.atomic_path(path) as tmp:
                tmp.write_text(text[: len(text) // 2])
                raise KeyboardInterrupt
        return original(path, text)

    monkeypatch.setattr(writer.atomic, "write_text", interrupted)
    rc, _, err = qbench("run", ctx.model, "--data", ctx.data, "--out", ctx.out, "--precision", "fp16", "--limit", "1",
                        "--quiet", "--no-fallback")
    assert rc == 130 and "qbench: interrupted" in err and "Traceback" not in err
    assert (ctx.out / "index.html").read_bytes() == ctx.before["index.html"]
    assert not list(ctx.out.rglob(".*.tmp"))


def test_readme_lists_every_message():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Troubleshooting", 1)[1]
    missing = sorted({expected for _, _, expected, _ in CASES if expected and expected not in section})
    assert not missing, f"README troubleshooting lacks {missing}"
