"""The FP16 headroom figure: every tensor's FP32 peak as a fraction of 65504, along the graph."""

from __future__ import annotations

import numpy as np

from qbench.report.plots import _figure, _png, label

RISK_COLOUR = "#d32f2f"
OK_COLOUR = "#1e88e5"


def headroom_along_graph(headroom, max_labels: int = 4) -> bytes | None:
    """PNG bytes, or None when no tensor was measured. Log scale: each step down is a factor of 10
    more headroom; the dashed lines are the risk fraction and FP16's maximum itself. A tensor whose
    FP32 peak is itself infinite (a Log of zero, say) has no place on that scale: it is drawn as a
    triangle at the top, so one such tensor neither hides the others nor breaks the axis limits."""
    df = headroom.tensors
    df = df[df["fp32_peak"] > 0]
    if df.empty:
        return None
    fig, (ax,) = _figure(1, height=3.2)
    risky = df["risk"].to_numpy(bool)
    x = df["index"].to_numpy()
    y = df["fp16_fraction"].to_numpy(float)
    beyond = ~np.isfinite(y)  # infinite (or NaN) in FP32 already
    ax.plot(x, y, color=OK_COLOUR, linewidth=0.8, alpha=0.7)
    ax.scatter(x[~risky & ~beyond], y[~risky & ~beyond], s=6, color=OK_COLOUR)
    ax.scatter(x[risky & ~beyond], y[risky & ~beyond], s=26, color=RISK_COLOUR, marker="o", zorder=3, label="FP16 risk")
    if beyond.any():
        ax.scatter(x[beyond], y[beyond], s=30, color="#616161", marker="^", zorder=3, label="inf/NaN in FP32 itself")
    # parameters that overflow when stored unfolded, drawn at the layer that reads them
    index_of = dict(zip(df["node"], df["index"]))
    over = headroom.parameters[headroom.parameters["issue"] == "overflow"]
    px = [index_of[n] for n in over["node"] if n in index_of]
    py = [m / 65504.0 for n, m in zip(over["node"], over["magnitude"]) if n in index_of]
    top = max([3.0] + [3 * v for v in py if np.isfinite(v)])
    py = [v if np.isfinite(v) else top / 1.5 for v in py]
    y = np.where(beyond, top / 1.5, y)
    if px:
        ax.scatter(px, py, s=40, color=RISK_COLOUR, marker="x", zorder=3, label="parameter beyond FP16 (unfolded)")
        for x_p, y_p, n in zip(px, py, [n for n in over["node"] if n in index_of]):
            ax.annotate(label(n, 32), (x_p, y_p), textcoords="offset points", xytext=(4, -10), fontsize=8)
    if px or beyond.any():
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.set_yscale("log")
    ax.axhline(1.0, color=RISK_COLOUR, linestyle="--", linewidth=1)
    ax.axhline(headroom.fraction, color="#f57c00", linestyle="--", linewidth=1)
    ax.text(x.min(), 1.0, " 65504 (FP16 max)", va="bottom", fontsize=8, color=RISK_COLOUR)
    ax.text(x.min(), headroom.fraction, f" risk above {headroom.fraction:.3g} of max", va="bottom", fontsize=8, color="#f57c00")
    for i in np.argsort(-y)[:max_labels]:
        if risky[i] and not beyond[i]:
            ax.annotate(label(df["node"].iloc[i], 32), (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_ylim(max(min(y.min(), headroom.fraction) / 3, 1e-9), top)
    ax.set_xlabel("tensor (graph order)", fontsize=9)
    ax.set_ylabel("FP32 peak / 65504", fontsize=9)
    ax.set_title("FP16 headroom along the graph", fontsize=10)
    return _png(fig)
