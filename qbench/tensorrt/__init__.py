"""TensorRT backend: calibrator, engine builder (10.x flags path, 11.x strongly typed path), engine
cache, runner, layer-wise capture, engine inspector and CUDA-event timing.

This package is the only place in qbench that imports ``tensorrt``, ``pycuda`` or ``cuda-python``,
and it does so lazily inside functions: ``import qbench.tensorrt`` works on a machine with neither a
GPU nor TensorRT, and every entry point that needs them raises ``MissingDependencyError`` with one
line saying what is missing.

What was run where (see docs/TENSORRT.md): the calibrator, the version detection and the API
surface of every module were exercised against the REAL TensorRT Python bindings 10.16.1.11 and
11.4.0.106 loaded over null libraries (no engine can be built that way); the calibrator's device
buffers were run on a real GPU through cuda-python. No engine was ever built or executed with real
TensorRT libraries in this project.
"""

from qbench.tensorrt._import import MIN_MAJOR, api_path, import_trt, trt_version

__all__ = ["MIN_MAJOR", "api_path", "import_trt", "trt_version"]
