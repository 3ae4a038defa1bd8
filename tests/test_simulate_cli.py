"""``qbench simulate`` end to end on the default model."""

from __future__ import annotations

import onnx
import onnxruntime as ort

from qbench.cli import main
from qbench.ranges import Ranges, TensorRange


def test_simulate_int8_and_fp16_files(model_path, graph, tmp_path, capsys):
    ranges = Ranges({n: TensorRange(n, 8.0) for n in ["x"] + [t.name for t in graph.float_tensors]})
    cache = ranges.write(tmp_path / "calib.cache")
    out8 = tmp_path / "int8.onnx"
    assert main(["simulate", str(model_path), "--ranges", str(cache), "--precision", "int8", "-o", str(out8)]) == 0
    model = onnx.load(str(out8))
    onnx.checker.check_model(model)
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    ort.InferenceSession(str(out8), providers=["CPUExecutionProvider"])  # loads with default (all) optimisations

    out16 = tmp_path / "fp16.onnx"
    assert main(["simulate", str(model_path), "--precision", "fp16", "--keep-float", "p2o.Conv.0", "-o", str(out16)]) == 0
    assert any(n.op_type == "Cast" for n in onnx.load(str(out16)).graph.node)
    assert "1 names kept in float" in capsys.readouterr().out


def test_simulate_user_errors_are_one_line(model_path, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert main(["simulate", str(model_path), "--precision", "int8", "-o", str(out)]) == 2
    assert main(["simulate", str(model_path), "--precision", "fp16", "--keep-float", "nope", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("qbench: error:") for line in err)
    assert not out.exists()
