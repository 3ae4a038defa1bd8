"""``qbench compare``: layer-by-layer comparison of the FP32 model against a candidate."""

from __future__ import annotations

import math
from pathlib import Path

import click

from qbench.errors import QbenchError


def _summary(cmp) -> str:
    meta = cmp.meta
    counts = ", ".join(f"{k} {v}" for k, v in sorted(meta["status_counts"].items()))
    lines = [f"{meta['reference']} vs {meta['candidate']}: {meta['tensors_compared']} tensors over {meta['samples']} sample(s) ({counts})"]
    if cmp.unmatched:
        lines.append(f"unmatched: {len(cmp.unmatched)} tensor(s), e.g. {cmp.unmatched[0][0]}: {cmp.unmatched[0][1]}")
    first = cmp.first_problem
    lines.append(f"first problem: {first['message'].split(': ', 1)[1]}" if first else "first problem: none (every tensor within thresholds)")
    outputs = cmp.tensors[cmp.tensors["is_output"]]
    for _, row in outputs.iterrows():
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
    return "\n".join(lines)


@click.command("compare")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data folder (images + manifest.json, or .npy/.npz). Default: the embedded calibration images.")
@click.option("--candidate", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A second ONNX model to compare against MODEL, tensor by tensor under shared names.")
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default=None,
              help="Compare MODEL against its own simulated INT8 or FP16 version.")
@click.option("--ranges", "ranges_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="INT8 ranges: a TensorRT calibration cache or qbench ranges JSON.")
@click.option("--method", default=None, help="Calibrate INT8 ranges on --data with this method (default: entropy) when no --ranges.")
@click.option("--keep-float", multiple=True, help="Tensor or node to leave in float32 in the simulation (repeatable).")
@click.option("--limit", type=int, default=None, help="Compare at most N samples.")
@click.option("--min-cosine", type=float, default=None, help="A tensor is divergent below this cosine similarity (default 0.9).")
@click.option("--max-rel-l2", type=float, default=None, help="A tensor is divergent above this relative L2 error (default 0.5).")
@click.option("--max-replay", type=int, default=20, show_default=True, help="Replay at most N flagged nodes alone to find culprits.")
@click.option("--no-replay", is_flag=True, help="Skip the culprit replay.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for tensors.csv and comparison.json. Default: reports/compare-<model>-<candidate>.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def compare_command(model, data_dir, candidate, precision, ranges_path, method, keep_float, limit, min_cosine, max_rel_l2,
                    max_replay, no_replay, out_dir, quiet):
    """Compare MODEL (FP32 reference) layer by layer with a candidate: find zero outputs, NaN/Inf and
    divergence, the first tensor where a problem appears, and the nodes that introduce it."""
    from qbench.compare import Thresholds, compare_models, compare_precision
    from qbench.data import load_dataset
    from qbench.defaults import DEFAULT_DATA, DEFAULT_REPORTS
    from qbench.model import ModelGraph

    if (candidate is None) == (precision is None):
        raise QbenchError("give exactly one of --candidate OTHER.onnx or --precision int8|fp16")
    if precision != "int8" and (ranges_path or method):
        raise QbenchError("--ranges and --method only apply to --precision int8")
    if ranges_path and method:
        raise QbenchError("give --ranges or --method, not both")
    if limit is not None and limit < 1:
        raise QbenchError(f"--limit must be at least 1, not {limit}")
    if keep_float and precision is None:
        raise QbenchError("--keep-float only applies to --precision")
    defaults = Thresholds()
    th = Thresholds(min_cosine if min_cosine is not None else defaults.min_cosine,
                    max_rel_l2 if max_rel_l2 is not None else defaults.max_rel_l2)
    if not (-1.0 <= th.min_cosine <= 1.0) or th.max_rel_l2 < 0 or math.isnan(th.max_rel_l2):
        raise QbenchError("--min-cosine must lie in [-1, 1] and --max-rel-l2 must be non-negative")

    graph = ModelGraph.from_path(model)
    dataset = load_dataset(data_dir or DEFAULT_DATA, graph.inputs)
    common = dict(limit=limit, thresholds=th, replay=not no_replay, max_replay=max_replay, progress=not quiet)
    if candidate is not None:
        cmp = compare_models(graph, ModelGraph.from_path(candidate), dataset, **common)
        label = Path(candidate).stem
    elif precision == "int8":
        from qbench.ranges import Ranges

        if ranges_path:
            ranges = Ranges.read(ranges_path, graph=graph)
        else:
            from qbench.calibrate import calibrate

            ranges = calibrate(graph, dataset, method=method or "entropy", limit=limit, progress=not quiet)
        cmp = compare_precision(graph, dataset, "int8", ranges, keep_float=keep_float, **common)
        label = "int8"
    else:
        cmp = compare_precision(graph, dataset, "fp16", keep_float=keep_float, **common)
        label = "fp16"
    out = out_dir or DEFAULT_REPORTS / f"compare-{graph.name}-{label}"
    paths = cmp.save(out)
    click.echo(_summary(cmp))
    click.echo(f"wrote {paths['tensors']} and {paths['comparison']}")


COMMANDS = [compare_command]
