"""Figures of the report that no single lens draws: comparisons across models and the symmetry view.

Each function builds a :class:`matplotlib.figure.Figure` directly (no pyplot global state) and
returns it; :func:`netxray.report.html.figure_to_plot` renders it for the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions

__all__ = [
    "curves_overlaid",
    "distance_and_dendrogram",
    "histograms_overlaid",
    "symmetry_comparison",
    "symmetry_figure",
]


def distance_and_dendrogram(dist: pd.DataFrame, linkage: np.ndarray, method: str = "dtw") -> Figure:
    """Heat map of a model × model distance matrix next to the dendrogram of its clustering."""
    from scipy.cluster.hierarchy import dendrogram

    names = [str(c) for c in dist.columns]
    k = len(names)
    fig = Figure(figsize=(PAGE_WIDTH if k > 12 else 10, min(11.0, max(3.6, 0.45 * k + 2))), layout="constrained")
    ax_m, ax_d = fig.subplots(1, 2, width_ratios=[1.1, 1])
    a = dist.to_numpy(dtype=float)
    im = ax_m.imshow(a, cmap="magma_r", vmin=0)
    label_positions(ax_m, names, axis="x", separators=False, fontsize=8, hover=False)
    label_positions(ax_m, names, axis="y", separators=False, fontsize=8,
                    tips=[f"{n} — nearest: {_nearest(a, i, names)}" for i, n in enumerate(names)])
    if k <= 12:  # numbers in the cells when they fit
        for i in range(k):
            for j in range(k):
                ax_m.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if a[i, j] > 0.6 * np.nanmax(a) else "black")  # fmt: skip
    fig.colorbar(im, ax=ax_m, label=f"{method} distance")
    ax_m.set_title(f"signature distance ({method})")
    if k >= 2 and len(linkage):
        dendrogram(linkage, labels=names, ax=ax_d, orientation="right", color_threshold=0)
        ax_d.set_xlabel("linkage distance")
        ax_d.tick_params(axis="y", labelsize=8)
    ax_d.set_title("average-linkage clustering")
    finish_figure(fig)
    return fig


def _nearest(a: np.ndarray, i: int, names: list[str]) -> str:
    row = np.where(np.arange(len(names)) == i, np.inf, a[i])
    if len(names) < 2 or not np.isfinite(row).any():
        return "none"
    j = int(np.nanargmin(row))
    return f"{names[j]} ({row[j]:.3g})"


def curves_overlaid(long: pd.DataFrame) -> Figure:
    """Modularity curves of several models (columns model, relative_depth, q_mean, q_std, redundant)."""
    fig = Figure(figsize=(PAGE_WIDTH * 0.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for model, g in long.groupby("model", sort=False):
        x = g["relative_depth"].to_numpy(dtype=float)
        y = g["q_mean"].to_numpy(dtype=float)
        s = g["q_std"].fillna(0).to_numpy(dtype=float)
        line = ax.plot(x, y, "-o", ms=4, label=str(model))[0]
        ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.15, lw=0)
        red = g["redundant"].to_numpy(dtype=bool)
        if red.any():
            ax.plot(x[red], y[red], "o", ms=9, mfc="none", mec=line.get_color())
    ax.set(xlabel="relative depth (first probed layer 0, last 1)", ylabel="modularity Q",
           title="modularity curves")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    finish_figure(fig)
    return fig


def histograms_overlaid(edges: np.ndarray, densities: dict[str, np.ndarray]) -> Figure:
    """Weight densities of several models on shared bins, log scale so the tails show."""
    fig = Figure(figsize=(8, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for name, d in densities.items():
        ax.stairs(np.asarray(d, dtype=float), edges, label=str(name), lw=1.4)
    ax.set(xlabel="weight value", ylabel="density", title="all weights, shared bins", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    finish_figure(fig)
    return fig


def symmetry_figure(group: pd.DataFrame, bounds: pd.DataFrame | None) -> Figure | None:
    """log10 of each axis's group (d!, times 2^d for sign flips) as bars; and, when given, the
    classical vs permutation-reduced log10 covering bounds (first ε)."""
    if not isinstance(group, pd.DataFrame) or group.empty:
        return None
    has_bounds = isinstance(bounds, pd.DataFrame) and not bounds.empty
    many = len(group) > 12
    fig = Figure(figsize=(PAGE_WIDTH if has_bounds or many else 7, 4.0 + (3.0 if has_bounds and many else 0)),
                 layout="constrained")
    axes = fig.subplots(2 if has_bounds and many else 1, 1 if many or not has_bounds else 2, squeeze=False).ravel()
    perm = pd.to_numeric(group["log10_order"], errors="coerce").fillna(0).to_numpy(dtype=float)
    flips = pd.to_numeric(group.get("log10_sign_flips", 0), errors="coerce")
    flips = np.zeros_like(perm) if np.isscalar(flips) else flips.fillna(0).to_numpy(dtype=float)
    x = np.arange(len(perm))
    axes[0].bar(x, perm, color="tab:purple", label="log10 d! (permutations)")
    if flips.any():
        axes[0].bar(x, flips, bottom=perm, color="tab:olive", label="log10 2^d (sign flips)")
    names = group["axis"].astype(str).tolist()
    tips = [f"{a} — {s} units, log10 d! = {p:.4g}" + (f", sign flips +{f:.4g}" if f else "")
            for a, s, p, f in zip(names, group["size"], perm, flips, strict=True)]  # fmt: skip
    # an axis is named "writer->reader"; the writing layer labels it, the tooltip names both
    writers = group["layer"].astype(str).tolist() if "layer" in group else names
    label_positions(axes[0], writers, x, tips=tips)
    axes[0].set_xlim(-0.6, len(names) - 0.4)
    axes[0].set(ylabel="log10 of group order", title="symmetry group per axis (d units)")
    axes[0].legend(fontsize=8)
    if has_bounds:
        b = bounds.iloc[0]
        vals = [float(b["classical_log10"]), float(b["reduced_log10"])]
        axes[1].barh([0, 1], vals, color=["tab:gray", "tab:green"])
        axes[1].set_yticks([0, 1], ["classical", "permutation-reduced"])
        for i, v in enumerate(vals):
            axes[1].text(v, i, f" {v:.6g}", va="center", fontsize=8)
        axes[1].set(xlabel="log10 covering number N(ε)",
                    title=f"covering bounds (ε = {float(b['eps']):g}): −{100 * float(b['relative_reduction']):.2g}%")
        axes[1].set_xlim(0, max(vals) * 1.25)
    finish_figure(fig)
    return fig


def symmetry_comparison(log10_order: dict[str, float], alignment: pd.DataFrame) -> Figure | None:
    """Bars of log10 |G| per model and, for same-architecture pairs, the relative weight distance
    before and after weight matching."""
    if not log10_order:
        return None
    pairs = alignment[alignment["status"] == "ok"] if len(alignment) and "status" in alignment else alignment.iloc[0:0]
    has_pairs = len(pairs) > 0 and "relative_after" in pairs
    fig = Figure(figsize=(11 if has_pairs else 6.5, 3.8), layout="constrained")
    axes = fig.subplots(1, 2 if has_pairs else 1, squeeze=False)[0]
    names = list(log10_order)
    axes[0].bar(range(len(names)), [log10_order[n] for n in names], color="tab:purple")
    label_positions(axes[0], names, separators=False, fontsize=8,
                    tips=[f"{n} — log10 |G| = {log10_order[n]:.4g}" for n in names])
    axes[0].set(ylabel="log10 |G|", title="size of the symmetry group")
    if has_pairs:
        labels = [f"{a}–{b}" for a, b in zip(pairs["model_a"], pairs["model_b"], strict=True)]
        x = np.arange(len(labels))
        axes[1].bar(x - 0.2, pairs["relative_before"], 0.4, label="before (normalized)", color="tab:gray")
        axes[1].bar(x + 0.2, pairs["relative_after"], 0.4, label="after weight matching", color="tab:green")
        label_positions(axes[1], labels, x, separators=False, fontsize=8)
        axes[1].set(ylabel="‖a − b‖ / ‖a‖", title="distance modulo symmetry")
        axes[1].legend(fontsize=8)
    finish_figure(fig)
    return fig
