"""``netxray zoo train | analyze | demo``: populations of models (SPEC 3.3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

zoo_app = typer.Typer(
    help="Zoo studies: train a population over a grid, then ask whether good networks look alike "
    "and how well weights alone predict accuracy.",
    no_args_is_help=True,
)

DEMO_ARCHS = "mlp,cnn,vit"
# 3 families x 72 = 216 models; lr spans too-slow to too-fast so all three classes appear
DEMO_GRID = "width=8,16,32;depth=1,2;lr=1e-3,1e-2,1e-1;epochs=1,5;seed=0,1"


@zoo_app.command("train")
def zoo_train(
    out: Path = typer.Option(..., "--out", help="Zoo directory (created; a rerun resumes it)."),
    arch: str = typer.Option("mlp", "--arch", help="Comma-separated families: mlp,cnn,resnet,vit."),
    grid: str = typer.Option(..., "--grid", help='Grid, e.g. "width=8,32;depth=1,2;lr=1e-3,1e-2;epochs=1,5;seed=0,1".'),
    dataset: str = typer.Option("digits", "--dataset", help="Data spec for netxray.load_data."),
    engine: str = typer.Option("local", "--engine", help="local (process pool), ray, or serial."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel workers (default: CPU count)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (engine ray); default: a local instance."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary."),
) -> None:
    """Train every grid combination for every family: one checkpoint + record per model,
    written atomically; finished models are skipped on a rerun."""
    from netxray.cli._common import check_out, fail
    from netxray.lenses.zoo import train_zoo

    check_out(out, directory=True)  # not /, home or a system folder
    t0 = time.perf_counter()
    try:  # a zoo.json that is not netxray's is refused before anything is written
        df = train_zoo(out, arch, grid, dataset=dataset, engine=engine, workers=workers,
                       address=address, progress=not quiet)
    except FileExistsError as exc:
        fail(str(exc))
    if not quiet:
        _print_train(df, time.perf_counter() - t0)
    errors = df[df["status"].str.startswith("error")]
    if len(errors):
        raise typer.Exit(code=1)


def _print_train(df: Any, seconds: float) -> None:
    counts = df["status"].where(~df["status"].str.startswith("error"), "error").value_counts().to_dict()
    typer.echo(f"{len(df)} models: {counts} in {seconds:.1f} s")
    for r in df[df["status"].str.startswith("error")].itertuples():
        typer.echo(f"  {r.id}: {r.status}")


@zoo_app.command("analyze")
def zoo_analyze(
    zoo: Path = typer.Argument(..., help="A zoo directory (netxray zoo train) or a Small CNN Zoo directory."),
    out: Path = typer.Option(Path("results.parquet"), "--out", help="Per-model table (Parquet, or .csv); side files beside it."),
    plot: Path | None = typer.Option(None, "--plot", help="Directory for plots."),
    engine: str = typer.Option("local", "--engine", help="local (process pool), ray, or serial."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel workers (default: CPU count)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (engine ray)."),
    bins: int = typer.Option(100, "--bins", help="Shared histogram bins per family."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the predictors."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
) -> None:
    """Features, classes (optimal / suboptimal / diverged), spread and distribution comparisons,
    and accuracy predictors (trees, ridge, hyperparameters-only; GroupKFold by run)."""
    from netxray.cli._common import check_beside, check_out, fail
    from netxray.lenses.zoo import analyze_zoo, plot_zoo, result_side_files, write_results

    if not zoo.exists():
        raise typer.BadParameter(f"zoo directory {zoo} does not exist", param_hint="ZOO")
    check_out(out, directory=False)
    check_beside(out, result_side_files(out))  # before the work: they replace only netxray's own
    if plot is not None:
        check_out(plot, directory=True, option="--plot")
        _check_plot_folder(plot)
    res = analyze_zoo(zoo, engine=engine, workers=workers, address=address, bins=bins, seed=seed,
                      progress=not quiet)
    try:  # checked again when writing, before anything is written
        paths = write_results(res, out)
        if plot is not None:
            paths += plot_zoo(res, plot)
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))
    if not quiet:
        print_findings(res)
        typer.echo("wrote " + ", ".join(map(str, paths)))


def _check_plot_folder(plot: Path) -> None:
    """Fail before the work when ``plot_zoo`` would overwrite a file netxray did not write in
    ``plot`` (its fixed names, and any ``histograms_<family>.png`` already there)."""
    from netxray.cli._common import fail
    from netxray.lenses.zoo import PLOT_NAMES
    from netxray.report import check_owned_files

    names = [*PLOT_NAMES, *(p.name for p in plot.glob("histograms_*.png"))] if plot.is_dir() else list(PLOT_NAMES)
    try:
        check_owned_files(plot, names, "--plot")
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))


def print_findings(res: Any) -> None:
    """Print the headline numbers of a :class:`ZooAnalysis`."""
    s = res.summary
    typer.echo(f"{s['n_models']} models; classes: {s['classes']}; "
               f"analysis {s['seconds_total']:.1f} s ({s['engine']})")
    for mid, status in s["errors"]:
        typer.echo(f"  skipped {mid}: {status}")
    typer.echo("Do good networks look alike? (spread of weight statistics, optimal vs suboptimal; "
               f"optimal = within {s.get('optimal_within', 0.01) * 100:g} points of the family's best)")
    _print_families(s)
    typer.echo("Predicting accuracy from weights (out-of-fold, GroupKFold by run):")
    for p in s["predictors"]:
        typer.echo(f"  {p['predictor']:>5} on {p['features']:<13} R2={p['r2']:.3f}  Kendall tau={p['kendall_tau']:.3f}"
                   f"  (n={p['n']}) {'' if p['status'] == 'ok' else p['status']}")
    rows = [r for r in s.get("alpha_vs_accuracy", []) if r["feature"] == "alpha_mean"]
    if rows:
        typer.echo("Does the power-law alpha of the weight spectra track accuracy? (mean alpha over layers "
                   "with a fit vs test accuracy, trained models)")
        for r in rows:
            typer.echo(f"  {r['arch']:>5}: Spearman rho={r['spearman']:+.3f} (p={r['spearman_p']:.2g})  "
                       f"Kendall tau={r['kendall_tau']:+.3f}  (n={r['n']})")


def _print_stratified(res: Any, label: str) -> None:
    from netxray.lenses.zoo import stratified_comparisons

    _, summ = stratified_comparisons(res, by=("lr", "epochs"))
    typer.echo(f"Confound check, optimal within {label}: the same comparison inside cells of equal (lr, epochs)"
               " with >= 2 optimal and >= 2 suboptimal models:")
    if not summ:
        typer.echo("  no such cell")
    for arch, f in summ.items():
        typer.echo(f"  {arch}: {f['cells']} cell(s); suboptimal spread larger on {f['frac_stats_sub_spread_larger']:.0%}"
                   f" of {f['stats_compared']} statistic comparisons (median MAD ratio {f['median_mad_ratio']:.2f});"
                   f" Jeffreys within optimal {f['jeffreys_within_optimal']:.3f} vs suboptimal"
                   f" {f['jeffreys_within_suboptimal']:.3f}")


def _print_families(s: dict[str, Any]) -> None:
    for arch, f in s["families"].items():
        if not f["stats_compared"]:
            typer.echo(f"  {arch}: {f['n_optimal']} optimal / {f['n_suboptimal']} suboptimal -> "
                       "cannot test the claim here (too few models in a class to compare spreads)")  # fmt: skip
            continue
        typer.echo(
            f"  {arch}: {f['n_optimal']} optimal / {f['n_suboptimal']} suboptimal; suboptimal spread (MAD) "
            f"larger on {f['frac_stats_sub_spread_larger']:.0%} of {f['stats_compared']} statistics "
            f"(median MAD ratio sub/opt {f['median_mad_ratio']:.2f}; Brown-Forsythe p<0.05: "
            f"{f['bf_significant_sub_larger']} sub-wider, {f['bf_significant_opt_larger']} opt-wider); "
            f"mean pairwise Jeffreys within optimal {f.get('jeffreys_within_optimal', float('nan')):.3f} vs "
            f"within suboptimal {f.get('jeffreys_within_suboptimal', float('nan')):.3f} -> "
            f"{'supports' if f['claim_holds'] else 'does not support'} the claim")


@zoo_app.command("demo")
def zoo_demo(
    out: Path = typer.Option(Path("zoo-demo"), "--out", help="Directory for the zoo and the results."),
    arch: str = typer.Option(DEMO_ARCHS, "--arch", help="Families."),
    grid: str = typer.Option(DEMO_GRID, "--grid", help="Grid (default: 72 models per family)."),
    engine: str = typer.Option("local", "--engine", help="local, ray, or serial."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel workers (default: CPU count)."),
    quiet: bool = typer.Option(False, "--quiet", help="Only the findings."),
) -> None:
    """Train and analyse a zoo of >= 200 tiny MLPs, CNNs and ViTs on digits (resumable), then
    print whether good networks look alike here and the predictors' R2 and tau vs baselines."""
    from netxray.cli._common import check_out, fail
    from netxray.lenses.zoo import (
        analyze_zoo,
        plot_zoo,
        result_side_files,
        train_zoo,
        write_results,
    )
    from netxray.report import check_owned_files

    check_out(out, directory=True)
    try:  # before the work: results.parquet and its side files replace only netxray's own
        check_owned_files(out, ["results.parquet", *result_side_files("results.parquet")])
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))
    _check_plot_folder(out / "plots")
    t0 = time.perf_counter()
    try:
        df = train_zoo(out / "zoo", arch, grid, dataset="digits", engine=engine, workers=workers,
                       progress=not quiet)
    except FileExistsError as exc:
        fail(str(exc))
    t_train = time.perf_counter() - t0
    _print_train(df, t_train)
    res = analyze_zoo(out / "zoo", engine=engine, workers=workers, progress=not quiet)
    try:
        paths = write_results(res, out / "results.parquet", own_out=True) + plot_zoo(res, out / "plots")
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))
    print_findings(res)
    from netxray.lenses.zoo import with_optimal_within

    typer.echo("Sensitivity: optimal = within 5 points of the best (SPEC default is 1 point):")
    res5 = with_optimal_within(res, 0.05)
    _print_families(res5.summary)
    _print_stratified(res, "1 point")
    _print_stratified(res5, "5 points")
    typer.echo(f"total {time.perf_counter() - t0:.1f} s (training {t_train:.1f} s); wrote "
               + ", ".join(map(str, paths)))


def register(app: typer.Typer) -> None:
    """Add the ``zoo`` command group to the netxray CLI."""
    app.add_typer(zoo_app, name="zoo")
