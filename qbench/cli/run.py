"""``qbench run`` (the main job on a user's model) and ``qbench demo`` (the same on the embedded default)."""

from __future__ import annotations

from pathlib import Path

import click

from qbench.cli.common import common_options
from qbench.cli.task_options import judge_settings, task_options
from qbench.defaults import PRECISIONS
from qbench.simulate import formats
from qbench.simulate.fp8 import CALIBRATORS as FP8_CALIBRATORS

from qbench.calibrate.methods import METHODS

_METHODS = click.Choice(METHODS)
# the demo's model is a DB text detector: its output is a probability map binarised at 0.3
DEMO_TASK = "segment"
DEMO_TASK_OPTIONS = {"threshold": 0.3}


def _options(func):
    options = [
        click.option("--precision", "precisions", multiple=True,
                     type=click.Choice(formats.names(simulated_only=False) + ("all",)),
                     help="Candidate format(s) to simulate and compare (docs/FORMATS.md); repeatable; all: every "
                          "simulated format [int8 and fp16]."),
        click.option("--fp8-calibrator", type=click.Choice(FP8_CALIBRATORS), default="max", show_default=True,
                     help="FP8 activation amax: the observed max |x| (Model Optimizer's FP8 default) or the --method ranges."),
        click.option("--int4-block", type=click.IntRange(min=2), default=128, show_default=True,
                     help="W4A16: INT4 weights per scale, along the input channels."),
        click.option("--awq", is_flag=True, default=False,
                     help="W4A16: activation-aware INT4 scales (AWQ; one more FP32 pass for per-channel statistics)."),
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
                     help="When no calibrator passes, rank layer sensitivity and search the smallest set of layers "
                          "to keep in float (candidate int8-mixed); when FP8 (or INT8 with FP8 requested) fails, the fewest layers "
                          "to move to BF16/FP16 (FP8) or FP8 (candidates fp8-bf16, int8-fp8). --no-fallback keeps only "
                          "the calibrator sweep."),
        click.option("--max-float", type=click.IntRange(min=0), default=8, show_default=True,
                     help="Most layers the mixed-precision search may keep in float (or move to a higher format)."),
        click.option("--calib-fraction", type=float, default=0.5, show_default=True,
                     help="Share of the samples that calibrate in the search; the rest (held out) judge."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration/judging split."),
        click.option("--search-time", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Time budget in seconds for sensitivity and mixed search [8x the INT8 comparison, at least "
                          "30 s]; without --sensitivity-layers, the layers measured by the task are as many as fit "
                          "70% of it."),
        click.option("--sensitivity", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
                     help="Per-layer sensitivity: only when no calibrator passes (auto), always, or never."),
        click.option("--sensitivity-layers", type=click.IntRange(min=1), default=None,
                     help="Measure at most N layers by the task metric (the diagnosis's culprits, then the layers "
                          "with the most quantization noise first) [as many as fit --search-time]."),
        click.option("--fp16-mode", type=click.Choice(["auto", "likely", "worst", "both"]), default="auto", show_default=True,
                     help="FP16 assumptions: likely (BN folded, FP32 accumulation), worst (BN unfolded, FP16 "
                          "accumulation), both, or auto (worst too when the headroom analysis finds a risk)."),
    ]
    for option in reversed(options):
        func = option(func)
    return task_options(func)


def run_pipeline(cfg, echo=print):
    """qbench.pipeline.run_pipeline, imported on the first run: the stages load when a run starts,
    not for `qbench --help` (start-up time)."""
    from qbench.pipeline import run_pipeline as run

    return run(cfg, echo=echo)


def _run(model, data, out, precisions, fp8_calibrator, int4_block, awq, method, ranges, limit, batch_size, keep_float, placement, fallback, max_float, fp16_mode,
         calib_fraction, seed, search_time, sensitivity, sensitivity_layers,
         task, labels, task_option, max_drop, min_agreement, evaluator, default_task="generic", default_options=None,
         quiet=False) -> None:
    # --out (report folder, default reports/<model>), --limit and --quiet come from common_options
    from qbench.pipeline import RunConfig  # every stage: loaded when a run starts, not for --help

    task, options, labels = judge_settings(task, labels, task_option, max_drop, min_agreement, evaluator,
                                           default_task, default_options)
    cfg = RunConfig(model=Path(model), data=Path(data), out=out, precisions=tuple(precisions) or PRECISIONS,
                    method=method, ranges=ranges, calib_limit=limit, compare_limit=limit, batch_size=batch_size,
                    keep_float=tuple(keep_float), placement=placement, fallback=fallback, max_float=max_float, fp16_mode=fp16_mode,
                    task=task, task_options=options, labels=labels, progress=not quiet,
                    calib_fraction=calib_fraction, seed=seed, search_time_s=search_time, sensitivity=sensitivity,
                    sensitivity_layers=sensitivity_layers,
                    format_options={"fp8_calibrator": fp8_calibrator, "block": int4_block, "awq": awq})
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
