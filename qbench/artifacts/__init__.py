"""Reading TensorRT artifacts made elsewhere (trtexec and Polygraphy JSON): parsing only, no TensorRT
runtime. ``layer_info``: engine layer tables and per-tensor storage precisions."""

from qbench.artifacts.layer_info import fused_nodes, layers_frame, parse_layer_info, precision_of, tensor_formats

__all__ = ["parse_layer_info", "layers_frame", "precision_of", "fused_nodes", "tensor_formats"]
