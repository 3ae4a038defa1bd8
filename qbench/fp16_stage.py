"""The FP16 part of ``qbench run`` after the plain FP16 comparison: the worst-case FP16 candidate,
the headroom analysis with its fixes and rewrite proof, and the sentence that says which
assumption an FP16 recommendation rests on.

``fp16_mode``: ``likely`` (only the likely-mode candidate "fp16"), ``worst`` (only "fp16-worst"),
``both``, or ``auto`` (the default): "fp16-worst" is added when the headroom analysis finds a risk,
since without one the two modes differ only by rounding noise and the second comparison would
double the FP16 cost for nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from qbench import atomic
from qbench.advise import passes
from qbench.compare import compare_precision
from qbench.compare.headroom import peaks_from_frame
from qbench.errors import QbenchError
from qbench.fp16_fixes import fix_table, precision_flags
from qbench.report import CandidateResult, ExtraSection
from qbench.report.headroom_plot import headroom_along_graph
from qbench.simulate.fp16_rewrite import make_fp16_safe, prove

FP16_MODES = ("auto", "likely", "worst", "both")
WORST = "fp16-worst"
LIKELY_ASSUMES = ("TensorRT folds BatchNormalization into the preceding layer in FP32 and its FP16 kernels "
                  "accumulate in FP32 (qbench's likely FP16 mode)")


def wants_worst(mode: str, likely) -> bool:
    if mode in ("worst", "both"):
        return True
    if mode != "auto" or likely is None:
        return False
    head = getattr(likely, "headroom", None)
    return head is not None and (len(head.risky_tensors) > 0 or len(head.parameters) > 0)


def run_fp16_stage(cfg, graph, dataset, comparisons: dict, candidates: list, out: Path, echo, reference, judge=None):
    """Add the worst-mode candidate where wanted (after "fp16" in ``candidates``); return the
    headroom ExtraSection. ``comparisons``/``candidates`` are the pipeline's, updated in place."""
    mode = getattr(cfg, "fp16_mode", "auto")
    if mode not in FP16_MODES:
        raise QbenchError(f"unknown FP16 mode {mode!r}; choose from {', '.join(FP16_MODES)}")
    likely = comparisons.get("fp16")
    if wants_worst(mode, likely):
        started = time.perf_counter()
        peaks = peaks_from_frame(likely.tensors) if likely is not None else None
        worst = compare_precision(graph, dataset, "fp16", fp16_mode="worst", peaks=peaks, keep_float=cfg.keep_float,
                                  reference=reference, limit=cfg.compare_limit, progress=cfg.progress, judge=judge)
        worst.save(out / WORST)
        comparisons[WORST] = worst
        meta = dict(worst.meta)
        meta["simulated"] = True
        position = next((i + 1 for i, c in enumerate(candidates) if c.precision == "fp16"), len(candidates))
        candidates.insert(position, CandidateResult(WORST, worst.tensors, worst.findings, worst.unmatched, meta,
                                                    task=worst.task, pictures=worst.pictures))
        echo(f"qbench: {WORST}: {worst.diagnosis_line()} ({time.perf_counter() - started:.1f} s; BN unfolded, "
             f"FP16 accumulation in {', '.join(worst.meta.get('fp16_accumulated', [])) or 'no layer'})")
    return headroom_section(cfg, graph, dataset, comparisons, out, echo)


def headroom_section(cfg, graph, dataset, comparisons: dict, out: Path, echo):
    """The report section: fixes table, headroom plot, assumptions of both modes, deployable flags,
    and (where a Conv -> BN pair is at risk) the rewrite and its proof by a re-run."""
    source = comparisons.get("fp16") or comparisons.get(WORST)
    head = source.headroom
    echo(f"qbench: {head.summary()}")
    rewrite, proof, skipped = _rewrite_and_prove(cfg, graph, dataset, head, comparisons, out, echo)
    return section(head, comparisons, out, str(cfg.model), rewrite, proof, skipped)


