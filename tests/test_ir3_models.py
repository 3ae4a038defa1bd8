"""Old (IR 3) models, as the onnx package ships them: its "light" DenseNet-121 and Inception v2 list
every weight as a graph input too (IR 3 required it), and make their weights with ConstantOfShape
nodes. Both used to fail every INT8 and FP16 run (a sweep over them: 6 of 6 cells failed)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from qbench.model import ModelGraph
from qbench.ranges import Ranges, TensorRange
from qbench.simulate.fp16 import fold_plan
from qbench.simulate.fp16_rewrite import make_fp16_safe
from qbench.simulate.qdq import build_int8_model

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(scope="module")
def inception():
    path = LIGHT / "light_inception_v2.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not in this onnx package")
    raw = onnx.load(str(path))
    assert raw.ir_version == 3 and len(raw.graph.input) > 400  # the weights listed as inputs
    return ModelGraph.from_path(path)


def test_weights_listed_as_inputs_are_weights(inception):
    assert [i.name for i in inception.model.graph.input] == ["data_0"]
    assert inception.model.ir_version >= 4  # the first IR where an initializer need not be an input
    assert [spec.name for spec in inception.inputs] == ["data_0"]
    # the INT8 simulation adds its scales as initializers: the model passes the ONNX checker now
    ranges = Ranges({n: TensorRange(n, 4.0) for n in inception.range_tensors})
    onnx.checker.check_model(build_int8_model(inception, ranges).model)


def test_fp16_rewrite_leaves_computed_weights_alone_and_says_why(inception):
    pairs = [bn for bn, target in fold_plan(inception) if target is not None]
    assert pairs
    # every Conv peaks at FP16's maximum: each pair at risk would be rescaled, were its weights stored
    peaks = {t: 65504.0 for t in inception.range_tensors}
    result = make_fp16_safe(inception, peaks)
    assert not result.scaled and len(result.skipped) == len(pairs)
    assert all("is computed at run time, not a stored parameter" in s for s in result.skipped)
    assert "conv1/7x7_s2_w_0" in result.skipped[0]
    assert len(result.model.graph.node) == len(inception.model.graph.node)  # nothing rewritten
