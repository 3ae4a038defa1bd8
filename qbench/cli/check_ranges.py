"""``qbench check-ranges CACHE --model MODEL [--data DIR] [--trt-version V]``: does a calibration cache
(or ranges JSON) fit this model, and where did it come from (its provenance sidecar)?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qbench.defaults import DEFAULT_MODEL


@click.command("check-ranges")
@click.argument("ranges_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="The data you would calibrate with: warn if the cache was made on other data.")
@click.option("--trt-version", default=None, help="The TensorRT you will build with (e.g. 100300): warn on another major.")
def check_ranges_command(ranges_file, model, data, trt_version):
    """Check a TensorRT calibration cache (or qbench ranges JSON) against MODEL and print its provenance."""
    from qbench.provenance import data_digest
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.ranges import Ranges

    graph = ModelGraph.from_path(model)
    ranges = Ranges.read(ranges_file)
    check = ranges.check_against(graph, source=str(ranges_file)).raise_for_errors()
    click.echo(check.message())
    click.echo(f"header: {ranges.header}")
    if ranges.provenance:
        click.echo("provenance: " + json.dumps(ranges.provenance, indent=1, default=str))
    used = (ranges.provenance or {}).get("samples")  # compare the samples the calibration used
    digest = data_digest(load_dataset(data, graph.inputs), used if isinstance(used, int) else None) if data is not None else None
    for note in check.warnings + ranges.provenance_warnings(graph, digest, trt_version, source=str(ranges_file)):
        click.echo(f"warning: {note}")


COMMANDS = [check_ranges_command]
