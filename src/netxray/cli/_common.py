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
    """Apply ``--threads`` to torch's and BLAS's pools (:func:`netxray._threads.set_threads`);
    None keeps the libraries' defaults."""
    if threads is None:
        return
    if threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    from netxray._threads import set_threads as _set

    _set(threads)


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


def check_fits(model: Any, splits: Any, spec: str, label: str = "the model") -> None:
    """Fail early with one clear line when the model cannot run on the data's samples.

    The probe goes through the capture (eval mode, no grad, the model's device and dtype, every
    module's flag restored), exactly as the lenses will call the model.
    """
    from netxray.capture import collect

    x = splits.test.x[:2]
    try:
        collect(model, x, activations=False, n_samples=None)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(
            f"{label} cannot run on --data {spec!r} samples of shape {list(x.shape[1:])} "
            f"({splits.num_classes} classes): {type(exc).__name__}: {first}. netxray calls "
            "model(x) with x a float tensor of shape (batch, *sample shape); the model's forward "
            "must accept that (a forward taking a dict needs a small wrapper module)"
        )


def check_out(path: Path, *, directory: bool, option: str = "--out") -> None:
    """Fail before any work when an output path cannot be what the command will write there.

    ``directory=True``: the command writes several files into ``path`` (created if missing);
    otherwise it writes the file ``path``.
    """
    if directory:
        if path.exists() and not path.is_dir():
            fail(f"{option} {path}: a file is there; expected a directory (new or existing) for the results")
    elif path.is_dir():
        fail(f"{option} {path}: is a directory; expected a file name, e.g. {path / 'result.csv'}")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        fail(f"{option} {path}: {blocker} is a file, not a directory")


def unique_names(paths: list[Path], suffixes: tuple[str, ...] = (".safetensors",)) -> list[str]:
    """Readable, unique model names for checkpoint paths: the file stem (for ``suffixes``) or the
    directory name, with ``-2``, ``-3``, ... appended to repeats."""
    names: list[str] = []
    for p in paths:
        base = (p.stem if p.suffix in suffixes else p.name) or str(p)
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names
