"""Which files netxray may replace or delete: ownership proven by hashes, never assumed.

netxray writes a manifest beside what it writes — a report's ``results.json`` (which identifies
netxray and lists every file with its SHA-256), :data:`FLAT_MANIFEST` for the files a command
writes into a folder the user names, :data:`TEMP_MARKER` in a temporary directory it makes — and
replaces or deletes a file only when the manifest lists it with the hash it still has. Anything
else is the user's and stays. Low in the layers (lenses that write files, the report and the CLI
all use it); the report re-exports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netxray._meta import atomic_write_text, check_output_dir

__all__ = [
    "FLAT_MANIFEST", "MANIFEST_GENERATOR", "TEMP_MARKER", "check_owned_files", "mark_temp_dir",
    "own_temp_dir", "owned_files", "record_owned_files", "report_files", "write_owned_files",
]  # fmt: skip


MANIFEST_GENERATOR = "netxray"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    import hashlib

    h = hashlib.sha256()
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _owned(out: Path, hashes: Any) -> dict[str, str]:
    """The files of ``hashes`` (relative path -> SHA-256) that are in ``out`` unchanged."""
    if not isinstance(hashes, dict):
        return {}
    owned = {}
    for rel, sha in hashes.items():
        if not isinstance(rel, str) or not isinstance(sha, str) or rel.startswith("/") \
                or ".." in Path(rel).parts or rel in ("", "."):  # fmt: skip
            continue
        if _file_sha256(out / rel) == sha:
            owned[rel] = sha
    return owned


def owned_files(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The files of the netxray report in ``directory`` that it can prove are its own: listed in
    its ``results.json`` (which identifies netxray) with the SHA-256 they still have. Relative
    path -> SHA-256; ``results.json`` maps to its own hash. Empty when there is no such report."""
    out = Path(directory)
    try:
        record = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("generator") != MANIFEST_GENERATOR:
        return {}
    owned = _owned(out, record.get("file_sha256"))
    owned["results.json"] = _file_sha256(out / "results.json") or ""
    return owned


# beside a report (or alone): the hashes of the flat files a command wrote into the folder
# (``compare-signatures``, ``symmetry --out``, ``bounds --out``), so that a later report or
# command may replace them — and nothing else
FLAT_MANIFEST = ".netxray-files.json"


def _flat_record(out: Path) -> dict[str, Any] | None:
    """The :data:`FLAT_MANIFEST` of ``out`` when it is a regular file that identifies netxray."""
    path = out / FLAT_MANIFEST
    try:
        if path.is_symlink() or not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("generator") != MANIFEST_GENERATOR:
        return None
    return record


def _is_flat_manifest(out: Path) -> bool:
    return _flat_record(out) is not None


def _flat_owned(out: Path) -> dict[str, str]:
    record = _flat_record(out)
    return {} if record is None else _owned(out, record.get("file_sha256"))


# written first into a temporary directory netxray makes (a report being built beside --out, a
# zoo model being trained): the proof, naming that directory, that a later run may delete it as
# the leftover of a run that was killed. A directory without it is not netxray's and stays.
TEMP_MARKER = ".netxray-tmp.json"


def mark_temp_dir(directory: str | os.PathLike[str]) -> None:
    """Write :data:`TEMP_MARKER` into ``directory`` (just made by this process)."""
    path = Path(directory)
    atomic_write_text(path / TEMP_MARKER, json.dumps({"generator": MANIFEST_GENERATOR, "tmp": path.name}) + "\n")


