"""Run on a GPU machine with PyTorch and CUDA (Hopper or Ada for FP8; no TensorRT, no network): do
qbench's CPU simulations of FP8 and BF16 give, layer by layer, what real FP8 and BF16 GPU kernels give?

For every Conv (group 1) and MatMul of the model -- the GEMM-like layers both formats quantize --
the layer is run three ways on the SAME input, the input that layer sees inside qbench's simulation
(captured from ONNX Runtime on the CPU):

- qbench's CPU simulation (``qbench.simulate.build_fp8_model`` / ``build_bf16_model`` run in ONNX
  Runtime): the layer's output as the simulation model computes it;
- the GPU: FP8 through ``torch._scaled_mm`` on float8_e4m3fn operands (FP32 accumulation, FP32
  output; the activation quantized on the GPU with the simulation's per-tensor scale, the weight
  with its per-output-channel scales, applied to the output columns; a Conv as im2col x weight);
  BF16 through cuDNN/cuBLAS on bfloat16 operands (``F.conv2d`` / ``torch.matmul``, FP32
  accumulation: reduced-precision reductions off), output rounded to bfloat16;
- the FP32 layer on the unquantized input, for the size of the format's own error.

Per layer it reports ``gpu_vs_sim`` = max |GPU - CPU sim| / max |CPU sim| and ``format_err`` = max
|CPU sim - FP32| / max |FP32|: the simulation is faithful where gpu_vs_sim is far below format_err.

Usage: python tests/device/formats_crosscheck.py --model M.onnx --input x.npy [--csv out.csv] [--cpu-only]
The last line is RESULT: ...
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = float(np.abs(b).max(initial=0.0))
    diff = float(np.abs(a - b).max(initial=0.0))
    return diff / scale if scale > 0 else diff


def layers(graph):
    """(node, display name) of the Conv (group 1, 2-D) and MatMul nodes."""
    out = []
    for node, name in zip(graph.model.graph.node, graph.node_names):
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "MatMul":
            out.append((node, name))
        elif node.op_type == "Conv" and (("group" not in attrs) or attrs["group"].i == 1):
            out.append((node, name))
    return out


def conv_attrs(node) -> dict:
    from onnx import helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("auto_pad not handled")
    return {"stride": tuple(a.get("strides", [1, 1])), "dilation": tuple(a.get("dilations", [1, 1])),
            "pads": pads}


def run_sim(sim, feed, names):
    from qbench.runners import OrtRunner

    return OrtRunner(sim.model, name=sim.precision, capture=names, optimize=False).run(feed)


# -- GPU kernels ----------------------------------------------------------------------------------
def fp8_gemm(torch, a_codes, b_codes, a_scale: float):
    """a (M,K) float8 row-major x b (K,N) float8 -> (M,N) float32 via torch._scaled_mm, K and N
    padded with zeros to multiples of 16 (a zero code adds nothing to the sum)."""
    m, k = a_codes.shape
    n = b_codes.shape[1]
    kp, np_ = -(-k // 16) * 16, -(-n // 16) * 16
    dev = a_codes.device
    a = torch.zeros((m, kp), dtype=torch.float8_e4m3fn, device=dev)
    a[:, :k] = a_codes
    bt = torch.zeros((np_, kp), dtype=torch.float8_e4m3fn, device=dev)  # column-major b = row-major b^T
    bt[:n, :k] = b_codes.t()
    one = torch.ones((), dtype=torch.float32, device=dev)
    sa = torch.tensor(a_scale, dtype=torch.float32, device=dev)
    out = torch._scaled_mm(a, bt.t(), scale_a=sa, scale_b=one, out_dtype=torch.float32)
    return out[:, :n]


def quant_fp8(torch, x, scale):
    return (x / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)


def gpu_fp8_layer(torch, F, node, graph, x_float: np.ndarray, other_float, x_scale, other_scale, w_scale):
    """The layer in FP8 on the GPU; ``x_float`` is the layer input before quantization."""
    dev = "cuda"
    x = torch.from_numpy(x_float).to(dev)
    xq = quant_fp8(torch, x, float(x_scale))
    if node.op_type == "Conv":
        w = torch.from_numpy(graph.initializer(node.input[1]).astype(np.float32)).to(dev)
        sw = torch.from_numpy(np.asarray(w_scale, np.float32)).to(dev)
        wq = quant_fp8(torch, w, sw.reshape(-1, 1, 1, 1))
        at = conv_attrs(node)
        pl, pt, pr, pb = at["pads"][1], at["pads"][0], at["pads"][3], at["pads"][2]
        cout, cin, kh, kw = w.shape
        # im2col on the dequantized codes is exact (a copy), then back to codes for the FP8 GEMM
        xp = F.pad(xq.to(torch.float32), (pl, pr, pt, pb))
        cols = F.unfold(xp, (kh, kw), dilation=at["dilation"], stride=at["stride"])  # (N, Cin*kh*kw, L)
        nb, kk, L = cols.shape
        a = cols.transpose(1, 2).reshape(nb * L, kk).to(torch.float8_e4m3fn)
        b = wq.reshape(cout, kk).t().contiguous()
        y = fp8_gemm(torch, a, b, float(x_scale)) * sw.reshape(1, -1)
        if len(node.input) > 2 and node.input[2]:
            y = y + torch.from_numpy(graph.initializer(node.input[2]).astype(np.float32)).to(dev).reshape(1, -1)
        hout = (x.shape[2] + pt + pb - at["dilation"][0] * (kh - 1) - 1) // at["stride"][0] + 1
        wout = (x.shape[3] + pl + pr - at["dilation"][1] * (kw - 1) - 1) // at["stride"][1] + 1
        return y.reshape(nb, hout, wout, cout).permute(0, 3, 1, 2).contiguous().cpu().numpy()
    # MatMul: weight (K, N) per output channel (axis 1), or a second activation per tensor
    if node.input[1] in graph.initializer_names:
        w = torch.from_numpy(graph.initializer(node.input[1]).astype(np.float32)).to(dev)
        sw = torch.from_numpy(np.asarray(w_scale, np.float32)).to(dev)
        bq = quant_fp8(torch, w, sw.reshape(1, -1))
        lead = xq.shape[:-1]
        y = fp8_gemm(torch, xq.reshape(-1, xq.shape[-1]), bq, float(x_scale)) * sw.reshape(1, -1)
        return y.reshape(*lead, -1).cpu().numpy()
    o = torch.from_numpy(other_float).to(dev)
    oq = quant_fp8(torch, o, float(other_scale))
    xb, ob = torch.broadcast_tensors(xq.to(torch.float32)[..., :1, :1], oq.to(torch.float32)[..., :1, :1])
    shape = xb.shape[:-2]
    xq = xq.expand(*shape, *xq.shape[-2:]).reshape(-1, *xq.shape[-2:])
    oq = oq.expand(*shape, *oq.shape[-2:]).reshape(-1, *oq.shape[-2:])
    outs = [fp8_gemm(torch, xq[i], oq[i], float(x_scale) * float(other_scale)) for i in range(xq.shape[0])]
    return torch.stack(outs).reshape(*shape, outs[0].shape[0], outs[0].shape[1]).cpu().numpy()


def gpu_bf16_layer(torch, F, node, graph, x_in: np.ndarray, other_in):
    """The layer in BF16 on the GPU; the inputs are the simulation's (already bfloat16 values)."""
    dev = "cuda"
    x = torch.from_numpy(x_in).to(dev).to(torch.bfloat16)
    if node.op_type == "Conv":
        w = torch.from_numpy(graph.initializer(node.input[1]).astype(np.float32)).to(dev).to(torch.bfloat16)
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = torch.from_numpy(graph.initializer(node.input[2]).astype(np.float32)).to(dev).to(torch.bfloat16)
        at = conv_attrs(node)
        pt, pl, pb, pr = at["pads"]
        if (pt, pl) != (pb, pr):
            x = F.pad(x, (pl, pr, pt, pb))
            pad = 0
        else:
            pad = (pt, pl)
        y = F.conv2d(x, w, b, stride=at["stride"], padding=pad, dilation=at["dilation"])
        if b is not None:  # is PyTorch's bias a second bfloat16 rounding? (conv rounded, then + b rounded)
            two_step = F.conv2d(x, w, None, stride=at["stride"], padding=pad, dilation=at["dilation"]) + b.reshape(1, -1, 1, 1)
            gpu_bf16_layer.two_step_equal = float((two_step == y).float().mean())
        return y.float().cpu().numpy()
    other = torch.from_numpy(graph.initializer(node.input[1]) if node.input[1] in graph.initializer_names
                             else other_in).to(dev).to(torch.bfloat16)
    return torch.matmul(x, other).float().cpu().numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help=".npy input of the model's single input")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--cpu-only", action="store_true", help="build and run the simulations only (no GPU)")
    args = parser.parse_args(argv)

    from qbench.model import ModelGraph
    from qbench.ranges import Ranges, TensorRange
    from qbench.runners import OrtRunner
    from qbench.simulate.bf16 import build_bf16_model
    from qbench.simulate.fp8 import build_fp8_model
    from onnx import numpy_helper

    graph = ModelGraph.from_path(args.model)
    feed = {graph.inputs[0].name: np.load(args.input, allow_pickle=False)}
    all_names = [t.name for t in graph.float_tensors]
    ref = OrtRunner(graph, name="fp32", capture=all_names).run(feed)
    ranges = Ranges({n: TensorRange(n, float(np.abs(v).max()), observed_min=float(v.min()), observed_max=float(v.max()))
                     for n, v in ref.items()})
    ranges.entries[graph.inputs[0].name] = TensorRange(graph.inputs[0].name, float(np.abs(feed[graph.inputs[0].name]).max()))
    todo = layers(graph)
    fp8 = build_fp8_model(graph, ranges)
    bf16 = build_bf16_model(graph)
    scales = {t.name: numpy_helper.to_array(t) for t in fp8.model.graph.initializer if t.name.endswith("::scale")}
    want = sorted({i for n, _ in todo for i in n.input[:2] if i and i not in graph.initializer_names}
                  | {n.output[0] for n, _ in todo})
    # a layer output that feeds another GEMM is itself quantized in the FP8 simulation: its name holds
    # DQ(Q(y)), and the layer's own output is y::float (qbench.simulate.naming)
    f8 = run_sim(fp8, feed, want + [w + "::float" for w in want if w in fp8.quantized])
    f8_out = {n.output[0]: f8.get(n.output[0] + "::float", f8[n.output[0]]) for n, _ in todo}
    b16 = run_sim(bf16, feed, want)
    print(f"{graph.name}: {len(todo)} layers (Conv group 1, MatMul); FP8 {len(fp8.quantized)} activations, BF16 rounded")
    if args.cpu_only:
        errs = [_layer_fp32_err(graph, n, f8, ref, f8_out) for n, _ in todo]
        print(f"RESULT: cpu-only, simulations built and run; FP8 per-layer error median {np.median(errs):.3g}")
        return 0
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    print("device:", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0), "torch", torch.__version__)
    rows = []
    for node, name in todo:
        out = node.output[0]
        x_name = node.input[0]
        other = node.input[1] if node.input[1] not in graph.initializer_names else None
        # FP8: the simulation's pre-quantization inputs (x::float), its scales, its output
        x_f = f8.get(x_name + "::float", f8.get(x_name))
        o_f = f8.get(other + "::float", f8.get(other)) if other else None
        w_scale = scales.get(node.input[1] + "::scale") if other is None else None
        row = {"layer": name, "op": node.op_type, "shape": "x".join(map(str, ref[out].shape))}
        try:
            g8 = gpu_fp8_layer(torch, F, node, graph, x_f, o_f, scales[x_name + "::scale"],
                               scales[other + "::scale"] if other else None, w_scale)
            row["fp8_gpu_vs_sim"] = rel(g8, f8_out[out])
        except Exception as exc:  # a layout this script does not reproduce: say so, do not guess
            row["fp8_error"] = f"{type(exc).__name__}: {exc}"[:160]
        try:
            gb = gpu_bf16_layer(torch, F, node, graph, b16[x_name], b16.get(other) if other else None)
            sim_b = b16[out]
            gb_rounded = gb.astype(np.float32)
            row["bf16_gpu_vs_sim"] = rel(gb_rounded, sim_b)
            import ml_dtypes

            row["bf16_bitwise_equal"] = float(np.mean(gb_rounded.astype(ml_dtypes.bfloat16).astype(np.float32) == sim_b))
            row["bias"] = int(len(node.input) > 2 and bool(node.input[2]))
            if row["bias"] and node.op_type == "Conv":
                row["bf16_torch_bias_is_second_rounding"] = gpu_bf16_layer.two_step_equal
        except Exception as exc:
            row["bf16_error"] = f"{type(exc).__name__}: {exc}"[:160]
        rows.append(row)
        print(row)
    # the format's own error per layer: the simulated layer vs the FP32 layer on the same float input
    for row, (node, _) in zip(rows, todo):
        row["fp8_layer_vs_fp32"] = _layer_fp32_err(graph, node, f8, ref, f8_out)
        row["bf16_layer_vs_fp32"] = _layer_fp32_err(graph, node, b16, ref, b16)
    if args.csv:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("layer", "op", "shape"), k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    ok8 = [r for r in rows if "fp8_gpu_vs_sim" in r]
    okb = [r for r in rows if "bf16_gpu_vs_sim" in r]
    worst8 = max((r["fp8_gpu_vs_sim"] for r in ok8), default=float("nan"))
    med8 = float(np.median([r["fp8_gpu_vs_sim"] for r in ok8])) if ok8 else float("nan")
    fe = float(np.median([r["fp8_layer_vs_fp32"] for r in ok8])) if ok8 else float("nan")
    worstb = max((r["bf16_gpu_vs_sim"] for r in okb), default=float("nan"))
    bit = float(np.mean([r["bf16_bitwise_equal"] for r in okb])) if okb else float("nan")
    nobias = [r["bf16_bitwise_equal"] for r in okb if not r.get("bias")]
    bit_nobias = float(np.mean(nobias)) if nobias else float("nan")
    print(f"RESULT: {graph.name}: FP8 {len(ok8)}/{len(rows)} layers on torch._scaled_mm: GPU vs CPU simulation max "
          f"{worst8:.3g}, median {med8:.3g} (relative to the layer's max |y|); FP8's own error (same layer, FP32 vs "
          f"FP8 inputs) median {fe:.3g}. BF16 {len(okb)}/{len(rows)} layers: GPU vs CPU simulation max {worstb:.3g}, "
          f"{bit:.4f} of outputs bitwise equal in bfloat16 ({bit_nobias:.5f} in the {len(nobias)} layers without bias)")
    return 0


