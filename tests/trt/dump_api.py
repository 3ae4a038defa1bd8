"""Run under one version's real bindings: print that version's API surface as JSON."""
import inspect
import json

from qbench.tensorrt._import import import_trt

trt = import_trt()
api = {}
for name in dir(trt):
    if name.startswith("__"):
        continue
    obj = getattr(trt, name)
    api[name] = sorted(a for a in dir(obj) if not a.startswith("__")) if inspect.isclass(obj) else []
print(json.dumps({"version": trt.__version__, "api": api}))
