from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    """What the comparator needs from any backend (ONNX Runtime, TensorRT, imported results)."""

    name: str

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; return outputs and captured activations by original ONNX tensor name."""
        ...
