"""Small pieces every command shares: one error style, loading checkpoints and data, tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 1 (no traceback)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def load_checkpoint(path: Path | str) -> Any:
    """A netxray checkpoint (directory or ``.safetensors`` file), or a clear CLI error."""
    from netxray.models.checkpoint import load

    try:
        return load(path)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot load checkpoint {str(path)!r}: {exc}")


def load_cli_data(spec: str, seed: int) -> Any:
    """``--data`` (digits | mnist1d | blobs | npz:PATH | idx:DIR | cifar10:DIR), or a clear error."""
    from netxray.data import load_data

    try:
        return load_data(spec, seed=seed)
    except (OSError, ValueError) as exc:
        fail(f"--data {spec!r}: {exc}")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (torch intra-op threads); None keeps torch's default."""
    if threads is None:
        return
    if threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def write_table(df: Any, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``df`` as CSV and its metadata (``attrs``: meta, summary, segments) beside it.

    ``curve.csv`` gets ``curve.csv.meta.json``; both are written atomically.
    """
    from netxray._meta import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))
    meta = {**df.attrs.get("meta", {}), **(extra or {})}
    for key in ("summary", "segments"):
        if key in df.attrs:
            meta[key] = df.attrs[key]
    atomic_write_text(path.with_name(path.name + ".meta.json"), json.dumps(meta, indent=2, default=str))
