"""Turn per-tensor metrics into findings: what is wrong, where it first appears, who caused it.

Pure functions over the comparison frame, so the rules are easy to read and to test.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

STATUSES = ("ok", "zero", "nonfinite", "divergent")


@dataclass(frozen=True)
class Thresholds:
    """When a tensor counts as divergent: cosine below ``min_cosine`` OR relative L2 error above
    ``max_rel_l2``, unless no value differs by more than ``atol``. The same rule judges a node
    replayed alone (introduced vs inherited)."""

    min_cosine: float = 0.9
    max_rel_l2: float = 0.5
    # cosine and relative error are ratios: on a (nearly) all-zero reference, such as a probability
    # map of an image with nothing to detect, 1e-8 of noise scores cosine 0. An absolute floor keeps
    # such tensors from being called divergent.
    atol: float = 1e-4

    def to_dict(self) -> dict:
        return asdict(self)


def status_of(m: dict, th: Thresholds) -> str:
    """One tensor's status from its metrics (aggregate, per-sample or isolated). Most specific first:
    NaN/Inf the reference does not have, then all-zero output where the reference is not, then
    divergence."""
    if m.get("cand_nan", 0) + m.get("cand_inf", 0) > m.get("ref_nan", 0) + m.get("ref_inf", 0):
        return "nonfinite"
    if m["cand_zero_frac"] == 1.0 and m["ref_zero_frac"] < 1.0:
        return "zero"
    if m.get("max_abs_err", math.inf) <= th.atol:
        return "ok"
    cos, rel = m["cosine"], m["rel_l2"]
    if (not math.isnan(cos) and cos < th.min_cosine) or (not math.isnan(rel) and rel > th.max_rel_l2):
        return "divergent"
    return "ok"


def error_score(m: dict) -> float:
    """How much error a tensor carries, for ranking: 1 - cosine, at least the relative L2 error
    (capped), and the maximum for zero or non-finite output."""
    if m.get("cand_nan", 0) + m.get("cand_inf", 0) > m.get("ref_nan", 0) + m.get("ref_inf", 0):
        return 2.0
    cos, rel = m.get("cosine", math.nan), m.get("rel_l2", math.nan)
    score = 0.0 if math.isnan(cos) else 1.0 - cos
    if not math.isnan(rel):
        score = max(score, min(rel, 2.0))
    return score


_MESSAGES = {
    "zero": "{tensor} ({op_type} {node}) is all zeros in the candidate but not in the reference (reference zeros {ref_zero_frac:.1%})",
    "nonfinite": "{tensor} ({op_type} {node}) holds {cand_nan} NaN and {cand_inf} Inf values in the candidate (reference: {ref_nan} / {ref_inf})",
    "divergent": "{tensor} ({op_type} {node}) diverges: cosine {cosine:.4f}, relative L2 error {rel_l2:.3g}, SQNR {sqnr_db:.1f} dB",
}


def _finding(kind: str, row, severity: str, message: str) -> dict:
    return {"kind": kind, "tensor": row["tensor"], "node": row["node"], "op_type": row["op_type"],
            "index": int(row["index"]), "severity": severity, "message": message}


def status_findings(frame: pd.DataFrame) -> list[dict]:
    """One finding per flagged tensor plus the first problem in graph order."""
    findings = []
    flagged = frame[frame["status"] != "ok"]
    for _, row in flagged.iterrows():
        kind = row["status"]
        severity = "error" if kind in ("zero", "nonfinite") or row["is_output"] else "warning"
        findings.append(_finding(kind, row, severity, _MESSAGES[kind].format(**row.to_dict())))
    if len(flagged):
        first = flagged.iloc[0]
        downstream = len(flagged) - 1
        findings.insert(0, _finding(
            "first_problem", first, "error",
            f"first problem in graph order: {first['tensor']} ({first['op_type']} {first['node']}, tensor #{int(first['index'])}) "
            f"is {first['status']}; " + (f"{downstream} later tensor(s) are flagged too" if downstream else "no later tensor is flagged")))
    return findings


def error_growth(rows: pd.DataFrame, inputs_of) -> dict[str, float]:
    """For each flagged row: its error score minus the worst score among its inputs. A tensor no
    worse than its inputs most likely inherited its error; a large growth marks where error is born.
    ``inputs_of``: tensor -> the names its producer reads."""
    score = {r["tensor"]: error_score(r) for r in rows.to_dict("records")}
    gain = {}
    for t in rows.loc[rows["status"] != "ok", "tensor"]:
        upstream = [score[i] for i in inputs_of.get(t, []) if i in score]
        gain[t] = score[t] - (max(upstream) if upstream else 0.0)
    return gain


def select_for_replay(frame: pd.DataFrame, inputs_of: dict[str, list[str]], limit: int) -> list[str]:
    """Which flagged tensors to replay when there are too many: the first problem and the first of
    each status always, then those whose error grows most over their inputs' error (a tensor no
    worse than its inputs most likely inherited its error)."""
    flagged = frame[frame["status"] != "ok"]
    if flagged.empty or limit <= 0:
        return []
    must = [flagged.iloc[0]["tensor"]]
    for status in ("zero", "nonfinite", "divergent"):
        hit = flagged[flagged["status"] == status]
        if len(hit):
            must.append(hit.iloc[0]["tensor"])
    gain = error_growth(frame, inputs_of)
    chosen = list(dict.fromkeys(must))
    for t in sorted(gain, key=lambda t: -gain[t]):
        if len(chosen) >= limit:
            break
        if t not in chosen:
            chosen.append(t)
    order = {t: i for i, t in enumerate(frame["tensor"])}
    return sorted(chosen[:max(limit, len(set(must)))], key=order.get)


def origin_of(isolated: dict, th: Thresholds) -> str:
    return "inherited" if status_of(isolated, th) == "ok" else "introduced"


def annotate_first_problem(findings: list[dict], frame: pd.DataFrame, replay_note: str) -> None:
    """Say in the first-problem finding whether its node introduced the error, and how far the
    replay went (it is capped, so a reader knows what was and was not checked)."""
    for f in findings:
        if f["kind"] != "first_problem":
            continue
        origin = frame.loc[frame["tensor"] == f["tensor"], "origin"].iloc[0]
        if origin == "introduced":
            f["message"] += "; replayed alone on reference inputs, its node introduces the error"
        elif origin == "inherited":
            f["message"] += ("; replayed alone on reference inputs its node is clean, so small errors of its inputs "
                             "add up or are amplified here")
        if replay_note:
            f["message"] += f" ({replay_note})"


def culprit_findings(frame: pd.DataFrame) -> list[dict]:
    """One finding per ranked culprit, best-ranked first."""
    ranked = frame[frame["culprit_rank"].notna()].sort_values("culprit_rank")
    out = []
    for _, row in ranked.iterrows():
        out.append(_finding(
            "culprit", row, "error",
            f"#{int(row['culprit_rank'])} culprit: {row['op_type']} {row['node']} introduces the error of {row['tensor']} "
            f"(alone on reference inputs: cosine {row['isolated_cosine']:.4f}, relative L2 {row['isolated_rel_l2']:.3g})"))
    return out


def shared_scale_findings(frame: pd.DataFrame, shared_scale: dict[str, str], min_zero_frac: float = 0.5) -> list[dict]:
    """Culprits that are Concats: a flagged Concat input quantized at the Concat output's scale
    (``shared_scale``: input tensor -> Concat node, as the INT8 simulation records it) whose values
    mostly round to zero there. Its own node is not to blame (replayed alone it fails only because
    of the borrowed scale); the Concat's shared scale is. Needs the ``amax``/``int8_zero_frac``
    columns measured at the scale the simulation applied (the Concat's)."""
    out = []
    if not shared_scale or "int8_zero_frac" not in frame:
        return out
    for _, row in frame[frame["tensor"].isin(list(shared_scale)) & (frame["status"] != "ok")].iterrows():
        zero = row["int8_zero_frac"]
        if not (zero >= min_zero_frac):
            continue
        concat = shared_scale[row["tensor"]]
        own = max(abs(row["ref_min"]), abs(row["ref_max"]))
        f = _finding("shared_scale", row, "error",
                     f"culprit: Concat {concat} gives its input {row['tensor']} ({row['op_type']} {row['node']}) its own "
                     f"INT8 scale: the input's range is max |x| {own:.4g}, the Concat's amax {row['amax']:.4g} "
                     f"(step {row['amax'] / 127:.4g}), so {zero:.1%} of its nonzero values round to 0. "
                     f"Fix: keep the Concat in float (--keep-float {concat}), or split the head (boxes and scores as "
                     f"separate outputs, not one concatenated tensor), or calibrate with minmax")
        f.update(node=concat, op_type="Concat")
        out.append(f)
    return out
