"""qbench: INT8/FP16 quantization and layer-wise accuracy validation for TensorRT deployments.

Everything but the TensorRT calls runs on the CPU with ONNX Runtime. TensorRT and pycuda are
imported lazily, only by ``qbench.tensorrt``.
"""

__version__ = "0.1.0"

from qbench.errors import QbenchError  # noqa: E402

__all__ = ["QbenchError", "__version__"]
