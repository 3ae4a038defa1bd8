"""``qbench compare``: layer-by-layer comparison of the FP32 model against a candidate."""

from __future__ import annotations

import math
from pathlib import Path

import click

from qbench.cli.task_options import judge_settings, task_options
from qbench.errors import QbenchError
from qbench.simulate import formats


def _summary(cmp) -> str:
    meta = cmp.meta
    counts = ", ".join(f"{k} {v}" for k, v in sorted(meta["status_counts"].items()))
    lines = [f"{meta['reference']} vs {meta['candidate']}: {meta['tensors_compared']} tensors over {meta['samples']} sample(s) ({counts})"]
    if cmp.task is not None:
        lines.insert(0, f"verdict ({cmp.task.task}): {cmp.task.verdict.upper()} — {cmp.task.reason}")
    if cmp.unmatched:
        lines.append(f"unmatched: {len(cmp.unmatched)} tensor(s), e.g. {cmp.unmatched[0][0]}: {cmp.unmatched[0][1]}")
    first = cmp.first_problem
    lines.append(f"first problem: {first['message'].split(': ', 1)[1]}" if first else "first problem: none (every tensor within thresholds)")
    outputs = cmp.tensors[cmp.tensors["is_output"]]
    for _, row in outputs.iterrows():  # diagnosis only: the task verdict above decides
        lines.append(f"output {row['tensor']}: {row['status']}, cosine {row['cosine']:.4f}, rel L2 {row['rel_l2']:.3g}, "
                     f"SQNR {row['sqnr_db']:.1f} dB")
    culprits = cmp.culprits.head(5)
    if len(culprits):
        lines.append("top culprits (error introduced by the node itself, on reference inputs):")
        lines.append(f"  {'rank':>4}  {'tensor':<32} {'op':<18} {'iso cos':>8} {'iso relL2':>9}")
        for _, row in culprits.iterrows():
            lines.append(f"  {int(row['culprit_rank']):>4}  {row['tensor'][:32]:<32} {row['op_type'][:18]:<18} "
                         f"{row['isolated_cosine']:>8.4f} {row['isolated_rel_l2']:>9.3g}")
    elif meta["replay"].get("done"):
        lines.append("no culprit: every replayed node is clean on reference inputs (error accumulates across layers)")
    elif first:
        lines.append(f"culprit replay not done: {meta['replay'].get('reason', '')}")
    if meta.get("source"):
        lines.append(f"candidate data: {meta['source']}")
    if meta.get("fp16_headroom"):
        lines.append(meta["fp16_headroom"])
    return "\n".join(lines)


def _layer_section(path: Path):
    """The engine inspector table from trtexec --exportLayerInfo, read before the (slow) comparison
    so that a bad file fails at once."""
    from qbench.report import ExtraSection
    from qbench.runners.imported import load_trtexec_layer_info

    return ExtraSection("TensorRT engine layers", load_trtexec_layer_info(path),
                        f"From {path.name} (trtexec --exportLayerInfo): one row per engine layer, with its output "
                        "precision and the ONNX nodes fused into it.")


def _write_report(out: Path, graph, cmp, label: str, *, model: Path, data, ranges=None, extras=(), judge=None) -> Path:
    """The same HTML/JSON/CSV report as ``qbench run``, for this one candidate."""
    from qbench import __version__
    from qbench.report import CandidateResult, write_report

    meta = {"model": str(model), "model_digest": graph.digest, "data": str(data), "samples": cmp.meta["samples"],
            "reference": f"{graph.name} FP32 in ONNX Runtime CPU", "candidate": cmp.meta.get("source", ""),
            "qbench_version": __version__}
    from qbench.store import ResultStore

    meta["task"] = cmp.task.task if cmp.task is not None else ""
    meta["task_note"] = judge.note if judge is not None else ""
    meta["labels"] = judge.labels.path if judge is not None and judge.labels is not None else ""
    candidate = CandidateResult(label, cmp.tensors, cmp.findings, cmp.unmatched, dict(cmp.meta), task=cmp.task,
                                pictures=cmp.pictures)
    report = write_report(out, graph.name, [candidate], ranges=ranges, meta=meta, extra_sections=extras)
    # the same history as qbench run: reports/qbench.sqlite beside the report folders
    with ResultStore(out.parent / "qbench.sqlite") as store:
        store.record_run(graph.name, graph.digest, candidate, data_dir=str(data), samples=cmp.meta["samples"],
                         report_path=str(report))
    return report


