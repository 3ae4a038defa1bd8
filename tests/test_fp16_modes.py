"""FP16 likely/worst modes, headroom analysis, FP16 rewrites and fixes, on real models:
the embedded PP-OCRv4 detector (fails only in the worst mode), rapidocr-onnxruntime's PP-OCRv4
text recognizer (decomposed LayerNorms; passes in both modes), the PP-OCR orientation classifier
with a planted overflow (fails in both), and one-node models for the FP16 accumulation itself."""

from __future__ import annotations

import shlex
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw, ImageFont

from qbench.advise import passes
from qbench.compare.entry import compare_precision
from qbench.compare.headroom import analyze_headroom, parameter_risks, tensor_peaks
from qbench.fp16_fixes import fix_table, precision_flags
from qbench.model import ModelGraph
from qbench.report import CandidateResult
from qbench.runners import OrtRunner
from qbench.simulate import build_fp16_model
from tests.conftest import make_small_data_dir

REPO = Path(__file__).resolve().parents[1]
CLS = REPO / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"

pytestmark = pytest.mark.filterwarnings("ignore:FP16")


def _passes(cmp) -> bool:
    return passes(CandidateResult("fp16", cmp.tensors, cmp.findings, cmp.unmatched, dict(cmp.meta)))


def _text_crop(width: int, text: str) -> np.ndarray:
    """A rendered text line, preprocessed as RapidOCR does for rec/cls: BGR, (x/255 - 0.5)/0.5, NCHW."""
    img = Image.new("RGB", (width, 48), "white")
    ImageDraw.Draw(img).text((6, 8), text, fill="black", font=ImageFont.load_default(size=28))
    x = (np.asarray(img, dtype=np.float32)[:, :, ::-1] / 255 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _rec_path() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"


@pytest.mark.slow
def test_detector_names_bn_variance_and_conv61_and_worst_mode_collapses(tmp_path, model_path):
    from qbench.data import load_dataset
    from qbench.simulate.fp16_rewrite import make_fp16_safe, prove

    graph = ModelGraph.from_path(model_path)
    data = make_small_data_dir(tmp_path / "page", size=640, count=1)  # page.png, as in the GPU trace
    dataset = load_dataset(data, graph.inputs)
    ref = OrtRunner(graph, name="fp32")
    likely = compare_precision(graph, dataset, "fp16", reference=ref, limit=1, progress=False, replay=False)
    worst = compare_precision(graph, dataset, "fp16", fp16_mode="worst", peaks=None, reference=ref, limit=1,
                              progress=False, replay=False)

    params = likely.headroom.parameters
    bn = params[params["node"] == "p2o.BatchNormalization.1"]
    assert list(bn["role"]) == ["variance"] and bn.iloc[0]["issue"] == "overflow"
    assert bn.iloc[0]["folded_into"] == "p2o.Conv.61" and "9.79036e+07" in bn.iloc[0]["value"]
    assert bn.iloc[0]["magnitude"] == pytest.approx(9.79036e7, rel=1e-5)
    from qbench.report.headroom_plot import headroom_along_graph

    assert headroom_along_graph(likely.headroom)[:8] == b"\x89PNG\r\n\x1a\n"
    risky = likely.headroom.risky_tensors.set_index("node")
    assert "p2o.Conv.61" in risky.index and 0.45 < risky.loc["p2o.Conv.61", "fp16_fraction"] < 0.51
    messages = " ".join(f["message"] for f in likely.findings if f["kind"].startswith("fp16_"))
    assert "p2o.BatchNormalization.1" in messages and "p2o.Conv.61" in messages
    assert "p2o.BatchNormalization.1 folded into p2o.Conv.61 in FP32 (statistics not rounded)" in likely.meta["fp16_assumptions"]

    # likely passes; worst reproduces the all-zero probability map seen on the H200 in FP16
    assert _passes(likely)
    out = worst.tensors[worst.tensors["is_output"]].iloc[0]
    assert not _passes(worst) and out["cand_max"] < 1e-3 < out["ref_max"]
    first = worst.tensors[worst.tensors["first_problem"]].iloc[0]
    assert first["node"] == "p2o.BatchNormalization.1"  # the first divergent layer on the GPU too
    assert "p2o.Conv.61" in worst.meta["fp16_accumulated"]

    # the rescale rewrite keeps FP32 and makes the worst mode pass: proof by re-run
    rewrite = make_fp16_safe(graph, tensor_peaks(graph, dataset, limit=1))
    assert rewrite.scaled == {"conv2d_497.tmp_0": 128.0}
    proof = prove(graph, rewrite, dataset, limit=1, accumulate=worst.meta["fp16_accumulated"]).set_index("variant")
    assert proof.loc["rewritten FP32", "max_abs_err"] < 1e-4
    assert proof.loc["original FP16 worst", "cosine"] < 0.5
    assert proof.loc["rewritten FP16 worst", "cosine"] > 0.99 and proof.loc["rewritten FP16 worst", "nonfinite"] == 0
    fixes = fix_table(likely.headroom, rewrite)
    assert set(fixes["node"]) == {"p2o.BatchNormalization.1", "p2o.Conv.61"}
    assert fixes["how"].str.contains("--precisionConstraints=obey").all()


@pytest.mark.slow
def test_recognizer_with_decomposed_layernorm_passes_in_both_modes():
    graph = ModelGraph.from_path(_rec_path())
    assert {"ReduceMean", "Pow", "Sqrt"} <= {n.op_type for n in graph.model.graph.node}  # decomposed LayerNorm
    feeds = [{"x": _text_crop(320, "qbench 2026 FP16")}]
    likely = compare_precision(graph, feeds, "fp16", limit=1, progress=False, replay=False)
    worst = compare_precision(graph, feeds, "fp16", fp16_mode="worst", limit=1, progress=False, replay=False)
    assert _passes(likely) and _passes(worst)
    assert len(worst.meta["fp16_accumulated"]) >= 3  # the FP16 accumulation really ran
    assert likely.headroom.parameters.empty and likely.headroom.risky_tensors.empty


def test_flushed_layernorm_epsilon_is_named():
    graph = ModelGraph.from_path(_rec_path())
    # the epsilon of a decomposed LayerNorm: the constant added to ReduceMean(Pow(x - mean, 2))
    node = next(n for n in graph.model.graph.node if n.op_type == "Add"
                and graph.producer.get(n.input[0]) is not None and graph.producer[n.input[0]].op_type == "ReduceMean"
                and n.input[1] in graph.initializer_names)
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    eps = next(t for t in model.graph.initializer if t.name == node.input[1])
    eps.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(eps).shape, 1e-12, np.float32), eps.name))
    risks = parameter_risks(ModelGraph(model))
    row = risks[risks["parameter"] == node.input[1]].iloc[0]
    assert row["issue"] == "flush" and row["value"] == "1e-12" and row["node"] == node.name
    assert parameter_risks(graph).empty  # the shipped epsilon survives FP16


