"""Provenance helpers shared by every part of netxray: version, model hash, metadata, atomic writes.

Results carry their own metadata so that a table read back a year later still says how it was
made; files are written atomically so that a killed process never leaves a half-written file.

Example
-------
>>> from netxray._meta import metadata
>>> metadata(seed=0, n=2048)["seed"]
0
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "__version__",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_materialized",
    "check_output_dir",
    "metadata",
    "model_hash",
    "state_dict_hash",
]


def _version() -> str:
    # read lazily from the package so there is one source of truth
    from netxray import __version__ as v

    return v


__version__ = _version()


def state_dict_hash(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and raw bytes, keys sorted.

    Two state dicts hash equal iff they hold the same names, dtypes, shapes and bit-identical
    values, independent of insertion order and of the device the tensors live on.

    >>> import torch
    >>> state_dict_hash({"w": torch.zeros(2)}) == state_dict_hash({"w": torch.zeros(2)})
    True
    """
    import torch

    _check_no_meta(state.items(), "state dict")
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode("utf-8") + b"\0")
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}|{tuple(value.shape)}\0".encode())
            # viewing as bytes works for every dtype (numpy has no bfloat16)
            # the buffer itself, not a ``tobytes`` copy (131 MB for a bf16 32000 × 2048 table)
            h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
        else:  # extra state: hash its repr so it is still covered
            h.update(repr(value).encode("utf-8"))
        h.update(b"\1")
    return h.hexdigest()


# model id -> (model, storage fingerprint, hash), only inside ``reused_model_hashes()``
_HASH_CACHE: dict[int, tuple[Any, tuple, str]] | None = None


def _storage_fingerprint(state: dict[str, Any]) -> tuple:
    # where each tensor lives and its in-place version counter: a cheap guard, not a hash
    return tuple(
        (k, v.data_ptr(), v._version, v.dtype, tuple(v.shape)) if hasattr(v, "data_ptr") else (k,)
        for k, v in state.items()
    )


@contextmanager
def reused_model_hashes() -> Iterator[None]:
    """Within the block, :func:`model_hash` hashes each (unmodified) model once.

    For a caller that promises not to modify the model meanwhile (``scan`` runs every lens
    inside it and checks the promise afterwards with a fresh hash). A model whose tensors moved
    or were modified in place (version counters) is hashed again.
    """
    global _HASH_CACHE
    outer = _HASH_CACHE
    _HASH_CACHE = {} if outer is None else outer
    try:
        yield
    finally:
        _HASH_CACHE = outer


def _check_no_meta(named: Any, what: str) -> None:
    for name, value in named:
        if getattr(value, "is_meta", False):
            raise ValueError(
                f"{what}: tensor {name!r} is on the meta device (a shape without data, e.g. built under "
                "torch.device('meta') or loaded with low_cpu_mem_usage); materialize it first: "
                "model.to_empty(device='cpu') then model.load_state_dict(weights)"
            )


def check_materialized(model: Any, what: str = "model") -> None:
    """Raise one clear ``ValueError`` when a parameter or buffer of ``model`` is on the meta
    device (it has a shape but no data: nothing can be measured or run).

    >>> import torch
    >>> check_materialized(torch.nn.Linear(2, 2))
    >>> with torch.device("meta"):
    ...     m = torch.nn.Linear(2, 2)
    >>> check_materialized(m)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: model: tensor 'weight' is on the meta device ...
    """
    _check_no_meta([*model.named_parameters(), *model.named_buffers()], what)


def model_hash(model: Any) -> str:
    """SHA-256 (hex) of ``model.state_dict()`` (parameters and buffers) in a stable order.

    Identical weights give identical hashes; any change of one value, shape, dtype or name
    changes it. Train/eval mode and the device do not enter the hash. Inside
    :func:`reused_model_hashes` a model is hashed once.

    >>> import torch
    >>> m = torch.nn.Linear(2, 1)
    >>> model_hash(m) == model_hash(m)
    True
    """
    state = model.state_dict()
    if _HASH_CACHE is None:
        return state_dict_hash(state)
    finger = _storage_fingerprint(state)
    hit = _HASH_CACHE.get(id(model))
    if hit is not None and hit[0] is model and hit[1] == finger:
        return hit[2]
    digest = state_dict_hash(state)
    _HASH_CACHE[id(model)] = (model, finger, digest)
    return digest


