"""``qbench calibrate MODEL --data DIR --method entropy --cache out.cache``"""

from __future__ import annotations

from pathlib import Path

import click

from qbench.atomic import check_output_dir
from qbench.cli.common import common_options
from qbench.errors import QbenchError

from qbench.defaults import DEFAULT_DATA, DEFAULT_MODEL


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL)
@click.option("--data", "data", type=click.Path(path_type=Path), default=DEFAULT_DATA, show_default=True,
              help="Calibration data folder (images + manifest.json, or .npy/.npz files).")
@click.option("--method", type=click.Choice(["entropy", "minmax", "percentile"]), default="entropy", show_default=True,
              help="entropy = TensorRT EntropyCalibration2; minmax = max |x|; percentile = --percentile of |x|.")
@click.option("--percentile", type=float, default=99.99, show_default=True, help="For --method percentile.")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Samples per calibration batch.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a TensorRT calibration cache here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ranges table (with histogram summaries) as JSON here.")
@click.option("--trt-version", default=None, help="NV_TENSORRT_VERSION for the cache header, e.g. 8601 or 100300.")
@common_options
def calibrate_command(model, data, method, percentile, batch_size, cache, json_path, trt_version, quiet, out, limit):
    """Compute per-tensor INT8 ranges of MODEL from calibration data, the way TensorRT does."""
    from qbench.calibrate import calibrate
    from qbench.ranges import DEFAULT_TRT_VERSION

    if trt_version is not None and not trt_version.isdigit():
        raise click.BadParameter("must be digits, e.g. 8601 or 100300", param_hint="--trt-version")
    if cache is None and json_path is None:
        # --out (common option): the folder for the default cache name; default the current folder
        cache = Path(out or ".") / f"{Path(model).stem}.{method}.cache"
    elif out is not None:
        raise QbenchError("give --out (a folder for the default cache name) or --cache/--json, not both")
    for target in (cache, json_path):
        if target is not None:
            check_output_dir(target.parent)  # refuse an unusable destination before the calibration pass
    ranges = calibrate(model, data, method=method, batch_size=batch_size, limit=limit, percentile=percentile,
                       progress=not quiet, trt_version=trt_version or DEFAULT_TRT_VERSION)
    samples = max((e.samples for e in ranges.entries.values()), default=0)
    click.echo(f"calibrated {len(ranges)} tensors of {Path(model).name} on {samples} samples ({ranges.method})")
    if cache is not None:
        click.echo(f"wrote {ranges.write_trt_cache(cache)}")
    if json_path is not None:
        click.echo(f"wrote {ranges.write_json(json_path)}")


@click.command("check-ranges")
@click.argument("ranges_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL, show_default=True)
def check_ranges_command(ranges_file, model):
    """Check a TensorRT calibration cache (or qbench ranges JSON) against MODEL."""
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges

    graph = ModelGraph.from_path(model)
    check = Ranges.read(ranges_file).check_against(graph, source=str(ranges_file)).raise_for_errors()
    click.echo(check.message())
    for note in check.warnings:
        click.echo(f"warning: {note}")


COMMANDS = [calibrate_command, check_ranges_command]
