"""TensorRT backend on Polygraphy's: engine builder (10.x flags path, 11.x strongly typed path),
qbench's entropy calibrator, engine cache, runner, layer-wise capture, engine inspector and timing.

This package is the only place in qbench that imports ``tensorrt``, ``pycuda`` or Polygraphy's TensorRT
backend, and it does so lazily inside functions: ``import qbench.tensorrt`` works on a machine with
neither a GPU nor TensorRT, and every entry point that needs them raises ``MissingDependencyError``
with one line saying what is missing.

What was run where (see docs/TENSORRT.md): the calibrator, Polygraphy's loaders and config, the debug
listener and the version detection were exercised against the REAL TensorRT Python bindings 10.16.1.11
and 11.4.0.106 loaded over null libraries, with a host-memory stand-in for the CUDA runtime (a test
vehicle, not a GPU); the calibrator's device buffers were run on real GPUs. No engine was ever built
or executed with real TensorRT libraries in this project.
"""

from qbench.tensorrt._import import MIN_MAJOR, api_path, import_trt, trt_version

__all__ = ["MIN_MAJOR", "api_path", "import_trt", "trt_version"]
