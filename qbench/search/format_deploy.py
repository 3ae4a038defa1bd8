"""Deployable output of the newer formats: ``<out>/<format>-best/`` beside ``int8-best/``.

For each shipped format of the table (qbench.simulate.formats: ``fp8``, ``w4a16``) the folder holds
the same kinds of files as ``int8-best/`` (qbench.search.deploy), written whatever the verdict, the
verdict last:

- ``model.onnx``: the float model with every node named as qbench names it;
- ``model_qdq.onnx``: the explicit model TensorRT builds from: float8 Q/DQ on the Conv/Gemm/MatMul
  inputs and weights (FP8), or the blockwise INT4 DequantizeLinear on the MatMul/Gemm weights
  (W4A16; activations are left float for the FP16 flag to convert). For TensorRT 11's strongly
  typed networks it is the same file (the types come from the Q/DQ);
- ``trtexec_flags.txt`` / ``polygraphy_flags.txt`` / ``build_trt10.py``: the flags of the format's row;
- ``verdict.json`` and ``README.txt``: the candidate's task verdict from this run.

A format without a Q/DQ form (``bf16``) gets the folder with ``model.onnx``, the flags and the
verdict only. None of these files was built by real TensorRT here (no machine of this workplace has it).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from qbench import atomic
from qbench.jsonsafe import jsonable
from qbench.search.deploy import named_model
from qbench.simulate import formats

BUILDER = '''"""TensorRT 10 build of model_qdq.onnx ({label}), written by qbench (never run on real TensorRT here)."""
import tensorrt as trt

logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
# TensorRT 11 / strongly typed: network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
if not parser.parse_from_file("{model}"):
    raise SystemExit("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
config = builder.create_builder_config()
{flags}
with open("model.engine", "wb") as f:
    f.write(builder.build_serialized_network(network, config))
'''


def folder_name(fmt) -> str:
    return f"{fmt.name}-best"


def write(out, graph, fmt, row: dict, qdq_model=None, higher=None, higher_layers=()) -> Path:
    """Write ``<out>/<fmt.name>-best/``; ``row``: the candidate's recommendation-table row (advise.evaluate).
    ``higher`` / ``higher_layers``: the shipped model is the mixed one (those layers in that format's
    row), whose flags are added to the base format's."""
    folder = atomic.ensure_dir(Path(out) / folder_name(fmt))
    named = named_model(graph)
    atomic.write_bytes(folder / "model.onnx", named.SerializeToString())
    model = "model.onnx"
    if qdq_model is not None:
        atomic.write_bytes(folder / "model_qdq.onnx", qdq_model.SerializeToString())
        model = "model_qdq.onnx"
    trtexec_flags, poly_flags, builder = fmt.trtexec.split(), fmt.polygraphy.split(), fmt.builder
    if higher is not None:  # the Casts of the layers in the higher format need its flag too
        trtexec_flags = list(dict.fromkeys(trtexec_flags + higher.trtexec.split()))
        poly_flags = list(dict.fromkeys(poly_flags + higher.polygraphy.split()))
        builder = "; ".join(dict.fromkeys(fmt.builder.split("; ") + higher.builder.split("; ")))
    trtexec = " ".join(shlex.quote(f) for f in [f"--onnx={model}", *trtexec_flags, "--saveEngine=model.engine"])
    poly = " ".join(shlex.quote(f) for f in ["convert", model, *poly_flags, "-o", "model.engine"])
    atomic.write_text(folder / "trtexec_flags.txt", trtexec + "\n")
    atomic.write_text(folder / "polygraphy_flags.txt", poly + "\n")
    atomic.write_text(folder / "build_trt10.py", BUILDER.format(label=fmt.label, model=model,
                                                                flags=builder.replace("; ", "\n")))
    verdict = {"format": fmt.name, "verdict": row.get("verdict"), "reason": row.get("why"), "task": row.get("task"),
               "primary": row.get("task_metric"), "value": row.get("task_value"),
               "interval": [row.get("task_ci_low"), row.get("task_ci_high")], "model": model,
               "gpus": fmt.gpus, "min_compute_capability": fmt.min_cc, "strongly_typed": fmt.strongly_typed,
               "simulated": "ONNX Runtime CPU simulation (not TensorRT)"}
    if higher is not None:
        verdict.update(candidate=row.get("precision"), higher_format=higher.name, higher_layers=list(higher_layers))
    layers_line = (f"Layers in {higher.label} (Casts in model_qdq.onnx): {', '.join(higher_layers)}\n" if higher is not None
                   else "")
    atomic.write_text(folder / "README.txt",
                      f"{fmt.label}: {str(verdict['verdict']).upper()} ({verdict['reason']})\nNeeds: {fmt.gpus}.\n"
                      f"{layers_line}\n"
                      f"Build (TensorRT 10):  trtexec $(cat trtexec_flags.txt)\n"
                      f"                 or:  polygraphy $(cat polygraphy_flags.txt)\n"
                      f"                 or:  python build_trt10.py\nTensorRT 11: {fmt.strongly_typed}.\n"
                      "None of these was run on real TensorRT by qbench; the verdict comes from ONNX Runtime CPU simulation.\n")
    atomic.write_text(folder / "verdict.json", json.dumps(jsonable(verdict), indent=1))
    return folder


def ship_formats(out, graph, comparisons: dict, table, ranges=None, keep_float=(), format_options=None,
                 mixed=None) -> list[Path]:
    """One folder per compared format whose row is ``shipped`` (INT8's folder is the search's).
    ``mixed``: {format: (candidate, higher format, layers)}: that format's folder ships the mixed
    candidate instead (qbench.format_stage.shipped_mixed: it ranks above the format alone)."""
    written = []
    rows = {r["precision"]: r for r in table.to_dict("records")} if table is not None and len(table) else {}
    for name in comparisons:
        fmt = formats.FORMATS.get(name)
        if fmt is None or not fmt.shipped or name not in rows:
            continue
        options = {k: v for k, v in dict(format_options or {}).items() if k != "awq"}
        if getattr(comparisons[name], "channel_stats", None):  # AWQ: the statistics the candidate was built with
            options["channel_stats"] = comparisons[name].channel_stats
        candidate, higher, layers = (mixed or {}).get(name, (name, None, []))
        if higher is not None and candidate in rows:
            options.update(higher=higher, higher_layers=layers)
        else:
            candidate, higher, layers = name, None, []
        qdq = fmt.deploy_model(graph, ranges, keep_float, **options) if fmt.deploy_model else None
        written.append(write(out, graph, fmt, rows[candidate], qdq, formats.FORMATS[higher] if higher else None, layers))
    return written


def read(folder) -> dict | None:
    """The verdict of a ``<format>-best/`` folder written here (it names its ``format``), or None for
    any other folder (``int8-best/`` is read by qbench.search.deploy)."""
    path = Path(folder) / "verdict.json"
    if not path.is_file():
        return None
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict) or verdict.get("format") not in formats.FORMATS:
        return None
    verdict["folder"] = str(folder)
    verdict["trtexec"] = (Path(folder) / "trtexec_flags.txt").read_text(encoding="utf-8").strip() \
        if (Path(folder) / "trtexec_flags.txt").is_file() else ""
    return verdict
