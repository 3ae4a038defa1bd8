"""How simulated models name the tensors they add.

The convention shared with the comparator: after simulation, the tensor named ``t`` holds the value
the deployed engine would hold for ``t`` (``DQ(Q(t))`` for an INT8-quantized activation, ``t``
rounded through float16 for FP16). The producer's own float output is renamed ``t::float``, so
both values stay capturable. Graph inputs cannot be renamed (the feed uses their names), so their
simulated value is a new tensor ``x::sim`` that the consumers read instead.
"""

FLOAT = "::float"  # the producer's unrounded float32 output
INT8 = "::int8"  # QuantizeLinear output (int8 codes)
FP16 = "::fp16"  # Cast-to-float16 output (half values)
BF16 = "::bf16"  # Cast-to-bfloat16 output
FP8 = "::fp8"  # QuantizeLinear output (float8e4m3fn codes)
INT4 = "::int4"  # INT4 weight codes (blockwise DequantizeLinear input)
FP4 = "::fp4"  # NVFP4 weight, fake-quantized offline (float32 values)
SIM = "::sim"  # simulated value of a graph input
SCALE = "::scale"
ZERO_POINT = "::zero_point"


def float_name(tensor: str) -> str:
    return tensor + FLOAT


def original_name(tensor: str) -> str:
    """The ONNX name in the source model for any tensor a simulated model holds."""
    for suffix in (FLOAT, INT8, FP16, BF16, FP8, INT4, FP4, SIM, SCALE, ZERO_POINT):
        if tensor.endswith(suffix):
            return tensor[: -len(suffix)]
    return tensor
