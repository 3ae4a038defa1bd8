"""Choose a precision per model from measured accuracy (and latency, when measured).

The rule a person would apply by hand: take the lowest precision that passes its TASK verdict
(``candidate.task``, a ``qbench.judge.TaskResult``: top-1 agreement, detection F1, mask IoU, CER...
against FP32 and labels, with a confidence interval). A candidate is ``pass``, ``fail`` or
``inconclusive`` exactly as its task result says; new NaN/Inf in an output (the candidate's, not the
reference's) also fails it, because no task metric can be trusted over non-finite outputs. The
output tensor metrics (cosine, rel. L2, zero outputs) stay in the table as diagnosis: they explain
*how* the outputs differ, never *whether* the candidate ships. An inconclusive candidate is never
recommended and is always named, with how many more samples would settle it.

The search's shipped INT8 (``<out>/int8-best``, its calibrator and kept layers, judged on data held
out from its calibration) is one more row, ``int8-best``: when it passes, it is the INT8 answer,
named as such, even where the run's own INT8 candidate (entropy ranges on all samples) does not —
one answer, which the report header, results.json and the console all print.

When latencies are known, say how much faster the choice is, and prefer a higher precision only if
it is measurably faster (TensorRT sometimes runs FP16 faster than INT8 with reformat layers). If
nothing passes, keep FP32.

A candidate without a task result (a caller that compared tensors only, e.g. the fallback search's
intermediate steps) is judged by the old output-tensor thresholds, and its row says so.

This module reads candidates by attribute (precision, tensors, findings, latency_ms, task) and
never imports the report package, which comes after it in the flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from qbench.errors import QbenchError
from qbench.simulate import formats

# Lower number = cheaper to run = tried first: each format's cost from the table of formats
# (qbench.simulate.formats), plus the names of precisions that are not simulated formats.
PRECISION_RANK = {**{name: fmt.cost for name, fmt in formats.FORMATS.items()},
                  "half": 1, "tf32": 2, "fp32": 3, "float": 3}
# A faster higher precision wins only when it beats the lower one by this factor: latencies jitter.
SPEED_MARGIN = 0.95
TABLE_COLUMNS = ["precision", "task", "task_metric", "task_value", "task_ci_low", "task_ci_high", "more_samples",
                 "output_cosine_min", "output_rel_l2_max", "output_nonfinite", "output_zero",
                 "problem_tensors", "error_findings", "warning_findings", "latency_ms", "verdict", "judged_by", "why"]
VERDICTS = ("pass", "fail", "inconclusive")


@dataclass
class Thresholds:
    """The output-tensor thresholds: used ONLY for candidates without a task result (see the module
    docstring); with one, the task judge's own tolerances decide."""

    min_cosine: float = 0.99
    max_rel_l2: float | None = None
    allow_nonfinite: bool = False
    allow_zero: bool = False
    max_error_findings: int | None = None  # None: findings inside the graph do not veto by themselves

    @classmethod
    def from_any(cls, value) -> "Thresholds":
        if value is None:
            return cls()
        if isinstance(value, Thresholds):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise QbenchError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
            return cls(**value)
        raise QbenchError(f"thresholds must be a dict or Thresholds, not {type(value).__name__}")


SHIPPED = "int8-best"  # the search's deployable INT8 configuration (qbench.search.deploy.FOLDER)


@dataclass
class Shipped:
    """The INT8 configuration the search wrote to ``<out>/int8-best`` and its verdict on the
    judging part (held out from its calibration). Built by ``shipped_from_search``."""

    calibrator: str
    keep_float: tuple = ()
    verdict: str = ""
    reason: str = ""
    task: str = ""
    primary: str = ""
    value: float = math.nan
    interval: tuple | None = None
    more_samples: int | None = None
    part: str = ""
    folder: str = ""

    def describe(self) -> str:
        kept = f" and {len(self.keep_float)} layer(s) kept in float" if self.keep_float else ""
        return f"INT8 with {self.calibrator} ranges{kept} ({SHIPPED}, judged on the {self.part})"

    def to_dict(self) -> dict:
        return {"name": SHIPPED, "calibrator": self.calibrator, "keep_float": list(self.keep_float),
                "verdict": self.verdict, "reason": self.reason, "part": self.part, "folder": self.folder}


