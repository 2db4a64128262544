"""``netxray modularity`` and ``netxray prune``: Lens 2 from the command line.

    netxray modularity CKPT --data digits --out curve.csv --plot curve.png
    netxray prune CKPT --data digits --finetune-epochs 3 --out pruned/

The CLI holds no science: it loads the checkpoint and data, calls the lens, writes files
atomically (each table with a ``.meta.json`` beside it) and prints a short summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import (
    DATA_HELP,
    MODEL_SOURCES_HELP,
    DataOptions,
    check_beside,
    check_fits,
    check_out,
    cli_device,
    data_options,
    fail,
    set_threads,
    table_side_files,
    write_table,
)


def _print_curve(curve: Any, red: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="modularity curve")
    for col in ("layer", "Q", "± std", "Q/Q_max", "ΔQ", "kind", "status"):
        table.add_column(col)
    for (_, c), (_, r) in zip(curve.iterrows(), red.iterrows(), strict=True):
        dq = "" if r["dq"] != r["dq"] else f"{r['dq']:+.4f}"
        table.add_row(str(c["layer"]), f"{c['q_mean']:.4f}", f"{c['q_std']:.4f}",
                      f"{c['q_rel_mean']:.4f}", dq, str(r["kind"]), str(c["status"]))  # fmt: skip
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``modularity`` and ``prune`` commands to the ``netxray`` app."""

    @app.command("modularity")
    @data_options()
    def modularity_cmd(
        checkpoint: Path = typer.Argument(..., metavar="MODEL", help=f"The model: {MODEL_SOURCES_HELP}."),
        data: str = typer.Option("digits", "--data", help=DATA_HELP + " Labels are needed."),
        out: Path = typer.Option(Path("curve.csv"), "--out", help="CSV file for the curve (a .redundant.csv is written beside it)."),
        opts: DataOptions = DataOptions(),  # --weights, --task, --device and the data-source options
        plot: Path | None = typer.Option(None, "--plot", help="Also save the curve plot (png, svg, pdf)."),
        diff_plot: Path | None = typer.Option(None, "--diff-plot", help="Also save the layer-difference heatmap |Q_i - Q_j|."),
        layers: str | None = typer.Option(None, "--layers", help="Comma-separated module paths (default: the model's natural probes)."),
        n: int = typer.Option(500, "--n", help="Samples per class-stratified subset."),
        k: int = typer.Option(3, "--k", help="Neighbours in the kNN graph."),
        repeats: int = typer.Option(5, "--repeats", help="Random subsets (mean ± std per layer)."),
        tol: float | None = typer.Option(None, "--tol", help="Redundancy tolerance on ΔQ (default: from the repeats' spread)."),
        adversarial: float | None = typer.Option(None, "--adversarial", help="Also measure FGSM and PGD inputs with this L∞ budget ε (writes *.adversarial.csv)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data split and of the subsets."),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads for the run (default: torch's; 1 is often fastest on a busy machine)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:  # fmt: skip
        """The modularity curve: how well the classes separate at each layer (SPEC §2).

        For each probed layer: Newman modularity Q of the kNN cosine graph of the flattened features, with the true classes as communities, mean ± std over random class-stratified subsets; Q/Q_max compares across datasets. Layers where ΔQ is within the tolerance (plateau) or below it (degradation) are redundant: pruning candidates (see `netxray prune`).
        """
        from netxray.lenses.modularity import (
            modularity_curve,
            plot_layer_difference,
            plot_modularity_curve,
            redundant_layers,
        )

        check_out(out, directory=False)
        for option, path in (("--plot", plot), ("--diff-plot", diff_plot)):
            if path is not None:
                check_out(path, directory=False, option=option)
        # before any work: the side files beside --out (and --plot) replace only files netxray wrote
        red_path = out.with_name(out.stem + ".redundant.csv")
        adv_path = out.with_name(out.stem + ".adversarial.csv")
        side = table_side_files(out) + [red_path.name, *table_side_files(red_path)]
        if adversarial is not None:
            side += [adv_path.name, *table_side_files(adv_path)]
        check_beside(out, side)
        adv_plot = None
        if adversarial is not None and plot is not None:
            adv_plot = plot.with_name(plot.stem + ".adversarial" + plot.suffix)
            check_beside(plot, [adv_plot.name], "--plot")
        set_threads(threads)
        model = opts.load_model(checkpoint)
        cli_device(opts.device, model)
        splits = opts.load_data(data, seed, model)
        check_fits(model, splits, data, label=str(checkpoint))
        dataset = splits.measured()
        # "auto": a built-in model's probes, any other model's read from its graph (as scan does)
        names = [s.strip() for s in layers.split(",") if s.strip()] if layers else "auto"
        try:
            curve = modularity_curve(model, dataset, layers=names, n=n, k=k, repeats=repeats,
                                     seed=seed, progress=not quiet)  # fmt: skip
            red = redundant_layers(curve, tol=tol)
        except (ValueError, TypeError) as exc:
            fail(str(exc))
        extra = {"checkpoint": str(checkpoint), "data": f"{data}:{splits.measured_split()}"}
        write_table(curve, out, extra)
        write_table(red, red_path, extra, beside=out)
        written = [str(out)]
        if plot is not None:
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot_modularity_curve(curve, red, path=str(plot))
            written.append(str(plot))
        if diff_plot is not None:
            diff_plot.parent.mkdir(parents=True, exist_ok=True)
            plot_layer_difference(curve, path=str(diff_plot))
            written.append(str(diff_plot))
        if adversarial is not None:
            from netxray.lenses.adversarial import adversarial_curves, plot_adversarial

            try:
                adv = adversarial_curves(model, dataset, eps=adversarial, layers=names, n=n, k=k,
                                         repeats=repeats, seed=seed)  # fmt: skip
            except (ValueError, TypeError) as exc:
                fail(str(exc))
            write_table(adv, adv_path, extra, beside=out)
            written.append(str(adv_path))
            if adv_plot is not None:
                from netxray.report import record_owned_files

                check_beside(plot, [adv_plot.name], "--plot")  # again, at writing time
                plot_adversarial(adv, path=str(adv_plot))
                record_owned_files(adv_plot.parent, [adv_plot.name])
                written.append(str(adv_plot))
        if not quiet:
            _print_curve(curve, red)
            segs = red.attrs["segments"]
            typer.echo(
                "redundant segments: "
                + ("; ".join(f"{s['kind']} {','.join(s['layers'])}" for s in segs) or "none")
            )
            if adversarial is not None:
                from netxray.capture.inputs import example_batch, resolve_samples
                from netxray.lenses.pruning import output_width

                width = output_width(model, example_batch(resolve_samples(dataset), 2))
                mismatch = (f" (meaningless: the model has {width} outputs for {splits.num_classes} "
                            "classes)") if width is not None and width != splits.num_classes else ""  # fmt: skip
                typer.echo("accuracy on the measured samples: " + ", ".join(
                    f"{c[4:]} {a:.3f}" for c, a in adv.attrs["summary"].items()) + mismatch)  # fmt: skip
            typer.echo("wrote " + ", ".join(written))

    @app.command("prune")
    # its own train/test protocol (curve on --curve-split, accuracy on the test split): no --split
    @data_options(weights=typer.Option(None, "--weights", help="Weights for --model: a .safetensors or .pt/.pth state dict, read without executing code."), split=False)
    def prune_cmd(
        checkpoint: Path | None = typer.Argument(None, help="Checkpoint directory of a built-in model (or use --model)."),
        model_spec: str | None = typer.Option(None, "--model", help="Your own model: PATH.py:FACTORY returning the nn.Module (the file is imported and run as Python). Its removable blocks are read from its graph. Use with --weights."),
        data: str = typer.Option("digits", "--data", help="Data spec (the same data the model was trained on)."),
        opts: DataOptions = DataOptions(),  # --weights, --task, --device and the data-source options
        out: Path = typer.Option(Path("pruned"), "--out", help="Output directory."),
        finetune_epochs: int = typer.Option(3, "--finetune-epochs", help="Fine-tuning epochs for every variant."),
        lr: float = typer.Option(1e-3, "--lr", help="Fine-tuning learning rate (Adam, cosine schedule)."),
        n: int = typer.Option(500, "--n", help="Samples per subset for the curve."),
        k: int = typer.Option(3, "--k", help="Neighbours in the kNN graph."),
        repeats: int = typer.Option(5, "--repeats", help="Random subsets for the curve."),
        tol: float | None = typer.Option(None, "--tol", help="Redundancy tolerance on ΔQ (default: from the repeats' spread)."),
        random_draws: int = typer.Option(3, "--random-draws", help="Random selections of the same number of layers (the control)."),
        curve_split: str = typer.Option("train", "--curve-split", help="Split the curve is measured on (train keeps the choice blind to the test set)."),
        new_head: bool = typer.Option(False, "--new-head", help="When the model's outputs are not the data's classes (a 1000-way ImageNet head on a 2-class folder), replace its last Linear by a head for the data's classes, fitted on the train split with the rest frozen, before pruning (said in the output). Without it such a model is refused."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data split, subsets, random draws and fine-tuning."),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads for the run (default: torch's; 1 is often fastest on a busy machine)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:  # fmt: skip
        """Remove the redundant layers the modularity curve finds, fine-tune, and compare with controls.

        Built-in models, and any model (--model) with residual blocks whose input and output shapes agree: such a block becomes the identity. When no probed layer can be removed, it says so and neither prunes nor fine-tunes.

        Writes DIR/pruned (a checkpoint `netxray.load` and every command read: a built-in model, or a torchvision:/timm:/hf: model saved as its source + removed blocks + weights; for --model PATH.py:FACTORY: DIR/pruned.safetensors, the pruned model's weights), DIR/prune_table.csv (variants: original, fine-tuned unpruned, modularity-guided, random layers, non-redundant layers; params, MACs, test accuracy before and after fine-tuning), DIR/curve_before.csv, DIR/redundant.csv, DIR/curve_after.csv, DIR/prune_summary.json and plots.
        """
        from rich.console import Console

        from netxray.lenses.modularity import plot_modularity_curve
        from netxray.lenses.pruning import prune_study

        check_out(out, directory=True)
        from netxray.lenses.pruning import study_files
        from netxray.report import check_owned_files, record_owned_files

        written = [*study_files(), "curve_before.png", "curve_after.png"]
        try:  # before any work: only files netxray wrote there are replaced
            check_owned_files(out, written)
        except (FileExistsError, PermissionError) as exc:
            fail(str(exc))
        set_threads(threads)
        from netxray.cli.scan_cmd import load_cli_model

        model = load_cli_model(checkpoint, model_spec, opts.weights, opts.task)
        cli_device(opts.device, model)  # the curve, pruned variants and fine-tuning all run there
        splits = opts.load_data(data, seed, model)
        check_fits(model, splits, data, label=str(checkpoint or model_spec))
        console = Console(stderr=True, quiet=quiet)
        try:
            with console.status("measuring the curve, pruning and fine-tuning every variant …"):
                study = prune_study(
                    model, splits, tol=tol, finetune_epochs=finetune_epochs, lr=lr, n=n, k=k,
                    repeats=repeats, seed=seed, random_draws=random_draws,
                    curve_split=curve_split, new_head=new_head, out=out,
                )
        except (ValueError, TypeError) as exc:
            fail(str(exc))
        if study.summary.get("new_head"):  # what was done to the model, said even with --quiet
            typer.secho(f"note: {study.summary['new_head']}", err=True, fg=typer.colors.YELLOW)
        plot_modularity_curve(study.curve, study.redundant, path=str(out / "curve_before.png"))
        if study.curve_after is not None:
            plot_modularity_curve(study.curve_after, path=str(out / "curve_after.png"))
        record_owned_files(out, [*written, *(p.relative_to(out).as_posix() for p in (out / "pruned").rglob("*")
                                              if p.is_file())])  # fmt: skip
        if not quiet:
            pd_table = study.table.copy()
            for col in ("params_pct", "macs_pct"):
                pd_table[col] = pd_table[col].round(1)
            for col in ("acc_pruned", "acc_finetuned", "delta_acc", "delta_vs_finetuned"):
                pd_table[col] = pd_table[col].round(4)
            typer.echo(pd_table.drop(columns=["params", "macs"]).to_string(index=False))
            s = study.summary
            if s["note"]:  # said before the table, and the table shows no fine-tuning was run
                typer.echo(s["note"] + "; no fine-tuning was run")
            for line in s["redundant_not_removable"]:
                typer.echo(f"redundant but not removable: {line}")
            typer.echo(f"wrote {out}/")
