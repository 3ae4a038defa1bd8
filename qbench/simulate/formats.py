"""The one table of precision formats: what each candidate is, how it is simulated, what it needs.

Every stage that handles candidates asks this table instead of branching on a format's name:
compare builds the simulation with ``fmt.build``, the recommendation ranks by ``fmt.cost`` and says
``fmt.gpus``, ship writes ``fmt.trtexec`` / ``fmt.builder``, the CLI offers ``names()``. A new format is
one module in qbench/simulate/ and one row here.

Row fields (the TensorRT facts are cited in docs/FORMATS.md; none was run on real TensorRT here):
- ``build(graph, ranges, keep_float, **options)``: the SimulatedModel of that candidate.
- ``needs_ranges``: activation scales come from the calibration pass.
- ``stats``: the per-tensor "why" counters the comparator keeps ("int8", "fp16" or None).
- ``headroom``: the FP16 headroom analysis (65504) applies.
- ``worst``: the candidate name of the worst-case variant, or "" when the format has none.
- ``cost``: lower = cheaper to run (memory and math); the recommendation takes the cheapest passing.
- ``min_cc`` / ``gpus`` / ``generation``: the compute capability TensorRT needs for it, the GPUs, the
  oldest GPU generation in one word.
- ``builder`` (TensorRT 10 builder flags), ``strongly_typed`` (TensorRT 11: a strongly typed network
  takes the types from the ONNX model), ``trtexec`` / ``polygraphy``: the command-line flags.
- ``channel_stats``: the tensors whose per-channel statistics the build wants (AWQ), measured by compare.
- ``shipped`` / ``deploy_model``: the folder ``<out>/<name>-best/`` is written by qbench.search.format_deploy,
  with the explicit model ``deploy_model`` makes (INT8's folder is the search's, qbench.search.deploy).
- ``fallback``: the formats that may hold named layers of a model in this format (the mixed-format
  candidate ``<name>-<higher>``, qbench.simulate.mixed_format; searched by qbench.search.format_mixed),
  first choice first; () for none.
- ``simulated``: False for a row kept for its facts whose simulation is not exact (``why_not``).
- ``trt10_flags`` / ``trt11_types``: what ``qbench build --from <name>-best`` hands TensorRT
  (qbench.tensorrt.builder reads them; the strings above are their prose for the shipped snippets):
  10.x sets these ``trt.BuilderFlag`` members on the explicit model; 11.x builds a strongly typed
  network from a copy of it whose float tensors outside Q/DQ are of this ONNX type ("" = as shipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from qbench.errors import QbenchError
from qbench.simulate.bf16 import build_bf16_model
from qbench.simulate.fp8 import build_fp8_model
from qbench.simulate.fp16 import build_fp16_model
from qbench.simulate.mixed_format import build_mixed_model
from qbench.simulate.nvfp4 import build_nvfp4_model
from qbench.simulate.qdq import build_int8_model
from qbench.simulate.w4a16 import awq_inputs, build_w4a16_model, int4_weight_model


@dataclass(frozen=True)
class Format:
    name: str
    label: str
    build: Callable | None
    needs_ranges: bool
    cost: float
    min_cc: float
    gpus: str
    builder: str
    strongly_typed: str
    trtexec: str
    polygraphy: str
    generation: str = ""  # the oldest GPU generation that runs it, in one word ("Ada", "Ampere"...)
    stats: str | None = None
    headroom: bool = False
    worst: str = ""
    shipped: bool = False  # <out>/<name>-best/ written by qbench.search.format_deploy
    deploy_model: Callable | None = None  # (graph, ranges, keep_float, **options) -> the Q/DQ ModelProto to ship
    # (graph, keep_float, options) -> tensors whose per-channel statistics the build needs (AWQ), [] for none
    channel_stats: Callable | None = None
    simulated: bool = True
    why_not: str = ""
    trt10_flags: tuple[str, ...] = ()  # trt.BuilderFlag member names, e.g. ("FP8", "FP16")
    trt11_types: str = ""  # "float16" / "bfloat16": the type of the layers outside Q/DQ in a strongly typed build
    fallback: tuple[str, ...] = ()  # formats that may hold named layers of this one (first choice first)

    def simulate(self, graph, ranges=None, keep_float=(), mode: str = "likely", higher: str | None = None,
                 higher_layers=(), **options):
        """The candidate's SimulatedModel; ``higher_layers``: node names run in ``higher`` (a format of
        ``fallback``, the first by default) instead, qbench.simulate.mixed_format."""
        if not self.simulated or self.build is None:
            raise QbenchError(f"{self.name} is not simulated: {self.why_not}")
        if self.needs_ranges and ranges is None:
            raise QbenchError(f"a {self.label} comparison needs ranges: give a ranges file or a calibration method")
        if higher_layers:
            if not self.fallback:
                raise QbenchError(f"{self.name} has no higher format for named layers")
            other = FORMATS.get(higher or self.fallback[0])
            if other is None:
                raise QbenchError(f"unknown precision {higher!r}; choose from {', '.join(self.fallback)}")
            return build_mixed_model(self, other, graph, ranges, higher_layers, keep_float, mode, **options)
        return self.build(graph, ranges, keep_float, mode, **options)


def _int8(graph, ranges, keep_float, mode, placement: str = "likely", **_):
    return build_int8_model(graph, ranges, keep_float=keep_float, placement=placement)


def _fp16(graph, ranges, keep_float, mode, accumulate=(), **_):
    return build_fp16_model(graph, keep_float=keep_float, mode=mode, accumulate=accumulate)


def _bf16(graph, ranges, keep_float, mode, **_):
    return build_bf16_model(graph, keep_float=keep_float, mode=mode)


def _fp8(graph, ranges, keep_float, mode, fp8_calibrator: str = "max", inside_qdq: bool = False, **_):
    return build_fp8_model(graph, ranges, keep_float=keep_float, calibrator=fp8_calibrator, inside_qdq=inside_qdq)


def _nvfp4(graph, ranges, keep_float, mode, **_):
    return build_nvfp4_model(graph, ranges, keep_float=keep_float)


def _w4a16(graph, ranges, keep_float, mode, block: int = 128, channel_stats=None, **_):
    return build_w4a16_model(graph, keep_float=keep_float, block=block, channel_stats=channel_stats)


def _w4_stats(graph, keep_float, options) -> list[str]:
    return list(awq_inputs(graph, keep_float).values()) if options.get("awq") else []


def _fp8_deploy(graph, ranges, keep_float, **options):
    # the float8 Q/DQ model; with ``higher_layers`` the mixed model (Q/DQ and Casts) of those layers
    return FORMATS["fp8"].simulate(graph, ranges, keep_float, **options).model


def _w4_deploy(graph, ranges, keep_float, block: int = 128, channel_stats=None, **_):
    return int4_weight_model(graph, keep_float, block=block, channel_stats=channel_stats)[0]


TURING = "Turing and newer (compute capability 7.5+: T4, A100, A10, L4, H100, B200, Jetson Orin)"
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("int8", "INT8", _int8, True, 0.0, 7.5, TURING,
           builder="config.set_flag(trt.BuilderFlag.INT8); config.set_flag(trt.BuilderFlag.FP16)",
           strongly_typed="explicit INT8 Q/DQ model with trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED",
           trtexec="--int8 --fp16", polygraphy="--int8 --fp16", stats="int8", generation="Turing",
           trt10_flags=("INT8", "FP16"), fallback=("fp8",)),
    Format("fp8", "FP8", _fp8, True, 0.0, 8.9,
           "Ada, Hopper, Blackwell (compute capability 8.9+: L4, L40S, H100, H200, B200, Jetson Thor)",
           builder="config.set_flag(trt.BuilderFlag.FP8); config.set_flag(trt.BuilderFlag.FP16)",
           strongly_typed="the float8 Q/DQ model with trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED",
           trtexec="--fp8 --fp16", polygraphy="--fp8 --fp16", shipped=True, deploy_model=_fp8_deploy, generation="Ada",
           trt10_flags=("FP8", "FP16"), trt11_types="float16", fallback=("bf16", "fp16")),
    Format("nvfp4", "NVFP4", _nvfp4, True, -0.5, 10.0, "Blackwell (compute capability 10.0+: B200, GB200, RTX 50)",
           builder="strongly typed only: trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED (TensorRT 10.8+)",
           strongly_typed="FP4 DynamicQuantize/DequantizeLinear model with STRONGLY_TYPED",
           trtexec="--stronglyTyped", polygraphy="--strongly-typed", generation="Blackwell"),
    Format("w4a16", "W4A16", _w4a16, False, 0.75, 7.5, TURING + "; weight-only INT4 GEMMs, TensorRT 10+",
           builder="config.set_flag(trt.BuilderFlag.FP16) (the INT4 weights come from the blockwise DequantizeLinear)",
           strongly_typed="the blockwise INT4 DequantizeLinear model (FP16 scales) with STRONGLY_TYPED",
           trtexec="--fp16", polygraphy="--fp16", stats="fp16", shipped=True, deploy_model=_w4_deploy, generation="Turing",
           channel_stats=_w4_stats, trt10_flags=("FP16",), trt11_types="float16"),
    Format("fp16", "FP16", _fp16, False, 1.0, 7.5, "every GPU TensorRT 10 supports (Turing and newer)",
           builder="config.set_flag(trt.BuilderFlag.FP16)",
           strongly_typed="a model converted to FLOAT16 with STRONGLY_TYPED",
           trtexec="--fp16", polygraphy="--fp16", stats="fp16", headroom=True, worst="fp16-worst", generation="Turing",
           trt10_flags=("FP16",), trt11_types="float16"),
    Format("bf16", "BF16", _bf16, False, 1.0, 8.0,
           "Ampere and newer (compute capability 8.0+: A100, A10, L4, H100, H200, B200, Jetson Orin)",
           builder="config.set_flag(trt.BuilderFlag.BF16)",
           strongly_typed="a model converted to BFLOAT16 with STRONGLY_TYPED",
           trtexec="--bf16", polygraphy="--bf16", worst="bf16-worst", shipped=True, generation="Ampere",
           trt10_flags=("BF16",), trt11_types="bfloat16"),
)}
# a worst-case variant is judged and ranked like its format
VARIANTS = {f.worst: f.name for f in FORMATS.values() if f.worst}


def names(simulated_only: bool = True) -> tuple[str, ...]:
    return tuple(n for n, f in FORMATS.items() if f.simulated or not simulated_only)


def get(name: str) -> Format:
    """The row of a candidate name: a format, its worst variant, or a mixed candidate ("int8-mixed")."""
    key = VARIANTS.get(name, name)
    if key not in FORMATS:
        key = next((k for k in sorted(FORMATS, key=len, reverse=True) if name.startswith(k)), None)
        if key is None:
            raise QbenchError(f"unknown precision {name!r}; choose from {', '.join(names())}")
    return FORMATS[key]


def expand(requested) -> tuple[str, ...]:
    """``--precision`` values to formats, ``all`` meaning every simulated format, in table order;
    an unsimulated format is a one-line error saying why."""
    requested = tuple(requested)
    if "all" in requested:
        return names()
    out = []
    for name in requested:
        fmt = FORMATS.get(name)
        if fmt is None:
            raise QbenchError(f"unknown precision {name!r}; choose from {', '.join(names())} or all")
        if not fmt.simulated:
            raise QbenchError(f"{name} is not simulated: {fmt.why_not}")
        if name not in out:
            out.append(name)
    return tuple(out)
