"""Run on a GPU machine with PyTorch and CUDA (no TensorRT, no network): does qbench's FP16
simulation tell the truth about real FP16 kernels?

The ONNX model is converted to PyTorch with onnx2torch (brought along as a wheel), run on the GPU
in FP32 (TF32 off) and in FP16 (``model.half()``: every parameter, BatchNorm statistics included,
stored in float16 unfolded; cuDNN/cuBLAS FP16 kernels), with every node's output captured under
its ONNX tensor name by forward hooks. Each run is compared tensor by tensor, in graph order,
with the GPU FP32 run; the first tensor past qbench's default thresholds (cosine < 0.9 or
relative L2 > 0.5 or new NaN/Inf) is the first divergent layer. Beside it the same figures for
qbench's CPU simulation in both FP16 modes (ONNX Runtime, against ONNX Runtime FP32), and, when
``--rewrite`` is given, for the rewritten model (qbench.simulate.fp16_rewrite) on real FP16 kernels.

Usage: python tests/device/fp16_crosscheck.py [--model M.onnx] [--data DIR] [--sample NAME] [--rewrite]
Prints one block per run; the last line is RESULT: ...
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MIN_COSINE, MAX_REL_L2 = 0.9, 0.5  # qbench.compare.Thresholds defaults


def metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    c = np.asarray(cand, dtype=np.float64).reshape(-1)
    bad = int((~np.isfinite(c)).sum() - (~np.isfinite(r)).sum())
    ok = np.isfinite(r) & np.isfinite(c)
    r, c = r[ok], c[ok]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    cos = float(r @ c / (nr * nc)) if nr > 0 and nc > 0 else (1.0 if nr == nc else 0.0)
    rel = float(np.linalg.norm(c - r) / nr) if nr > 0 else float(np.linalg.norm(c))
    return {"cosine": cos, "rel_l2": rel, "new_nonfinite": max(bad, 0), "ref_peak": float(np.abs(r).max()) if r.size else 0.0,
            "cand_max": float(c.max()) if c.size else float("nan")}


def divergent(m: dict) -> bool:
    return m["new_nonfinite"] > 0 or m["cosine"] < MIN_COSINE or m["rel_l2"] > MAX_REL_L2


def walk(order: list[str], ref: dict, cand: dict, outputs: list[str]) -> dict:
    """First divergent tensor in graph order and the outputs' errors."""
    first = None
    compared = 0
    for name in order:
        if name in ref and name in cand and np.shape(ref[name]) == np.shape(cand[name]):
            compared += 1
            m = metrics(ref[name], cand[name])
            if first is None and divergent(m):
                first = (name, m)
    outs = {o: metrics(ref[o], cand[o]) for o in outputs if o in ref and o in cand}
    return {"first": first, "outputs": outs, "compared": compared}


def text_pixels(prob: np.ndarray, thresh: float = 0.3) -> int:
    """Pixels the DB post-processing would call text (probability map above its 0.3 threshold)."""
    a = np.asarray(prob, dtype=np.float32)
    return int((np.nan_to_num(a, nan=0.0) > thresh).sum())


def report(label: str, result: dict, graph, producer_of: dict) -> None:
    first = result["first"]
    if first:
        name, m = first
        print(f"[{label}] first divergent: {producer_of.get(name, '?')} -> {name!r}: rel L2 {m['rel_l2']:.3g}, "
              f"cosine {m['cosine']:.4f}, new NaN/Inf {m['new_nonfinite']} ({result['compared']} tensors compared)")
    else:
        print(f"[{label}] first divergent: none ({result['compared']} tensors compared)")
    for out, m in result["outputs"].items():
        print(f"[{label}] output {out!r}: rel L2 {m['rel_l2']:.3g}, cosine {m['cosine']:.4f}, max {m['cand_max']:.4g}, "
              f"new NaN/Inf {m['new_nonfinite']}")