def shipped_from_search(outcome) -> Shipped | None:
    """The search's shipped configuration (``qbench.search.SearchOutcome``) as the recommendation
    reads it; None without a search or without a configuration."""
    best = getattr(outcome, "best", None)
    if best is None or getattr(best, "result", None) is None:
        return None
    r = best.result
    return Shipped(calibrator=str(best.calibrator), keep_float=tuple(best.keep_float or ()), verdict=str(r.verdict),
                   reason=str(r.reason), task=str(r.task), primary=str(r.primary),
                   value=_float((r.metrics or {}).get(r.primary)), interval=getattr(r, "interval", None),
                   more_samples=getattr(r, "more_samples", None), part=str(best.part),
                   folder=str(getattr(outcome, "folder", "") or ""))


@dataclass
class Recommendation:
    """The one answer of a run: the report header, results.json and the console all print this
    object (``qbench.pipeline`` computes it once and hands it to ``write_report``)."""

    precision: str
    reason: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    thresholds: Thresholds = field(default_factory=Thresholds)
    shipped: Shipped | None = None  # the search's int8-best, when the run searched

    def to_dict(self) -> dict:
        return {"precision": self.precision, "reason": self.reason, "thresholds": self.thresholds.__dict__,
                "shipped": self.shipped.to_dict() if self.shipped is not None else None,
                "table": self.table.astype(object).where(self.table.notna(), None).to_dict("records")}


def precision_rank(precision: str) -> float:
    """int8 < fp16 < fp32; mixed precisions ("int8+fp16 fallback") sit just above their lowest part."""
    p = precision.lower()
    ranks = [r for key, r in PRECISION_RANK.items() if key in p]
    if not ranks:
        return 1.5  # unknown names sort between FP16 and FP32: neither the boldest nor the safest
    rank = float(min(ranks))
    if len(set(ranks)) > 1 or "mixed" in p or "fallback" in p:
        rank += 0.5
    return rank


def passes(candidate, thresholds: Thresholds | None = None) -> bool:
    """Whether one candidate's outputs meet the thresholds (the default ones when None)."""
    return evaluate(candidate, thresholds or Thresholds())["verdict"] == "pass"


