"""The newer formats' part of ``qbench run`` after the plain comparisons: the worst-case variants of
formats other than FP16 (``bf16-worst``: BF16 under FP16's worst-case assumptions), the sentence
the FP16 headroom section gets when BF16 was simulated (whether BF16's range avoids FP16's risk), and
the mixed-format search (``fp8-bf16``, ``int8-fp8``: a format that does not pass with its fewest
layers moved to a higher format of its table row's ``fallback``, qbench.search.format_mixed).

Which formats have a worst variant, and which one carries the FP16 headroom analysis, is read from
``qbench.simulate.formats``; nothing here names a format.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from qbench.compare import compare_precision
from qbench.report import CandidateResult, ExtraSection
from qbench.search import format_mixed
from qbench.search.holdout import subset
from qbench.search.judging import Reference, acceptable, rank_key
from qbench.simulate import formats

# the mixed-format search's default time budget: this many comparisons of the base format (as the
# INT8 search's), at least the floor in seconds
BUDGET_FACTOR = 8
BUDGET_FLOOR_S = 30.0


def wants_variants(fp16_mode: str) -> bool:
    """The worst variants follow ``--fp16-mode``: every mode but ``likely`` asks for the worst case."""
    return fp16_mode != "likely"


def run_worst_variants(cfg, graph, dataset, comparisons: dict, candidates: list, out: Path, echo, reference,
                       judge=None) -> list[str]:
    """Compare each requested format's worst variant (formats without FP16 headroom, which the FP16
    stage handles) and insert it after its format; returns the variant names added."""
    added = []
    if not wants_variants(getattr(cfg, "fp16_mode", "auto")):
        return added
    for name in list(cfg.precisions):
        fmt = formats.FORMATS[name]
        if not fmt.worst or fmt.headroom or name not in comparisons:
            continue
        started = time.perf_counter()
        cmp = compare_precision(graph, dataset, name, fp16_mode="worst", keep_float=cfg.keep_float, reference=reference,
                                limit=cfg.compare_limit, progress=cfg.progress, judge=judge)
        cmp.save(out / fmt.worst)
        comparisons[fmt.worst] = cmp
        meta = dict(cmp.meta)
        meta["simulated"] = True
        position = next((i + 1 for i, c in enumerate(candidates) if c.precision == name), len(candidates))
        candidates.insert(position, CandidateResult(fmt.worst, cmp.tensors, cmp.findings, cmp.unmatched, meta,
                                                    task=cmp.task, pictures=cmp.pictures))
        echo(f"qbench: {fmt.worst}: {broken_outputs(cmp)} output(s) with new NaN/Inf or all zeros "
             f"({time.perf_counter() - started:.1f} s; {fmt.label} with BN unfolded, parameters rounded as stored)")
        added.append(fmt.worst)
    return added


def broken_outputs(cmp) -> int:
    """Outputs with new NaN/Inf or collapsed to all zeros (the comparator's status)."""
    frame = cmp.tensors
    outputs = frame[frame["is_output"]]
    return int(outputs["status"].isin(["nonfinite", "zero"]).sum())


def range_note(comparisons: dict) -> str:
    """One sentence per wider-range variant beside FP16's worst case: does it avoid the overflow?"""
    fp16 = formats.FORMATS["fp16"] if "fp16" in formats.FORMATS else None
    if fp16 is None or fp16.worst not in comparisons:
        return ""
    bad16 = broken_outputs(comparisons[fp16.worst])
    notes = []
    for fmt in formats.FORMATS.values():
        for name in (fmt.name, fmt.worst):
            # the formats with FP16's likely/worst assumptions but no FP16 headroom: a wider range
            if fmt.headroom or not fmt.worst or name not in comparisons:
                continue
            bad = broken_outputs(comparisons[name])
            notes.append(f"{name}: {bad} output(s) with NaN/Inf or all zeros" + (f" where {fp16.worst} has {bad16}" if bad16 else ""))
    if not notes:
        return ""
    return " Wider exponent range, same assumptions: " + "; ".join(notes) + "."


def with_range_note(section, comparisons: dict):
    """The FP16 headroom section with the BF16 sentence appended (when BF16 was simulated)."""
    note = range_note(comparisons)
    return dataclasses.replace(section, text=section.text + note) if note and section is not None else section


def run_format_search(cfg, graph, dataset, ranges, comparisons: dict, candidates: list, out: Path, echo, reference,
                      judge) -> tuple[dict, list]:
    """For each compared format with a ``fallback`` whose task verdict is not acceptable: the fewest
    layers moved to a higher format (qbench.search.format_mixed), compared layer by layer like the other
    candidates as ``<base>-<higher>`` and inserted after its base. Skipped with ``--no-fallback``, without
    a task judge, or when nothing improves. Returns ({base: FormatMixed}, report sections)."""
    found, sections = {}, []
    if not getattr(cfg, "fallback", True) or judge is None:
        return found, sections
    todo = [p for p in cfg.precisions if p in comparisons and comparisons[p].task is not None
            and not acceptable(comparisons[p].task)
            and any(format_mixed.usable(formats.FORMATS[p], formats.FORMATS[h], cfg.precisions)
                    for h in formats.FORMATS[p].fallback)]
    if not todo:
        return found, sections
    limit = cfg.compare_limit
    data = subset(dataset, range(min(limit, len(dataset)))) if limit else dataset
    samples = Reference(graph, data, part=format_mixed.PART)
    for name in todo:
        base = comparisons[name]
        budget = cfg.search_time_s
        if budget is None:
            compare_s = float((base.meta.get("timing_s") or {}).get("total") or 0.0)
            budget = max(BUDGET_FLOOR_S, BUDGET_FACTOR * compare_s)
        result = format_mixed.search(graph, name, ranges, samples, judge, base, keep_float=cfg.keep_float,
                                     options=cfg.format_options, max_float=cfg.max_float, time_budget_s=budget, echo=echo,
                                     requested=cfg.precisions)
        if result is None:
            continue
        m = result.mixed
        sections.append(ExtraSection(f"Mixed formats: {formats.FORMATS[name].label} with layers in "
                                     f"{formats.FORMATS[result.higher].label} ({result.name})", m.table,
                                     f"{m.stopped} ({len(m.table)} sets judged in {m.seconds:.1f} s on {format_mixed.PART}). "
                                     f"Layers ranked by the diagnosis's culprits, then by the error each adds under "
                                     f"{formats.FORMATS[name].label}; judged by the task verdict, simulated on the CPU "
                                     "(not TensorRT)."))
        if not result.kept or rank_key(result.result) >= rank_key(base.task):
            echo(f"qbench: {result.name}: {m.stopped}; no set improves on {name}, no candidate added")
            continue
        options = {**dict(cfg.format_options or {}), "higher": result.higher, "higher_layers": list(result.kept)}
        cmp = compare_precision(graph, dataset, name, ranges, keep_float=cfg.keep_float, reference=reference,
                                limit=cfg.compare_limit, progress=cfg.progress, judge=judge, format_options=options)
        cmp.save(out / result.name)
        comparisons[result.name] = cmp
        meta = dict(cmp.meta)
        meta.update(precision=result.name, simulated=True, higher_format=result.higher, higher_layers=list(result.kept),
                    source=f"ONNX Runtime CPU simulation of {formats.FORMATS[name].label} with {len(result.kept)} layer(s) "
                           f"in {formats.FORMATS[result.higher].label} (qbench.search.format_mixed) — not TensorRT")
        position = next((i + 1 for i, c in enumerate(candidates) if c.precision == name), len(candidates))
        candidates.insert(position, CandidateResult(result.name, cmp.tensors, cmp.findings, cmp.unmatched, meta,
                                                    task=cmp.task, pictures=cmp.pictures))
        echo(f"qbench: {result.name}: {len(result.kept)} layer(s) in {result.higher} ({', '.join(result.kept)}): "
             f"{cmp.task_line()}")
        found[name] = result
    return found, sections


def shipped_mixed(found: dict, comparisons: dict) -> dict:
    """{base: (candidate name, higher format, layers)} for each mixed candidate that ranks above its base
    format by task verdict and score: its model then ships in ``<out>/<base>-best/``."""
    out = {}
    for base, result in found.items():
        mixed = comparisons.get(result.name)
        if mixed is not None and mixed.task is not None and rank_key(mixed.task) < rank_key(comparisons[base].task):
            out[base] = (result.name, result.higher, list(result.kept))
    return out