def section(head, comparisons: dict, out: Path, model: str, rewrite=None, proof=None, skipped=()):
    """The ExtraSection from a headroom analysis and the FP16 comparisons at hand (also used by
    ``qbench compare --precision fp16``); writes the headroom and fix tables beside the report.
    ``skipped``: the pairs at risk the rewrite had to leave alone, each with its reason."""
    atomic.ensure_dir(out)
    atomic.write_text(out / "fp16_headroom.csv", head.tensors.to_csv(index=False))
    atomic.write_text(out / "fp16_parameters.csv", head.parameters.to_csv(index=False))
    fixes = fix_table(head, rewrite)
    atomic.write_text(out / "fp16_fixes.csv", fixes.to_csv(index=False))
    lines = [head.summary() + "."]
    for label in ("fp16", WORST):
        cmp = comparisons.get(label)
        if cmp is not None:
            lines.append(f"{label} assumes: " + "; ".join(cmp.meta.get("fp16_assumptions", [])) + ".")
    layers = head.risk_names()
    if layers:
        flags = precision_flags(layers, model)
        lines.append(f"Keep the risky layers in FP32 with trtexec: {flags['trtexec']}")
        lines.append(f"… with Polygraphy: {flags['polygraphy']}")
        lines.append("… with the TensorRT 10 builder: " + flags["tensorrt"].replace("\n", "; "))
    if proof is not None:
        lines.append("Rewrite: " + " ".join(rewrite.log) + f" Saved as {out / 'model.fp16-safe.onnx'}. Proof by re-run "
                     "(output vs the original FP32): " + "; ".join(
                         f"{r.variant}: cosine {r.cosine:.4f}, rel L2 {r.rel_l2:.3g}, NaN/Inf {r.nonfinite}"
                         for r in proof.itertuples()) + ".")
    if skipped:
        lines.append("No ONNX rewrite for " + "; ".join(skipped) + ".")
    png = headroom_along_graph(head)
    images = (("FP32 peak of every tensor as a fraction of FP16's maximum (log scale)", png),) if png else ()
    return ExtraSection("FP16 headroom and assumptions", fixes, " ".join(lines), images=images)


def _rewrite_and_prove(cfg, graph, dataset, head, comparisons, out, echo):
    source = comparisons.get("fp16") or comparisons.get(WORST)
    peaks = peaks_from_frame(source.tensors)
    rewrite = make_fp16_safe(graph, peaks, head.fraction)
    if rewrite.skipped:
        echo(f"qbench: FP16 rewrite: left alone {'; '.join(rewrite.skipped)}")
    if not rewrite.scaled:
        return None, None, rewrite.skipped
    started = time.perf_counter()
    accumulate = comparisons[WORST].meta.get("fp16_accumulated", []) if WORST in comparisons else ()
    proof = prove(graph, rewrite, dataset, limit=1, accumulate=accumulate)
    rewrite.save(out / "model.fp16-safe.onnx")
    atomic.write_text(out / "fp16_rewrite_proof.csv", proof.to_csv(index=False))
    echo(f"qbench: FP16 rewrite: {' '.join(rewrite.log)}; proven by re-run in {time.perf_counter() - started:.1f} s "
         f"(fp16_rewrite_proof.csv)")
    return rewrite, proof, rewrite.skipped


def assumption_note(recommendation, comparisons: dict) -> str:
    """The sentence appended to the recommendation: what an FP16 verdict rests on."""
    if "fp16" not in str(recommendation.precision).lower() or "fp16" not in comparisons:
        return ""
    note = f" This FP16 verdict assumes {LIKELY_ASSUMES}."
    worst = comparisons.get(WORST)
    if worst is None:
        return note + " The worst case (BN unfolded, FP16 accumulation) was not simulated: no FP16 headroom risk found."

    bad = worst.tensors[worst.tensors["is_output"] & (worst.tensors["status"] != "ok")]
    if not passes(CandidateResult(WORST, worst.tensors, worst.findings, worst.unmatched, dict(worst.meta), task=worst.task)):
        bad = bad if len(bad) else worst.tensors[worst.tensors["is_output"]]
        head = comparisons["fp16"].headroom
        return (note + f" It does NOT hold if they are not (fp16-worst fails: output {bad.iloc[0]['tensor']!r} "
                f"{bad.iloc[0]['status']}); risks: {', '.join(head.risk_names())}; see the FP16 headroom section "
                "for the FP32 layer constraints or the rewrite.")
    return note + " It also holds in the worst case (fp16-worst passes)."
