"""``netxray weights CKPT --out stats.csv [--plot DIR] [--spectra FILE]``: statistics, node strengths
and the spectral view of one checkpoint — a netxray checkpoint, or any safetensors checkpoint
(a file, or a Hugging Face sharded directory) streamed tensor by tensor without building the model."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from netxray.cli._common import DEVICE, check_out, cli_device, fail, load_checkpoint


def weights(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (or model.safetensors with config.json beside it)."),
    out: Path = typer.Option(Path("weights_stats.csv"), "--out", help="CSV: one row per parameter tensor plus a <global> row."),
    strengths: Path | None = typer.Option(None, "--strengths", help="Also write per-unit node strengths (CSV) here."),
    plot: Path | None = typer.Option(None, "--plot", help="Directory for plots: weight histograms, strength distributions."),
    near_zero: float = typer.Option(1e-3, "--near-zero", help="|w| at or below this counts as near zero."),
    bins: int = typer.Option(64, "--bins", help="Histogram bins (shared by all tensors)."),
    spectra: Path | None = typer.Option(None, "--spectra", help="Also write the spectral view (CSV): singular-value norms, stable rank, power-law alpha per weight matrix."),
    fit_rule: str = typer.Option("netxray", "--fit-rule", help="Power-law fit of --spectra: netxray (tails of >= 10 eigenvalues) or weightwatcher (WeightWatcher's defaults: tails down to 2)."),
    spectra_precision: str = typer.Option("float64", "--spectra-precision", help="Eigenvalues of --spectra: float64, or float32 (a float32 Gram and tridiagonal reduction: about 1.7x faster, eigenvalues to ~1e-7 of the largest; alpha agrees with WeightWatcher to ~1e-6 instead of ~1e-9)."),
    device: str | None = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
) -> None:
    """Per-tensor weight statistics (SPEC 3.1) and node strengths (SPEC 3.2) of one checkpoint.

    Statistics are computed in float64 on the finite values; NaN/inf are counted in
    n_nonfinite. Strength rows cover Linear, Conv (channel graph) and attention heads; layers
    that cannot be mapped are listed with the reason.

    A safetensors checkpoint that is not a netxray one (no netxray config.json: e.g. a Hugging
    Face model directory with model.safetensors.index.json and its shards) is streamed tensor
    by tensor: memory stays near its largest tensor, with a progress bar in bytes. Node
    strengths and plots need the model's modules and are not available then.
    """
    from netxray._meta import atomic_write_text
    from netxray.lenses.parameters import (
        node_strengths,
        plot_strengths,
        plot_weight_histograms,
        strength_fluctuation,
        weight_stats,
    )

    check_out(out, directory=False)  # not inside /, a system folder
    for option, path in (("--strengths", strengths), ("--spectra", spectra)):
        if path is not None:
            check_out(path, directory=False, option=option)
    if plot is not None:
        check_out(plot, directory=True, option="--plot")
        from netxray.report import check_owned_files

        try:  # the plots replace only files netxray wrote there
            check_owned_files(plot, ["weight_histograms.png", "strengths.png"], "--plot")
        except (FileExistsError, PermissionError) as exc:
            fail(str(exc))
    if bins < 1:
        fail(f"--bins must be a positive integer, got {bins}")
    if not math.isfinite(near_zero) or near_zero < 0:
        fail(f"--near-zero must be a finite number >= 0, got {near_zero}")
    if fit_rule not in ("netxray", "weightwatcher"):
        fail(f"--fit-rule must be netxray or weightwatcher, got {fit_rule!r}")
    if spectra_precision not in ("float64", "float32"):
        fail(f"--spectra-precision must be float64 or float32, got {spectra_precision!r}")
    dev = cli_device(device)  # the spectra's Gram matrices and eigenvalues run there
    spectra_kw = {"rule": fit_rule, "device": dev, "precision": spectra_precision}
    if _streamable(checkpoint):
        _streamed(checkpoint, out, spectra, near_zero, strengths, plot, quiet, spectra_kw)
        return
    model = load_checkpoint(checkpoint)
    try:
        df = weight_stats(model, near_zero=near_zero)
        st = node_strengths(model) if strengths is not None or plot is not None else None
        fl = strength_fluctuation(st) if st is not None else None
    except (ValueError, MemoryError) as exc:  # MemoryError: a cost estimate past the memory
        fail(f"weights of {checkpoint}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False))
    if spectra is not None:
        from netxray.lenses.parameters import weight_spectra

        spectra.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(spectra, weight_spectra(model, **spectra_kw).to_csv(index=False))
    if strengths is not None:
        strengths.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(strengths, st.to_csv(index=False))
    if plot is not None:
        plot.mkdir(parents=True, exist_ok=True)
        try:
            plot_weight_histograms(model, plot / "weight_histograms.png", bins=bins)
            plot_strengths(st, plot / "strengths.png")
            from netxray.report import record_owned_files

            record_owned_files(plot, ["weight_histograms.png", "strengths.png"])
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


def _streamable(checkpoint: Path) -> bool:
    """A safetensors checkpoint without a netxray config.json beside it."""
    import json

    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if checkpoint.is_file() and checkpoint.suffix != ".safetensors":
        return False
    if not checkpoint.exists():
        return False
    if (directory / "model.safetensors.index.json").exists():
        return True
    cfg = directory / "config.json"
    if not cfg.exists():
        return any(directory.glob("*.safetensors"))
    try:
        config = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False  # a broken config: the netxray loader names the problem
    from netxray.models.checkpoint import FORMAT

    return not (isinstance(config, dict) and config.get("format") == FORMAT)


def _streamed(checkpoint, out, spectra, near_zero, strengths, plot, quiet, spectra_kw) -> None:
    from netxray._meta import atomic_write_text
    from netxray.lenses.parameters import weight_spectra, weight_stats

    if strengths is not None or plot is not None:
        fail(f"{checkpoint} is read tensor by tensor without its model: --strengths and --plot "
             "need the model's modules (a netxray checkpoint); drop them")  # fmt: skip
    try:
        df = weight_stats(checkpoint, near_zero=near_zero, progress=not quiet)
        sp = weight_spectra(checkpoint, progress=not quiet, **spectra_kw) if spectra is not None else None
    except (OSError, ValueError) as exc:
        fail(f"weights of {checkpoint}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False))
    if sp is not None:
        spectra.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(spectra, sp.to_csv(index=False))
    if not quiet:
        g = df.set_index("name").loc["<global>"]
        print(f"{len(df) - 1} tensors, {df.attrs['meta']['n_params']:,} values "
              f"({df.attrs['meta']['n_bytes'] / 2**30:.2f} GiB) streamed; global weight std "
              f"{g['std']:.4g}, kurtosis {g['kurtosis']:.3g}; wrote {out}" + (f", {spectra}" if sp is not None else ""))  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the ``weights`` command to the netxray CLI."""
    app.command("weights")(weights)
