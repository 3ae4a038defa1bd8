"""The TensorRT API qbench uses, class by class, and on which path ("both", "v10" or "v11").

tests/trt checks this manifest two ways against the REAL bindings of 10.16.1.11 and 11.4.0.106:
every entry exists on its class in each version its path runs on, and every TensorRT member name
the source of qbench/tensorrt uses is listed here (so the manifest cannot fall behind the code).
``trt.<name>`` chains in the source are checked directly, by parsing the source.
"""

BOTH, V10, V11 = "both", "v10", "v11"

METHODS: dict[str, dict[str, str]] = {
    "Builder": {"create_network": BOTH, "create_builder_config": BOTH, "create_optimization_profile": BOTH,
                "build_serialized_network": BOTH},
    "INetworkDefinition": {"num_inputs": BOTH, "get_input": BOTH, "num_layers": BOTH, "get_layer": BOTH,
                           "num_outputs": BOTH, "get_output": BOTH, "mark_debug": BOTH, "mark_output": BOTH,
                           "mark_unfused_tensors_as_debug_tensors": BOTH},
    "ILayer": {"num_outputs": BOTH, "get_output": BOTH, "name": BOTH, "precision": V10},
    "ITensor": {"name": BOTH, "shape": BOTH, "dtype": BOTH},
    "OnnxParser": {"parse": BOTH, "num_errors": BOTH, "get_error": BOTH},
    "ParserError": {"desc": BOTH},
    "IBuilderConfig": {"set_memory_pool_limit": BOTH, "profiling_verbosity": BOTH, "add_optimization_profile": BOTH,
                       "create_timing_cache": BOTH, "set_timing_cache": BOTH, "get_timing_cache": BOTH,
                       "set_flag": BOTH, "int8_calibrator": V10, "set_calibration_profile": V10},
    "ITimingCache": {"serialize": BOTH},
    "IOptimizationProfile": {"set_shape": BOTH},
    "Runtime": {"deserialize_cuda_engine": BOTH},
    "ICudaEngine": {"num_io_tensors": BOTH, "get_tensor_name": BOTH, "get_tensor_mode": BOTH, "get_tensor_dtype": BOTH,
                    "create_execution_context": BOTH, "create_engine_inspector": BOTH},
    "IExecutionContext": {"set_input_shape": BOTH, "set_tensor_address": BOTH, "get_tensor_shape": BOTH,
                          "execute_async_v3": BOTH, "set_debug_listener": BOTH, "set_all_tensors_debug_state": BOTH,
                          "unfused_tensors_debug_state": BOTH},
    "EngineInspector": {"get_engine_information": BOTH},
    "IDebugListener": {"process_debug_tensor": BOTH},
    "ILogger": {"log": BOTH},
    "IInt8EntropyCalibrator2": {"get_batch": V10, "get_batch_size": V10, "read_calibration_cache": V10,
                                "write_calibration_cache": V10, "get_algorithm": V10},
}

# Attribute names in qbench/tensorrt that also name TensorRT members but are used on qbench's own
# or numpy objects (buffers, datasets, arrays, dicts), not on TensorRT objects.
NOT_TRT = {"shape", "dtype", "name", "get", "reset", "free", "items", "values", "append", "ptr", "nbytes",
           "batches", "tensors", "model", "engine", "runtime", "context", "stream", "logger", "errors", "io",
           "backend", "buffers", "graph", "inputs", "entries", "method", "header", "written", "error",
           "capture", "listener", "trt", "path", "precision", "notes", "flags", "type", "location",
           # onnx (TensorProto.FLOAT, graph.node, shape_inference.infer_shapes), numpy, dict/list/set,
           # hashlib and qbench's own runner/backends
           "FLOAT", "FLOAT16", "node", "infer_shapes", "data", "size", "min", "max", "count", "clear", "pop",
           "extend", "update", "read", "write", "enqueue",
           # numpy's np.lib.format (.npy headers read by shapes.py for the profile)
           "format"}
