"""FP16 headroom: how close every tensor comes to float16's largest value, and which parameters
cannot be stored in float16 as they are.

Definitions followed:
- float16 holds finite magnitudes up to 65504 (= (2 - 2**-10) * 2**15); a float32 value rounds to
  inf from 65520 up (the midpoint to the next, unrepresentable, step), and to 0 below 2**-25 (half
  the smallest subnormal, 2**-24; round-half-to-even sends the midpoint itself to 0).
- A tensor's *peak* is max(|min|, |max|) of its FP32 values over the compared samples; its
  *fraction* is peak / 65504. A tensor whose fraction reaches ``fraction`` (default 1/8, i.e. three
  binary orders of magnitude of margin) is an FP16 risk: a brighter image, a longer sequence or an
  FP16-accumulating kernel whose running sum exceeds the final value can take it over the edge.
- A parameter (initializer, or a normalization's epsilon attribute) is a risk when rounding it to
  float16 *unfolded* makes a value inf (overflow) or turns a tensor whose values are all nonzero
  into zeros in part or whole where that changes the op's meaning (a flushed epsilon divides by a
  zero variance). TensorRT normally folds BatchNormalization into the preceding layer in float32,
  so a BN statistic beyond 65504 is harmless *if* the fold happens: the message says which fold
  that rests on.

The analysis reads the FP32 extremes the comparator already measured (``ref_min``/``ref_max`` of a
Comparison's tensor frame), so it costs one pass over the initializers and no model run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from onnx import TensorProto, numpy_helper

from qbench.data import iter_samples
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.runners import OrtRunner
from qbench.simulate.fp16 import ACCUMULATING_OPS, fold_plan, node_name_lookup

FP16_MAX = 65504.0
FP16_OVERFLOW_AT = 65520.0  # float32 values at or above this round to inf
FP16_FLUSH_BELOW = 2.0 ** -25  # nonzero float32 values below this round to 0
DEFAULT_FRACTION = 1 / 8
BN_ROLES = {1: "scale", 2: "bias", 3: "mean", 4: "variance"}
EPSILON_OPS = ("BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization")

TENSOR_COLUMNS = ["index", "tensor", "node", "op_type", "fp32_peak", "fp16_fraction", "risk"]
PARAMETER_COLUMNS = ["parameter", "node", "op_type", "role", "issue", "value", "magnitude", "count", "size", "folded_into"]


@dataclass
class Headroom:
    """The result: ``tensors`` (one row per activation, graph order) and ``parameters`` (one row
    per parameter that overflows or flushes when rounded unfolded)."""

    tensors: pd.DataFrame
    parameters: pd.DataFrame
    fraction: float = DEFAULT_FRACTION
    notes: list[str] = field(default_factory=list)

    @property
    def risky_tensors(self) -> pd.DataFrame:
        return self.tensors[self.tensors["risk"]]

    def risk_names(self) -> list[str]:
        """Node names of every risk (tensor producers, then parameter consumers), each once."""
        names = list(self.risky_tensors["node"]) + list(self.parameters["node"])
        return list(dict.fromkeys(n for n in names if n))

    def findings(self) -> list[dict]:
        out = []
        for _, row in self.parameters.iterrows():
            out.append({"kind": "fp16_parameter", "tensor": row["parameter"], "node": row["node"], "op_type": row["op_type"],
                        "index": None, "severity": "error" if row["issue"] == "overflow" else "warning",
                        "message": parameter_message(row)})
        for _, row in self.risky_tensors.iterrows():
            out.append({"kind": "fp16_headroom", "tensor": row["tensor"], "node": row["node"], "op_type": row["op_type"],
                        "index": int(row["index"]), "severity": "warning",
                        "message": (f"{row['node']} ({row['op_type']}) output {row['tensor']!r} peaks at "
                                    f"{row['fp32_peak']:.6g} in FP32 = {100 * row['fp16_fraction']:.0f} % of the FP16 "
                                    f"maximum 65504 (risk above {100 * self.fraction:.1f} %)")})
        return out

    def summary(self) -> str:
        worst = self.tensors.sort_values("fp16_fraction", ascending=False).head(1)
        head = ("no tensor measured" if worst.empty else
                f"largest FP32 peak {worst.iloc[0]['fp32_peak']:.6g} at {worst.iloc[0]['tensor']!r} "
                f"({100 * worst.iloc[0]['fp16_fraction']:.0f} % of 65504)")
        return (f"FP16 headroom: {head}; {len(self.risky_tensors)} tensor(s) above {100 * self.fraction:.1f} % of the FP16 "
                f"maximum, {len(self.parameters)} parameter(s) that overflow or flush in FP16 when not folded")


def parameter_message(row) -> str:
    fold = (f"; harmless only if TensorRT folds it into {row['folded_into']} in FP32" if row.get("folded_into")
            else "; no layer to fold it into: it is rounded as is" if row["op_type"] == "BatchNormalization" else "")
    what = "becomes inf" if row["issue"] == "overflow" else "flushes to 0"
    return (f"{row['node']} ({row['op_type']}) {row['role']} {row['parameter']!r}: {row['value']} {what} in FP16 "
            f"({row['count']} of {row['size']} value(s)){fold}")


def peaks_from_frame(frame: pd.DataFrame) -> dict[str, float]:
    """tensor -> FP32 peak from a Comparison's tensor frame (``ref_min``/``ref_max`` columns)."""
    lo = frame["ref_min"].astype(float).abs()
    hi = frame["ref_max"].astype(float).abs()
    return dict(zip(frame["tensor"], np.fmax(lo, hi)))


