"""The main job, stage by stage: data → calibrate → simulate → run → compare → judge → advise → report/store.

``run_pipeline`` is what ``qbench run`` and ``qbench demo`` call; every stage is also usable alone
from its own module. Candidates here are ONNX Runtime CPU simulations of INT8 (explicit Q/DQ from the
calibrated ranges) and FP16 (values rounded through float16), compared with the FP32 reference, all
in one pass over the samples (``qbench.compare.stream``: the reference runs once per sample).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from qbench import __version__, atomic
from qbench.advise import Thresholds, evaluate, recommend, shipped_from_search
from qbench.calibrate import calibrate
from qbench.compare import compare_precision
from qbench.compare.entry import dataset_judge
from qbench.compare.stream import compare_together
from qbench.data import load_dataset
from qbench.defaults import PRECISIONS
from qbench.format_stage import run_format_search, run_worst_variants, shipped_mixed, with_range_note
from qbench.fp16_stage import assumption_note, run_fp16_stage
from qbench.judge.stream import judge_stream, track_plot
from qbench.model import ModelGraph
from qbench.ranges import Ranges
from qbench.report import CandidateResult, ExtraSection, write_report
from qbench.runners import OrtRunner
from qbench.search import SearchOptions, find_int8
from qbench.search.holdout import subset
from qbench.search.format_deploy import ship_formats
from qbench.simulate import build_fp16_model, build_int8_model, formats
from qbench.simulate.common import resolve_keep_float
from qbench.simulate.placement import concat_hazards, plan_int8
from qbench.store import ResultStore

log = logging.getLogger("qbench")

MIXED = "int8-mixed"  # the search's candidate: INT8 with some layers kept in float (qbench.search)
# the default search budget, in INT8 comparisons of the same run (issue 11: search <= 10x a compare),
# and its floor in seconds (a tiny model's compare takes well under a second)
SEARCH_BUDGET_FACTOR = 8
SEARCH_BUDGET_FLOOR_S = 30.0


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
    batch_size: int | None = None  # None: the largest calibration batch that fits memory (qbench.calibrate)
    keep_float: tuple[str, ...] = ()
    # INT8 placement: "likely", "worst" (qbench.simulate.placement), or "both": likely, and say whether
    # the worst placement would change the INT8 verdict (one more INT8 comparison)
    placement: str = "likely"
    # the INT8 search (qbench.search): calibrator sweep judged on held-out data, then, when no
    # calibrator passes, sensitivity + the smallest set of layers kept in float ("int8-mixed");
    # fallback=False (--no-fallback) skips the sensitivity and the mixed search, not the sweep
    fallback: bool = True
    max_float: int = 8
    calib_fraction: float = 0.5  # share of the samples that calibrate in the search; the rest judge
    seed: int = 0
    # time budget of sensitivity + mixed search: seconds, or None for SEARCH_BUDGET_FACTOR times the
    # INT8 comparison this run just made (the search's cost then scales with the model's)
    search_time_s: float | None = None
    sensitivity: str = "auto"  # auto: only when no calibrator passes; always; never
    sensitivity_layers: int | None = None  # measure at most N layers by the task (None: every layer)
    store: Path | None = None  # SQLite file; default: <out>/../qbench.sqlite
    fp16_mode: str = "auto"  # likely | worst | both | auto (qbench.fp16_stage)
    progress: bool = True
    # the task judge that decides every verdict (qbench.judge): a task name or "file.py:function",
    # its options and tolerances, and a labels file (default: labels.json in the data folder).
    # None: no judge, verdicts from output tensors (the baseline benchmarks/bench_judge.py times)
    task: str | None = "generic"
    task_options: dict = field(default_factory=dict)
    labels: Path | None = None
    # the newer formats' own options (qbench.simulate.formats): fp8_calibrator ("max" | "ranges"), block (INT4)
    format_options: dict = field(default_factory=dict)


@dataclass
class RunOutcome:
    report: Path
    results_json: Path
    recommendation: object
    comparisons: dict = field(default_factory=dict)
    ranges: object = None
    run_ids: list = field(default_factory=list)
    search: object = None  # qbench.search.SearchOutcome (None when INT8 was not a candidate)


def run_pipeline(cfg: RunConfig, echo=print) -> RunOutcome:
    cfg.precisions = formats.expand(cfg.precisions)  # "all" -> every simulated format (qbench.simulate.formats)
    graph = ModelGraph.from_path(cfg.model)
    dataset = load_dataset(cfg.data, graph.inputs)
    judge = make_run_judge(cfg, graph, dataset, echo)  # bad task options fail before any work
    out = atomic.ensure_dir(Path(cfg.out) if cfg.out else Path("reports") / graph.name)
    echo(f"qbench: {graph.name}: {len(graph.float_tensors)} tensors, {len(dataset)} samples from {cfg.data}")
    if graph.subgraph_node_count:
        log.warning(f"qbench: warning: {graph.subgraph_node_count} nodes sit inside If/Loop/Scan bodies; they are "
                    "not calibrated or simulated (they stay FP32 in every candidate), so verdicts cover the main graph only")

    started = time.perf_counter()
    ranges = _ranges_stage(cfg, graph, dataset, out, echo)
    hazards = _int8_hazards(cfg, graph, ranges, echo)

    candidates, comparisons = [], {}
    reference = OrtRunner(graph, name="fp32")  # one FP32 session for every candidate
    # only the worst-mode FP16 candidate with --fp16-mode worst, added by the FP16 stage below
    compared = [p for p in cfg.precisions if not (p == "fp16" and cfg.fp16_mode == "worst")]

    def job(precision, placement=None):
        return lambda ref, stream: compare_precision(graph, dataset, precision, ranges, keep_float=cfg.keep_float,
                                                     reference=ref, limit=cfg.compare_limit, progress=cfg.progress,
                                                     judge=judge, placement=placement or _placement(cfg), stream=stream,
                                                     format_options=cfg.format_options)

    # every candidate in one pass over the samples: the FP32 reference runs once per sample; INT8 with
    # the worst placement too when --placement both asks for it (its verdict is only compared below)
    jobs = [job(p) for p in compared]
    if cfg.placement == "both" and "int8" in compared:
        jobs.append(job("int8", placement="worst"))
    results = compare_together(reference, dataset, jobs, limit=cfg.compare_limit, progress=cfg.progress)
    int8_worst = results.pop() if len(jobs) > len(compared) else None
    for precision, comparison in zip(compared, results):
        comparison.save(out / precision)
        comparisons[precision] = comparison
        meta = dict(comparison.meta)
        meta.setdefault("source", f"ONNX Runtime CPU simulation of {precision.upper()} (not TensorRT)")
        meta.setdefault("simulated", True)
        candidates.append(CandidateResult(precision, comparison.tensors, comparison.findings, comparison.unmatched, meta,
                                          task=comparison.task, pictures=comparison.pictures))
        echo(f"qbench: {precision}: {comparison.task_line()}")
        echo(f"qbench: {precision}: diagnosis: {comparison.diagnosis_line()}")

    if cfg.placement == "both" and "int8" in comparisons:
        note = _placement_disagreement(candidates[cfg.precisions.index("int8")], int8_worst)
        if note:
            echo(f"qbench: warning: {note}")
            hazards.append(note)

    run_worst_variants(cfg, graph, dataset, comparisons, candidates, out, echo, reference, judge)  # bf16-worst
    mixed_formats, mixed_sections = run_format_search(cfg, graph, dataset, ranges, comparisons, candidates, out, echo,
                                                      reference, judge)  # fp8-bf16, int8-fp8 (qbench.format_stage)
    extras, search = list(mixed_sections), None
    if "int8" in comparisons:
        search, mixed, sections = _search(cfg, graph, dataset, comparisons["int8"], out, echo, reference, judge,
                                          ranges if cfg.ranges else None)
        extras += sections
        if mixed is not None:
            comparisons[MIXED] = mixed.comparison
            candidates.insert(cfg.precisions.index("int8") + 1, mixed.candidate)

    if "fp16" in cfg.precisions:  # worst-case FP16 candidate, headroom, fixes (qbench.fp16_stage)
        extras.append(with_range_note(run_fp16_stage(cfg, graph, dataset, comparisons, candidates, out, echo, reference,
                                                     judge), comparisons))
    if judge is not None and judge.task == "stream":  # recurrent models: verdicts over whole streams
        extras.append(_stream_stage(cfg, graph, dataset, ranges, candidates, comparisons, reference, judge, echo))
    # the run's one answer, computed once: the report header, results.json and the console print it
    recommendation = recommend(candidates, shipped=shipped_from_search(search))
    for folder in ship_formats(out, graph, comparisons, recommendation.table, ranges, cfg.keep_float, cfg.format_options,
                               mixed=shipped_mixed(mixed_formats, comparisons)):
        echo(f"qbench: deployable files: {folder}")
    note = assumption_note(recommendation, comparisons) if "fp16" in cfg.precisions else ""
    recommendation.reason += note
    meta = {
        "model": str(cfg.model), "model_digest": graph.digest, "data": str(cfg.data), "samples": len(dataset),
        "calibration_method": ranges.method or cfg.method, "qbench_version": __version__,
        **({"calibration_warning": " | ".join(ranges.notes)} if ranges.notes else {}),
        **({"int8_warning": " | ".join(hazards)} if hazards else {}), "int8_placement": cfg.placement,
        "elapsed_s": round(time.perf_counter() - started, 2), "backend": "onnxruntime-cpu (simulation)",
        "task": judge.task if judge else "", "task_note": judge.note if judge else "",
        "labels": judge.labels.path if judge and judge.labels is not None else "",
    }
    if note:  # what an FP16 recommendation assumes; the report appends it to the same recommendation
        meta["recommendation_note"] = {"precision": recommendation.precision, "text": note.strip()}
    report = write_report(out, graph.name, candidates, ranges=ranges, meta=meta, extra_sections=extras,
                          recommendation=recommendation)
    with ResultStore(cfg.store or out.parent / "qbench.sqlite") as store:
        run_ids = [store.record_run(graph.name, graph.digest, c, data_dir=str(cfg.data), samples=len(dataset),
                                    recommendation=recommendation.precision, report_path=str(report))
                   for c in candidates]
    return RunOutcome(report, out / "results.json", recommendation, comparisons, ranges, run_ids, search)


def _ranges_stage(cfg: RunConfig, graph, dataset, out: Path, echo) -> Ranges:
    """The ranges of this run: read from ``cfg.ranges`` (checked against the model) or calibrated on
    the data; written beside the report as a TensorRT cache and as JSON."""
    started = time.perf_counter()
    if cfg.ranges:
        ranges = Ranges.read(cfg.ranges)
        check = ranges.check_against(graph, source=str(cfg.ranges))
        check.raise_for_errors()  # refuses foreign, corrupt or absurd ranges
        echo(f"qbench: using ranges from {cfg.ranges} ({len(ranges)} tensors)")
        for warning in check.warnings + ranges.provenance_warnings(graph, source=str(cfg.ranges)):
            echo(f"qbench: warning: {warning}")
    else:
        ranges = calibrate(graph, dataset, method=cfg.method, batch_size=cfg.batch_size, limit=cfg.calib_limit,
                           progress=cfg.progress)
        echo(f"qbench: calibrated {len(ranges)} ranges ({cfg.method}) in {time.perf_counter() - started:.1f} s")
        for note in ranges.notes:
            echo(f"qbench: warning: {note}")
    ranges.write_trt_cache(out / "calibration.cache")
    ranges.write_json(out / "ranges.json")
    return ranges


def _int8_hazards(cfg: RunConfig, graph, ranges, echo) -> list[str]:
    """The INT8 placement's Concat hazards (inputs a shared scale would zero), said and returned."""
    if "int8" not in cfg.precisions:
        return []
    plan = plan_int8(graph, *resolve_keep_float(graph, cfg.keep_float), placement=_placement(cfg))
    hazards = [h.message() for h in concat_hazards(plan, ranges)]
    for hazard in hazards:
        echo(f"qbench: warning: {hazard}")
    return hazards


