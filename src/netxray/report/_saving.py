"""Saving a report safely: the output folder's lock, the free-space check and the atomic install.

:func:`report_lock` (one writer per report folder, stale locks of dead processes taken over),
:func:`check_report_out` (the folder may hold only a report; enough free disk) and the
write-then-rename install of a report's files. Split out of :mod:`netxray.report.core`, which
re-exports every name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd

from netxray._files import (
    MANIFEST_GENERATOR,
    TEMP_MARKER,
    _flat_owned,
    _owned,
    _sha256,
    mark_temp_dir,
    own_temp_dir,
    owned_files,
)
from netxray._meta import check_output_dir


class ReportLockedError(RuntimeError):
    """Another process holds the lock of a report directory."""


ReportLockedError.__module__ = "netxray.report.core"  # its public module, in tracebacks as before


_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth


def _lock_path(out: Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.netxray-lock"


LOCK_MARK = "netxray-lock"


def _is_lock_file(content: bytes) -> bool:
    """A lock file netxray wrote: ``<pid> netxray-lock`` (or a bare pid, as earlier versions
    wrote), or empty (just created, by this process or one about to write its pid). Anything else
    is someone else's file, which the lock must neither truncate nor delete."""
    import re

    return re.fullmatch(rb"(\d+( netxray-lock)?\n?)?", content) is not None