def _planted_cls(factor_for):
    """The classifier with its largest activation scaled up by a power of two and straight back
    down: FP32 is unchanged, FP16 overflows in between."""
    graph = ModelGraph.from_path(CLS)
    feeds = [{"x": _text_crop(192, "FP16 ok")}]
    peaks = tensor_peaks(graph, feeds)
    target = max((t for t in graph.tensors if t.op_type == "Conv"), key=lambda t: peaks.get(t.name, 0)).name
    factor = factor_for(peaks[target])
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == target:
                node.input[i] = "planted_down"
    up = helper.make_node("Mul", [target, "planted_up_k"], ["planted_up"], name="planted_up")
    down = helper.make_node("Mul", ["planted_up", "planted_down_k"], ["planted_down"], name="planted_down")
    index = [i for i, n in enumerate(model.graph.node) if target in n.output][0]
    model.graph.node.insert(index + 1, down)
    model.graph.node.insert(index + 1, up)
    model.graph.initializer.extend([numpy_helper.from_array(np.array(factor, np.float32), "planted_up_k"),
                                    numpy_helper.from_array(np.array(1 / factor, np.float32), "planted_down_k")])
    return ModelGraph(model, name="cls_planted"), feeds, factor


def test_planted_overflow_fails_in_both_modes():
    planted, feeds, factor = _planted_cls(lambda peak: float(2 ** np.ceil(np.log2(4 * 65504 / peak))))
    ref = OrtRunner(ModelGraph.from_path(CLS), capture=None).run(feeds[0])
    same = OrtRunner(planted, capture=None).run(feeds[0])
    name = planted.output_names[0]
    np.testing.assert_allclose(same[name], ref[name], rtol=1e-5, atol=1e-6)  # FP32 untouched by the plant
    for mode in ("likely", "worst"):
        cmp = compare_precision(planted, feeds, "fp16", fp16_mode=mode, limit=1, progress=False, replay=False)
        assert not _passes(cmp), mode
        risky = cmp.headroom.risky_tensors.set_index("tensor")
        assert risky.loc["planted_up", "fp16_fraction"] > 1  # named, beyond FP16's maximum
        assert cmp.tensors.set_index("tensor").loc["planted_up", "cand_inf"] > 0