def _stream_stage(cfg: RunConfig, graph, dataset, ranges, candidates, comparisons, reference, judge, echo):
    """--task stream (qbench.judge.stream): each INT8/FP16 candidate run over the data's streams with
    its own carried state; its stream verdict replaces the chunk-by-chunk one (stored state), and the
    report shows the probability tracks."""
    images, lines = [], []
    names = [getattr(p, "name", str(p)) for p in getattr(dataset, "files", [])] or None
    for c in candidates:
        if c.precision not in ("int8", "fp16"):
            continue  # the search's and the worst-case candidates keep their chunk verdicts
        sim = (build_int8_model(graph, ranges, keep_float=cfg.keep_float, placement=_placement(cfg)) if c.precision == "int8"
               else build_fp16_model(graph, keep_float=cfg.keep_float))
        runner = OrtRunner(sim.model, name=f"{c.precision} (stream)", capture=None, optimize=False)
        result = judge_stream(judge, dataset, reference.run, runner.run, names, limit=cfg.compare_limit)
        c.task = comparisons[c.precision].task = result
        echo(f"qbench: {c.precision}: stream: {result.verdict.upper()} — {result.reason}")
        png = track_plot(result, f"{c.precision.upper()} vs FP32: {judge.options['output']} over each stream")
        if png is not None:
            images.append((f"{c.precision.upper()}: probability tracks (dots: chunks whose decision differs)", png))
        lines.append(f"{c.precision}: {result.reason}")
    return ExtraSection("Streams: output probability tracks (each model carries its own state)", None,
                        "Chunks run in order per stream; FP32 and each candidate carry their own recurrent state. "
                        + " ".join(lines), tuple(images))


