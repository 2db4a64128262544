"""Fault tests (issue 13 item 7): ``kill -9`` during a scan or during ``Report.save`` leaves the
previous complete report or none — never a partial report that looks complete — and the next
save recovers without help. The killed writer is a forked process (a real process, killed by
SIGKILL; forked so that it does not pay an interpreter and torch start-up per case). ``netxray train --out`` over a checkpoint refuses without --force
(tests/test_reliability.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest


def _child(out: Path, title: str, stage: str, w: int) -> None:
    """Runs in a forked process: slows the chosen stage down, reports progress on the pipe ``w``
    (one line per step), and saves the report; the parent kills it at a chosen step."""
    from netxray.report import _saving, runners

    def say(text: str) -> None:
        os.write(w, (text + "\n").encode())

    if stage == "scan":  # killed while the lenses run
        def slow_lens(*_a):
            say("scanning")
            time.sleep(30)

        runners._RUNNERS["parameters"] = slow_lens
    if stage == "write":  # killed between two files of the temporary tree
        real_write = _saving._write_tree

        def slow_write(root, files):
            for rel, data in files.items():
                real_write(root, {rel: data})
                say(f"wrote {rel}")
                time.sleep(0.2)

        _saving._write_tree = slow_write  # where _install looks it up
    if stage in ("rename", "merge"):  # killed between two renames / replaces of the install
        def slow(fn):
            def wrapped(a, b):
                fn(a, b)
                say(f"moved {os.path.basename(str(b))}")
                time.sleep(0.2)
            return wrapped

        _saving.os.rename, _saving.os.replace = slow(os.rename), slow(os.replace)
    _save(out, title)
    say("saved")


def _run_child(out: Path, title: str, stage: str):
    """Fork (torch is already imported here: no interpreter start-up) and run :func:`_child`."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            _child(out, title, stage, w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, os.fdopen(r)


def _save(out: Path, title: str) -> None:
    """The same report as the child's, saved in this process (no interpreter start-up)."""
    import torch
    from torch import nn

    from netxray.report import scan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.rand(60, 1, 4, 4), torch.arange(60) % 3
    lenses = ("parameters",) if title.startswith("small") else ("nonlinearity", "parameters")
    scan(model, (x, y), lenses=lenses, progress=False, n_samples=60, title=title).save(out)


def _state(out: Path, foreign: set[str] = frozenset()) -> str:
    """'none', or the title of the complete report in ``out``; fails on a partial report."""
    results, index = out / "results.json", out / "index.html"
    if not results.exists():
        # no manifest: not a report — and nothing may look like one
        assert not index.exists(), "index.html without results.json: a partial report"
        return "none"
    record = json.loads(results.read_text())
    listed = set(record["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - set(foreign) == listed, (sorted(on_disk), sorted(listed))
    assert record["title"] in index.read_text()
    return record["title"]


def _kill_at(child, marker: str, nth: int) -> None:
    pid, lines = child
    seen = 0
    for line in lines:
        if line.startswith(marker):
            seen += 1
            if seen >= nth:
                os.kill(pid, signal.SIGKILL)
                break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the child never printed {marker!r} {nth} times")
    os.waitpid(pid, 0)
    lines.close()


def test_kill_during_scan_leaves_the_previous_report(tmp_path):
    out = tmp_path / "rep"
    _save(out, "first")
    _kill_at(_run_child(out, "second", "scan"), "scanning", 1)
    assert _state(out) == "first"
    _save(out, "third")  # the lock died with the process: the next run just works
    assert _state(out) == "third"


@pytest.mark.parametrize("stage, marker, nth", [("write", "wrote", 2), ("rename", "moved", 1)])
def test_kill_during_save_leaves_the_previous_report_or_none(tmp_path, stage, marker, nth):
    out = tmp_path / "rep"
    _save(out, "first")
    _kill_at(_run_child(out, "small-second", stage), marker, nth)
    assert _state(out) in ("first", "none", "small-second")
    if stage == "write":  # the temporary tree was not moved in yet: the old report is untouched
        assert _state(out) == "first"
    _save(out, "third")
    assert _state(out) == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # leftovers cleaned by the next save


@pytest.mark.parametrize("nth", [1, 3])  # after removing the old report's files / mid-move
def test_kill_while_merging_into_a_folder_with_user_files(tmp_path, nth):
    out = tmp_path / "rep"
    _save(out, "first")
    (out / "notes.txt").write_text("mine")
    _kill_at(_run_child(out, "small-second", "merge"), "moved", nth)
    assert _state(out, {"notes.txt"}) in ("first", "none", "small-second")
    _save(out, "third")  # files of the half-done merge are known to be a report's: no refusal
    assert _state(out, {"notes.txt"}) == "third"
    assert (out / "notes.txt").read_text() == "mine"