def analyze_headroom(graph: ModelGraph, peaks, fraction: float = DEFAULT_FRACTION) -> Headroom:
    """Headroom of ``graph`` given FP32 ``peaks`` (tensor -> peak, or a Comparison tensor frame)."""
    if not (0 < fraction <= 1):
        raise QbenchError(f"the FP16 risk fraction must lie in (0, 1], not {fraction}")
    if isinstance(peaks, pd.DataFrame):
        peaks = peaks_from_frame(peaks)
    rows = []
    for info in graph.float_tensors:
        peak = peaks.get(info.name)
        if peak is None or not np.isfinite(peak):
            continue
        share = float(peak) / FP16_MAX
        rows.append({"index": info.index, "tensor": info.name, "node": info.node, "op_type": info.op_type,
                     "fp32_peak": float(peak), "fp16_fraction": share, "risk": bool(share >= fraction)})
    tensors = pd.DataFrame(rows, columns=TENSOR_COLUMNS)
    return Headroom(tensors, parameter_risks(graph), fraction)


def _fmt(values: np.ndarray) -> str:
    v = values.reshape(-1)
    if v.size == 1:
        return f"{float(v[0]):.6g}"
    return f"{float(v.min()):.6g} .. {float(v.max()):.6g}"


def parameter_risks(graph: ModelGraph) -> pd.DataFrame:
    """Parameters that cannot be stored in float16 unfolded: overflowing values, tensors whose
    nonzero values all flush to 0 (e.g. a decomposed LayerNorm's epsilon constant), and
    normalization epsilons that flush."""
    folds = dict(fold_plan(graph))
    name_of = node_name_lookup(graph)
    rows = []
    for tensor in graph.model.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        # raw bytes read in place: to_array's copy made this scan cost more than the analysis
        values = (np.frombuffer(tensor.raw_data, dtype="<f4").reshape(tuple(tensor.dims)) if tensor.raw_data
                  else numpy_helper.to_array(tensor))
        if values.size == 0:
            continue
        magnitude = np.abs(values)
        over = magnitude >= FP16_OVERFLOW_AT
        nonzero = magnitude > 0
        flushed = nonzero & (magnitude < FP16_FLUSH_BELOW)
        issue, hit = None, None
        if over.any():
            issue, hit = "overflow", over
        elif flushed.any() and flushed.sum() == nonzero.sum():
            issue, hit = "flush", flushed  # every nonzero value vanishes: the constant's meaning is lost
        if issue is None:
            continue
        for node in graph.consumers.get(tensor.name, []):
            name = name_of(node)
            slot = [i for i, x in enumerate(node.input) if x == tensor.name][0]
            role = BN_ROLES.get(slot, f"input {slot}") if node.op_type == "BatchNormalization" else f"input {slot}"
            rows.append({"parameter": tensor.name, "node": name, "op_type": node.op_type, "role": role, "issue": issue,
                         "value": _fmt(values[hit]), "magnitude": float(magnitude[hit].max()), "count": int(hit.sum()),
                         "size": int(values.size),
                         "folded_into": folds.get(name) or ""})
    for i, node in enumerate(graph.model.graph.node):
        if node.op_type not in EPSILON_OPS:
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), None)
        if eps is not None and 0 < abs(eps) < FP16_FLUSH_BELOW:
            name = graph.node_names[i]
            rows.append({"parameter": f"{name}.epsilon", "node": name, "op_type": node.op_type, "role": "epsilon",
                         "issue": "flush", "value": f"{eps:.6g}", "magnitude": abs(eps), "count": 1, "size": 1,
                         "folded_into": folds.get(name) or ""})
    return pd.DataFrame(rows, columns=PARAMETER_COLUMNS)


def tensor_peaks(graph: ModelGraph, dataset, limit: int | None = None, names=None) -> dict[str, float]:
    """FP32 peaks measured directly (one ONNX Runtime pass), when no comparison is at hand."""
    runner = OrtRunner(graph, name="fp32", capture=names if names is not None else "all")
    peaks: dict[str, float] = {}
    for feed in iter_samples(dataset, limit):
        for name, value in runner.run(feed).items():
            arr = np.asarray(value)
            if arr.dtype.kind != "f" or arr.size == 0:
                continue
            finite = arr[np.isfinite(arr)]
            if finite.size:
                peaks[name] = max(peaks.get(name, 0.0), float(np.abs(finite).max()))
    return peaks


def largest_accumulating(graph: ModelGraph, peaks: dict[str, float], fraction: float = DEFAULT_FRACTION,
                         at_least: int = 3) -> list[str]:
    """Conv/MatMul/Gemm nodes the worst FP16 mode accumulates in float16: every one whose output
    peak reaches ``fraction`` of 65504, and at least the ``at_least`` largest."""
    ranked = sorted(((peaks.get(t.name, 0.0), t.node) for t in graph.tensors
                     if t.op_type in ACCUMULATING_OPS and np.isfinite(peaks.get(t.name, 0.0))), reverse=True)
    chosen = [node for peak, node in ranked if peak >= fraction * FP16_MAX]
    for _, node in ranked[:at_least]:
        if node not in chosen:
            chosen.append(node)
    return chosen