@contextlib.contextmanager
def report_lock(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the write lock of the report directory ``directory`` (re-entrant in one process).

    The lock is ``.<name>.netxray-lock`` beside ``directory``, held with ``fcntl.flock``: the
    kernel releases it when the process ends, however it ends (``kill -9`` included), so a
    crashed run never leaves a stale lock. A second process fails at once with one line::

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "report"
        >>> with report_lock(d):
        ...     pass
    """
    lock = _lock_path(Path(directory))
    key = str(lock)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield lock
        finally:
            _HELD[key] -= 1
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"--out {directory}: cannot create its parent directory: {exc.strerror or exc}") from exc
    import fcntl

    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(f"--out {directory}: not writable ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = (os.pread(fd, 32, 0).decode(errors="replace").split() or ["?"])[0]
            finally:
                os.close(fd)
            raise ReportLockedError(
                f"--out {Path(directory)}: another netxray process (pid {pid}) is writing a report "
                "there right now; wait for it to finish or choose another --out"
            ) from None
        # the holder before us may have removed the file after we opened it: lock the live one
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same and not _is_lock_file(os.pread(fd, 256, 0)):
            os.close(fd)  # a file of that name that netxray did not write: the user's, it stays
            raise FileExistsError(f"--out {Path(directory)}: {lock} beside it was not written by netxray; "
                                  "writing the report would overwrite it. Move it away or choose another --out")
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {LOCK_MARK}\n".encode(), 0)
    _HELD[key] = 1
    try:
        yield lock
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)  # removed while still held, so no one can lock a dead file
        os.close(fd)


def check_report_out(directory: str | os.PathLike[str]) -> None:
    """Fail early, with one line, when a report cannot be written to ``directory``.

    Checked: it is not ``/``, the home directory or a system folder; it is not a file, its
    nearest existing ancestor is a directory, a file can be created beside it (where the
    temporary report is built) and, if it exists, inside it; and its file system has
    :data:`MIN_FREE_BYTES` free.
    Raises ``NotADirectoryError`` or ``PermissionError``/``OSError`` naming ``directory``.

    >>> import tempfile, pathlib
    >>> check_report_out(pathlib.Path(tempfile.mkdtemp()) / "new" / "report")
    """
    out = Path(directory)
    check_output_dir(out)  # not /, the home directory or a system folder
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a directory")
    base = next((p for p in [out, *out.parents] if p.exists()), None)
    if base is None or not base.is_dir():
        raise NotADirectoryError(f"--out {out}: {base} is a file, not a directory")
    for where in dict.fromkeys([base, out.parent if out.parent.exists() else base]):
        try:  # a new file of a fresh name (O_EXCL): no file already there is opened or removed
            import tempfile

            fd, probe = tempfile.mkstemp(prefix=".netxray-write-test-", dir=where)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise PermissionError(f"--out {out}: cannot write in {where} ({exc.strerror or exc})") from exc
    _check_free_space(out, MIN_FREE_BYTES // 2)  # a report's worth of room, before any work


# the least free space a report needs before any work starts (a scan's report is 0.3-5 MB);
# Report.save checks the exact size of the rendered files before writing them
MIN_FREE_BYTES = 32 * 2**20


def _all_files(directory: Path) -> set[str]:
    """Every entry of ``directory`` a user may own: files, links (never followed) and empty
    folders (as ``"dir/"``)."""
    entries = set()
    for root, dirs, files in os.walk(directory, followlinks=False):
        rel_root = Path(root).relative_to(directory)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in [*files, *links]:
            entries.add((rel_root / name).as_posix())
        if not files and not dirs and rel_root != Path("."):
            entries.add(rel_root.as_posix() + "/")
    return entries


def _check_free_space(out: Path, size: int) -> None:
    """Refuse, before writing, when the file system of ``out`` cannot hold ``size`` more bytes
    (twice over: the new report is complete before the old one goes)."""
    base = next((p for p in [Path(os.path.abspath(out)), *Path(os.path.abspath(out)).parents] if p.exists()), None)
    if base is None:
        return
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        return
    need = 2 * size + 2**20
    if free < need:
        raise OSError(28, f"--out {out}: not enough free space for the report: it needs about "
                          f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free on {base}")  # fmt: skip


def _only_a_report(directory: Path) -> bool:
    """Whether ``directory`` (no link) holds nothing but files of the netxray report whose
    manifest it holds (:func:`owned_files`) and empty folders: an earlier report set aside, or a
    complete new one not yet moved in, when a save was killed."""
    if directory.is_symlink() or not directory.is_dir():
        return False
    owned = owned_files(directory)
    return bool(owned) and all(rel in owned or rel.endswith("/") for rel in _all_files(directory))


def _remove_report_dir(directory: Path) -> None:
    """Remove a leftover folder proven netxray's, its manifest (``results.json``) last, so that
    a removal killed half-way leaves files that are still provably a report's."""
    if not own_temp_dir(directory):
        for rel in sorted(set(owned_files(directory)) - {"results.json"}):
            with contextlib.suppress(OSError):
                (directory / rel).unlink()
        with contextlib.suppress(OSError):
            (directory / "results.json").unlink()
    shutil.rmtree(directory, ignore_errors=True)


def _write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _install(out: Path, files: dict[str, bytes]) -> None:
    """Put the report ``files`` at ``out`` atomically (called with the lock held)."""
    out = Path(os.path.abspath(out))
    parent = out.parent
    # leftovers of a run killed mid-save: removed (we hold the lock) when netxray can prove them
    # its own; a folder of that name without the proof is someone else's and stays
    for stale in parent.glob(f".{out.name}.netxray-*-*"):
        if own_temp_dir(stale) or _only_a_report(stale):
            _remove_report_dir(stale)
    owned = owned_files(out) if out.is_dir() else {}
    # flat files a command wrote here (compare-signatures, symmetry --out): netxray's, so the
    # report may replace them, but it does not delete those it does not write
    flat = set(_flat_owned(out)) if out.is_dir() else set()
    present = _all_files(out) if out.is_dir() else set()
    # a merge killed half-way left its journal: the files it lists with their hashes (and still
    # have them) are a report's, not the user's
    journal = parent / f".{out.name}.netxray-journal.json"
    journal_ours = False
    if journal.is_file() and not journal.is_symlink():
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            record = json.loads(journal.read_text())
            if record.get("generator") == MANIFEST_GENERATOR:  # another tool's file proves nothing
                owned.update(_owned(out, record["file_sha256"]))
                journal_ours = True
    previous = set(owned) & present
    foreign = present - previous - (flat & set(files))
    clash = sorted(rel for rel in foreign if rel in files or rel.rstrip("/") in files
                   or any(rel == d.as_posix() for f in files for d in Path(f).parents))  # fmt: skip
    if clash:
        why = "not in a netxray manifest, or changed since"
        if "results.json" in clash and not owned_files(out):
            why = ("its results.json is not a netxray manifest with file hashes: another tool's, or a "
                   "report of an older netxray whose manifest had no hashes")  # fmt: skip
        raise FileExistsError(
            f"--out {out}: holds {', '.join(clash[:5])} not written by a netxray report ({why}); the report "
            "would overwrite it. Move it away or choose another --out"
        )
    if os.path.lexists(journal) and not journal_ours:
        raise FileExistsError(f"--out {out}: {journal} beside it was not written by netxray; the report "
                              "would overwrite it. Move it away or choose another --out")
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = parent / f".{out.name}.netxray-tmp-{token}"
    tmp.mkdir()
    try:
        mark_temp_dir(tmp)  # first: a run killed from here on leaves a leftover the next one removes
        # results.json (the manifest) last: a tree without it is not a report
        _write_tree(tmp, {k: v for k, v in files.items() if k != "results.json"})
        _write_tree(tmp, {"results.json": files["results.json"]})
        _fsync_dir(tmp)
        if not out.exists():
            (tmp / TEMP_MARKER).unlink()  # the report carries no marker
            os.rename(tmp, out)
        elif not foreign:
            # only the earlier report is there: swap whole directories (old → aside, new → in)
            # (each is provably netxray's throughout: only report files under their manifest)
            old = parent / f".{out.name}.netxray-old-{token}"
            (tmp / TEMP_MARKER).unlink()
            os.rename(out, old)
            os.rename(tmp, out)
            _remove_report_dir(old)
        else:
            # the user keeps other files in this directory: take the earlier report out (its
            # results.json first, so it stops being a report), then move the new files in,
            # results.json last. A journal names every file involved, so that a run killed
            # half-way leaves files the next save knows to be a report's, not the user's.
            record = json.dumps({"generator": MANIFEST_GENERATOR,
                                 "file_sha256": {**{rel: owned[rel] for rel in previous},
                                                 **{rel: _sha256(data) for rel, data in files.items()}}})
            _write_tree(parent, {journal.name: record.encode()})
            for rel in ["results.json", "index.html", *sorted(previous)]:
                if rel in previous:  # only what is proven the earlier report's
                    with contextlib.suppress(FileNotFoundError):
                        (out / rel).unlink()
            for rel in [*sorted(set(files) - {"results.json", "index.html"}), "index.html", "results.json"]:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out / rel)
            for rel in sorted(previous - set(files)):  # empty folders the old report made
                for d in Path(rel).parents:
                    if str(d) != "." and (out / d).is_dir() and not any((out / d).iterdir()):
                        (out / d).rmdir()
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            journal.unlink()
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _keep_index(df: pd.DataFrame) -> bool:
    # matrices (DTW, layer difference) carry their labels in the index; row tables do not
    return not isinstance(df.index, pd.RangeIndex)


def _to_parquet(df: pd.DataFrame) -> bytes:
    import io

    clean = df.copy()
    clean.attrs = {}  # attrs hold non-JSON objects (linkage arrays) that pyarrow cannot store
    for c in clean.columns:
        if clean[c].dtype == object:  # mixed objects (lists, None) -> text, so the schema is one type
            clean[c] = clean[c].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    clean.columns = [str(c) for c in clean.columns]
    buf = io.BytesIO()
    clean.to_parquet(buf, index=_keep_index(clean))
    return buf.getvalue()
