"""Runners: one interface for every backend. ``run(feed)`` returns the model outputs and every
captured intermediate tensor, keyed by the ORIGINAL ONNX tensor name, as float-or-native numpy
arrays. Comparators know nothing about backends; they only see these dictionaries."""

from qbench.runners.base import Runner
from qbench.runners.ort import OrtRunner, expose_tensors

__all__ = ["Runner", "OrtRunner", "expose_tensors"]
