"""``netxray weights CKPT --out stats.csv [--plot DIR]``: statistics and node strengths of one checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from netxray.cli._common import fail, load_checkpoint


def weights(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (or model.safetensors with config.json beside it)."),
    out: Path = typer.Option(Path("weights_stats.csv"), "--out", help="CSV: one row per parameter tensor plus a <global> row."),
    strengths: Path | None = typer.Option(None, "--strengths", help="Also write per-unit node strengths (CSV) here."),
    plot: Path | None = typer.Option(None, "--plot", help="Directory for plots: weight histograms, strength distributions."),
    near_zero: float = typer.Option(1e-3, "--near-zero", help="|w| at or below this counts as near zero."),
    bins: int = typer.Option(64, "--bins", help="Histogram bins (shared by all tensors)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
) -> None:
    """Per-tensor weight statistics (SPEC 3.1) and node strengths (SPEC 3.2) of one checkpoint.

    Statistics are computed in float64 on the finite values; NaN/inf are counted in
    n_nonfinite. Strength rows cover Linear, Conv (channel graph) and attention heads; layers
    that cannot be mapped are listed with the reason.
    """
    from netxray._meta import atomic_write_text
    from netxray.lenses.parameters import (
        node_strengths,
        plot_strengths,
        plot_weight_histograms,
        strength_fluctuation,
        weight_stats,
    )

    if bins < 1:
        fail(f"--bins must be a positive integer, got {bins}")
    if not math.isfinite(near_zero) or near_zero < 0:
        fail(f"--near-zero must be a finite number >= 0, got {near_zero}")
    model = load_checkpoint(checkpoint)
    try:
        df = weight_stats(model, near_zero=near_zero)
        st = node_strengths(model) if strengths is not None or plot is not None else None
        fl = strength_fluctuation(st) if st is not None else None
    except ValueError as exc:
        fail(f"weights of {checkpoint}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False))
    if strengths is not None:
        strengths.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(strengths, st.to_csv(index=False))
    if plot is not None:
        plot.mkdir(parents=True, exist_ok=True)
        try:
            plot_weight_histograms(model, plot / "weight_histograms.png", bins=bins)
            plot_strengths(st, plot / "strengths.png")
        except ValueError as exc:
            fail(f"plots of {checkpoint}: {exc}")
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weights of {checkpoint}")
    for col in ("name", "role", "shape", "count", "mean", "std", "kurtosis", "p0", "p100", "near_zero_frac", "status"):
        table.add_column(col)
    for r in df.itertuples():
        table.add_row(r.name, r.role, r.shape, str(r.count), f"{r.mean:.4g}", f"{r.std:.4g}",
                      f"{r.kurtosis:.3g}", f"{r.p0:.3g}", f"{r.p100:.3g}", f"{r.near_zero_frac:.3f}", r.status)
    console = Console()
    console = Console(width=max(console.width, 150))  # names and numbers stay readable in pipes/logs
    console.print(table)
    if st is not None and fl is not None:
        fl = fl[fl["kind"] == "in"]
        console.print("layer fluctuation (std of |w| in-strength): " + ", ".join(
            f"{r.layer}={r.abs_std:.3g}" for r in fl.itertuples()))
        for line in st.attrs["summary"]["not_mapped"]:
            console.print(f"not mapped: {line}")
    console.print(f"wrote {out}" + (f", {strengths}" if strengths else "") + (f", plots in {plot}" if plot else ""))


def register(app: typer.Typer) -> None:
    """Add the ``weights`` command to the netxray CLI."""
    app.command("weights")(weights)
