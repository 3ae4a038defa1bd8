"""The main job, stage by stage: data → calibrate → simulate → run → compare → advise → report/store.

``run_pipeline`` is what ``qbench run`` and ``qbench demo`` call; every stage is also usable alone
from its own module. Candidates here are ONNX Runtime CPU simulations of INT8 (explicit Q/DQ from the
calibrated ranges) and FP16 (values rounded through float16), compared with the FP32 reference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from qbench import __version__, atomic
from qbench.errors import QbenchError

log = logging.getLogger("qbench")

PRECISIONS = ("int8", "fp16")
MIXED = "int8-mixed"  # the fallback search's candidate: INT8 with some tensors kept in float


@dataclass
class RunConfig:
    model: Path
    data: Path
    out: Path | None = None  # default: reports/<model stem>
    precisions: tuple[str, ...] = PRECISIONS
    method: str = "entropy"
    ranges: Path | None = None  # reuse a calibration cache / ranges JSON instead of calibrating
    calib_limit: int | None = None
    compare_limit: int | None = None
    batch_size: int = 1
    keep_float: tuple[str, ...] = ()
    # INT8 failing: search which tensors to keep in float (qbench.fallback), reported as "int8-mixed"
    fallback: bool = True
    max_float: int = 8
    store: Path | None = None  # SQLite file; default: <out>/../qbench.sqlite
    fp16_mode: str = "auto"  # likely | worst | both | auto (qbench.fp16_stage)
    progress: bool = True


@dataclass
class RunOutcome:
    report: Path
    results_json: Path
    recommendation: object
    comparisons: dict = field(default_factory=dict)
    ranges: object = None
    run_ids: list = field(default_factory=list)


def run_pipeline(cfg: RunConfig, echo=print) -> RunOutcome:
    from qbench.advise import passes, recommend
    from qbench.calibrate import calibrate
    from qbench.compare import compare_precision
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges
    from qbench.report import CandidateResult, write_report
    from qbench.runners import OrtRunner
    from qbench.store import ResultStore

    unknown = [p for p in cfg.precisions if p not in PRECISIONS]
    if unknown:
        raise QbenchError(f"unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
    graph = ModelGraph.from_path(cfg.model)
    dataset = load_dataset(cfg.data, graph.inputs)
    out = atomic.ensure_dir(Path(cfg.out) if cfg.out else Path("reports") / graph.name)
    echo(f"qbench: {graph.name}: {len(graph.float_tensors)} tensors, {len(dataset)} samples from {cfg.data}")

    started = time.perf_counter()
    if cfg.ranges:
        ranges = Ranges.read(cfg.ranges)
        check = ranges.check_against(graph, source=str(cfg.ranges))
        check.raise_for_errors()  # refuses foreign, corrupt or absurd ranges
        echo(f"qbench: using ranges from {cfg.ranges} ({len(ranges)} tensors)")
        for warning in check.warnings:
            echo(f"qbench: warning: {warning}")
    else:
        ranges = calibrate(graph, dataset, method=cfg.method, batch_size=cfg.batch_size, limit=cfg.calib_limit,
                           progress=cfg.progress)
        echo(f"qbench: calibrated {len(ranges)} ranges ({cfg.method}) in {time.perf_counter() - started:.1f} s")
    ranges.write_trt_cache(out / "calibration.cache")
    ranges.write_json(out / "ranges.json")

    candidates, comparisons = [], {}
    reference = OrtRunner(graph, name="fp32")  # one FP32 session for every candidate
    for precision in cfg.precisions:
        if precision == "fp16" and cfg.fp16_mode == "worst":
            continue  # only the worst-mode candidate, added by the FP16 stage below
        comparison = compare_precision(graph, dataset, precision, ranges, keep_float=cfg.keep_float, reference=reference,
                                       limit=cfg.compare_limit, progress=cfg.progress)
        comparison.save(out / precision)
        comparisons[precision] = comparison
        meta = dict(comparison.meta)
        meta.setdefault("source", f"ONNX Runtime CPU simulation of {precision.upper()} (not TensorRT)")
        meta.setdefault("simulated", True)
        candidates.append(CandidateResult(precision, comparison.tensors, comparison.findings, comparison.unmatched, meta))
        echo(f"qbench: {precision}: {_one_line_summary(comparison)}")

    extras = []
    if cfg.fallback and "int8" in comparisons and not passes(candidates[cfg.precisions.index("int8")]):
        mixed, section = _fallback(cfg, graph, dataset, ranges, comparisons["int8"], out, echo, reference)
        comparisons[MIXED] = mixed.comparison
        candidates.insert(cfg.precisions.index("int8") + 1, _mixed_candidate(cfg, mixed, out))
        extras.append(section)

    if "fp16" in cfg.precisions:  # worst-case FP16 candidate, headroom, fixes (qbench.fp16_stage)
        from qbench.fp16_stage import assumption_note, run_fp16_stage

        extras.append(run_fp16_stage(cfg, graph, dataset, comparisons, candidates, out, echo, reference))
    recommendation = recommend(candidates)
    note = assumption_note(recommendation, comparisons) if "fp16" in cfg.precisions else ""
    recommendation.reason += note
    meta = {
        "model": str(cfg.model), "model_digest": graph.digest, "data": str(cfg.data), "samples": len(dataset),
        "calibration_method": ranges.method or cfg.method, "qbench_version": __version__,
        "elapsed_s": round(time.perf_counter() - started, 2), "backend": "onnxruntime-cpu (simulation)",
    }
    if note:  # what an FP16 recommendation assumes; the report appends it to the same recommendation
        meta["recommendation_note"] = {"precision": recommendation.precision, "text": note.strip()}
    report = write_report(out, graph.name, candidates, ranges=ranges, meta=meta, extra_sections=extras)
    with ResultStore(cfg.store or out.parent / "qbench.sqlite") as store:
        run_ids = [store.record_run(graph.name, graph.digest, c, data_dir=str(cfg.data), samples=len(dataset),
                                    recommendation=recommendation.precision, report_path=str(report))
                   for c in candidates]
    return RunOutcome(report, out / "results.json", recommendation, comparisons, ranges, run_ids)


def _fallback(cfg: RunConfig, graph, dataset, ranges, int8, out: Path, echo, reference):
    """Run the fallback search from the INT8 comparison; save its comparison like the others."""
    from qbench.fallback import search_fallback
    from qbench.report import ExtraSection

    echo(f"qbench: INT8 fails; searching for at most {cfg.max_float} tensor(s) to keep in float "
         "(each step re-runs the INT8 comparison; --no-fallback skips this)")
    started = time.perf_counter()
    result = search_fallback(graph, dataset, ranges, int8, max_float=cfg.max_float, limit=cfg.compare_limit,
                             progress=cfg.progress, keep_float=cfg.keep_float, echo=echo, reference=reference)
    result.comparison.save(out / MIXED)
    verdict = "passes" if result.passed else "still fails"
    echo(f"qbench: {MIXED}: {verdict} with {len(result.kept)} tensor(s) kept in float "
         f"({', '.join(result.kept) or 'none'}) after {len(result.steps) - 1} comparison(s) in "
         f"{time.perf_counter() - started:.1f} s")
    text = (f"Greedy search over the ONNX Runtime CPU simulation (not TensorRT): each step keeps one more tensor or node "
            f"in float, re-runs the INT8 comparison on the same samples and stops when the outputs pass (at most "
            f"{cfg.max_float}). Result: INT8 {verdict} with {len(result.kept)} kept "
            f"({', '.join(result.kept) or 'none'}). Reproduce: {_reproduce(cfg, result, out)}")
    return result, ExtraSection("INT8 fallback search", result.steps, text)


def _reproduce(cfg: RunConfig, result, out: Path) -> str:
    import shlex

    return (f"qbench simulate {shlex.quote(str(cfg.model))} --precision int8 --ranges "
            f"{shlex.quote(str(out / 'calibration.cache'))} {result.flags()} -o {shlex.quote(str(out / 'model.int8-mixed.onnx'))}")


def _mixed_candidate(cfg: RunConfig, result, out: Path):
    from qbench.report import CandidateResult

    cmp = result.comparison
    meta = dict(cmp.meta)
    meta["source"] = (f"ONNX Runtime CPU simulation of INT8 with {len(result.keep_float)} tensors kept in float "
                      "(fallback search) — not TensorRT")
    meta["simulated"] = True
    meta["keep_float"] = result.keep_float
    meta["reproduce"] = _reproduce(cfg, result, out)
    return CandidateResult(MIXED, cmp.tensors, cmp.findings, cmp.unmatched, meta)


def _one_line_summary(comparison) -> str:
    frame = comparison.tensors
    bad = frame[frame["status"] != "ok"]
    outputs = frame[frame["is_output"]]
    broken = outputs[outputs["status"] == "nonfinite"]
    cos = float(outputs["cosine"].min()) if len(outputs) else float("nan")
    # cosine sees only values finite on both sides: name new NaN/Inf in an output before it
    head = f"NaN/Inf in output {broken.iloc[0]['tensor']!r}" if len(broken) else f"output cosine {cos:.4f}"
    first = bad.iloc[0]["tensor"] if len(bad) else None
    return f"{head}, {len(bad)} flagged tensors" + (f", first problem at {first!r}" if first else "")