def metadata(**fields: Any) -> dict[str, Any]:
    """Metadata dict for a result: netxray and torch versions plus the given fields.

    Fields whose value is ``None`` are kept (an explicit "not applicable"). No time stamp is
    added so that the same seed gives the same result, metadata included.

    >>> metadata(seed=3)["seed"]
    3
    """
    meta: dict[str, Any] = {"netxray_version": __version__}
    try:
        import torch

        meta["torch_version"] = torch.__version__
    except ImportError:  # measures may run without torch
        pass
    meta.update(fields)
    return meta


def _fsync_dir(directory: Path) -> None:
    # make the rename itself durable; not possible on every platform (Windows), so best effort
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, ``os.replace``.

    Readers see either the old file or the complete new one, never a partial write. The parent
    directory must exist.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> atomic_write_bytes(p, b"abc").read_bytes()
    b'abc'
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or keep the mode of
        # the file it replaces), so results stay readable and nothing else in the folder changes
        os.fchmod(fd, _new_file_mode(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # leave nothing behind on failure (including KeyboardInterrupt)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return path


def _new_file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0)  # read the umask (the only portable way is to set it and put it back)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> atomic_write_text(p, "hi").read_text()
    'hi'
    """
    return atomic_write_bytes(path, text.encode(encoding))


class eval_mode:  # noqa: N801 - used like torch.no_grad
    """Context manager: ``model.eval()`` inside, every module's own train/eval flag restored after.

    ``model.train(was_training)`` would give every submodule the root's flag; a model with mixed
    flags (a frozen BatchNorm inside a training model) must come back exactly as it was.

    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> _ = m[1].eval()
    >>> with eval_mode(m):
    ...     assert not m.training
    >>> m.training, m[1].training
    (True, False)
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.flags = [(module, module.training) for module in model.modules()]

    def __enter__(self) -> Any:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for module, flag in self.flags:
            module.training = flag


# folders netxray never writes a report into: the folder itself (``/``, the home directory) or
# anything inside it (the system's own folders)
_SYSTEM_EXACT = ("/", "/home", "/var", "/opt", "/srv", "/tmp", "/mnt", "/media", "/Users", "/Volumes")
_SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
                 "/proc", "/sys", "/run", "/System", "/Library", "/Applications", "/private/etc",
                 "/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/run")  # fmt: skip


def check_output_dir(path: str | os.PathLike[str], option: str = "--out", *, directory: bool = True) -> None:
    """Refuse an output folder that is ``/``, the home directory or a system folder, before any work.

    netxray writes and (for its own earlier files) deletes inside an output folder; in these
    folders a mistyped ``--out`` could only do harm. ``directory=False``: ``path`` is one output
    file, refused inside ``/`` itself or a system folder. Raises ``PermissionError`` with one line.

    >>> check_output_dir("runs/report")
    >>> check_output_dir("/etc")
    Traceback (most recent call last):
    ...
    PermissionError: --out /etc: refused: a system folder; give a folder of its own for the results, e.g. ./netxray-report
    """
    resolved = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not directory:
        resolved = resolved.parent
    with contextlib.suppress(OSError):
        resolved = resolved.resolve()
    home = Path(os.path.expanduser("~"))
    with contextlib.suppress(OSError):
        home = home.resolve()
    text = resolved.as_posix()
    what = None
    if resolved == home and directory:
        what = "the home directory"
    elif text == "/" or resolved.parent == resolved:
        what = "the root folder"
    elif text in _SYSTEM_EXACT and directory:
        what = "a top-level system folder"
    elif any(text == t or text.startswith(t + "/") for t in _SYSTEM_TREES):
        what = "a system folder"
    if what is not None:
        raise PermissionError(
            f"{option} {os.fspath(path)}: refused: {what}; give a folder of its own for the results, "
            "e.g. ./netxray-report"
        )
