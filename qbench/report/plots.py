"""Matplotlib figures for the report, rendered off-screen (Agg) to PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot: no global state, no GUI
backend, nothing left open between reports. Every function takes a normalized frame
(``frames.normalize``) and returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qbench.report import frames

STATUS_COLOURS = {"ok": "#43a047", "divergent": "#f57c00", "zero": "#8e24aa", "nonfinite": "#d32f2f"}
STATUS_MARKERS = {"divergent": "o", "zero": "s", "nonfinite": "X"}
REF_COLOUR = "#546e7a"
CAND_COLOUR = "#1e88e5"
CANDIDATE_COLOURS = ["#1e88e5", "#f4511e", "#00897b", "#8e24aa", "#6d4c41", "#3949ab"]
DPI = 110


def _figure(rows: int = 1, height: float = 3.4, width: float = 13.0, sharex: bool = True):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, color="#e0e0e0", linewidth=0.7)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=8.5)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def label(text, limit: int = 48) -> str:
    """Model-supplied text made safe for matplotlib: '$' would start mathtext, long names clutter."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _mark_problems(ax, df: pd.DataFrame, y: pd.Series) -> None:
    intro = (df["origin"] == "introduced") & y.notna()
    if intro.any():  # culprits: a ring around the point where a problem starts
        ax.scatter(df.loc[intro, "index"], y[intro], s=110, facecolors="none", edgecolors="#b71c1c", linewidths=1.4,
                   zorder=6, label=f"introduced here ({int(intro.sum())})")
    for status, marker in STATUS_MARKERS.items():
        sel = (df["status"] == status) & y.notna()
        if sel.any():
            ax.scatter(df.loc[sel, "index"], y[sel], s=26, marker=marker, color=STATUS_COLOURS[status],
                       zorder=5, label=f"{status} ({int(sel.sum())})", edgecolors="white", linewidths=0.5)


