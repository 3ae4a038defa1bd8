"""Precision simulation on the CPU: INT8 as an explicit Q/DQ model, FP16 as float16 rounding, and the
newer formats (FP8, NVFP4, W4A16, BF16), each in its own module and one row of ``formats.FORMATS``.

Every builder returns a ``SimulatedModel`` whose ONNX model runs in ONNX Runtime like the FP32
reference; after simulation the tensor named ``t`` holds the simulated value of ``t`` and the
producer's float output is ``t::float`` (see ``naming``).
"""

from qbench.simulate.common import SimulatedModel
from qbench.simulate.fp16 import build_fp16_model
from qbench.simulate.placement import Int8Plan, plan_int8
from qbench.simulate.qdq import build_int8_model
from qbench.simulate.stats import fp16_stats, int8_stats, simulation_stats

__all__ = [
    "SimulatedModel",
    "build_int8_model",
    "build_fp16_model",
    "plan_int8",
    "Int8Plan",
    "int8_stats",
    "fp16_stats",
    "simulation_stats",
]