def torch_runs(onnx_model, feed: dict, half: bool):
    """Run the onnx2torch conversion of ``onnx_model`` on the GPU; every ONNX tensor captured."""
    import torch
    from onnx2torch import convert

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = convert(copy.deepcopy(onnx_model), attach_onnx_mapping=True).cuda().eval()
    dtype = torch.float16 if half else torch.float32
    if half:
        model = model.half()
    captured: dict[str, np.ndarray] = {}

    def hook(module, args, output):
        names = module.onnx_mapping.outputs
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for name, value in zip(names, outs):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                captured[name] = value.detach().float().cpu().numpy()

    for module in model.modules():
        if hasattr(module, "onnx_mapping"):
            module.register_forward_hook(hook)
    inputs = [torch.from_numpy(v).cuda().to(dtype) if v.dtype.kind == "f" else torch.from_numpy(v).cuda()
              for v in feed.values()]
    with torch.no_grad():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(*inputs)
        torch.cuda.synchronize()
    return captured, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "qbench/models/ch_PP-OCRv4_det_infer.onnx"))
    ap.add_argument("--data", default=str(REPO / "calib_data"))
    ap.add_argument("--sample", default="page.png", help="file name of the sample to trace (natural order of --data)")
    ap.add_argument("--rewrite", action="store_true", help="also run qbench's FP16-safe rewrite on real FP16 kernels")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    import onnx
    import torch

    from qbench.compare.headroom import analyze_headroom, largest_accumulating
    from qbench.data import load_dataset, sorted_files
    from qbench.model import ModelGraph
    from qbench.runners import OrtRunner
    from qbench.simulate import build_fp16_model

    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0)}, cudnn {torch.backends.cudnn.version()}")
    graph = ModelGraph.from_path(args.model)
    dataset = load_dataset(args.data, graph.inputs)
    files = [p.name for p in sorted_files(p for p in (Path(args.data) / "images").glob("*") if p.is_file())]
    index = files.index(args.sample) if args.sample in files else 0
    feed = next(f for i, f in enumerate(dataset.batches(1)) if i == index)
    print(f"model {graph.name}, sample {files[index] if files else index} {[v.shape for v in feed.values()]}")
    order = [t.name for t in graph.float_tensors]
    producer_of = {t.name: t.node for t in graph.tensors}
    outputs = graph.output_names
    figures = {}

    cpu_ref = OrtRunner(graph, name="fp32").run(feed)
    source = graph.model  # weights as initializers: onnx2torch reads them there, not from Constant nodes
    gpu32, t32 = torch_runs(source, feed, half=False)
    gpu16, t16 = torch_runs(source, feed, half=True)
    agree = walk(order, cpu_ref, gpu32, outputs)
    print(f"[gpu fp32 vs onnxruntime fp32] {agree['compared']} tensors; outputs: "
          + ", ".join(f"{o} rel L2 {m['rel_l2']:.2e}" for o, m in agree["outputs"].items()))
    real = walk(order, gpu32, gpu16, outputs)
    report("GPU FP16 (PyTorch/cuDNN, unfolded)", real, graph, producer_of)
    figures["gpu_fp16"] = real

    peaks = {k: float(np.abs(v[np.isfinite(v)]).max()) for k, v in cpu_ref.items() if np.size(v) and np.isfinite(v).any()}
    head = analyze_headroom(graph, peaks)
    print(head.summary())
    for f in head.findings():
        print("  risk:", f["message"])
    for mode in ("likely", "worst"):
        accumulate = largest_accumulating(graph, peaks) if mode == "worst" else ()
        sim = build_fp16_model(graph, mode=mode, accumulate=accumulate)
        cand = OrtRunner(sim.model, name=mode, capture=order, optimize=False).run(feed)
        res = walk(order, cpu_ref, cand, outputs)
        report(f"qbench FP16 simulation, {mode}", res, graph, producer_of)
        figures[f"sim_{mode}"] = res
        for o in outputs:
            print(f"[qbench {mode}] text pixels (>0.3) in {o!r}: {text_pixels(cand[o])} vs FP32 {text_pixels(cpu_ref[o])}")
    for o in outputs:
        print(f"[GPU] text pixels (>0.3) in {o!r}: FP16 {text_pixels(gpu16[o])} vs FP32 {text_pixels(gpu32[o])}")
    print(f"[GPU] one forward pass: FP32 {1e3 * t32:.1f} ms, FP16 {1e3 * t16:.1f} ms (first call, includes warm-up)")

    if args.rewrite:
        from qbench.simulate.fp16_rewrite import make_fp16_safe

        fixed = make_fp16_safe(graph, peaks)
        for line in fixed.log:
            print("  rewrite:", line)
        gpu16_fixed, _ = torch_runs(fixed.model, feed, half=True)
        for name, factor in fixed.scaled.items():  # a rescaled tensor holds value / factor by design
            if name in gpu16_fixed:
                gpu16_fixed[name] = gpu16_fixed[name] * factor
        res = walk(order, gpu32, gpu16_fixed, outputs)
        report("GPU FP16 of qbench's rewritten model", res, graph, producer_of)
        figures["gpu_fp16_rewritten"] = res
        for o in outputs:
            print(f"[GPU rewritten] text pixels (>0.3) in {o!r}: FP16 {text_pixels(gpu16_fixed[o])} vs FP32 {text_pixels(gpu32[o])}")

    if args.json:
        def plain(r):
            return {"first": list(r["first"]) if r["first"] else None, "outputs": r["outputs"], "compared": r["compared"]}
        Path(args.json).write_text(json.dumps({k: plain(v) for k, v in figures.items()}, indent=1, default=float))
    real_first = real["first"][0] if real["first"] else None
    worst_first = figures["sim_worst"]["first"][0] if figures["sim_worst"]["first"] else None
    print(f"RESULT: GPU FP16 first divergent {producer_of.get(real_first, None)}; qbench worst-mode first divergent "
          f"{producer_of.get(worst_first, None)}; match={producer_of.get(real_first) == producer_of.get(worst_first)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
