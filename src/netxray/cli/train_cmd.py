"""``netxray train``: train a built-in model and write a checkpoint.

    netxray train --arch cnn --dataset digits --epochs 10 --seed 0 --out runs/cnn
    netxray train --arch mlp --width 256 --depth 3 --activation tanh --optimizer sgd --lr 0.05

The CLI holds no logic of its own: it turns options into a :func:`netxray.train` call, prints the
metrics, and reports bad input as one clear line with exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import check_out, cli_device, fail


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        fail(f"{option} expects comma-separated integers such as 16,32,64; got {text!r}")
    if not values:
        fail(f"{option} expects at least one integer; got {text!r}")
    return values


def model_knobs(
    arch: str,
    *,
    width: int | None = None,
    depth: int | None = None,
    widths: list[int] | None = None,
    channels: list[int] | None = None,
    blocks: list[int] | None = None,
    activation: str | None = None,
    convs_per_stage: int | None = None,
    num_stages: int | None = None,
    patch_size: int | None = None,
    num_heads: int | None = None,
    mlp_ratio: int | None = None,
) -> dict[str, Any]:
    """Map the CLI's family-neutral size options onto each family's config knobs.

    ``--width`` is the ViT's ``dim``; options a family does not have are an error, not ignored.
    """
    given = {
        "width": width,
        "depth": depth,
        "widths": widths,
        "channels": channels,
        "blocks": blocks,
        "activation": activation,
        "convs_per_stage": convs_per_stage,
        "num_stages": num_stages,
        "patch_size": patch_size,
        "num_heads": num_heads,
        "mlp_ratio": mlp_ratio,
    }
    knobs = {k: v for k, v in given.items() if v is not None}
    if arch == "vit" and "width" in knobs:
        knobs["dim"] = knobs.pop("width")
    return knobs


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the ``netxray`` app."""

    @app.command("train")
    def train_cmd(
        arch: str = typer.Option("cnn", "--arch", help="Built-in family: mlp, cnn, resnet, vit."),
        dataset: str = typer.Option(
            "digits", "--dataset", "--data",
            help="Data spec: digits, mnist1d, blobs[:classes=..,dim=..], npz:PATH, idx:DIR, cifar10:DIR.",
        ),
        epochs: int | None = typer.Option(None, "--epochs", help="Epochs (default: per family)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of initialisation and shuffling."),
        data_seed: int = typer.Option(0, "--data-seed", help="Seed of the train/test split."),
        out: Path | None = typer.Option(
            None, "--out", help="Checkpoint directory (model.safetensors + config.json), written atomically."
        ),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: per family and optimizer)."),
        optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd (with momentum)."),
        momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
        batch_size: int = typer.Option(64, "--batch-size", help="Mini-batch size."),
        weight_decay: float = typer.Option(0.0, "--weight-decay", help="L2 weight decay."),
        schedule: str = typer.Option("cosine", "--schedule", help="cosine (per-step annealing to 0) or none."),
        width: int | None = typer.Option(
            None, "--width", help="mlp: hidden width; cnn/resnet: first-stage channels; vit: embedding dim."
        ),
        depth: int | None = typer.Option(
            None, "--depth", help="mlp: hidden layers; cnn: stages; resnet: blocks per stage; vit: blocks."
        ),
        widths: str | None = typer.Option(None, "--widths", help="mlp: hidden widths, e.g. 256,128."),
        channels: str | None = typer.Option(None, "--channels", help="cnn/resnet: channels per stage, e.g. 16,32,64."),
        blocks: str | None = typer.Option(None, "--blocks", help="resnet: blocks per stage, e.g. 2,2,2."),
        num_stages: int | None = typer.Option(None, "--num-stages", help="resnet: number of stages."),
        convs_per_stage: int | None = typer.Option(None, "--convs-per-stage", help="cnn: ConvBlocks per stage."),
        activation: str | None = typer.Option(None, "--activation", help="mlp/cnn/vit: relu, tanh, gelu, silu, ..."),
        patch_size: int | None = typer.Option(None, "--patch-size", help="vit: patch size."),
        num_heads: int | None = typer.Option(None, "--num-heads", help="vit: attention heads."),
        mlp_ratio: int | None = typer.Option(None, "--mlp-ratio", help="vit: MLP hidden = ratio x dim."),
        device: str | None = typer.Option(None, "--device", help="cpu (default), cuda, cuda:N or auto (cuda when a GPU is there)."),
        threads: int | None = typer.Option(
            None, "--threads", help="torch CPU threads for the run (default: torch's; 1 is often fastest)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no summary (errors only)."),
    ) -> None:
        """Train a built-in model (seeded, deterministic) and report its test accuracy."""
        from netxray.models import ARCHS
        from netxray.training import train

        if arch not in ARCHS:
            fail(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
        if out is not None:
            check_out(out, directory=True)  # before training, not after
        if device is not None:  # one clear line for cuda without a GPU, before any work
            device = str(cli_device(device))
        knobs = model_knobs(
            arch,
            width=width,
            depth=depth,
            widths=_int_list(widths, "--widths"),
            channels=_int_list(channels, "--channels"),
            blocks=_int_list(blocks, "--blocks"),
            activation=activation,
            convs_per_stage=convs_per_stage,
            num_stages=num_stages,
            patch_size=patch_size,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
        )
        try:
            result = train(
                arch,
                dataset,
                epochs=epochs,
                lr=lr,
                optimizer=optimizer,
                momentum=momentum,
                batch_size=batch_size,
                weight_decay=weight_decay,
                schedule=schedule,
                seed=seed,
                data_seed=data_seed,
                out=out,
                progress=not quiet and not as_json,
                device=device,
                num_threads=threads,
                **knobs,
            )
        except (ValueError, TypeError, FileNotFoundError) as exc:
            fail(str(exc))
        m = result.metrics
        if as_json:
            from netxray.training import _finite

            record = {k: v for k, v in _finite(m).items() if k != "history"}  # strict JSON
            record["config"] = result.config
            record["path"] = str(result.path) if result.path else None
            typer.echo(json.dumps(record, indent=2))
            return
        if quiet:
            return
        status = "DIVERGED (non-finite loss) — " if m["diverged"] else ""
        typer.echo(
            f"{status}{arch} on {dataset}: test acc {m['test_acc']:.4f}, train acc {m['train_acc']:.4f}, "
            f"{m['epochs']} epochs, {m['n_params']} parameters, {m['seconds']:.1f} s"
        )
        if result.path is not None:
            typer.echo(f"checkpoint: {result.path}")