def _matmul_model(weight: np.ndarray) -> ModelGraph:
    k, n = weight.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], "mm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              [numpy_helper.from_array(weight.astype(np.float32), "w")])
    return ModelGraph.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def _half_accumulate(a: np.ndarray, w: np.ndarray, chunk: int) -> np.ndarray:
    """Oracle: float32 partial sums over chunks of the reduction, each rounded to float16, added
    one by one in float16 (every addition rounded)."""
    a16 = a.astype(np.float16).astype(np.float32)
    w16 = w.astype(np.float16).astype(np.float32)
    total = None
    for start in range(0, w.shape[0], chunk):
        part = (a16[:, start:start + chunk] @ w16[start:start + chunk]).astype(np.float16)
        total = part if total is None else (total + part).astype(np.float16)
    return total.astype(np.float32)


def test_fp16_accumulation_matches_oracle_and_overflows_in_the_running_sum():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (64, 8)).astype(np.float32)
    a = rng.normal(0, 1, (1, 64)).astype(np.float32)
    g = _matmul_model(w)
    sim = build_fp16_model(g, mode="worst", accumulate=["mm"])
    got = OrtRunner(sim.model, capture=None, optimize=False).run({"a": a})["y"]
    np.testing.assert_allclose(got, _half_accumulate(a, w, 16), rtol=1e-3, atol=1e-3)

    # +64000 after the first 16 products, +128000 after 32: inf, though the whole sum is 0
    w = np.concatenate([np.full((32, 1), 4000.0), np.full((32, 1), -4000.0)]).astype(np.float32)
    g = _matmul_model(w)
    ones = {"a": np.ones((1, 64), np.float32)}
    likely = OrtRunner(build_fp16_model(g).model, capture=None, optimize=False).run(ones)["y"]
    worst = OrtRunner(build_fp16_model(g, mode="worst", accumulate=["mm"]).model, capture=None, optimize=False).run(ones)["y"]
    assert likely[0, 0] == 0 and np.isinf(worst[0, 0])


def test_grouped_conv_chunks_sum_to_the_conv():
    """The masks carve the reduction of a grouped, strided Conv exactly: in float16 accumulation the
    result stays within float16 rounding of the FP32 conv (real classifier weights)."""
    graph = ModelGraph.from_path(CLS)
    conv = next(n for n in graph.model.graph.node if n.op_type == "Conv" and any(
        a.name == "group" and a.i > 1 for a in n.attribute))
    w = graph.initializer(conv.input[1])
    feeds = [{"x": _text_crop(192, "conv")}]
    fp32 = OrtRunner(graph, capture=[conv.output[0]]).run(feeds[0])[conv.output[0]]
    sim = build_fp16_model(graph, mode="worst", accumulate=[conv.name])
    assert sim.accumulated == [conv.name] and w.shape[1] * w.shape[2] * w.shape[3] > 1
    got = OrtRunner(sim.model, capture=[conv.output[0]], optimize=False).run(feeds[0])[conv.output[0]]
    scale = np.abs(fp32).max()
    assert np.abs(got - fp32).max() <= 0.02 * scale


