"""The newer formats' part of ``qbench run`` after the plain comparisons: the worst-case variants of
formats other than FP16 (``bf16-worst``: BF16 under FP16's worst-case assumptions), and the sentence
the FP16 headroom section gets when BF16 was simulated (whether BF16's range avoids FP16's risk).

Which formats have a worst variant, and which one carries the FP16 headroom analysis, is read from
``qbench.simulate.formats``; nothing here names a format.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from qbench.compare import compare_precision
from qbench.report import CandidateResult
from qbench.simulate import formats


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
