"""Pair the reference's tensors with the candidate's, by original ONNX name, in graph order.

Every runner reports activations under the ORIGINAL tensor names (a simulated model keeps them for
the values the deployed engine would hold; TensorRT keeps the names that survive fusion), so
matching is by name. What cannot be matched is listed with the reason, never silently dropped.
"""

from __future__ import annotations

import numpy as np

from qbench.model import ModelGraph, TensorInfo


def match_tensors(graph: ModelGraph, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray],
                  names: list[str] | None = None) -> tuple[list[TensorInfo], list[tuple[str, str]]]:
    """The float tensors of ``graph`` that both runs produced with equal shapes (graph order), and
    ``(tensor, reason)`` for the rest."""
    wanted = set(names) if names is not None else None
    matched: list[TensorInfo] = []
    unmatched: list[tuple[str, str]] = []
    for info in graph.float_tensors:
        if wanted is not None and info.name not in wanted:
            continue
        reason = mismatch_reason(info.name, ref, cand)
        if reason:
            unmatched.append((info.name, reason))
        else:
            matched.append(info)
    return matched, unmatched


def mismatch_reason(name: str, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> str:
    """Why ``name`` cannot be compared in this sample, or "" when it can."""
    if name not in ref:
        return "not captured by reference"
    if name not in cand:
        return "not captured by candidate (fused away or renamed)"
    r, c = ref[name], cand[name]
    if np.shape(r) != np.shape(c):
        return f"shape mismatch {tuple(np.shape(r))} (reference) vs {tuple(np.shape(c))} (candidate)"
    for side, arr in (("reference", r), ("candidate", c)):
        kind = np.asarray(arr).dtype.kind
        if kind not in "fiub":
            return f"dtype {np.asarray(arr).dtype} on the {side} side cannot be compared numerically"
    return ""