def test_bad_mode_and_accumulate_outside_worst_are_errors():
    from qbench.errors import QbenchError

    g = _matmul_model(np.ones((4, 2), np.float32))
    with pytest.raises(QbenchError, match="FP16 mode"):
        build_fp16_model(g, mode="best")
    with pytest.raises(QbenchError, match="worst mode"):
        build_fp16_model(g, accumulate=["mm"])
    with pytest.raises(QbenchError, match="no node named"):
        build_fp16_model(g, mode="worst", accumulate=["nope"])
    with pytest.raises(QbenchError, match="fraction"):
        analyze_headroom(g, {}, fraction=0)


def test_precision_flags_are_deployable():
    flags = precision_flags(["p2o.Conv.61", "odd name,1"], "my model.onnx")
    argv = shlex.split(flags["trtexec"])
    assert argv[:3] == ["trtexec", "--onnx=my model.onnx", "--fp16"] and "--precisionConstraints=obey" in argv
    assert "--layerPrecisions=p2o.Conv.61:fp32,odd name,1:fp32" in argv
    argv = shlex.split(flags["polygraphy"])
    i = argv.index("--layer-precisions")
    assert argv[i + 1:i + 3] == ["p2o.Conv.61:float32", "odd name,1:float32"] and "obey" in argv

    # the TensorRT 10 snippet, run against a stand-in network: only the named layers are constrained
    class Layer:
        def __init__(self, name):
            self.name, self.precision, self.num_outputs, self.outputs = name, None, 2, {}

        def set_output_type(self, j, t):
            self.outputs[j] = t

    layers = [Layer("p2o.Conv.61"), Layer("other")]
    flags_set = []
    trt = types.SimpleNamespace(float32="FP32", BuilderFlag=types.SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY"))
    namespace = {"network": types.SimpleNamespace(num_layers=2, get_layer=layers.__getitem__),
                 "config": types.SimpleNamespace(set_flag=flags_set.append)}
    code = flags["tensorrt"].replace("import tensorrt as trt  # TensorRT 10", "")
    exec(code, {"trt": trt, **namespace})  # noqa: S102 - our own generated snippet
    assert flags_set == ["FP16", "OBEY"]
    assert layers[0].precision == "FP32" and layers[0].outputs == {0: "FP32", 1: "FP32"}
    assert layers[1].precision is None and layers[1].outputs == {}


def test_pipeline_both_modes_on_classifier(tmp_path):
    from qbench.pipeline import RunConfig, run_pipeline

    data = tmp_path / "data"
    data.mkdir()
    for i, text in enumerate(["FP16 ok", "qbench"]):
        np.save(data / f"s{i}.npy", _text_crop(192, text))
    # two samples leave the judge's interval wide (0.34-1.00): a tolerance below it lets FP16 pass, so
    # the recommendation (and its FP16 assumption sentence) is FP16 rather than an inconclusive FP32
    cfg = RunConfig(model=CLS, data=data, out=tmp_path / "out", precisions=("fp16",), fp16_mode="both",
                    compare_limit=2, calib_limit=2, progress=False, store=tmp_path / "q.sqlite",
                    task="classify", task_options={"min_agreement": 0.3})
    outcome = run_pipeline(cfg, echo=lambda m: None)
    assert set(outcome.comparisons) == {"fp16", "fp16-worst"}
    assert "accumulate in FP32 (qbench's likely FP16 mode)" in outcome.recommendation.reason
    page = outcome.report.read_text()
    assert "FP16 headroom and assumptions" in page and "fp16-worst" in page
    assert (tmp_path / "out" / "fp16_headroom.csv").is_file()
    import json

    results = json.loads((tmp_path / "out" / "results.json").read_text())  # the report says it too
    assert "This FP16 verdict assumes" in results["recommendation"]["reason"]


def test_cli_fp16_mode_errors(tmp_path, capsys):
    from qbench.cli import main

    assert main(["compare", str(CLS), "--candidate", str(CLS), "--fp16-mode", "worst"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fp16-mode only applies to --precision fp16" in err
    assert main(["run", str(CLS), "--data", str(tmp_path), "--fp16-mode", "best"]) != 0
    assert "best" in capsys.readouterr().err


def test_bench_headroom_smoke(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_headroom", REPO / "benchmarks" / "bench_headroom.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    ratio = float(out.split("ratio (plain + headroom step) / plain = ")[1].split()[0])
    assert ratio >= 1.0 and "parameter risk" in out
