"""BF16 simulation: every float activation and weight rounded through bfloat16, in a float32 model.

BF16 keeps float32's 8 exponent bits and 7 of its 23 mantissa bits: the largest finite value is
about 3.39e38, so what overflows FP16 (a BatchNormalization running variance of 9.8e7, a logit of
1e5) stays finite, while each value carries ~3 significant decimal digits instead of FP16's ~4.
``Cast(to=BFLOAT16)`` rounds to nearest even; ONNX Runtime's CPU kernel does exactly what
ml_dtypes.bfloat16 does (a test holds the two equal on the embedded model's tensors).

The rules are FP16's (qbench.simulate.fp16), with the same two modes, because TensorRT makes the
same choices for a BF16 build (``BuilderFlag.BF16``): ``likely`` folds BatchNormalization in FP32 and
rounds activations and weights; ``worst`` keeps BN unfolded and rounds every parameter as stored,
epsilons included. No layer accumulates in BF16: a bfloat16 accumulator is not a tensor-core mode
(BF16 MMAs accumulate in FP32), so the worst mode's accumulation rule does not apply.
"""

from __future__ import annotations

import ml_dtypes
from onnx import TensorProto

from qbench.simulate import naming
from qbench.simulate.common import SimulatedModel
from qbench.simulate.fp16 import MODES, HalfType, build_fp16_model

BFLOAT16 = HalfType(TensorProto.BFLOAT16, ml_dtypes.bfloat16, "BF16", naming.BF16, opset=13)  # Cast-13 added bfloat16
BF16_MAX = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)

__all__ = ["MODES", "BFLOAT16", "BF16_MAX", "build_bf16_model"]


def build_bf16_model(graph, keep_float=(), *, mode: str = "likely") -> SimulatedModel:
    """Round every float32 activation and weight of a copy of ``graph`` through bfloat16 (``mode``:
    ``likely`` or ``worst``, module docstring)."""
    return build_fp16_model(graph, keep_float, mode=mode, half=BFLOAT16)