def evaluate(candidate, thresholds: Thresholds) -> dict:
    """One row of the recommendation table: task verdict and metric, output diagnosis, why."""
    diag = _output_diagnosis(candidate)
    has_outputs = diag.pop("_has_outputs")
    task = getattr(candidate, "task", None)
    latency = getattr(candidate, "latency_ms", None)
    row = {"precision": candidate.precision, **diag, "latency_ms": float(latency) if latency is not None else math.nan}
    if task is None:
        verdict, why = _tensor_verdict(diag, has_outputs, thresholds)
        row.update({"task": "", "task_metric": "", "task_value": math.nan, "task_ci_low": math.nan,
                    "task_ci_high": math.nan, "more_samples": math.nan, "verdict": verdict,
                    "judged_by": "output tensors (no task result)", "why": why})
        return row
    verdict = str(task.verdict)
    if verdict not in VERDICTS:
        raise QbenchError(f"{candidate.precision}: task verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    why = str(task.reason)
    if diag["output_nonfinite"] and not thresholds.allow_nonfinite:
        # no task metric can be trusted over NaN/Inf the reference does not have
        why = f"NaN/Inf in {diag['output_nonfinite']} output(s) the FP32 reference does not have; {why}"
        verdict = "fail"
    interval = getattr(task, "interval", None) or (math.nan, math.nan)
    more = getattr(task, "more_samples", None)
    value = (task.metrics or {}).get(task.primary, math.nan)
    row.update({"task": task.task, "task_metric": task.primary,
                "task_value": float(value) if value is not None else math.nan,
                "task_ci_low": _float(interval[0]), "task_ci_high": _float(interval[1]),
                "more_samples": float(more) if more is not None else math.nan,
                "verdict": verdict, "judged_by": f"task: {task.task}", "why": why})
    return row


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _output_diagnosis(candidate) -> dict:
    """Output tensor metrics and finding counts: the diagnosis columns of the table."""
    df = candidate.tensors if candidate.tensors is not None else pd.DataFrame()
    outs = output_rows(df)
    # the worst sample (cosine_min); the all-sample cosine can hide one broken image
    cos = _col(outs, "cosine_min")
    cos = cos.where(cos.notna(), _col(outs, "cosine"))
    rel = _col(outs, "rel_l2")
    status = outs["status"].astype(str) if "status" in outs else pd.Series([""] * len(outs), index=outs.index)
    # only NaN/Inf the reference does not have count against the candidate (the comparator's rule):
    # an FP32 model may produce -inf itself (a log of zero), and FP16 is not to blame for that
    new_nonfinite = (_col(outs, "cand_nan").fillna(0) + _col(outs, "cand_inf").fillna(0)
                     > _col(outs, "ref_nan").fillna(0) + _col(outs, "ref_inf").fillna(0))
    findings = candidate.findings or []
    return {
        "output_cosine_min": float(cos.min()) if cos.notna().any() else math.nan,
        "output_rel_l2_max": float(rel.max()) if rel.notna().any() else math.nan,
        "output_nonfinite": int((new_nonfinite | (status == "nonfinite")).sum()),
        "output_zero": int((status == "zero").sum()),
        "problem_tensors": int(df["status"].astype(str).isin(["zero", "nonfinite", "divergent"]).sum()) if "status" in df else 0,
        "error_findings": sum(1 for f in findings if f.get("severity") == "error"),
        "warning_findings": sum(1 for f in findings if f.get("severity") == "warning"),
        "_has_outputs": not outs.empty,
    }


def _tensor_verdict(diag: dict, has_outputs: bool, thresholds: Thresholds) -> tuple[str, str]:
    """The pre-task rule, for candidates that carry no task result."""
    why = []
    cos_min, rel_max = diag["output_cosine_min"], diag["output_rel_l2_max"]
    if not has_outputs:
        why.append("no output tensors to judge")
    elif math.isnan(cos_min):
        why.append("output cosine unknown")
    elif cos_min < thresholds.min_cosine:
        why.append(f"output cosine (worst sample) {cos_min:.4f} < {thresholds.min_cosine:g}")
    if thresholds.max_rel_l2 is not None and not math.isnan(rel_max) and rel_max > thresholds.max_rel_l2:
        why.append(f"output rel. L2 {rel_max:.3g} > {thresholds.max_rel_l2:g}")
    if diag["output_nonfinite"] and not thresholds.allow_nonfinite:
        why.append(f"NaN/Inf in {diag['output_nonfinite']} output(s)")
    if diag["output_zero"] and not thresholds.allow_zero:
        why.append(f"{diag['output_zero']} output(s) collapsed to zeros")
    if thresholds.max_error_findings is not None and diag["error_findings"] > thresholds.max_error_findings:
        why.append(f"{diag['error_findings']} error findings > {thresholds.max_error_findings}")
    if why:
        return "fail", "no task result; " + "; ".join(why)
    return "pass", f"no task result; outputs meet cosine ≥ {thresholds.min_cosine:g}, finite, not all-zero"


def shipped_row(shipped: Shipped) -> dict:
    """The search's int8-best as a row of the recommendation table (judged by its task verdict on
    the judging part; the search built it, so it has no output-tensor diagnosis here)."""
    interval = shipped.interval or (math.nan, math.nan)
    return {"precision": SHIPPED, "task": shipped.task, "task_metric": shipped.primary, "task_value": shipped.value,
            "task_ci_low": _float(interval[0]), "task_ci_high": _float(interval[1]),
            "more_samples": _float(shipped.more_samples), "output_cosine_min": math.nan, "output_rel_l2_max": math.nan,
            "output_nonfinite": 0, "output_zero": 0, "problem_tensors": 0, "error_findings": 0, "warning_findings": 0,
            "latency_ms": math.nan, "verdict": shipped.verdict if shipped.verdict in VERDICTS else "inconclusive",
            "judged_by": f"task: {shipped.task} (search, {shipped.part})", "why": f"{shipped.describe()}: {shipped.reason}"}


def _rank(row: dict, shipped: Shipped | None) -> float:
    if row["precision"] == SHIPPED and shipped is not None:
        return 0.5 if shipped.keep_float else 0.0  # INT8, or INT8 with layers in float
    return precision_rank(row["precision"])


def recommend(candidates, thresholds=None, shipped: Shipped | None = None) -> Recommendation:
    """The run's one answer (module docstring). ``shipped``: the search's int8-best
    (``shipped_from_search``); it joins the table as the row ``int8-best``, so an INT8 that passes
    only with the calibrator (or the float layers) the search found is the INT8 answer, named as
    such, and a report never recommends FP16 beside a search that says "ship INT8"."""
    th = Thresholds.from_any(thresholds)
    candidates = list(candidates)  # read twice: the table, then the chosen one's meta
    rows = [evaluate(c, th) for c in candidates]
    if shipped is not None and all(r["precision"] != SHIPPED for r in rows):
        rows.append(shipped_row(shipped))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if rows:
        table["rank"] = [_rank(r, shipped) for r in rows]
        table = table.sort_values("rank", kind="stable").drop(columns="rank").reset_index(drop=True)
    # a format that changed no tensor of this model (NVFP4 on a Conv-only net) passes trivially: its
    # engine would run those layers in a higher precision and gain nothing, so it is never the answer
    unchanged = [c.precision for c in candidates if (getattr(c, "meta", None) or {}).get("simulated_tensors") == 0]
    passing = table[(table["verdict"] == "pass") & ~table["precision"].isin(unchanged)]
    fp32 = _fp32_latency(table)

    if passing.empty:
        tried = ", ".join(table["precision"]) if rows else "none"
        unsure = table[table["verdict"] == "inconclusive"]
        reason = (f"Keep FP32: no candidate passed (tried {tried})" +
                  (f"; {', '.join(unsure['precision'])} inconclusive, not a pass." if len(unsure) else "."))
        if rows:
            reason += " " + " ".join(f"{r.precision}: {r.verdict}: {r.why}." for r in table.itertuples())
        reason += _unchanged_note(unchanged) + format_ranking(table)
        return Recommendation("fp32", reason, table, th, shipped)

    choice = passing.iloc[0]
    if choice["precision"] == SHIPPED:
        reason = f"INT8 as the search ships it ({SHIPPED}) is the lowest precision that passes: {choice['why']}"
    else:
        reason = f"{choice['precision'].upper()} is the lowest precision that passes: {choice['why']}"
    reason += "" if reason.endswith(".") else "."
    # A higher precision that also passes and is clearly faster is the better deployment choice.
    if not math.isnan(choice["latency_ms"]):
        faster = passing[passing["latency_ms"] < choice["latency_ms"] * SPEED_MARGIN]
        if len(faster):
            best = faster.loc[faster["latency_ms"].idxmin()]
            reason = (f"{best['precision'].upper()} passes and is faster than {choice['precision'].upper()} "
                      f"({best['latency_ms']:.2f} ms vs {choice['latency_ms']:.2f} ms); {best['why']}.")
            choice = best
    if not math.isnan(choice["latency_ms"]) and fp32 and choice["precision"].lower() != "fp32":
        reason += f" {fp32 / choice['latency_ms']:.2f}× the speed of FP32 ({choice['latency_ms']:.2f} ms vs {fp32:.2f} ms)."
    reason += _keep_float_note(candidates, str(choice["precision"]))
    reason += _unchanged_note(unchanged)
    if choice["precision"] == SHIPPED:
        kept = f" Keeps {len(shipped.keep_float)} layer(s) in float: {', '.join(shipped.keep_float)}." if shipped.keep_float else ""
        reason += kept + (f" Deployable files: {shipped.folder}." if shipped.folder else "")
    reason += format_ranking(table)
    lower = table[table["precision"].map(precision_rank) < precision_rank(choice["precision"])]
    for r in lower.itertuples():
        if r.verdict == "inconclusive":  # named, never silently passed over or taken
            reason += f" {r.precision.upper()} is inconclusive (not recommended until settled): {r.why}."
        elif r.verdict == "fail":
            reason += f" {r.precision.upper()} rejected: {r.why}."
    return Recommendation(str(choice["precision"]), reason, table, th, shipped)


def _unchanged_note(unchanged: list[str]) -> str:
    if not unchanged:
        return ""
    return (f" {', '.join(p.upper() for p in unchanged)} quantizes no layer of this model (none of the layers that "
            "format applies to), so its engine would gain nothing: not taken, whatever its verdict.")


def format_ranking(table: pd.DataFrame) -> str:
    """" Formats by task metric: ..." -- every judged candidate, best task value first, each with its
    verdict and the GPU generation its format needs (the table of formats); "" with fewer than two
    formats or no task metric to rank by."""
    judged = table[table["task_value"].notna()] if "task_value" in table else table.iloc[0:0]
    if len(judged) < 2 or len(set(judged["precision"])) < 2:
        return ""
    parts = []
    for r in judged.sort_values("task_value", ascending=False, kind="stable").itertuples():
        try:
            fmt = formats.get(str(r.precision))
            needs = f"{fmt.generation} or newer, compute capability {fmt.min_cc:g}+"
        except QbenchError:
            needs = "any GPU"
        parts.append(f"{r.precision} {r.task_value:.4g} ({r.verdict}, {needs})")
    metric = str(judged["task_metric"].iloc[0])
    return f" Formats by {metric}: " + ", ".join(parts) + "."


def _keep_float_note(candidates, precision: str) -> str:
    """A mixed candidate (the fallback search's "int8-mixed") is only reproducible with its kept
    names: name them and give the exact flags (the candidate's meta "reproduce" command when set)."""
    import shlex

    meta = next((getattr(c, "meta", None) or {} for c in candidates if c.precision == precision), {})
    kept = list(meta.get("keep_float") or [])
    if not kept:
        return ""
    flags = " ".join(f"--keep-float {shlex.quote(n)}" for n in kept)
    command = meta.get("reproduce") or f"qbench simulate MODEL --precision int8 --ranges RANGES {flags} -o OUT.onnx"
    return f" Keeps {len(kept)} tensor(s) in float: {', '.join(kept)}. Reproduce: {command}"


def output_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The model's output tensors; the last tensor in graph order when none is marked."""
    if df.empty:
        return df
    if "is_output" in df:
        marked = df[df["is_output"].fillna(False).astype(bool)]
        if len(marked):
            return marked
    if "index" in df:
        df = df.sort_values("index", kind="stable")
    return df.tail(1)  # no outputs marked: the last tensor in graph order is the best stand-in


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series([math.nan] * len(df), index=df.index, dtype=float)


def _fp32_latency(table: pd.DataFrame) -> float | None:
    if table.empty:
        return None
    rows = table[(table["precision"].str.lower() == "fp32") & table["latency_ms"].notna()]
    return float(rows["latency_ms"].iloc[0]) if len(rows) else None
