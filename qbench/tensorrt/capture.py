"""Layer-wise capture from a TensorRT engine, for the comparator. Three modes, and the report must
say which one produced the data, because they measure different engines:

- "unfused": ``mark_unfused_tensors_as_debug_tensors`` (10.x and 11.x). Keeps the deployed
  fusions, so the numbers are those of the engine you ship; but only tensors that survive fusion
  are emitted, under TensorRT's internal names (the inspector's), so some ONNX tensors have no match.
- "debug": ``mark_debug`` on the chosen ONNX tensors, delivered through an ``IDebugListener`` under
  their ONNX names. TensorRT documents that marked debug tensors can prevent fusions across them.
- "outputs": the classic mode, every chosen tensor marked as a network output. This changes the
  engine (fusions broken, extra copies, possibly other tactics and precisions): it shows where error
  appears, not exactly the error of the deployed engine.

Checked here: the names exist in the real 10.16/11.4 bindings; the listener class subclasses the real
``trt.IDebugListener`` and copies host-located data through a real capsule. NEVER run: a real engine
emitting debug tensors.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

from qbench.errors import QbenchError

NOTES = {
    "none": "no layer-wise capture (network outputs only)",
    "unfused": "debug tensors of the unfused graph (mark_unfused_tensors_as_debug_tensors): deployed fusions kept; "
               "internal TensorRT names, fused tensors absent",
    "debug": "debug tensors (mark_debug + IDebugListener): ONNX names; TensorRT may skip fusions across marked tensors",
    "outputs": "every tensor marked as a network output: the engine differs from the deployed one (fusions broken)",
}


@dataclass
class CapturePlan:
    mode: str
    marked: list[str] = field(default_factory=list)
    note: str = ""


def plan_for_cached(mode: str) -> CapturePlan:
    return CapturePlan(mode, [], NOTES[mode] + " (engine from the engine cache)")


def _layer_outputs(network):
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            yield layer.get_output(j)


def mark_network(network, mode: str, names: list[str] | None = None) -> CapturePlan:
    """Mark tensors of ``network`` for ``mode``; return what was marked."""
    plan = CapturePlan(mode, [], NOTES[mode])
    if mode == "none":
        return plan
    if mode == "unfused":
        if not network.mark_unfused_tensors_as_debug_tensors():
            raise QbenchError("TensorRT refused to mark unfused tensors as debug tensors")
        return plan
    wanted = set(names) if names else None
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    for tensor in _layer_outputs(network):
        if tensor.name in outputs or (wanted is not None and tensor.name not in wanted):
            continue
        ok = network.mark_debug(tensor) if mode == "debug" else (network.mark_output(tensor) or True)
        if ok:
            plan.marked.append(tensor.name)
    if wanted is not None:
        missing = wanted - set(plan.marked) - outputs
        if missing:
            plan.note += f"; {len(missing)} requested tensors not found in the TensorRT network"
    return plan


def capsule_pointer(addr) -> int:
    """The address inside the capsule TensorRT passes to process_debug_tensor (ints pass through)."""
    if isinstance(addr, int):
        return addr
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    name = api.PyCapsule_GetName(addr)
    ptr = api.PyCapsule_GetPointer(addr, name)
    if not ptr:
        raise QbenchError("debug tensor callback gave an empty address")
    return int(ptr)


def make_debug_listener(trt, backend):
    """An ``IDebugListener`` that copies every debug tensor it is shown into ``.tensors``."""

    class _Collector(trt.IDebugListener):
        def __init__(self):
            trt.IDebugListener.__init__(self)
            self.tensors: dict[str, np.ndarray] = {}
            self.skipped: dict[str, str] = {}

        def process_debug_tensor(self, addr, location, type, shape, name, stream):  # noqa: A002 - TensorRT's names
            try:
                dtype = np.dtype(trt.nptype(type))
            except TypeError:
                self.skipped[name] = f"dtype {type} has no numpy equivalent"
                return
            arr = np.empty(tuple(int(d) for d in shape), dtype=dtype)
            ptr = capsule_pointer(addr)
            if location == trt.TensorLocation.HOST:
                ctypes.memmove(arr.ctypes.data, ptr, arr.nbytes)
            else:
                backend.dtoh(arr, ptr, int(stream))  # the address is valid only during this callback
            self.tensors[name] = arr

    return _Collector()
