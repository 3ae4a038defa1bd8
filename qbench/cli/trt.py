"""TensorRT commands: ``qbench build``, ``qbench trt-info``, ``qbench trt-bench``, ``qbench trt-inspect``.

All TensorRT work happens in ``qbench.tensorrt`` (imported lazily); without TensorRT or a GPU each
command ends with one line saying what is missing and a non-zero exit.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qbench.errors import QbenchError


def _shapes(specs: tuple[str, ...]) -> dict:
    """'x:1x3x320x320,1x3x640x640,4x3x960x960' -> {'x': (min, opt, max)}."""
    out = {}
    for spec in specs:
        try:
            name, dims = spec.rsplit(":", 1)
            parts = [tuple(int(d) for d in s.split("x")) for s in dims.split(",")]
            if len(parts) == 1:
                parts = parts * 3
            if len(parts) != 3:
                raise ValueError
        except ValueError:
            raise QbenchError(f"--shapes {spec!r}: expected NAME:MIN,OPT,MAX with dims like 1x3x640x640") from None
        if name in out:  # a second entry would silently replace the first
            raise QbenchError(f"--shapes gives input {name!r} twice")
        out[name] = tuple(parts)
    # names and ranks are checked against the model's inputs by build_engine (shapes.validate_shapes)
    return out


@click.command("build")
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--from", "from_dir", type=click.Path(path_type=Path), default=None,
              help="Build a shipped folder: a search's int8-best (model, calibration cache, layers kept in float) or "
                   "a format's fp8-best / w4a16-best / bf16-best (its model and its format's flags); replaces MODEL, "
                   "--precision and --cache.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None, help="[fp32]")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Calibration data folder (INT8).")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Calibration cache or qbench ranges JSON: read if present, written after 10.x calibration.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Engine file to write.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Calibration batch size.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Calibrate on at most N samples.")
@click.option("--shapes", multiple=True, help="Dynamic input profile NAME:MIN,OPT,MAX (dims as 1x3x640x640).")
@click.option("--workspace-mb", type=click.IntRange(min=16), default=4096, show_default=True)
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None)
@click.option("--engine-cache", type=click.Path(path_type=Path), default=None, help="Folder of cached engines.")
@click.option("--capture", type=click.Choice(["none", "debug", "unfused", "outputs"]), default="none", show_default=True,
              help="Layer-wise capture built into the engine (see docs/TENSORRT.md).")
def build_command(model, from_dir, precision, data, cache, output, batch_size, limit, shapes, workspace_mb, timing_cache,
                  engine_cache, capture):
    """Build a TensorRT engine from the ONNX MODEL (10.x: builder flags; 11.x: strongly typed), or
    from a shipped folder (--from): a search's int8-best or a format's fp8-best / w4a16-best / bf16-best."""
    from qbench.tensorrt.builder import BuildOptions, build_engine

    layer_precisions = {}
    if from_dir is not None:
        from qbench.search import format_deploy
        from qbench.search.deploy import read

        if model is not None or cache is not None or precision not in (None, "int8"):
            raise QbenchError("--from gives the model, the calibration cache and the precision; drop MODEL, --cache "
                              "and --precision")
        shipped = format_deploy.read(from_dir)
        if shipped is not None and precision is not None:
            raise QbenchError(f"--from {from_dir} gives the precision ({shipped['format']}); drop --precision")
    else:
        shipped = None
    if shipped is not None:  # fp8-best / w4a16-best / bf16-best (qbench.search.format_deploy): its row builds it
        model, precision = Path(from_dir) / Path(str(shipped.get("model") or "model.onnx")).name, shipped["format"]
        if not model.is_file():
            raise QbenchError(f"{from_dir}: the model {model.name} its verdict.json names is missing")
        click.echo(f"qbench: building {from_dir}: {precision} from {model.name} (verdict: {shipped.get('verdict') or '?'})",
                   err=True)
    elif from_dir is not None:
        found = read(from_dir)
        model, cache, precision = found["model"], found["cache"], "int8"
        layer_precisions = {name: found["float_precision"] for name in found["keep_float"]}
        click.echo(f"qbench: building {from_dir}: INT8, {len(layer_precisions)} layer(s) kept in "
                   f"{found['float_precision']} (search verdict: {found['verdict'].get('verdict', '?')})", err=True)
    elif model is None:
        raise QbenchError("give the ONNX MODEL to build, or --from <out>/int8-best (or fp8-best, w4a16-best, bf16-best)")
    precision = precision or "fp32"
    opts = BuildOptions(workspace_mb=workspace_mb, calib_batch_size=batch_size, calib_limit=limit,
                        shapes=_shapes(shapes), timing_cache=timing_cache, engine_cache=engine_cache, capture=capture,
                        layer_precisions=layer_precisions,
                        higher_format=(shipped or {}).get("higher_format"))
    result = build_engine(model, precision, data=data, cache=cache, options=opts)
    result.save(output)
    click.echo(f"TensorRT {result.trt_version}: {result.path_description}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.capture is not None:
        click.echo(f"capture: {result.capture.note}", err=True)
    click.echo(str(output))


@click.command("trt-info")
def info_command():
    """What TensorRT, CUDA binding and GPU are available, and which build path would run."""
    from qbench.tensorrt._import import describe_path, import_trt
    from qbench.tensorrt.builder import create_builder
    from qbench.tensorrt.device_buffers import default_backend

    trt = import_trt()
    click.echo(f"TensorRT {trt.__version__} (module {trt.__name__})")
    click.echo(f"build path: {describe_path(trt)}")
    try:
        backend = default_backend()
        capability = backend.compute_capability()
        click.echo(f"CUDA binding: {backend.name}; GPU: {backend.device_name()}; compute capability: "
                   f"{'unknown' if capability is None else f'{capability:.1f}'}")
    except QbenchError as exc:
        click.echo(f"CUDA binding/GPU: none ({exc})")
    create_builder(trt)  # raises one clear line when the libraries cannot build
    click.echo("TensorRT builder: available")


@click.command("trt-bench")
@click.argument("engine", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--model", type=click.Path(path_type=Path), required=True, help="The ONNX model (for input specs).")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Data folder; the first batch is timed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=200, show_default=True)
def bench_command(engine, model, data, batch_size, warmup, iterations):
    """Latency (median, percentiles) and throughput of ENGINE, timed per inference by Polygraphy."""
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.tensorrt.runner import TrtRunner
    from qbench.tensorrt.timing import measure

    graph = ModelGraph.from_path(model)
    feed = next(iter(load_dataset(data, graph.inputs).batches(batch_size, batch_size)))
    runner = TrtRunner(engine)
    try:
        click.echo(json.dumps(measure(runner, feed, warmup=warmup, iterations=iterations), indent=1))
    finally:
        runner.close()


@click.command("trt-inspect")
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def inspect_command(source):
    """Per-layer precision and fusions of an engine file, or of trtexec --exportLayerInfo JSON."""
    from qbench.artifacts.layer_info import layers_frame, parse_layer_info

    text = source.read_bytes()
    if text.lstrip()[:1] == b"{":
        info = parse_layer_info(text.decode("utf-8", "replace"), source=str(source))
    else:
        from qbench.tensorrt._import import import_trt
        from qbench.tensorrt.inspector import engine_information, load_engine

        # deserialize only: no execution context, stream or device buffers just to read the engine
        trt = import_trt()
        loaded = load_engine(source, trt)
        info = engine_information(loaded.engine, trt)
    frame = layers_frame(info)
    click.echo(frame[["layer", "type", "precision", "fused"]].to_string(index=False))


COMMANDS = [build_command, info_command, bench_command, inspect_command]
