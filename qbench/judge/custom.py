"""Custom evaluators: a user's function judges each sample, the judge's machinery aggregates and
decides, exactly as for the built-in tasks.

    task = "path/to/eval.py:function"   # a file
    task = "package.module:function"    # an importable module
    task = "name"                       # an entry point in the group "qbench.evaluators"

Signature (see docs/JUDGE.md)::

    def function(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], feed: dict[str, np.ndarray],
                 label) -> dict[str, float | bool]

called once per sample with the FP32 and candidate outputs (by graph output name), the inputs, and
the sample's label (None without labels). It returns that sample's metrics. The primary metric,
its direction and its tolerance come from the options ``primary``, ``higher_is_better``,
``tolerance``, else from the function's attributes of the same names, else the first metric,
higher is better — a tolerance is required. A primary metric that is always 0/1 (or bool) is an
agreement share (Wilson interval); any other is averaged over samples (percentile bootstrap,
hulled with the Wilson interval of (sum, count) when every value lies in [0, 1]; a metric outside
[0, 1] with the same value on every sample has no interval and cannot pass).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Judge, Summary
from qbench.judge.verdict import Evidence

DEFAULTS = {"primary": None, "tolerance": None, "higher_is_better": None}
ENTRY_POINT_GROUP = "qbench.evaluators"


def has_entry_point(name: str) -> bool:
    try:
        return any(ep.name == name for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken installed distribution must not break the judge
        return False


def load_evaluator(spec: str):
    """The callable named by "file.py:function", "module:function" or an entry-point name."""
    if ":" not in spec or spec.endswith(":"):
        eps = [ep for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec.rstrip(":")]
        if not eps:
            raise QbenchError(f"no evaluator {spec!r}: give path/to/file.py:function, module:function, or an entry point "
                              f"in the group {ENTRY_POINT_GROUP!r}")
        try:
            return eps[0].load(), spec
        except Exception as exc:
            raise QbenchError(f"evaluator entry point {spec!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise QbenchError(f"evaluator file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(f"qbench_evaluator_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise QbenchError(f"evaluator file {path} failed to load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise QbenchError(f"evaluator module {where!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise QbenchError(f"evaluator {spec!r}: {where} has no function {name!r}")
    return fn, spec


def make_custom_judge(spec: str, graph, options, labels, merge) -> Judge:
    fn, label = load_evaluator(spec)
    merged = merge("custom", DEFAULTS, options)
    for key in ("primary", "tolerance", "higher_is_better"):
        if merged[key] is None:
            merged[key] = getattr(fn, key, None)
    if merged["tolerance"] is None:
        raise QbenchError(f"custom evaluator {label}: give a tolerance (option tolerance, or a `tolerance` attribute on the function)")
    merged["higher_is_better"] = True if merged["higher_is_better"] is None else bool(merged["higher_is_better"])
    merged["_fn"] = fn
    judge = Judge(f"custom:{label}", graph, merged, labels, CustomAccumulator)
    return judge


class CustomAccumulator(Accumulator):
    def measure(self, index, name, ref, cand, feed, label) -> dict:
        fn = self.options["_fn"]
        try:
            out = fn(ref, cand, feed, label)
        except QbenchError:
            raise
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise QbenchError(f"custom evaluator {getattr(fn, '__name__', fn)} failed on sample {name!r}: {type(exc).__name__}: {first}") from None
        if not isinstance(out, dict) or not out:
            raise QbenchError(f"custom evaluator {getattr(fn, '__name__', fn)} must return a non-empty dict of metrics, got {type(out).__name__}")
        row = {}
        for key, value in out.items():
            if isinstance(value, (bool, np.bool_)):
                value = float(value)
            try:
                row[str(key)] = float(value)
            except (TypeError, ValueError):
                raise QbenchError(f"custom evaluator metric {key!r} is {type(value).__name__}, not a number") from None
        if self.options["primary"] is None:
            self.options = dict(self.options, primary=next(iter(row)))
        return row

    def summarise(self, frame: pd.DataFrame) -> Summary:
        primary = self.options["primary"] or "value"
        if len(frame) and primary not in frame:
            raise QbenchError(f"custom evaluator returned no metric {primary!r} (it returned {[c for c in frame if c not in ('sample', 'name')]})")
        values = frame[primary].astype(float) if len(frame) else pd.Series(dtype=float)
        metrics = {c: float(frame[c].mean()) for c in frame.columns if c not in ("sample", "name")}
        finite = values[np.isfinite(values)]
        value = float(finite.mean()) if len(finite) else math.nan
        if len(finite) and finite.isin([0.0, 1.0]).all():
            ev = Evidence("wilson", k=float(finite.sum()), n=len(finite))
        else:
            # a mean of values in [0, 1] gets a Wilson bound beside the bootstrap; any other mean
            # with no spread over the samples has no interval (it can fail, never pass)
            ev = Evidence("ratio", num=tuple(finite), den=(1.0,) * len(finite), n=len(finite),
                          bounded=bool(len(finite) and finite.between(0.0, 1.0).all()))
        hib = bool(self.options["higher_is_better"])
        return Summary(metrics, primary, primary, value, float(self.options["tolerance"]),
                       "tolerance", hib, ev, rank_column=primary, rank_higher_is_better=hib)
