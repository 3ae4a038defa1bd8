"""Ready-made comparisons of the FP32 model against: its own simulated precision, another ONNX file,
TensorRT results imported from trtexec/Polygraphy files, or a TensorRT engine. They only build
runners, hand them to ``compare_runs`` and label where the candidate's numbers came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.compare import diagnose
from qbench.compare.channel_stats import channel_moments
from qbench.compare.comparator import _channel_order, _pictures, _progress, compare_runs, sample_name
from qbench.compare.headroom import analyze_headroom, largest_accumulating, tensor_peaks
from qbench.compare.result import Comparison
from qbench.compare.tap import OutputsTap
from qbench.data import iter_samples, sorted_files
from qbench.errors import QbenchError
from qbench.judge import load_labels, make_judge
from qbench.model import ModelGraph
from qbench.runners import OrtRunner
from qbench.runners.imported import ImportedRunner
from qbench.simulate import formats
from qbench.simulate.fp16 import ACCUMULATING_OPS
from qbench.simulate.placement import concat_hazards
from qbench.tensorrt.runner import TrtRunner

PRECISIONS = formats.names()
LABELS_FILE = "labels.json"  # ground truth for the judge, looked for in the data folder


def dataset_judge(graph: ModelGraph, dataset, task: str = "generic", options: dict | None = None, labels=None, *,
                  data_dir=None, limit: int | None = None, echo=None):
    """The task judge for comparisons over ``dataset``: ``task`` with its ``options``, and the labels
    (``labels``, else labels.json in ``data_dir`` when there is one) matched to the samples compared.
    ``echo``: where to say what --task auto guessed and which labels were read."""
    say = echo or (lambda _msg: None)
    if labels is None and data_dir is not None and (Path(data_dir) / LABELS_FILE).is_file():
        labels = Path(data_dir) / LABELS_FILE
    n = len(dataset) if limit is None else min(len(dataset), limit)
    loaded = load_labels(labels, [sample_name(dataset, i) for i in range(n)]) if labels else None
    judge = make_judge(task or "generic", graph, dict(options or {}), loaded)
    if judge.note:  # --task auto: say what was guessed and why
        say(f"qbench: task: {judge.task} (guessed: {judge.note})")
    if loaded is not None:
        say(f"qbench: labels: {labels} ({len(loaded)} {loaded.kind} label(s))")
    return judge


def compare_precision(graph: ModelGraph, dataset, precision: str, ranges=None, *, keep_float=(), reference=None,
                      placement: str = "likely", fp16_mode: str = "likely", peaks=None, format_options=None,
                      **kwargs) -> Comparison:
    """FP32 ``graph`` vs its simulation in ``precision``, a format of ``qbench.simulate.formats``
    (INT8 and FP8 need ``ranges``). ``reference``: an FP32 runner of ``graph`` to reuse across
    comparisons (one is built if None). ``fp16_mode``: ``likely`` or ``worst`` for the FP16/BF16
    simulations; ``peaks``: FP32 tensor peaks already measured (tensor -> max |x|), which pick the FP16
    worst mode's FP16-accumulated layers. ``format_options``: the format's own options (fp8_calibrator,
    block). A format with FP16 headroom carries its analysis (``cmp.headroom``, qbench.compare.headroom)."""
    if precision not in formats.FORMATS:
        raise QbenchError(f"precision must be one of {', '.join(formats.names())}, not {precision!r}")
    fmt = formats.FORMATS[precision]
    accumulate = ()
    if fmt.headroom and fp16_mode == "worst":
        if peaks is None:  # one FP32 pass over the accumulating layers' outputs only
            peaks = tensor_peaks(graph, dataset, limit=kwargs.get("limit"),
                                 names=[t.name for t in graph.tensors if t.op_type in ACCUMULATING_OPS])
        accumulate = largest_accumulating(graph, peaks)
    options = dict(format_options or {})
    wanted = fmt.channel_stats(graph, keep_float, options) if fmt.channel_stats else []
    if wanted:  # AWQ: one FP32 pass over the tensors whose per-channel statistics the build needs
        options["channel_stats"] = channel_moments(graph, dataset, wanted, limit=kwargs.get("limit"))
    options.pop("awq", None)
    sim = fmt.simulate(graph, ranges, keep_float, mode=fp16_mode, placement=placement, accumulate=accumulate, **options)
    names = [t.name for t in graph.float_tensors]
    reference = reference or OrtRunner(graph, name="fp32")
    # ORT would fuse Q/DQ into its own int8 kernels, which refuse extreme scales (a planted or broken
    # range); unoptimised, the model computes exactly the DQ(Q(x)) values the convention promises
    candidate = OrtRunner(sim.model, name=f"{precision} (simulated)", capture=names, optimize=False)
    int8_stats = fmt.stats == "int8"
    cmp = compare_runs(graph, reference, candidate, dataset, candidate_model=sim.model, precision=fmt.stats,
                       ranges=_AppliedRanges(ranges, sim) if int8_stats else None,
                       quantized=list(sim.quantized) + list(sim.quantized_inputs) if int8_stats else None, **kwargs)
    cmp.meta["precision"] = precision
    # how many tensors the format changed: 0 where the model has no layer it quantizes (NVFP4 on a
    # Conv-only net), which the recommendation must not read as a cheap pass (qbench.advise)
    cmp.meta["simulated_tensors"] = len(sim.quantized) + len(sim.quantized_inputs) + len(sim.weights)
    how = f"{fmt.label} ({'Q/DQ' if fmt.needs_ranges else sim.mode + ' mode' if sim.mode else 'rounded'})"
    if fmt.headroom:
        _add_headroom(cmp, graph, sim)
    elif int8_stats:
        _blame_shared_scales(cmp, sim, ranges)
    if not fmt.headroom and sim.assumptions:
        cmp.meta["format_assumptions"] = list(sim.assumptions)
    cmp.meta["gpus"] = fmt.gpus
    if options.get("channel_stats"):
        cmp.channel_stats = options["channel_stats"]  # the ship step quantizes the same way
    return _describe(cmp, f"ONNX Runtime CPU simulation of {how} (not TensorRT)", simulated=True)


def judge_precision(graph: ModelGraph, dataset, precision: str, ranges, judge, *, keep_float=(), limit: int | None = None,
                    progress: bool = True, pictures: int = 4):
    """The task judge alone on FP32 ``graph`` vs its simulated ``precision`` (outputs only, no tensor
    comparison): (TaskResult, pictures of the worst samples). For a candidate whose tensors were
    compared without a judge (the fallback search's final model)."""
    sim = formats.get(precision).simulate(graph, ranges, keep_float)
    reference = OrtRunner(graph, name="fp32", capture=None)
    candidate = OrtRunner(sim.model, name=f"{precision} (simulated)", capture=None, optimize=False)
    tap = OutputsTap(judge, graph.output_names, _channel_order(dataset))
    n = len(dataset) if limit is None else min(len(dataset), limit)
    bar = _progress(n, progress, f"judge {precision}")
    try:
        for i, feed in enumerate(iter_samples(dataset, limit)):
            tap.add(i, sample_name(dataset, i), tap.take(reference.run(feed)), tap.take(candidate.run(feed)), feed)
            bar.update(1)
    finally:
        bar.close()
    task, wanted = tap.finish(pictures)
    return task, _pictures(tap, wanted, dataset, reference, candidate)


class _AppliedRanges:
    """``ranges`` as the INT8 simulation applied them: a Concat input is quantized at its Concat
    output's amax (TensorRT writes Concat inputs into the output buffer), so its saturation and
    zero-rounding counts are measured at that scale, not at its own calibrated range."""

    def __init__(self, ranges, sim):
        self._ranges = ranges
        self._scale_from = dict(getattr(sim, "scale_from", {}) or {})
        self.method = getattr(ranges, "method", "")

    def __contains__(self, name) -> bool:
        return name in self._ranges

    def amax(self, name):
        return self._ranges.amax(self._scale_from.get(name, name))


def _blame_shared_scales(cmp: Comparison, sim, ranges) -> None:
    """A Concat input zeroed by the Concat's shared scale: name the Concat as the culprit, ahead of
    the ranked culprits, and drop that input's own culprit entry (its node is not at fault)."""
    found = diagnose.shared_scale_findings(cmp.tensors, dict(sim.shared_scale or {}))
    if not found:
        return
    # most mismatched scale first, as the simulate/run header ranks them (calibrated ranges, every sample)
    from types import SimpleNamespace

    plan = SimpleNamespace(concat_of=dict(sim.shared_scale), scale_from=dict(sim.scale_from))
    rank = {h.tensor: i for i, h in enumerate(concat_hazards(plan, ranges, threshold=float("inf")))}
    found.sort(key=lambda f: rank.get(f["tensor"], len(rank)))
    blamed = {f["tensor"] for f in found}
    rest = [f for f in cmp.findings if not (f["kind"] == "culprit" and f["tensor"] in blamed)]
    at = next((i for i, f in enumerate(rest) if f["kind"] == "culprit"), len(rest))
    cmp.findings[:] = rest[:at] + found + rest[at:]


def _add_headroom(cmp: Comparison, graph: ModelGraph, sim) -> None:
    """The FP16 mode's assumptions and the headroom analysis, read off the measured FP32 extremes."""
    cmp.headroom = analyze_headroom(graph, cmp.tensors)
    cmp.findings.extend(cmp.headroom.findings())
    cmp.meta.update({"fp16_mode": sim.mode, "fp16_assumptions": list(sim.assumptions),
                     "fp16_accumulated": list(sim.accumulated), "fp16_headroom": cmp.headroom.summary()})


def compare_models(graph: ModelGraph, candidate: ModelGraph, dataset, **kwargs) -> Comparison:
    """FP32 ``graph`` vs another ONNX model (e.g. an edited or externally quantized copy), tensor by
    tensor under the names the two share."""
    names = [t.name for t in graph.float_tensors]
    present = {t.name for t in candidate.tensors} | {i.name for i in candidate.inputs}
    reference = OrtRunner(graph, name=graph.name)
    cand = OrtRunner(candidate, name=f"{candidate.name} (candidate)", capture=[n for n in names if n in present], optimize=False)
    cmp = compare_runs(graph, reference, cand, dataset, candidate_model=candidate.model, **kwargs)
    # run by ONNX Runtime on the CPU: the report's "not TensorRT" banner applies
    return _describe(cmp, f"another ONNX model ({candidate.name}) run in ONNX Runtime CPU (not TensorRT)", simulated=True)


# -- sources ------------------------------------------------------------------------------------
# Each comparison says in meta["source"] what produced the candidate's numbers: the report's
# "simulation, not TensorRT" banner is decided from it, and a wrong banner would mislead.
def _describe(cmp: Comparison, source: str, simulated: bool, capture_mode: str = "") -> Comparison:
    cmp.meta["source"] = source
    cmp.meta["simulated"] = simulated
    if capture_mode:
        cmp.meta["capture_mode"] = capture_mode
    return cmp


def _no_replay(cmp: Comparison, why: str) -> Comparison:
    """Replay needs a candidate model to cut single nodes out of; TensorRT results have none. Say so
    in the meta and the findings instead of leaving the user to wonder where the culprits went."""
    cmp.meta["replay"] = {"done": False, "reason": why}
    cmp.findings.append({"kind": "replay_unavailable", "tensor": None, "node": None, "op_type": None, "index": None,
                         "severity": "info", "message": f"culprit replay not possible: {why}"})
    return cmp


def _renamed_unmatched(cmp: Comparison, reason: str) -> Comparison:
    """The comparator's generic "not captured by candidate" becomes the TensorRT-specific why."""
    cmp.unmatched = [(t, reason if r.startswith("not captured by candidate") else r) for t, r in cmp.unmatched]
    return cmp


# -- TensorRT results made elsewhere ----------------------------------------------------------------
TRT_UNMATCHED = "not in the TensorRT results (fused away or not marked as output)"
IMPORTED_NO_REPLAY = ("imported TensorRT results hold values only, no model to replay single nodes in "
                      "(compare with --precision int8 to locate culprits in a simulation)")


def _json_kind(path: Path) -> str:
    """'trtexec' (a JSON list) or 'polygraphy' (a JSON object), from the first non-blank character."""
    if not path.is_file():
        raise QbenchError(f"TensorRT results file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return "trtexec"
    if head.startswith(b"{"):
        return "polygraphy"
    raise QbenchError(f"{path}: not trtexec --exportOutput JSON (a list) nor Polygraphy --save-outputs JSON (an object)")


def load_trt_results(paths, runner: str | None = None):
    """An ImportedRunner from trtexec ``--exportOutput`` files (one per sample, or a folder of them)
    or one Polygraphy ``--save-outputs`` file; returns (runner, kind)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        paths = sorted_files(folder.glob("*.json"))  # the same order as the --data samples
        if not paths:
            raise QbenchError(f"no trtexec --exportOutput .json files in {folder}")
    kinds = {_json_kind(p) for p in paths}
    if kinds == {"trtexec"}:
        if runner:
            raise QbenchError("--trt-runner only applies to a Polygraphy --save-outputs file")
        return ImportedRunner.from_trtexec(paths), "trtexec"
    if len(paths) != 1:
        raise QbenchError("give one Polygraphy --save-outputs file (it holds every sample), or trtexec files only")
    return ImportedRunner.from_polygraphy(paths[0], runner=runner), "polygraphy"


class _Recorder:
    """The reference runner, remembering its last sample's shapes so the imported results can be
    checked against them (the shapes depend on the --data input, so they are known only per run)."""

    def __init__(self, runner):
        self.runner = runner
        self.name = runner.name
        self.shapes: dict[str, tuple] = {}

    def run(self, feed):
        out = self.runner.run(feed)
        self.shapes = {k: tuple(np.shape(v)) for k, v in out.items()}
        return out


class _CheckedImport:
    """The imported results, refused sample by sample where a shape disagrees with the model's
    (a wrong --data folder or another model): a mismatch here is a user error, not a finding."""

    def __init__(self, runner, reference: _Recorder, source: str, model: str):
        self.runner, self.reference, self.source, self.model = runner, reference, source, model
        self.name = runner.name
        self.index = 0

    def run(self, feed):
        out = self.runner.run(feed)
        for name, arr in out.items():
            want = self.reference.shapes.get(name)
            if want is not None and tuple(np.shape(arr)) != want:
                raise QbenchError(f"{self.source}: sample {self.index}: {name!r} has shape {tuple(np.shape(arr))} but {self.model} "
                                  f"gives {want} on the --data sample; pass the inputs TensorRT ran on")
        self.index += 1
        return out


def compare_imported(graph: ModelGraph, runner, dataset, *, kind: str = "trtexec", limit: int | None = None,
                     **kwargs) -> Comparison:
    """FP32 ``graph`` vs TensorRT results computed elsewhere (an ImportedRunner), sample i of
    ``dataset`` against imported sample i. The dataset must be the inputs that produced them."""
    source = runner.source or runner.name
    n_data = len(dataset)
    if len(runner) != n_data:
        raise QbenchError(f"{source} holds {len(runner)} sample(s) but --data has {n_data}: pass the same inputs, "
                          "in the same order, that TensorRT ran on")
    known = {t.name for t in graph.tensors} | {i.name for i in graph.inputs}
    unknown = sorted({n for s in runner.samples for n in s} - known)
    if unknown:
        raise QbenchError(f"{source}: tensor(s) {unknown[:3]} are not in {graph.name} (the results must come from "
                          "this model and use its ONNX tensor names)")
    kwargs.pop("replay", None)
    reference = _Recorder(OrtRunner(graph, name=graph.name))
    cand = _CheckedImport(runner, reference, source, graph.name)
    cmp = compare_runs(graph, reference, cand, dataset, limit=limit, replay=False, **kwargs)
    tool = "trtexec --exportOutput" if kind == "trtexec" else "Polygraphy --save-outputs"
    _describe(cmp, f"imported TensorRT results ({tool}: {source})", simulated=False)
    cmp.meta["imported_samples"] = len(runner)
    return _no_replay(_renamed_unmatched(cmp, TRT_UNMATCHED), IMPORTED_NO_REPLAY)


CAPTURE_MODES = ("none", "debug", "unfused", "outputs")


def compare_engine(graph: ModelGraph, engine, dataset, *, capture: str = "none", **kwargs) -> Comparison:
    """FP32 ``graph`` vs a serialized TensorRT engine run here (needs TensorRT and a GPU).
    ``capture``: how the engine was built to expose tensors (docs/TENSORRT.md); "outputs" means
    every tensor was marked as an output, which the runner reads like any output."""
    if capture not in CAPTURE_MODES:
        raise QbenchError(f"capture mode must be one of {', '.join(CAPTURE_MODES)}, not {capture!r}")
    path = Path(engine)
    if not path.is_file():
        raise QbenchError(f"engine file not found: {path}")
    trt = TrtRunner(path, name=f"tensorrt ({path.name})", capture="none" if capture == "outputs" else capture)
    kwargs.pop("replay", None)
    try:
        cmp = compare_runs(graph, OrtRunner(graph, name=graph.name), trt, dataset, replay=False, **kwargs)
    finally:
        trt.close()
    _describe(cmp, f"TensorRT engine {path.name} run here, capture mode {capture}", simulated=False, capture_mode=capture)
    why = ("only the engine's outputs were captured" if capture == "none"
           else "TensorRT names or fuses tensors" if capture == "unfused" else "marked tensors can change fusions")
    _renamed_unmatched(cmp, f"not in the TensorRT engine's captured tensors ({why})")
    return _no_replay(cmp, "a TensorRT engine cannot run single nodes; use --precision int8 to locate culprits in a simulation")
