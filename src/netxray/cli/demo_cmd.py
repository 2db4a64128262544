"""``netxray demo``: train (or reuse) the four built-in families on digits, scan and compare them.

    netxray demo                      # writes demo-out/index.html
    netxray demo --out /tmp/xray --cache ~/.cache/netxray

Models are cached under ``CACHE/demo-models/<arch>-<key>`` where the key hashes the model
config, the training arguments, the seed and the netxray version, so a second run reuses them
and a change to any of those retrains. The whole demo stays within a few minutes on 2 cores
(digits is small: 1437 training and 360 test samples). The last line printed says where the
report is.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import DEVICE, check_out, cli_device, fail

# (name, arch, model knobs, training seed): the four families, plus a second MLP seed so that the
# report can show an alignment distance (defined only between models of one architecture);
# sizes and epochs are below the library defaults so that training all five takes about
# two to three minutes of CPU on 2 cores (each still reaches >= 90 % test accuracy on digits)
DEMO_MODELS: tuple[tuple[str, str, dict[str, Any], int], ...] = (
    ("mlp", "mlp", {"width": 64, "depth": 3, "epochs": 15}, 0),
    ("cnn", "cnn", {"channels": [16, 32, 64], "epochs": 5}, 0),
    ("resnet", "resnet", {"width": 16, "epochs": 5}, 0),
    ("vit", "vit", {"dim": 32, "depth": 2, "num_heads": 4, "epochs": 12}, 0),
    ("mlp-seed1", "mlp", {"width": 64, "depth": 3, "epochs": 15}, 1),
)
DEMO_DATA = "digits"


def default_cache() -> Path:
    """``$NETXRAY_CACHE`` or ``.cache/netxray`` under the current directory."""
    return Path(os.environ.get("NETXRAY_CACHE", ".cache/netxray"))


def _key(arch: str, knobs: dict[str, Any], seed: int) -> str:
    from netxray import __version__
    from netxray.training import TRAIN_DEFAULTS

    record = {"arch": arch, "knobs": knobs, "seed": seed, "data": DEMO_DATA,
              "train": TRAIN_DEFAULTS.get(arch), "netxray": __version__}  # fmt: skip
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def demo_model(
    arch: str, knobs: dict[str, Any], seed: int, cache: Path, splits: Any, *, retrain: bool = False,
    device: Any = None,
) -> tuple[Any, dict[str, Any], bool]:
    """(model, metrics, reused): a cached checkpoint when one loads, else train and cache it."""
    from netxray.models.checkpoint import load, load_config
    from netxray.training import train

    directory = cache / "demo-models" / f"{arch}-{_key(arch, knobs, seed)}"
    if not retrain and (directory / "config.json").is_file():
        try:
            return load(directory), dict(load_config(directory).get("metrics", {})), True
        except (OSError, ValueError):
            pass  # a damaged cache entry is retrained, not trusted
    # a damaged or --retrain entry is replaced, once proven netxray's: its config.json is a
    # netxray checkpoint's. Anything else under that name (weights without a config, another
    # tool's config.json) is someone else's and stays
    _check_own_entry(directory)
    result = train(arch, splits, seed=seed, out=directory, overwrite=True, progress=False, device=device, **knobs)
    return result.model, dict(result.metrics), False


def _check_own_entry(directory: Path) -> None:
    from netxray.models.checkpoint import CONFIG_FILE, FORMAT, WEIGHTS_FILE

    present = [n for n in (WEIGHTS_FILE, CONFIG_FILE) if os.path.lexists(directory / n)]
    if not present:
        return
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if (directory / CONFIG_FILE).is_symlink() or not isinstance(config, dict) or config.get("format") != FORMAT:
        raise FileExistsError(
            f"--cache: {directory} holds {', '.join(present)} not written by netxray (no netxray checkpoint "
            "config.json); training would overwrite it. Move it away or choose another --cache"
        )


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the ``netxray`` app."""

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("demo-out"), "--out", help="Output directory of the report."),
        cache: Path | None = typer.Option(None, "--cache", help="Cache directory for the trained models (default $NETXRAY_CACHE or .cache/netxray)."),
        retrain: bool = typer.Option(False, "--retrain", help="Train again even when cached models exist."),
        n_samples: int = typer.Option(2048, "--n-samples", help="Samples (positions) per activation site; the digits test split has 359 images, all of them run."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the scans (sample subsets)."),
        device: str | None = DEVICE,
        quiet: bool = typer.Option(False, "--quiet", help="Only the last line."),
    ) -> None:  # fmt: skip
        """Train (or reuse cached) MLP, CNN, ResNet and ViT on digits, scan each, compare them, write the report."""
        import torch

        from netxray.data import load_data
        from netxray.report import compare_report

        check_out(out, directory=True)  # not /, home or a system folder, before any training
        t0 = time.perf_counter()
        dev = cli_device(device)  # one line for cuda without a GPU, before any training
        cache_dir = cache if cache is not None else default_cache()
        splits = load_data(DEMO_DATA, seed=0)
        models: dict[str, Any] = {}
        metrics: dict[str, dict[str, Any]] = {}
        try:  # before any training: a cache entry is replaced only when it is netxray's
            for _, arch, knobs, train_seed in DEMO_MODELS:
                _check_own_entry(cache_dir / "demo-models" / f"{arch}-{_key(arch, knobs, train_seed)}")
        except FileExistsError as exc:
            fail(str(exc))
        for name, arch, knobs, train_seed in DEMO_MODELS:
            t = time.perf_counter()
            model, m, reused = demo_model(arch, knobs, train_seed, cache_dir, splits, retrain=retrain,
                                          device=None if dev is None else str(dev))  # fmt: skip
            models[name], metrics[name] = model, m
            if not quiet:
                acc = m.get("test_acc")
                typer.echo(f"{name:>10}: {'cached' if reused else 'trained'} in {time.perf_counter() - t:5.1f} s, "
                           f"test acc {acc:.4f}" if isinstance(acc, float) else f"{name}: ready")  # fmt: skip

        def _annotate(name: str, child: Any) -> None:
            child.meta["test_acc"] = metrics[name].get("test_acc")
            child.meta["train_seed"] = dict((n, s) for n, _, _, s in DEMO_MODELS)[name]

        with torch.random.fork_rng(devices=[]):
            report = compare_report(
                models, splits, seed=seed, n_samples=n_samples, progress=not quiet,
                title="netxray demo — MLP, CNN, ResNet and ViT on digits", on_model=_annotate,
                device=dev,
            )  # fmt: skip
        report.meta["data_spec"] = DEMO_DATA
        report.meta["test_acc"] = {n: metrics[n].get("test_acc") for n in models}
        index = report.save(out)
        if not quiet:
            for name, reason in report.failed.items():
                typer.echo(f"  note: {name} could not run: {reason}")
            typer.echo(f"demo finished in {time.perf_counter() - t0:.1f} s")
        typer.echo(f"Report: {index.resolve()}")
