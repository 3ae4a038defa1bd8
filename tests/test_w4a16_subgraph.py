"""W4A16 keeps the weights that If/Loop bodies read from the outer graph (openWakeWord's wake-word
models read their verifier head's weights inside an If): the zoo's "Nodes in a graph must be
topologically sorted" failure was those weights dropped as unused."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qbench.model import ModelGraph
from qbench.simulate import formats


def _model():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((128, 8)).astype(np.float32), "w")
    v = numpy_helper.from_array(rng.standard_normal((1, 8)).astype(np.float32), "v")  # read inside the If only
    zero = numpy_helper.from_array(np.zeros((1, 8), np.float32), "zero")
    then_branch = helper.make_graph([helper.make_node("Add", ["y", "v"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 8])])
    else_branch = helper.make_graph([helper.make_node("Identity", ["zero"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 8])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("If", ["cond"], ["out"], then_branch=then_branch, else_branch=else_branch)]
    graph = helper.make_graph(nodes, "if_reads_outer_weight",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128]),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])], [w, v, zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_w4a16_keeps_a_weight_an_if_body_reads_and_runs():
    graph = ModelGraph(_model(), name="if_model")
    sim = formats.get("w4a16").simulate(graph)
    assert "w" in sim.weights  # the MatMul's weight is INT4
    assert "v" in {t.name for t in sim.model.graph.initializer}  # the If body's weight is still there
    session = ort.InferenceSession(sim.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((1, 128), np.float32)
    (out,) = session.run(["out"], {"x": x, "cond": np.array(True)})
    exact = x @ numpy_helper.to_array(graph.model.graph.initializer[0]) + numpy_helper.to_array(graph.model.graph.initializer[1])
    assert np.all(np.isfinite(out)) and np.abs(out - exact).max() < 0.2 * np.abs(exact).max()
