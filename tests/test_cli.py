"""The command line as a user meets it: bad input is one ``error:`` line, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from netxray.cli import app
from netxray.training import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("ckpt") / "mlp"
    train("mlp", digits, epochs=1, width=16, depth=1, progress=False, out=out)
    return out


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_model_that_cannot_run_on_the_data_is_a_clear_error(checkpoint):
    # a digits MLP (64 inputs) on mnist1d (1×40 signals)
    for command in (["signature", checkpoint], ["modularity", checkpoint]):
        result = _run(*command, "--data", "mnist1d", "--out", "x.csv")
        _assert_clean_error(result, "cannot run on --data 'mnist1d' samples of shape [1, 40]")


def test_out_paths_are_checked_before_any_work(checkpoint, tmp_path):
    a_file = tmp_path / "taken.csv"
    a_file.write_text("mine")
    a_dir = tmp_path / "folder"
    a_dir.mkdir()
    _assert_clean_error(_run("signature", checkpoint, "--out", a_dir), "is a directory")
    _assert_clean_error(_run("scan", checkpoint, "--out", a_file), "a file is there")
    _assert_clean_error(_run("compare", checkpoint, checkpoint, "--out", a_file), "a file is there")
    _assert_clean_error(
        _run("train", "--arch", "mlp", "--epochs", "1", "--out", a_file / "x"), "is a file, not a directory"
    )
    assert a_file.read_text() == "mine"


def test_scan_rejects_bad_counts_and_seeds_up_front(checkpoint, tmp_path):
    _assert_clean_error(_run("scan", checkpoint, "--k", "0", "--out", tmp_path / "r"), "--k must be >= 1")
    result = _run("scan", checkpoint, "--seed", "-1", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--seed" in result.output  # typer's range check names it


def test_a_failed_lens_is_reported_on_stderr_even_when_quiet(checkpoint, tmp_path):
    # subsets of 2 samples cannot hold a 3-nearest-neighbour graph: the modularity lens fails,
    # the symmetry lens still runs, and the failure is said even under --quiet
    result = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "modularity,symmetry", "--modularity-n", "2",
              "--out", str(tmp_path / "r"), "--quiet"],  # fmt: skip
    )
    # the report is written, and the exit status says a lens failed (3), unless --allow-partial
    assert result.exit_code == 3, result.output
    assert "Report:" in result.stdout and (tmp_path / "r" / "index.html").is_file()
    assert "warning: modularity: ValueError: k must be" in result.stderr
    assert "symmetry" not in result.stderr
    again = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "modularity,symmetry", "--modularity-n", "2",
              "--out", str(tmp_path / "r2"), "--quiet", "--allow-partial"],  # fmt: skip
    )
    assert again.exit_code == 0, again.output
    assert "warning: modularity" in again.stderr
    ok = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "symmetry", "--out", str(tmp_path / "r3"), "--quiet"]
    )
    assert ok.exit_code == 0, ok.output