def _placement(cfg: RunConfig) -> str:
    return "likely" if cfg.placement == "both" else cfg.placement


def _placement_disagreement(likely, worst) -> str | None:
    """A sentence when INT8's verdict with the worst placement (``worst``, a Comparison made in the
    run's one pass) differs from the likely one's (``likely``, its CandidateResult)."""
    worst_candidate = CandidateResult("int8", worst.tensors, worst.findings, worst.unmatched, dict(worst.meta),
                                      task=worst.task)
    # the verdicts themselves (pass / fail / inconclusive), as the recommendation reads them
    verdicts = {name: evaluate(c, Thresholds())["verdict"] for name, c in (("likely", likely), ("worst", worst_candidate))}
    if verdicts["likely"] == verdicts["worst"]:
        return None
    word = {"pass": "passes", "fail": "fails", "inconclusive": "is inconclusive"}
    return (f"INT8 {word[verdicts['likely']]} with TensorRT's likely INT8 placement but {word[verdicts['worst']]} with the "
            "worst one (every tensor TensorRT could store in INT8): the verdict depends on the kernels TensorRT picks; "
            "build the engine and simulate it as built (qbench simulate --layer-info)")


def _search(cfg: RunConfig, graph, dataset, int8, out: Path, echo, reference, judge, given=None):
    """The search stage (qbench.search): sweep, sensitivity, mixed search and ``<out>/int8-best``.
    Returns (outcome, mixed candidate or None, report sections)."""
    limit = max(x for x in (cfg.calib_limit, cfg.compare_limit) if x) if (cfg.calib_limit or cfg.compare_limit) else None
    data = subset(dataset, range(min(limit, len(dataset)))) if limit else dataset
    budget = cfg.search_time_s
    if budget is None:
        compare_s = float((int8.meta.get("timing_s") or {}).get("total") or 0.0)
        budget = max(SEARCH_BUDGET_FLOOR_S, SEARCH_BUDGET_FACTOR * compare_s)
        echo(f"qbench: search budget {budget:.0f} s ({SEARCH_BUDGET_FACTOR}x the {compare_s:.1f} s INT8 comparison; "
             "--search-time sets it)")
    culprits = tuple(int8.culprits["tensor"]) if getattr(int8, "culprits", None) is not None and len(int8.culprits) else ()
    # the search judges with the run's judge settings (labels found beside the data included)
    labels = judge.labels.path if judge is not None and judge.labels is not None else cfg.labels
    options = SearchOptions(task=cfg.task or "generic", judge_options=dict(cfg.task_options or {}), labels=labels,
                            calib_fraction=cfg.calib_fraction, seed=cfg.seed, batch_size=cfg.batch_size,
                            keep_float=tuple(cfg.keep_float), max_float=cfg.max_float, time_budget_s=budget,
                            sensitivity=cfg.sensitivity if cfg.fallback else "never", search=cfg.fallback,
                            sensitivity_layers=cfg.sensitivity_layers,
                            progress=cfg.progress, culprits=culprits,
                            extra_candidates={"given": given} if given is not None else None)
    echo("qbench: searching for an INT8 that ships: every calibrator judged on held-out samples"
         + ("" if cfg.fallback else " (--no-fallback: no sensitivity, no mixed search)"))
    outcome = find_int8(graph, data, out, options, model_path=cfg.model, echo=echo)
    echo(f"qbench: search: {outcome.sentence()}")
    part = outcome.sweep.part
    sections = [ExtraSection("INT8 per calibrator (task verdict, held out)", outcome.rows(),
                             f"{outcome.holdout.describe()}. Every figure is from the {part}. {outcome.sentence()} "
                             f"Deployable files: {outcome.folder}.")]
    if outcome.sensitivity is not None:
        images = ()
        if outcome.chart is not None:
            images = (("Layer sensitivity by task score (red, starred: culprits of the diagnosis)",
                       Path(outcome.chart).read_bytes()),)
        sens = outcome.sensitivity
        sections.append(ExtraSection("Layer sensitivity (task metric)", sens.frame,
                                     f"For each quantized layer, on the {sens.part}: the task-score change when only it "
                                     f"is kept in float (gain_if_float) and when only it is quantized (loss_alone); "
                                     f"{sens.runs} variants of one gated model in {sens.seconds:.1f} s.", images))
    mixed = None
    if outcome.mixed is not None:
        m = outcome.mixed
        sections.append(ExtraSection("Mixed-precision search (Pareto: layers in float vs task score)", m.table,
                                     f"{m.stopped} ({len(m.table)} sets judged in {m.seconds:.1f} s on the "
                                     f"{outcome.sweep.part}). Judged by the task verdict, simulated on the CPU (not TensorRT)."))
        if outcome.best is not None and outcome.best.keep_float:
            mixed = _mixed_candidate(cfg, graph, dataset, outcome, out, reference, judge)
    return outcome, mixed, sections


