"""``qbench calibrate MODEL --data DIR --method entropy --cache out.cache``"""

from __future__ import annotations

from pathlib import Path

import click

from qbench.atomic import check_output_dir
from qbench.calibrate.methods import METHODS
from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL)
@click.option("--data", "data", type=click.Path(path_type=Path), default=DEFAULT_DATA, show_default=True,
              help="Calibration data folder (images + manifest.json, or .npy/.npz files).")
@click.option("--method", type=click.Choice(METHODS), default="entropy", show_default=True,
              help="entropy = TensorRT EntropyCalibration2; minmax = MinMaxCalibration (max |x|); legacy = "
                   "LegacyCalibration (--quantile, --regression-cutoff); percentile = --percentile of |x|; "
                   "mse = amax minimising the squared quantization error.")
@click.option("--percentile", type=float, default=99.99, show_default=True, help="For --method percentile.")
@click.option("--quantile", type=float, default=0.5, show_default=True, help="For --method legacy (Polygraphy's default).")
@click.option("--regression-cutoff", type=float, default=0.5, show_default=True, help="For --method legacy.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="TensorRT calibration batch size [the largest that fits --memory-budget].")
@click.option("--memory-budget", type=click.IntRange(min=1), default=2048, show_default=True,
              help="MiB of activations the automatic batch size may hold.")
@click.option("--histogram", "growth", type=click.Choice(["double", "append"]), default="double", show_default=True,
              help="double = TensorRT's 2048 bins, range doubled when exceeded; append = bins of the same width "
                   "appended (NVIDIA's PyTorch reproduction).")
@click.option("--entropy-variant", type=click.Choice(["modelopt", "gtc"]), default="modelopt", show_default=True,
              help="Threshold convention of the entropy search (docs/CALIBRATION.md).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most this many samples.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a TensorRT calibration cache here (and its provenance sidecar <cache>.provenance.json).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ranges table (with histogram summaries) as JSON here.")
@click.option("--trt-version", default=None, help="NV_TENSORRT_VERSION for the cache header, e.g. 8601 or 100300.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def calibrate_command(model, data, method, percentile, quantile, regression_cutoff, batch_size, memory_budget, growth,
                      entropy_variant, limit, cache, json_path, trt_version, quiet):
    """Compute per-tensor INT8 ranges of MODEL from calibration data, the way TensorRT does."""
    from qbench.calibrate import calibrate
    from qbench.ranges import DEFAULT_TRT_VERSION

    if trt_version is not None and not trt_version.isdigit():
        raise click.BadParameter("must be digits, e.g. 8601 or 100300", param_hint="--trt-version")
    if cache is None and json_path is None:
        cache = Path(f"{Path(model).stem}.{method}.cache")
    for target in (cache, json_path):
        if target is not None:
            check_output_dir(target.parent)  # refuse an unusable destination before the calibration pass
    ranges = calibrate(model, data, method=method, batch_size=batch_size, limit=limit, percentile=percentile,
                       quantile=quantile, regression_cutoff=regression_cutoff, growth=growth,
                       entropy_variant=entropy_variant, memory_budget=memory_budget << 20, progress=not quiet,
                       trt_version=trt_version or DEFAULT_TRT_VERSION)
    prov = ranges.provenance or {}
    click.echo(f"calibrated {len(ranges)} tensors of {Path(model).name} on {prov.get('samples', '?')} samples in "
               f"{prov.get('batches', '?')} batch(es) of {prov.get('batch_size', '?')} ({ranges.method}, {ranges.header})")
    for note in ranges.notes:
        click.echo(f"warning: {note}", err=True)
    if cache is not None:
        click.echo(f"wrote {ranges.write_trt_cache(cache)}")
    if json_path is not None:
        click.echo(f"wrote {ranges.write_json(json_path)}")


COMMANDS = [calibrate_command]
