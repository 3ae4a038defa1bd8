"""Render the report page with Jinja2, autoescape ON: every tensor, node, op and model name comes from
the model file and may contain markup, so nothing model-supplied is ever marked safe."""

from __future__ import annotations

import base64
import math
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # on for every template, whatever its file extension
        undefined=jinja2.StrictUndefined,  # a typo in the template fails the test suite, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["sortval"] = sortval
    env.filters["png_uri"] = png_uri
    env.filters["cell"] = cell
    return env


def render(context: dict) -> str:
    return environment().get_template("report.html.j2").render(**context)


def _isnan(value) -> bool:
    try:
        return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))
    except TypeError:
        return False


def fmt(value, kind: str = "g") -> str:
    """A number as a person reads it; missing values are an em dash, not 'nan'."""
    if _isnan(value):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "pct":
        if v == 0:
            return "0"
        return f"{v * 100:.2g}%" if abs(v) < 0.01 else f"{v * 100:.1f}%"
    if kind == "cos":
        return f"{v:.5f}" if v > 0.999 else f"{v:.4f}"
    if kind == "db":
        return f"{v:.1f}"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "ms":
        return f"{v:.2f} ms"
    return f"{v:.3g}"


def sortval(value) -> str:
    """The value a sortable column sorts by (data-v attribute): numbers as plain text, missing last."""
    if _isnan(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return "1e308" if v == math.inf else "-1e308" if v == -math.inf else repr(v)
    return str(value)


def cell(value) -> str:
    """Any cell of an extra-section table (engine inspector output and the like)."""
    if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return fmt(value)
    return fmt(value) if _isnan(value) else str(value)


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
