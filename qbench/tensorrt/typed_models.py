"""ONNX models whose types state the precision, for TensorRT 11.x strongly typed networks.

TensorRT 11 removed the builder's precision flags and implicit INT8: a strongly typed network runs
each layer in the type its ONNX tensors carry. So the FP16 engine is built from a model whose float
weights and activations are float16 (inputs cast on entry, outputs cast back to float32 so callers
see the same I/O as the FP32 model), and the INT8 engine from the Q/DQ model of
``qbench.simulate.build_int8_model``.

``qbench.simulate.build_fp16_model`` is a float32 model that rounds through float16 (for ONNX
Runtime on the CPU); its arithmetic stays float32, so handing it to a strongly typed network would
build an FP32 engine with extra casts. This module makes the float16-typed twin instead, keeping the
same rule for which inputs stay float32 (shape inputs such as Resize scales).
The same conversion to bfloat16 gives the strongly typed form of a BF16 build, and applied to a shipped
explicit model (``<out>/fp8-best/model_qdq.onnx``, ``w4a16-best/``) it types the layers outside the
Q/DQ the way TensorRT 10's FP16 flag would let them run (``float_typed_model``; the type comes from
the formats table's ``trt11_types``).
Polygraphy's loaders parse the model they are given; making the float16-typed twin stays qbench's.
Checked here with the ONNX checker's full type inference; never parsed by a real TensorRT.
"""

from __future__ import annotations

import ml_dtypes
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from qbench.errors import QbenchError
from qbench.model import ModelGraph

import numpy as np

# Inputs whose ONNX type is float32-only or that TensorRT computes as shape tensors.
FLOAT32_SLOTS = {"Resize": (1, 2, 3), "Upsample": (1,)}


# ONNX type name -> (TensorProto element type, numpy dtype the weights are rounded to, lowest opset
# whose operators take it: ONNX admitted bfloat16 for Conv, pooling and most others only in opset 22)
FLOAT_TYPES = {"float16": (TensorProto.FLOAT16, np.float16, 1),
               "bfloat16": (TensorProto.BFLOAT16, ml_dtypes.bfloat16, 22)}


def fp16_typed_model(graph: ModelGraph) -> onnx.ModelProto:
    return float_typed_model(graph, "float16")


def float_typed_model(graph: ModelGraph, type_name: str) -> onnx.ModelProto:
    """The model with its float32 weights, casts and activations in ``type_name`` ("float16" or
    "bfloat16"), float32 I/O kept by casts at the edges; Q/DQ scales are weights and follow."""
    if type_name not in FLOAT_TYPES:
        raise QbenchError(f"no typed model for {type_name!r}; choose from {', '.join(FLOAT_TYPES)}")
    elem, dtype, min_opset = FLOAT_TYPES[type_name]
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    if _opset(model) < min_opset:  # ONNX's own version converter; a model it cannot convert is one line
        try:
            model = version_converter.convert_version(model, min_opset)
        except Exception as exc:  # noqa: BLE001 - the converter raises several types; reported in one line
            raise QbenchError(f"cannot make a {type_name}-typed model for TensorRT 11.x: converting opset "
                              f"{_opset(graph.model)} to {min_opset} failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    g = model.graph
    keep32 = set()
    for node in g.node:
        for slot in FLOAT32_SLOTS.get(node.op_type, ()):
            if slot < len(node.input) and node.input[slot]:
                keep32.add(node.input[slot])
    _fold_batchnorm(model, graph)
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            arr = numpy_helper.to_array(init).astype(dtype)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in g.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT and not any(o in keep32 for o in node.output):
                    attr.i = elem
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(dtype), attr.t.name))
    # float32 graph inputs enter through a Cast to float16; consumers read the cast value
    new_nodes = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT and inp.name not in {i.name for i in g.initializer}:
            half = f"{inp.name}::{type_name}"
            for node in g.node:
                for k, name in enumerate(node.input):
                    if name == inp.name and name not in keep32:
                        node.input[k] = half
            new_nodes.append(helper.make_node("Cast", [inp.name], [half], to=elem, name=f"{inp.name}_to_{type_name}"))
    # outputs leave through a Cast back to float32, under their original names
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{out.name}::{type_name}"
            for node in g.node:
                for k, name in enumerate(node.output):
                    if name == out.name:
                        node.output[k] = half
                for k, name in enumerate(node.input):
                    if name == out.name:
                        node.input[k] = half
            tail.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT, name=f"{out.name}_to_fp32"))
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale float32 annotations; shape inference recomputes them
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise QbenchError(f"cannot make a {type_name}-typed model for TensorRT 11.x: {str(exc).splitlines()[0]}") from None
    return model


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _fold_batchnorm(model: onnx.ModelProto, graph: ModelGraph) -> None:
    """Replace inference BatchNormalization by Mul/Add with folded per-channel factors, computed in
    float64. Before opset 15 BN's statistics must share X's type, and running variances above 65504
    (common) would become inf in float16; TensorRT folds BN the same way before choosing kernels."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    ranks = _ranks(graph)
    nodes = []
    for node in g.node:
        ins = list(node.input)
        if node.op_type != "BatchNormalization" or len(node.output) != 1 or not all(n in inits for n in ins[1:5]):
            nodes.append(node)
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale, bias, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in ins[1:5])
        a = scale / np.sqrt(var + eps)
        b = bias - mean * a
        shape = [a.size] + [1] * max(ranks.get(ins[0], 4) - 2, 0)
        an, bn = f"{node.output[0]}::bn_scale", f"{node.output[0]}::bn_shift"
        g.initializer.extend([numpy_helper.from_array(a.reshape(shape).astype(np.float32), an),
                              numpy_helper.from_array(b.reshape(shape).astype(np.float32), bn)])
        mid = f"{node.output[0]}::bn_mul"
        nodes.append(helper.make_node("Mul", [ins[0], an], [mid], name=f"{node.name or mid}_mul"))
        nodes.append(helper.make_node("Add", [mid, bn], [node.output[0]], name=f"{node.name or mid}_add"))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used or t.name in {o.name for o in g.output}]
    del g.initializer[:]
    g.initializer.extend(kept)


def _ranks(graph: ModelGraph) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(graph.model)
    except Exception:  # noqa: BLE001 - best effort; rank 4 is assumed where unknown
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        if vi.type.tensor_type.HasField("shape"):
            out[vi.name] = len(vi.type.tensor_type.shape.dim)
    return out