def own_temp_dir(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` is a temporary directory netxray made: a real directory (no link)
    holding the :data:`TEMP_MARKER` that :func:`mark_temp_dir` wrote into it, naming it."""
    path = Path(directory)
    marker = path / TEMP_MARKER
    try:
        if path.is_symlink() or not path.is_dir() or marker.is_symlink() or not marker.is_file():
            return False
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("generator") == MANIFEST_GENERATOR and record.get("tmp") == path.name


def check_owned_files(
    directory: str | os.PathLike[str], names: Sequence[str], option: str = "--out", *, beside: Path | None = None
) -> None:
    """Refuse (one ``FileExistsError`` line, or ``PermissionError`` for ``/``, home or a system
    folder) when writing ``names`` into ``directory`` would overwrite a file netxray cannot prove
    it wrote; call it before the work, :func:`write_owned_files` checks again when writing.

    ``beside``: the file the user named with ``option`` (``curve.csv``), when ``names`` are the
    side files netxray writes next to it (``curve.redundant.csv``) in its folder ``directory``:
    that folder is the user's, so home is allowed (``/`` and system folders are still refused)
    and the message names the side file and the option. A :data:`FLAT_MANIFEST` there that does
    not identify netxray is the user's too, and is refused rather than replaced.
    """
    out = Path(directory)
    if beside is None:
        check_output_dir(out, option)
    else:
        check_output_dir(beside, option, directory=False)
    owned = {**owned_files(out), **_flat_owned(out)} if out.is_dir() else {}
    clash = sorted(rel for rel in names if os.path.lexists(out / rel) and rel not in owned)
    if names and os.path.lexists(out / FLAT_MANIFEST) and not _is_flat_manifest(out):
        clash.append(FLAT_MANIFEST)  # where netxray records what it wrote; someone else's file
    if clash and beside is not None:
        raise FileExistsError(
            f"{option} {beside}: {out / clash[0]} beside it was not written by netxray (or changed since); "
            f"writing would overwrite it. Move it away or choose another {option}"
        )
    if clash:
        raise FileExistsError(
            f"{option} {out}: holds {', '.join(clash[:5])} not written by netxray (or changed since); "
            "writing would overwrite it. Move it away or choose another directory"
        )


def write_owned_files(directory: str | os.PathLike[str], files: Mapping[str, bytes], option: str = "--out") -> None:
    """Write ``files`` (relative path -> bytes) into ``directory``, replacing only files netxray
    provably wrote (in a report's manifest or in :data:`FLAT_MANIFEST`, hash unchanged).

    Checked before anything is written: a file already there that netxray cannot prove its own
    is the user's, and the call is refused with one ``FileExistsError`` line naming it. Each
    file is written atomically; their hashes are recorded in ``directory/.netxray-files.json``.
    """
    from netxray._meta import atomic_write_bytes

    out = Path(directory)
    check_owned_files(out, list(files), option)
    out.mkdir(parents=True, exist_ok=True)
    record = {"generator": MANIFEST_GENERATOR, "file_sha256": {**_flat_owned(out)}}
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / rel, data)
        record["file_sha256"][rel] = _sha256(data)
    atomic_write_text(out / FLAT_MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")


def record_owned_files(directory: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Record in ``directory/.netxray-files.json`` the hashes of ``names`` (relative paths that
    netxray has just written there and exist), so that a later run may replace them. A
    :data:`FLAT_MANIFEST` there that is not netxray's is left alone (nothing is recorded)."""
    out = Path(directory)
    if os.path.lexists(out / FLAT_MANIFEST) and not _is_flat_manifest(out):
        return
    record = {"generator": MANIFEST_GENERATOR, "file_sha256": {**_flat_owned(out)}}
    for rel in names:
        sha = _file_sha256(out / rel)
        if sha is not None:
            record["file_sha256"][rel] = sha
    atomic_write_text(out / FLAT_MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")


def report_files(directory: str | os.PathLike[str]) -> set[str] | None:
    """The files (relative paths) of the report saved in ``directory``, or None when it holds none.

    Ownership is proven, not assumed: only the files its ``results.json`` (which must identify
    netxray) lists with their SHA-256, and that still have that hash (:func:`owned_files`). A
    ``results.json`` of another tool, or of a netxray before manifests held hashes, proves
    nothing: None.
    """
    owned = owned_files(directory)
    return set(owned) if owned else None
