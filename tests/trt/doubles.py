"""Doubles for the TensorRT objects that only a working libnvinfer can create (Builder, network,
builder config, optimization profile), for use under the REAL bindings over null libraries.

Not mocks that accept anything: every attribute read, call or assignment must name a member of the
real bindings class the double stands for (``hasattr(trt.IBuilderConfig, name)``), else it raises
AttributeError as the real object would, and enum values are the real bindings' enums. What a double
returns is only what the test states (layer types, tensor shapes); it computes nothing.
"""

from __future__ import annotations


class Checked:
    """Stands for an instance of the real class ``cls``; records calls and assignments in ``log``."""

    def __init__(self, cls, label: str, log: list, values: dict | None = None, returns: dict | None = None):
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_returns", dict(returns or {}))

    def __getattr__(self, attr):
        if not hasattr(self._cls, attr):
            raise AttributeError(f"{self._cls.__name__} has no member {attr!r} in TensorRT's bindings")
        if attr in self._values:
            return self._values[attr]

        def method(*args, **kwargs):
            self._log.append((self._label, attr, args, kwargs))
            made = self._returns.get(attr, True)
            return made(*args, **kwargs) if callable(made) and not isinstance(made, Checked) else made

        return method

    def __setattr__(self, attr, value):
        if not hasattr(self._cls, attr):
            raise AttributeError(f"{self._cls.__name__} has no member {attr!r} in TensorRT's bindings")
        self._log.append((self._label, attr, "=", value))
        self._values[attr] = value


class Network(Checked):
    """An INetworkDefinition double: ``layers`` are Checked ILayer doubles; outputs are tracked."""

    def __init__(self, trt, log, inputs, layers, outputs):
        super().__init__(trt.INetworkDefinition, "network", log)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "marked", list(outputs))
        object.__setattr__(self, "debug", [])
        self._values.update(num_layers=len(layers), num_inputs=len(inputs))
        for t in outputs:
            t._values["is_network_output"] = True

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getattr__(self, attr):
        own = {"get_layer": self.layers.__getitem__, "get_input": self.inputs.__getitem__,
               "get_output": self.marked.__getitem__, "mark_output": self._mark, "unmark_output": self._unmark,
               "mark_debug": self._debug}
        if attr == "num_outputs":
            return len(self.marked)
        if attr in own and hasattr(self._cls, attr):
            return own[attr]
        return super().__getattr__(attr)

    def _mark(self, tensor):
        if tensor not in self.marked:
            self.marked.append(tensor)
        tensor._values["is_network_output"] = True

    def _unmark(self, tensor):
        self.marked.remove(tensor)
        tensor._values["is_network_output"] = False

    def _debug(self, tensor):
        self.debug.append(tensor.name)
        return True


def tensor(trt, log, name, shape=(1, 3, 8, 8)):
    return Checked(trt.ITensor, f"tensor {name}", log, values={
        "name": name, "shape": trt.Dims(shape), "dtype": trt.float32, "is_shape_tensor": False,
        "is_network_output": False, "is_network_input": False})


def layer(trt, log, name, kind, outputs):
    return Checked(trt.ILayer, f"layer {name}", log, values={
        "name": name, "type": getattr(trt.LayerType, kind), "num_outputs": len(outputs), "get_output": outputs.__getitem__,
        "precision_is_set": False, "num_inputs": 0})


class HostMemory(bytes):
    """What TensorRT's IHostMemory offers Polygraphy: the buffer protocol and ``with``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def builder(trt, log, network=None, engine: bytes = b""):
    """A Builder double: its configs and profiles are Checked doubles of the real classes; the config
    answers the reads Polygraphy makes to describe it (flags from the set_flag calls recorded)."""

    def config(*_):
        flags: set = set()
        made = Checked(trt.IBuilderConfig, "config", log, values={
            "DLA_core": -1, "default_device_type": trt.DeviceType.GPU, "engine_capability": trt.EngineCapability.STANDARD,
            "num_optimization_profiles": 1, "profiling_verbosity": trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
        }, returns={
            "create_timing_cache": lambda *_: Checked(trt.ITimingCache, "timing cache", log, returns={"serialize": HostMemory(b"timing cache of the double"), "combine": True}),
            "set_flag": lambda flag: flags.add(flag), "get_flag": lambda flag: flag in flags,
            "get_memory_pool_limit": 1 << 30, "get_tactic_sources": 0, "get_preview_feature": False,
            "get_quantization_flag": False,
        })
        made._returns["get_timing_cache"] = made._returns["create_timing_cache"]
        return made

    return Checked(trt.Builder, "builder", log, returns={
        "create_builder_config": config, "create_network": network, "build_serialized_network": engine,
        "create_optimization_profile": lambda *_: Checked(trt.IOptimizationProfile, "profile", log),
    })


class Impersonating(Checked):
    """A Checked double that ``isinstance`` takes for the real class (Polygraphy's TrtRunner checks
    ``isinstance(engine, trt.ICudaEngine)``)."""

    @property
    def __class__(self):
        return self._cls
