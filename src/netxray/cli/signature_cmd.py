"""``netxray signature`` and ``netxray compare-signatures``: the non-linearity signature from the CLI.

    netxray signature CKPT --data digits --out sig.csv --plot sig.png
    netxray compare-signatures CKPT_A CKPT_B CKPT_C --data digits --out cmp/

(``netxray compare`` — the full multi-model report — writes the same signature files.)

The CLI holds no science: it loads checkpoints and data, calls the lens, and writes files
(atomically, with a ``.meta.json`` beside each table saying how it was made).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import (
    DATA_HELP,
    MODEL_SOURCES_HELP,
    SAMPLES,
    DataOptions,
    check_beside,
    check_fits,
    check_out,
    cli_device,
    data_options,
    fail,
    set_threads,
    table_side_files,
    unique_names,
    write_table,
)

TOKENS_HELP = "With --samples pooled, token tensors (B, T, D): mean (features = D), reference (features = T), samples."


def _signature(model: Any, data: Any, source: str, opts: dict[str, Any], quiet: bool, label: str) -> Any:
    from rich.console import Console

    from netxray.lenses.nonlinearity import nonlinearity_signature

    console = Console(stderr=True, quiet=quiet)
    with console.status(f"measuring the non-linearity signature of {label} …"):
        df = nonlinearity_signature(model, data, **opts)
    df.attrs["meta"]["data"] = source
    return df


def register(app: typer.Typer) -> None:
    """Add the ``signature`` and ``compare-signatures`` commands to the ``netxray`` app."""

    @app.command("signature")
    @data_options()
    def signature_cmd(
        checkpoint: Path = typer.Argument(..., metavar="MODEL", help=f"The model: {MODEL_SOURCES_HELP}."),
        data: str = typer.Option("digits", "--data", help=DATA_HELP + " Labels are not needed."),
        out: Path = typer.Option(Path("signature.csv"), "--out", help="CSV file for the signature table."),
        opts: DataOptions = DataOptions(),  # --weights, --task, --device and the data-source options
        plot: Path | None = typer.Option(None, "--plot", help="Also save the signature plot (png, svg, pdf)."),
        n_samples: int = typer.Option(2048, "--n-samples", help="Samples drawn at random (seeded)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sample draw and the null baseline."),
        samples: str = SAMPLES,
        tokens: str = typer.Option("mean", "--tokens", help=TOKENS_HELP),
        channel_axis: int | None = typer.Option(None, "--channel-axis", help="Feature axis of conv maps: default per site from the model graph; 1 (B, C, H, W) or -1 (channel-last) forces it."),
        null: bool = typer.Option(False, "--null", help="Add the null baseline: score of a rotated copy of each input."),
        threads: int | None = typer.Option(None, "--threads", help="torch/BLAS CPU threads (default: the libraries'; 1 is often fastest on a busy machine)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:  # fmt: skip
        """Affinity score of every activation call of a model, in execution order (SPEC §1).

        One row per call: site, activation type, n, d, affinity (1 = affine), linear CKA, R², sparsity and entropy before/after, status. Compare scores only at equal n and d: the estimator is biased low in high dimension (use --null to see the floor).
        """
        from netxray.lenses.nonlinearity import plot_signatures

        check_out(out, directory=False)
        check_beside(out, table_side_files(out))  # its .meta.json replaces only netxray's own
        if plot is not None:
            check_out(plot, directory=False, option="--plot")
        set_threads(threads)
        model = opts.load_model(checkpoint)
        cli_device(opts.device, model)
        dataset = opts.load_data(data, seed, model)
        check_fits(model, dataset, data, label=str(checkpoint))
        lens_opts = dict(n_samples=n_samples, seed=seed, samples=samples, tokens=tokens, channel_axis=channel_axis,
                         null_baseline=null)  # fmt: skip
        try:
            df = _signature(model, dataset, data, lens_opts, quiet, str(checkpoint))
        except ValueError as exc:
            fail(str(exc))
        write_table(df, out, {"checkpoint": str(checkpoint)})
        if plot is not None:
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot_signatures(df, plot, title=f"{checkpoint.name}: non-linearity signature")
        if not quiet:
            s = df.attrs["summary"]
            mean = s.get("mean")
            typer.echo(
                f"{s['n_sites']} activation calls, statuses {s['status_counts']}, "
                + (f"mean affinity {mean:.4f} over {s['n_ok']} ok sites" if mean is not None
                   else "no site with status ok")
            )
            if s.get("note"):
                typer.echo(s["note"])
        if df.attrs["summary"].get("no_result"):  # said even with --quiet: nothing here is a measurement
            typer.secho(f"no_result: {df.attrs['summary']['no_result']}", err=True, fg=typer.colors.YELLOW)
            typer.echo(f"wrote {out}" + (f" and {plot}" if plot is not None else ""))

    @app.command("compare-signatures")  # the full `compare` (report incl. signatures) is scan_cmd.py's
    @data_options(weights=None)  # each positional is a model with its own weights
    def compare_cmd(
        checkpoints: list[Path] = typer.Argument(..., metavar="MODEL...", help=f"Two or more models: {MODEL_SOURCES_HELP}."),
        data: str = typer.Option("digits", "--data", help=DATA_HELP + " The same for every model."),
        opts: DataOptions = DataOptions(),  # --task, --device and the data-source options
        out: Path = typer.Option(Path("compare"), "--out", help="Output directory."),
        method: str = typer.Option("dtw", "--method", help="Signature distance: dtw or resampled."),
        n_samples: int = typer.Option(2048, "--n-samples", help="Samples drawn at random (seeded)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sample draw."),
        clusters: int | None = typer.Option(None, "--clusters", help="Cut the dendrogram into this many clusters."),
        samples: str = SAMPLES,
        tokens: str = typer.Option("mean", "--tokens", help=TOKENS_HELP),
        channel_axis: int | None = typer.Option(None, "--channel-axis", help="Feature axis of conv maps: default per site from the model graph; 1 (B, C, H, W) or -1 (channel-last) forces it."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:  # fmt: skip
        """Compare the non-linearity signatures of several models on the same data.

        Writes DIR/signatures.csv (every model's table), DIR/distances.csv (the distance matrix), DIR/clustering.csv (hierarchical clustering: leaf order, cluster labels), DIR/summary.csv (statistics per model) and DIR/signatures.png (overlaid plot).
        """
        import pandas as pd

        from netxray._meta import metadata
        from netxray.lenses.nonlinearity import compare_signatures, plot_signatures

        if len(checkpoints) < 2:
            fail("compare needs at least two checkpoints")
        check_out(out, directory=True)
        from netxray.report import check_owned_files, write_owned_files

        flat = ("signatures.csv", "distances.csv", "clustering.csv", "summary.csv", "meta.json", "signatures.png")
        try:  # before any work: the files it writes may only replace netxray's own
            check_owned_files(out, flat)
        except (FileExistsError, PermissionError) as exc:
            fail(str(exc))
        if method not in ("dtw", "resampled"):
            fail(f"--method must be dtw or resampled, got {method!r}")
        names = unique_names(checkpoints)
        lens_opts = dict(n_samples=n_samples, seed=seed, samples=samples, tokens=tokens, channel_axis=channel_axis)
        tables: dict[str, Any] = {}
        dataset = None
        for name, ck in zip(names, checkpoints, strict=True):
            model = opts.load_model(ck, weights=False)
            cli_device(opts.device, model)
            if dataset is None:  # the first model supplies the defaults (image size, tokenizer)
                dataset = opts.load_data(data, seed, model)
            check_fits(model, dataset, data, label=str(ck))
            try:
                tables[name] = _signature(model, dataset, data, lens_opts, quiet, name)
            except ValueError as exc:
                fail(f"{ck}: {exc}")
        try:
            cmp = compare_signatures(tables, method, n_clusters=clusters)
        except ValueError as exc:
            fail(str(exc))
        import io

        long = pd.concat([t.assign(model=name) for name, t in tables.items()], ignore_index=True)
        long = long[["model", *[c for c in long.columns if c != "model"]]]
        clus = pd.DataFrame({"model": cmp.names, "leaf_order": [cmp.order.index(i) for i in range(len(cmp.names))]})
        if cmp.labels is not None:
            clus["cluster"] = cmp.labels
        meta = metadata(command="compare", method=method, data=data, seed=seed, n_samples=n_samples,
                        checkpoints=[str(c) for c in checkpoints], models=names,
                        model_hashes={n: t.attrs["meta"]["model_hash"] for n, t in tables.items()},
                        linkage=cmp.linkage.tolist())  # fmt: skip
        fig = plot_signatures(tables, title=f"non-linearity signatures on {data}")
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=130, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        try:  # atomically, each; only files netxray wrote are replaced
            write_owned_files(out, {
                "signatures.csv": long.to_csv(index=False).encode(),
                "distances.csv": cmp.distances.to_csv(index_label="model").encode(),
                "clustering.csv": clus.to_csv(index=False).encode(),
                "summary.csv": cmp.summary.to_csv(index=False).encode(),
                "meta.json": json.dumps(meta, indent=2, default=str).encode(),
                "signatures.png": png.getvalue(),
            })  # fmt: skip
        except (FileExistsError, PermissionError) as exc:
            fail(str(exc))
        if not quiet:
            typer.echo(cmp.distances.round(4).to_string())
            typer.echo(f"wrote {out}/signatures.csv, distances.csv, clustering.csv, summary.csv, signatures.png")