def _layer_fp32_err(graph, node, f8, ref, outputs) -> float:
    """max |layer(quantized inputs) - layer(FP32 inputs)| / max |layer(FP32 inputs)| for one layer, from
    the simulation's capture: the layer alone in FP32 (ONNX Runtime) on the simulation's float input
    (``t::float`` before its Q/DQ or rounding), against the simulation's output of the layer."""
    import onnx
    from onnx import helper

    from qbench.runners import OrtRunner

    inputs = [i for i in node.input if i]
    init = [i for i in inputs if i in graph.initializer_names]
    acts = [i for i in inputs if i not in graph.initializer_names]
    g = helper.make_graph([node], "one", [helper.make_tensor_value_info(a, onnx.TensorProto.FLOAT, None) for a in acts],
                          [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
                          [onnx.numpy_helper.from_array(graph.initializer(i).astype(np.float32), i) for i in init])
    model = helper.make_model(g, opset_imports=graph.model.opset_import)
    model.ir_version = graph.model.ir_version
    feed = {a: f8.get(a + "::float", f8.get(a)) for a in acts}
    fp32 = OrtRunner(model, name="one", capture=None, optimize=False).run(feed)[node.output[0]]
    return rel(outputs[node.output[0]], fp32)


if __name__ == "__main__":
    raise SystemExit(main())