@click.command("compare")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data folder (images + manifest.json, or .npy/.npz). Default: the embedded calibration images. "
                   "With --trt-outputs: the very inputs TensorRT ran on, in the same order.")
@click.option("--candidate", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A second ONNX model to compare against MODEL, tensor by tensor under shared names.")
@click.option("--precision", type=click.Choice(formats.names(simulated_only=False)), default=None,
              help="Compare MODEL against its own simulated version in this format (docs/FORMATS.md).")
@click.option("--trt-outputs", "trt_outputs", type=click.Path(path_type=Path), multiple=True,
              help="TensorRT results made elsewhere: trtexec --exportOutput JSON (one file per sample, repeat the "
                   "option or give a folder) or one Polygraphy --save-outputs JSON. Needs --data.")
@click.option("--trt-runner", default=None, help="Which runner of a Polygraphy file to import (default: the TensorRT one).")
@click.option("--engine", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A serialized TensorRT engine to run here (needs TensorRT and a GPU).")
@click.option("--capture", type=click.Choice(["none", "debug", "unfused", "outputs"]), default="none", show_default=True,
              help="With --engine: how the engine exposes inner tensors (see docs/TENSORRT.md).")
@click.option("--layer-info", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="trtexec --exportLayerInfo JSON: adds the engine's layer table (precision, fusions) to the report.")
@click.option("--ranges", "ranges_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="INT8 ranges: a TensorRT calibration cache or qbench ranges JSON.")
@click.option("--method", default=None, help="Calibrate INT8 ranges on --data with this method (default: entropy) when no --ranges.")
@click.option("--keep-float", multiple=True, help="Tensor or node to leave in float32 in the simulation (repeatable).")
@click.option("--fp16-mode", type=click.Choice(["likely", "worst"]), default="likely", show_default=True,
              help="With --precision fp16: likely (BN folded, FP32 accumulation) or worst (BN unfolded, FP16 accumulation).")
@click.option("--limit", type=int, default=None, help="Compare at most N samples.")
@click.option("--min-cosine", type=float, default=None, help="A tensor is divergent below this cosine similarity (default 0.9).")
@click.option("--max-rel-l2", type=float, default=None, help="A tensor is divergent above this relative L2 error (default 0.5).")
@click.option("--max-replay", type=int, default=20, show_default=True, help="Replay at most N flagged nodes alone to find culprits.")
@click.option("--no-replay", is_flag=True, help="Skip the culprit replay.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the report (index.html, results.json, CSVs), tensors.csv and comparison.json. "
                   "Default: reports/compare-<model>-<candidate>.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@task_options
def compare_command(model, data_dir, candidate, precision, trt_outputs, trt_runner, engine, capture, layer_info, ranges_path,
                    method, keep_float, fp16_mode, limit, min_cosine, max_rel_l2, max_replay, no_replay, out_dir, quiet,
                    task, labels, task_option, max_drop, min_agreement, evaluator):
    """Compare MODEL (FP32 reference) layer by layer with a candidate: find zero outputs, NaN/Inf and
    divergence, the first tensor where a problem appears, and the nodes that introduce it. Writes the
    HTML report and prints its path as the last line."""
    from qbench.compare import Thresholds
    from qbench.compare.entry import compare_engine, compare_imported, compare_models, compare_precision, load_trt_results
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_DATA, DEFAULT_REPORTS
    from qbench.model import ModelGraph

    given = [flag for flag, v in (("--candidate", candidate), ("--precision", precision), ("--trt-outputs", trt_outputs),
                                  ("--engine", engine)) if v]
    if len(given) != 1:
        raise QbenchError("give exactly one of --candidate OTHER.onnx, --precision FORMAT, --trt-outputs FILE "
                          f"or --engine FILE{f' (got {len(given)}: ' + ', '.join(given) + ')' if given else ''}")
    fmt = formats.get(precision) if precision else None
    if fmt is not None and not fmt.simulated:
        raise QbenchError(f"{precision} is not simulated: {fmt.why_not}")
    if (fmt is None or not fmt.needs_ranges) and (ranges_path or method):
        raise QbenchError("--ranges and --method only apply to --precision " + "|".join(
            n for n, f in formats.FORMATS.items() if f.needs_ranges and f.simulated))
    if ranges_path and method:
        raise QbenchError("give --ranges or --method, not both")
    if limit is not None and limit < 1:
        raise QbenchError(f"--limit must be at least 1, not {limit}")
    if fp16_mode != "likely" and (fmt is None or not fmt.worst):
        raise QbenchError("--fp16-mode only applies to --precision " + "|".join(n for n, f in formats.FORMATS.items() if f.worst))
    if keep_float and precision is None:
        raise QbenchError("--keep-float only applies to --precision")
    if trt_outputs and data_dir is None:
        # imported results belong to specific inputs; the embedded images would compare nonsense
        raise QbenchError("--trt-outputs needs --data: the same inputs (e.g. .npy/.npz), in the same order, that TensorRT ran on")
    if trt_runner and not trt_outputs:
        raise QbenchError("--trt-runner only applies to --trt-outputs")
    if capture != "none" and engine is None:
        raise QbenchError("--capture only applies to --engine")
    defaults = Thresholds()
    th = Thresholds(min_cosine if min_cosine is not None else defaults.min_cosine,
                    max_rel_l2 if max_rel_l2 is not None else defaults.max_rel_l2)
    if not (-1.0 <= th.min_cosine <= 1.0) or th.max_rel_l2 < 0 or math.isnan(th.max_rel_l2):
        raise QbenchError("--min-cosine must lie in [-1, 1] and --max-rel-l2 must be non-negative")

    task, task_opts, labels = judge_settings(task, labels, task_option, max_drop, min_agreement, evaluator)
    extras = [_layer_section(layer_info)] if layer_info is not None else []
    if out_dir is not None:
        from qbench.atomic import check_output_dir

        check_output_dir(out_dir)  # an unusable --out is refused now, not after the whole comparison
    graph = ModelGraph.from_path(model)
    data = data_dir or DEFAULT_DATA
    dataset = load_dataset(data, graph.inputs)
    from qbench.compare.entry import dataset_judge

    judge = dataset_judge(graph, dataset, task, task_opts, labels, data_dir=data, limit=limit,
                          echo=lambda msg: click.echo(msg, err=True))
    common = dict(limit=limit, thresholds=th, replay=not no_replay, max_replay=max_replay, progress=not quiet, judge=judge)
    ranges = None
    if candidate is not None:
        cmp = compare_models(graph, ModelGraph.from_path(candidate), dataset, **common)
        label = Path(candidate).stem
    elif trt_outputs:
        runner, kind = load_trt_results(list(trt_outputs), runner=trt_runner)
        cmp = compare_imported(graph, runner, dataset, kind=kind, **common)
        label = f"tensorrt-{kind}"
    elif engine is not None:
        cmp = compare_engine(graph, engine, dataset, capture=capture, **common)
        label = "tensorrt-engine"
    elif fmt.needs_ranges:
        from qbench.ranges import Ranges

        if ranges_path:
            ranges = Ranges.read(ranges_path, graph=graph)
        else:
            from qbench.calibrate import calibrate

            ranges = calibrate(graph, dataset, method=method or "entropy", limit=limit, progress=not quiet)
        cmp = compare_precision(graph, dataset, precision, ranges, keep_float=keep_float, **common)
        label = precision
    else:
        cmp = compare_precision(graph, dataset, precision, keep_float=keep_float, fp16_mode=fp16_mode, **common)
        label = precision if fp16_mode == "likely" else fmt.worst
    out = out_dir or DEFAULT_REPORTS / f"compare-{graph.name}-{label}"
    paths = cmp.save(out)
    if getattr(cmp, "headroom", None) is not None:  # FP16: headroom plot, risks and fixes (qbench.fp16_stage)
        from qbench.fp16_stage import section

        extras.append(section(cmp.headroom, {label: cmp}, out, str(model)))
    report = _write_report(out, graph, cmp, label, model=model, data=data, ranges=ranges, extras=extras, judge=judge)
    click.echo(_summary(cmp))
    click.echo(f"wrote {paths['tensors']}, {paths['comparison']} and {report.parent / 'results.json'}")
    click.echo(str(report))  # the last line on stdout is the report, for scripts (as qbench run)


COMMANDS = [compare_command]
