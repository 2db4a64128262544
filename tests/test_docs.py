"""The docs site's generated parts stay in step with the code (issue 22): the CLI reference
(docs/cli.md, written by tools/cli_docs.py from the typer app), and the doctest fencing the
site's API reference relies on (tools/griffe_doctest.py). `make docs` / `make test` build the
site itself with `mkdocs build --strict`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date():
    cli_docs = _tool("cli_docs")
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == cli_docs.render(), (
        "docs/cli.md is out of date: run `python tools/cli_docs.py`"
    )


def test_cli_reference_names_every_command():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("train", "scan", "signature", "modularity", "weights", "symmetry", "bounds",
                    "prune", "compare", "zoo", "demo"):  # fmt: skip
        assert f"## `netxray {command}" in text


def test_doctests_are_fenced_outside_numpy_examples():
    pytest.importorskip("griffe")
    fence = _tool("griffe_doctest").fence_doctests
    text = 'Summary.\n\n>>> d["a"]["b"]\n1\n\nMore.\n\nExamples\n--------\n>>> 1 + 1\n2\n'
    assert fence(text) == (
        'Summary.\n\n```pycon\n>>> d["a"]["b"]\n1\n```\n\nMore.\n\nExamples\n--------\n>>> 1 + 1\n2\n'
    )
    assert fence("```python\n>>> x\n```") == "```python\n>>> x\n```"
