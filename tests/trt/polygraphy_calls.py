"""Every keyword qbench passes to Polygraphy, checked against ``inspect.signature`` of the Polygraphy
that is importable (run as a script under the real TensorRT bindings; prints one JSON object).

Where the keywords come from: the source of qbench/tensorrt, parsed with ast (every call of
``pg.<Name>(...)``, ``pg`` being ``polygraphy.backend.trt``, and of the runner's ``infer``), plus the
keywords ``builder._config_keywords`` really returns for every path and precision, the shipped
formats' rows included (fp8=, bf16=: they reach
``CreateConfig`` as ``**keywords``, which the source cannot show). A class whose ``__init__`` takes
``**kwargs`` forwards them to its base (CreateConfig to _CreateConfigCommon), so the accepted names are
collected along the MRO until an ``__init__`` takes no ``**kwargs``.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "qbench" / "tensorrt"
# method calls on Polygraphy objects qbench makes: method name -> (the variable or attribute holding
# the object in qbench's source, Polygraphy class, method whose signature takes the keywords;
# TrtRunner.infer forwards **kwargs to infer_impl)
METHOD_CALLS = {"infer": ("runner", "TrtRunner", "infer_impl"), "add": ("profile", "Profile", "add")}


def source_calls() -> dict[str, set[str]]:
    """{Polygraphy name or 'Class.method': keywords qbench passes} from qbench/tensorrt's source."""
    out: dict[str, set[str]] = {}
    for file in sorted(PKG.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner, attr = node.func.value, node.func.attr
            keywords = {k.arg for k in node.keywords if k.arg is not None}
            if isinstance(owner, ast.Name) and owner.id == "pg" and attr[:1].isupper():
                out.setdefault(attr, set()).update(keywords)
            elif attr in METHOD_CALLS:
                holder, cls, method = METHOD_CALLS[attr]
                if getattr(owner, "attr", getattr(owner, "id", None)) == holder:
                    out.setdefault(f"{cls}.{method}", set()).update(keywords)
    return out


def config_keywords(trt, pg) -> set[str]:
    from qbench.tensorrt.builder import PRECISIONS, SHIPPED, BuildOptions, _config_keywords

    names = set()
    for path in ("v10", "v11"):
        for precision in PRECISIONS + SHIPPED:
            options = BuildOptions(layer_precisions={"conv": "fp16"} if path == "v10" else {}, timing_cache=Path("t.cache"))
            profile = {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}
            names |= set(_config_keywords(trt, path, precision, options, profile, None, pg))
    return names


def accepted(obj) -> set[str]:
    """Keyword names ``obj`` (a class or function) accepts, following **kwargs along a class's MRO."""
    if not inspect.isclass(obj):
        return set(inspect.signature(obj).parameters)
    names = set()
    for cls in obj.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(vars(cls)["__init__"]).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names - {"self"}


def main() -> None:
    import polygraphy

    from qbench.tensorrt import polygraphy_backend
    from qbench.tensorrt._import import import_trt

    trt = import_trt()
    pg = polygraphy_backend.backend(trt)
    calls = source_calls()
    calls.setdefault("CreateConfig", set()).update(config_keywords(trt, pg))
    unknown, checked = {}, {}
    for name, keywords in sorted(calls.items()):
        cls, _, method = name.partition(".")
        target = getattr(getattr(pg, cls), method) if method else getattr(pg, cls)
        ok = accepted(target)
        checked[name] = sorted(keywords)
        bad = sorted(keywords - ok)
        if bad:
            unknown[name] = bad
    # the check has teeth: keywords reached only through **kwargs count, invented ones do not
    teeth = {"profiles", "load_timing_cache"} <= accepted(pg.CreateConfig) and "bogus" not in accepted(pg.CreateConfig)
    print(json.dumps({"version": polygraphy.__version__, "file": polygraphy.__file__, "checked": checked,
                      "unknown": unknown, "teeth": teeth}))


if __name__ == "__main__":
    main()
