"""The calibration batch size: TensorRT's ``getBatchSize``, here chosen as the largest batch whose
activations fit a memory budget.

Why not 1: TensorRT's histograms take their range from the first batch and double it when a later
batch exceeds it, so results depend on batch size and order, and NVIDIA's guide recommends one large
batch. Calibration holds about two batches of every float activation at once (ONNX Runtime computes
batch i+1 while batch i is folded), plus the session's own buffers: ``3 x`` one batch's activations
must fit the budget.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import onnx

from qbench.model import ModelGraph

log = logging.getLogger("qbench")

GIB = 1 << 30
DEFAULT_MEMORY_BUDGET = 2 * GIB  # capped further at a quarter of the memory available now
_ALIVE = 3  # batches' worth of activations alive at once (see the module docstring)


def available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def sample_shapes(dataset) -> list[dict[str, tuple]] | None:
    """Each sample's input shapes without decoding them where that is cheap (images: the manifest's
    size; .npy: the header), or None when that cannot be known without loading every sample."""
    if dataset.kind == "images":
        (name, pre), = dataset.preprocess.items()
        shape = pre(dataset.files[0]).shape  # one image decoded: its preprocessed shape is every image's
        return [{name: tuple(shape)}] * len(dataset.files)
    shapes = []
    for path in dataset.files:
        if str(path).endswith(".npy") and len(dataset.inputs) == 1:
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError):
                return None
            shape = tuple(arr.shape)
            if len(shape) == len(dataset.inputs[0].shape or ()) - 1:
                shape = (1,) + shape
            shapes.append({dataset.inputs[0].name: shape})
        else:
            return None
    return shapes


def activation_bytes(graph: ModelGraph, shapes: dict[str, tuple]) -> int | None:
    """Bytes of every float activation for one sample with these input shapes, by ONNX shape
    inference; tensors whose size stays unknown count as the mean of the known ones."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, size in zip(dims, (1,) + tuple(shapes[inp.name][1:])):
                d.ClearField("dim_param")
                d.dim_value = int(size)
    del model.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # models shape inference cannot follow: the caller falls back to a small batch
        return None
    sizes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        t = vi.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT or not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if dims and all(d is not None and d > 0 for d in dims):
            sizes[vi.name] = int(np.prod(dims)) * 4
    names = graph.range_tensors
    known = [sizes[n] for n in names if n in sizes]
    if not known:
        return None
    return int(sum(known) + (len(names) - len(known)) * (sum(known) / len(known)))


def auto_batch_size(graph: ModelGraph, dataset, limit: int | None = None, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """The largest batch (at most every sample) whose activations fit ``budget``; 1 when the model's
    batch dimension is fixed at 1, when samples differ in shape, or when the size cannot be estimated."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n <= 1:
        return 1
    fixed = [spec.shape[0] for spec in graph.inputs if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0]
    if fixed:
        return int(min(fixed))  # an explicit batch dimension: TensorRT calibrates with exactly that batch
    shapes = sample_shapes(dataset)
    if shapes is None or any(s != shapes[0] for s in shapes[:n]):
        return 1  # unequal shapes cannot be stacked into one batch
    per_sample = activation_bytes(graph, shapes[0])
    if per_sample is None:
        log.info("qbench: calibration batch size 1 (activation sizes unknown to shape inference)")
        return 1
    avail = available_memory()
    if avail:
        budget = min(budget, avail // 4)
    size = max(1, min(n, budget // (_ALIVE * max(per_sample, 1))))
    return int(size)