def _mixed_candidate(cfg: RunConfig, graph, dataset, outcome, out: Path, reference, judge):
    """The int8-mixed candidate: the shipped configuration compared layer by layer like the others."""
    from types import SimpleNamespace

    best = outcome.best
    cmp = compare_precision(graph, dataset, "int8", best.ranges, keep_float=best.keep_float, reference=reference,
                            limit=cfg.compare_limit, progress=cfg.progress, judge=judge)
    cmp.save(out / MIXED)
    meta = dict(cmp.meta)
    meta["source"] = (f"ONNX Runtime CPU simulation of INT8 ({best.calibrator} ranges) with {len(best.keep_float)} layers "
                      "kept in float (qbench.search) — not TensorRT")
    meta["simulated"] = True
    meta["keep_float"] = list(best.keep_float)
    meta["task_result"] = best.result.to_dict() if hasattr(best.result, "to_dict") else {}
    meta["reproduce"] = _reproduce(cfg, best, out)
    return SimpleNamespace(comparison=cmp, candidate=CandidateResult(MIXED, cmp.tensors, cmp.findings, cmp.unmatched, meta,
                                                                     task=cmp.task, pictures=cmp.pictures))


def _reproduce(cfg: RunConfig, best, out: Path) -> str:
    import shlex

    flags = " ".join(f"--keep-float {shlex.quote(n)}" for n in best.keep_float)
    return (f"qbench simulate {shlex.quote(str(cfg.model))} --precision int8 --ranges "
            f"{shlex.quote(str(out / 'int8-best' / 'calibration.cache'))} {flags} -o {shlex.quote(str(out / 'model.int8-mixed.onnx'))}")


def make_run_judge(cfg: RunConfig, graph, dataset, echo):
    """The judge of this run (``qbench.compare.entry.dataset_judge``); None when cfg.task is None."""
    if cfg.task is None:
        return None
    return dataset_judge(graph, dataset, cfg.task, cfg.task_options, cfg.labels, data_dir=cfg.data,
                         limit=cfg.compare_limit, echo=echo)

