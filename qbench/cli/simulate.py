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
@click.option("--placement", type=click.Choice(["likely", "worst"]), default="likely", show_default=True,
              help="INT8 placement (docs/SIMULATION.md): TensorRT's likely choices or every tensor it could store in INT8.")
@click.option("--layer-info", "layer_info", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="As-built INT8: the engine's trtexec --exportLayerInfo JSON; simulates the precisions it chose.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the simulation model (.onnx).")
def simulate_command(model: Path, ranges_path: Path | None, precision: str, keep_float: tuple[str, ...], placement: str,
                     layer_info: Path | None, output: Path, quiet: bool = False) -> None:
    """Write MODEL with INT8 Q/DQ (TensorRT explicit-quantization placement) or FP16 rounding.

    The result runs in ONNX Runtime like the original; each tensor keeps its ONNX name and holds
    the simulated value, the float value is kept as NAME::float. --quiet: only the result line
    (no notes or warnings), as in qbench run.
    """
    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    from qbench.model import ModelGraph
    from qbench.simulate import build_fp16_model, build_int8_model

    graph = ModelGraph.from_path(model)
    if precision == "int8":
        if ranges_path is None:
            raise QbenchError("--precision int8 needs --ranges FILE (a calibration cache or qbench ranges JSON)")
        from qbench.ranges import Ranges

        ranges = Ranges.read(ranges_path, graph=graph)
        if layer_info is not None:
            from qbench.artifacts import parse_layer_info
            from qbench.simulate.asbuilt import audit_precisions, build_as_built_model

            info = parse_layer_info(layer_info.read_text(encoding="utf-8", errors="replace"), source=str(layer_info))
            sim = build_as_built_model(graph, ranges, info)
            for ignored in audit_precisions(graph, info, keep_float=keep_float):
                say(f"warning: {ignored.message()}")
        else:
            from qbench.simulate.common import resolve_keep_float
            from qbench.simulate.placement import concat_hazards, plan_int8

            sim = build_int8_model(graph, ranges, keep_float=keep_float, placement=placement)
            plan = plan_int8(graph, *resolve_keep_float(graph, keep_float), placement=placement)
            for hazard in concat_hazards(plan, ranges):
                say(f"warning: {hazard.message()}")
    else:
        if ranges_path is not None:
            say("note: --ranges is not used for fp16")
        sim = build_fp16_model(graph, keep_float=keep_float)
    sim.save(output)
    what = "quantized" if precision == "int8" else "rounded"
    click.echo(f"{precision}: {len(sim.quantized) + len(sim.quantized_inputs)} activations and {len(sim.weights)} weights {what}"
               f", {len(sim.kept_float) + len(sim.kept_nodes)} names kept in float -> {output}")


COMMANDS = [simulate_command]