def _annotate_first(axes, df: pd.DataFrame) -> None:
    fp = frames.first_problem(df)
    if fp is None or fp.get("index") is None or (isinstance(fp["index"], float) and math.isnan(fp["index"])):
        return
    x = fp["index"]
    for ax in axes:
        ax.axvline(x, color="#d32f2f", linestyle="--", linewidth=1.0, zorder=4)
    top = axes[0]
    left = x < df["index"].max() * 0.6  # put the label where there is room
    top.annotate(f"first problem: {label(fp['tensor'], 36)} ({label(fp['op_type'], 20)})",
                 xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(6 if left else -6, -4), textcoords="offset points",
                 ha="left" if left else "right", va="top", fontsize=8.5, color="#b71c1c",
                 bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#ef9a9a", "lw": 0.8})


def error_along_graph(df: pd.DataFrame, precision: str, min_cosine: float = 0.99) -> bytes | None:
    """SQNR (dB, higher is better) and cosine per tensor along the graph; problems marked."""
    if df.empty or not (frames.has_values(df, "cosine") or frames.has_values(df, "sqnr_db")):
        return None
    show_sqnr = frames.has_values(df, "sqnr_db")
    fig, axes = _figure(2 if show_sqnr else 1, height=5.0 if show_sqnr else 3.0)
    x = df["index"]
    if show_sqnr:
        ax = axes[0]
        finite = df["sqnr_db"].replace([np.inf, -np.inf], np.nan)
        cap = float(np.ceil((finite.max() + 8) / 10) * 10) if finite.notna().any() else 100.0
        # identical tensors have SQNR = +inf: drawn on a line at the top labelled "∞ identical"
        sq = df["sqnr_db"].clip(upper=cap).replace(-np.inf, np.nan)
        floor = min(0.0, float(sq.min())) if sq.notna().any() else 0.0
        ax.plot(x, sq, color=CAND_COLOUR, linewidth=1.1)
        ax.fill_between(x, sq, floor, color=CAND_COLOUR, alpha=0.08)
        if (df["sqnr_db"] == np.inf).any():
            ax.axhline(cap, color="#bdbdbd", linewidth=0.8, linestyle=":")
            ax.text(1.0, cap, " ∞ (identical)", transform=ax.get_yaxis_transform(), fontsize=8, color="#757575",
                    va="center", ha="left")
        _mark_problems(ax, df, sq)
        ax.set_ylabel("SQNR (dB)\nhigher is better", fontsize=9)
        ax.set_title(f"{label(precision, 24)} vs FP32 reference along the graph", fontsize=11, loc="left")
    ax = axes[-1]
    cos = df["cosine"]
    ax.plot(x, cos, color=CAND_COLOUR, linewidth=1.1)
    ax.axhline(min_cosine, color="#9e9e9e", linestyle=":", linewidth=1)
    ax.text(1.0, min_cosine, f" {min_cosine:g}", transform=ax.get_yaxis_transform(), fontsize=8, color="#757575",
            va="center", ha="left")
    _mark_problems(ax, df, cos)
    lo = np.nanmin(cos.to_numpy()) if cos.notna().any() else 0.9
    ax.set_ylim(max(-1.02, min(lo, min_cosine) - 0.02), 1.01)
    ax.set_ylabel("cosine\n(1 = identical)", fontsize=9)
    ax.set_xlabel("tensor position in graph order", fontsize=9)
    if not show_sqnr:
        ax.set_title(f"{label(precision, 24)} vs FP32 reference along the graph", fontsize=11, loc="left")
    handles, labels_ = axes[-1].get_legend_handles_labels()
    if handles:
        axes[-1].legend(handles, labels_, fontsize=8, loc="lower left", frameon=True, framealpha=0.9)
    _annotate_first(axes, df)
    return _png(fig)


def zeros_along_graph(df: pd.DataFrame, precision: str) -> bytes | None:
    """Fraction of exact zeros, reference vs candidate: dead channels and flushed values show up as
    the candidate line rising above the reference."""
    if df.empty or not (frames.has_values(df, "ref_zero_frac") or frames.has_values(df, "cand_zero_frac")):
        return None
    fig, (ax,) = _figure(1, height=2.8)
    x = df["index"]
    ref = df["ref_zero_frac"] * 100
    cand = df["cand_zero_frac"] * 100
    ax.fill_between(x, 0, ref, color="#b0bec5", alpha=0.55, linewidth=0, label="FP32 reference")
    ax.plot(x, cand, color=CAND_COLOUR, linewidth=0.9, label=label(precision, 24))
    ax.fill_between(x, ref, cand, where=(cand > ref).to_numpy(), color="#e53935", alpha=0.25, interpolate=True,
                    label="extra zeros in candidate")
    _mark_problems(ax, df[df["status"] == "zero"], cand[df["status"] == "zero"])
    ax.set_ylim(-2, 102)
    ax.set_ylabel("zeros (%)", fontsize=9)
    ax.set_xlabel("tensor position in graph order", fontsize=9)
    ax.set_title("Fraction of zeros along the graph", fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="upper left", ncols=5, frameon=False)
    return _png(fig)


def int8_along_graph(df: pd.DataFrame, precision: str) -> bytes | None:
    """INT8 clipping (values beyond amax) and values quantized to zero, per tensor."""
    has_sat, has_zero = frames.has_values(df, "int8_saturated_frac"), frames.has_values(df, "int8_zero_frac")
    if df.empty or not (has_sat or has_zero):
        return None
    fig, axes = _figure(2, height=4.2)
    x = df["index"]
    for ax, col, colour, title in (
        (axes[0], "int8_saturated_frac", "#e53935", "saturated (|x| > amax)"),
        (axes[1], "int8_zero_frac", "#8e24aa", "quantized to zero (|x| < scale/2, x ≠ 0)"),
    ):
        if col in df:
            y = pd.to_numeric(df[col], errors="coerce") * 100
            # vlines, not bar: one collection instead of a patch per tensor (hundreds of tensors)
            ax.vlines(x, 0, y.fillna(0), color=colour, alpha=0.85, linewidth=2.2)
            ax.set_ylim(bottom=0)
            worst = y.idxmax() if y.notna().any() else None
            if worst is not None and y[worst] > 0:
                ax.annotate(f"{label(df.loc[worst, 'tensor'], 32)}: {y[worst]:.2g}%", xy=(x[worst], y[worst]),
                            xytext=(4, 2), textcoords="offset points", fontsize=8, color=colour)
        ax.set_ylabel(f"{title.split(' ')[0]} (%)", fontsize=9)
        ax.set_title(f"INT8 {title}", fontsize=9.5, loc="left", color="#424242")
    axes[-1].set_xlabel("tensor position in graph order", fontsize=9)
    fig.suptitle(f"INT8 range use along the graph ({label(precision, 24)})", fontsize=11, x=0.01, ha="left")
    return _png(fig)


def fp16_along_graph(df: pd.DataFrame, precision: str) -> bytes | None:
    """FP16 overflow (inf), NaN and flushed-to-zero element counts, where any occur."""
    cols = [c for c in frames.FP16_COLUMNS if frames.has_values(df, c)]
    if df.empty or not cols:
        return None
    values = {c: pd.to_numeric(df[c], errors="coerce").fillna(0) for c in cols}
    if not any((v > 0).any() for v in values.values()):
        return None  # nothing to show; the page says "none" in words instead
    fig, (ax,) = _figure(1, height=2.8)
    colours = {"fp16_overflow": "#d32f2f", "fp16_nan": "#6d4c41", "fp16_flushed": "#8e24aa"}
    for c, v in values.items():
        sel = v > 0
        ax.scatter(df.loc[sel, "index"], v[sel], s=18, color=colours.get(c, "#333"), label=c.replace("fp16_", ""))
    ax.set_yscale("log")
    ax.set_ylabel("elements", fontsize=9)
    ax.set_xlabel("tensor position in graph order", fontsize=9)
    ax.set_title(f"FP16 overflow / NaN / flushed elements ({label(precision, 24)})", fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def outputs_summary(summaries: list[dict], verdicts: dict[str, str]) -> bytes | None:
    """One bar per candidate: output SQNR (or cosine), and latency when measured."""
    if not summaries:
        return None
    names = [s["precision"] for s in summaries]
    sqnr = [s.get("output_sqnr_db_min") for s in summaries]
    cos = [s.get("output_cosine_min") for s in summaries]
    lat = [s.get("latency_ms") for s in summaries]
    broken = [bool(s.get("output_nonfinite")) for s in summaries]
    use_sqnr = any(v is not None and math.isfinite(v) for v in sqnr)
    has_lat = any(v is not None for v in lat)
    fig = Figure(figsize=(13, 0.5 * len(names) + 1.3), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_lat else 1, squeeze=False, width_ratios=[2, 1] if has_lat else None)[0]
    colours = ["#43a047" if verdicts.get(n) == "pass" else "#e53935" if verdicts.get(n) == "fail"
               else "#f57c00" if verdicts.get(n) == "inconclusive" else "#90a4ae"
               for n in names]
    y = np.arange(len(names))[::-1]
    ax = axes[0]
    if use_sqnr:
        vals = [np.nan if bad else v if v is not None and math.isfinite(v) else (np.nan if v is None else 100.0)
                for v, bad in zip(sqnr, broken)]
        ax.barh(y, np.nan_to_num(vals, nan=0.0), color=colours, height=0.6)
        ax.set_xlabel("output SQNR, worst output (dB) — higher is better", fontsize=9)
        for yi, v, c, colour, bad in zip(y, vals, cos, colours, broken):
            text = f"{v:.1f} dB" if not np.isnan(v) else "n/a"
            if c is not None:
                text += f"   cos {c:.4f}"
            if bad:
                text = "NaN/Inf in the output"
            # text in the verdict colour: a failing candidate near 0 dB has no visible bar
            ax.text(max(0, np.nan_to_num(v)), yi, "  " + text, va="center", fontsize=8.5, color=colour, fontweight="bold")
        ax.set_xlim(0, max(np.nan_to_num(vals, nan=0.0).max() * 1.45, 10))
    else:
        vals = [np.nan if v is None or bad else v for v, bad in zip(cos, broken)]
        ax.barh(y, np.nan_to_num(vals, nan=0.0), color=colours, height=0.6)
        ax.set_xlabel("output cosine, worst output", fontsize=9)
        for yi, v, colour, bad in zip(y, vals, colours, broken):
            text = "NaN/Inf in the output" if bad else f"{v:.4f}"
            ax.text(max(0, np.nan_to_num(v)), yi, f"  {text}", va="center", fontsize=8.5, color=colour, fontweight="bold")
        ax.set_xlim(0, 1.25)
    ax.set_yticks(y, [label(n, 20) for n in names], fontsize=9)
    ax.set_title("Model outputs vs FP32 (diagnosis; colour: the task verdict: green pass, red fail, orange inconclusive)",
                 fontsize=11, loc="left")
    if has_lat:
        lax = axes[1]
        lv = [np.nan if v is None else v for v in lat]
        lax.barh(y, np.nan_to_num(lv, nan=0.0), color="#78909c", height=0.6)
        for yi, v in zip(y, lv):
            lax.text(np.nan_to_num(v), yi, "  n/a" if np.isnan(v) else f"  {v:.2f} ms", va="center", fontsize=8.5)
        lax.set_yticks(y, [""] * len(y))
        lax.set_xlim(0, np.nanmax(lv) * 1.4 if not np.all(np.isnan(lv)) else 1)
        lax.set_xlabel("latency (ms) — lower is better", fontsize=9)
        lax.set_title("Latency", fontsize=11, loc="left")
    for a in axes:
        a.spines[["top", "right"]].set_visible(False)
        a.grid(True, axis="x", color="#e0e0e0", linewidth=0.7)
        a.set_axisbelow(True)
    return _png(fig)
