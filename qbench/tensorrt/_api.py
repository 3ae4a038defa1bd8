"""The TensorRT API qbench calls itself, class by class, and on which path ("both", "v10" or "v11").

Network parsing, builder configuration and engine execution are Polygraphy's (tests/trt checks the
keywords qbench passes against Polygraphy's signatures, and the builder-config members Polygraphy sets
against the real classes). What qbench still calls directly is listed here, and tests/trt checks this
manifest two ways against the REAL bindings of 10.16.1.11 and 11.4.0.106: every entry exists on its
class in each version its path runs on, and every TensorRT member name the source of qbench/tensorrt
uses is listed here (so the manifest cannot fall behind the code). ``trt.<name>`` chains in the source
are checked directly, by parsing the source.
"""

BOTH, V10, V11 = "both", "v10", "v11"

METHODS: dict[str, dict[str, str]] = {
    "INetworkDefinition": {"num_layers": BOTH, "get_layer": BOTH, "num_outputs": BOTH, "get_output": BOTH,
                           "mark_output": BOTH, "unmark_output": BOTH},
    "ILayer": {"num_outputs": BOTH, "get_output": BOTH, "name": BOTH},
    "ITensor": {"name": BOTH},
    "ICudaEngine": {"num_io_tensors": BOTH, "get_tensor_name": BOTH, "get_tensor_mode": BOTH, "get_tensor_dtype": BOTH,
                    "create_engine_inspector": BOTH},
    "IExecutionContext": {"set_all_tensors_debug_state": BOTH, "unfused_tensors_debug_state": BOTH},
    "EngineInspector": {"get_engine_information": BOTH},
    "IInt8EntropyCalibrator2": {"get_batch": V10, "get_batch_size": V10, "read_calibration_cache": V10,
                                "write_calibration_cache": V10, "get_algorithm": V10},
}

# Attribute names in qbench/tensorrt that also name TensorRT members but are used on qbench's own,
# Polygraphy's, numpy's or ctypes' objects (buffers, datasets, arrays, dicts, runners), not on TensorRT's.
NOT_TRT = {"shape", "dtype", "name", "get", "reset", "free", "items", "values", "append", "ptr", "nbytes",
           "batches", "tensors", "model", "engine", "runtime", "context", "stream", "logger", "errors", "io",
           "backend", "buffers", "graph", "inputs", "entries", "method", "header", "written", "error",
           "capture", "listener", "trt", "path", "precision", "notes", "flags", "type", "location",
           # onnx (TensorProto.FLOAT, graph.node, shape_inference.infer_shapes), numpy, dict/list/set,
           # hashlib, ctypes (c_int.value) and qbench's own runner/backends
           "FLOAT", "FLOAT16", "node", "infer_shapes", "data", "size", "min", "max", "count", "clear", "pop",
           "extend", "update", "read", "write", "enqueue", "kind", "value",
           # numpy's np.lib.format (.npy headers read by shapes.py for the profile)
           "format"}
