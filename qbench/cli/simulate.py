"""``qbench simulate``: write an INT8 (Q/DQ) or FP16-rounded ONNX model that runs on the CPU."""

from __future__ import annotations

from pathlib import Path

import click

from qbench.errors import QbenchError


@click.command("simulate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ranges", "ranges_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Ranges table (TensorRT calibration cache or qbench JSON); required for int8.")
@click.option("--precision", type=click.Choice(["int8", "fp16"]), required=True, help="Precision to simulate.")
@click.option("--keep-float", "keep_float", multiple=True, metavar="NAME",
              help="Tensor or node name to keep in float32 (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the simulation model (.onnx).")
def simulate_command(model: Path, ranges_path: Path | None, precision: str, keep_float: tuple[str, ...], output: Path) -> None:
    """Write MODEL with INT8 Q/DQ (TensorRT explicit-quantization placement) or FP16 rounding.

    The result runs in ONNX Runtime like the original; each tensor keeps its ONNX name and holds
    the simulated value, the float value is kept as NAME::float.
    """
    from qbench.model import ModelGraph
    from qbench.simulate import build_fp16_model, build_int8_model

    graph = ModelGraph.from_path(model)
    if precision == "int8":
        if ranges_path is None:
            raise QbenchError("--precision int8 needs --ranges FILE (a calibration cache or qbench ranges JSON)")
        from qbench.ranges import Ranges

        sim = build_int8_model(graph, Ranges.read(ranges_path, graph=graph), keep_float=keep_float)
    else:
        if ranges_path is not None:
            click.echo("note: --ranges is not used for fp16", err=True)
        sim = build_fp16_model(graph, keep_float=keep_float)
    sim.save(output)
    what = "quantized" if precision == "int8" else "rounded"
    click.echo(f"{precision}: {len(sim.quantized) + len(sim.quantized_inputs)} activations and {len(sim.weights)} weights {what}"
               f", {len(sim.kept_float) + len(sim.kept_nodes)} names kept in float -> {output}")


COMMANDS = [simulate_command]
