"""The search's judging part with a scalar input (openWakeWord's silero_vad has a scalar sample
rate): the batched-run check must not index a scalar's batch axis (the zoo's IndexError)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from qbench.data import load_dataset
from qbench.model import ModelGraph
from qbench.search.judging import Reference


def test_reference_with_a_scalar_input_runs_one_sample_at_a_time(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    sr = helper.make_tensor_value_info("sr", TensorProto.FLOAT, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "sr"], ["y"])], "scalar_input", [x, sr], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "m.onnx")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(data / f"s{i}.npz", x=rng.standard_normal((1, 4)).astype(np.float32))
    (data / "manifest.json").write_text(json.dumps({"inputs": {"sr": {"source": "constant", "value": 2.0}}}))
    g = ModelGraph.from_path(tmp_path / "m.onnx")
    ref = Reference(g, load_dataset(data, g.inputs), part="judging part")
    assert ref.batched is False and ref.batch == 1
    assert len(ref.outputs) == 3
    for i in range(3):
        np.testing.assert_allclose(ref.outputs[i]["y"], 2.0 * ref.samples[i]["x"])
