"""``qbench run`` (the main job on a user's model) and ``qbench demo`` (the same on the embedded default)."""

from __future__ import annotations

from pathlib import Path

import click

from qbench.cli.common import common_options
from qbench.cli.task_options import judge_settings, task_options
from qbench.pipeline import PRECISIONS, RunConfig, run_pipeline

from qbench.calibrate.methods import METHODS

_METHODS = click.Choice(METHODS)
# the demo's model is a DB text detector: its output is a probability map binarised at 0.3
DEMO_TASK = "segment"
DEMO_TASK_OPTIONS = {"threshold": 0.3}


def _options(func):
    options = [
        click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
                     help="Candidate precision(s) to simulate and compare; repeatable [int8 and fp16]."),
        click.option("--method", type=_METHODS, default="entropy", show_default=True, help="Calibration method."),
        click.option("--ranges", type=click.Path(path_type=Path), default=None,
                     help="Reuse a calibration cache (TensorRT text format) or qbench ranges JSON instead of calibrating."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Calibration batch size [the largest that fits memory]."),
        click.option("--keep-float", multiple=True, help="Tensor or node name to keep in FP32; repeatable."),
        click.option("--placement", type=click.Choice(["likely", "worst", "both"]), default="likely", show_default=True,
                     help="INT8 placement: TensorRT's likely kernel choices, every tensor it could store in INT8 "
                          "(worst), or likely plus a warning when worst changes the verdict (both)."),
        click.option("--fallback/--no-fallback", default=True, show_default=True,
                     help="When INT8 fails, search which tensors to keep in float (candidate int8-mixed)."),
        click.option("--max-float", type=click.IntRange(min=0), default=8, show_default=True,
                     help="Most tensors the fallback search may keep in float."),
    ]
    for option in reversed(options):
        func = option(func)
    return task_options(func)


def _run(model, data, out, precisions, method, ranges, limit, batch_size, keep_float, placement, fallback, max_float,
         task, labels, task_option, max_drop, min_agreement, evaluator, default_task="generic", default_options=None,
         quiet=False) -> None:
    # --out (report folder, default reports/<model>), --limit and --quiet come from common_options
    task, options, labels = judge_settings(task, labels, task_option, max_drop, min_agreement, evaluator,
                                           default_task, default_options)
    cfg = RunConfig(model=Path(model), data=Path(data), out=out, precisions=tuple(precisions) or PRECISIONS,
                    method=method, ranges=ranges, calib_limit=limit, compare_limit=limit, batch_size=batch_size,
                    keep_float=tuple(keep_float), placement=placement, fallback=fallback, max_float=max_float,
                    task=task, task_options=options, labels=labels, progress=not quiet)
    outcome = run_pipeline(cfg, echo=(lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True)))
    rec = outcome.recommendation
    click.echo(f"recommendation: {rec.precision} — {rec.reason}", err=True)
    click.echo(f"results: {outcome.results_json}", err=True)
    click.echo(str(outcome.report))  # the last line on stdout is the report, for scripts


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Folder of representative samples.")
@_options
@common_options
def run_command(model, data, **kwargs):
    """Calibrate MODEL on DATA, simulate INT8/FP16 on the CPU, compare layer by layer, write the report."""
    _run(model, data, **kwargs)


@click.command("demo")
@_options
@common_options
def demo_command(**kwargs):
    """The main job on the embedded PP-OCRv4 text detector and the bundled calibration images, judged
    as what it is: a text probability map (task segment, mask IoU at threshold 0.3, as DB detectors
    binarise it) unless --task says otherwise."""
    from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL

    _run(DEFAULT_MODEL, DEFAULT_DATA, default_task=DEMO_TASK, default_options=dict(DEMO_TASK_OPTIONS), **kwargs)


COMMANDS = [run_command, demo_command]
