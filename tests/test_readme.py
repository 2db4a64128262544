"""The README as a test (issue 13 item 5): every code block and command line runs, in order,
in one temporary directory, so the documentation cannot drift from the code.

The docs pages that the README's examples moved to (issue 22) run the same way, a page at a
time, after the README and in :data:`PAGES` order, in the same directory and the same Python
namespace — like one notebook across pages: a lens page may load ``runs/mlp`` that the README's
tour trained, or use ``model_a`` that an earlier page defined. Selecting one page (``-k``) runs
the pages before it first. A docs page with runnable blocks must be listed in :data:`PAGES` or,
with the reason, in :data:`NOT_EXAMPLES` (a test checks it).

How blocks are read (robust to blocks being added; nothing is addressed by its index):

- ```python blocks run in one shared namespace, in README order (like a notebook);
- ```bash / ```sh / plain ``` blocks: each command line (``\\`` continuations joined, ``#``
  comments dropped, optional ``[--flag value]`` groups of a synopsis left out) runs: ``netxray
  …`` in this process (``netxray.cli.app``), ``python …`` in a subprocess; ``make``, ``pip``
  and ``git`` lines set up the environment and are not run here; any other command fails the
  test, asking for a marker;
- blocks in other languages (```text, ```json, …) are not code;
- HTML comments right before a block (invisible on GitHub) steer it:
  ``<!-- readme-test: skip (why) -->`` — a block that must not run (a usage synopsis with
  placeholders); ``<!-- readme-test: file NAME -->`` — the block is the content of file NAME;
  ``<!-- readme-test: setup\\n<python>\\n-->`` — Python run first, in the shared namespace
  (to define the names a fragment takes as given, e.g. your own ``x, y``).

Long examples run with smaller arguments unless ``NETXRAY_README_FULL=1`` (the README says
so): ``epochs=N``/``--epochs N``/``--finetune-epochs N`` become 1, ``repeats`` 2,
``random_draws`` 1, zoo grids ``width=8;lr=1e-2;epochs=1;seed=0,1`` on the serial engine; and
what is left at its default gets smaller defaults (:func:`_small_mode`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the README, then the docs pages its examples moved to, in the order they run
PAGES = (
    "README.md",
    "docs/data-and-models.md",
    "docs/nonlinearity.md",
    "docs/modularity.md",
    "docs/parameters.md",
    "docs/symmetry.md",
    "docs/report.md",
)
# docs pages whose fenced blocks are not examples to run, and why
NOT_EXAMPLES = {
    "docs/architecture.md": "internal contracts: a layout sketch and dataclass signatures",
    "docs/cli.md": "generated usage synopses with placeholders (tools/cli_docs.py)",
}
FULL = os.environ.get("NETXRAY_README_FULL") == "1"
TINY_GRID = "width=8;lr=1e-2;epochs=1;seed=0,1"
NOT_RUN_HERE = ("make", "pip", "git")  # environment set-up, not netxray usage

_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|file|setup)\b(.*?)-->", re.S)


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None = None
    file: str | None = None
    setup: str = ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order, each with the markers in the comments before it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i, since = 0, 0  # since: where the text between the previous block and this one starts
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        block = Block(i + 1, m.group(1).lower(), "\n".join(lines[i + 1 : j]) + "\n")
        before = "\n".join(lines[since:i])
        for kind, rest in _MARKER.findall(before):
            if kind == "skip":
                block.skip = rest.strip() or "marked skip"
            elif kind == "file":
                block.file = rest.strip()
            else:
                block.setup += rest.strip("\n") + "\n"
        blocks.append(block)
        i, since = j + 1, j + 1
    return blocks


def shrink(text: str) -> str:
    """Smaller arguments for long examples (not with NETXRAY_README_FULL=1)."""
    if FULL:
        return text
    text = re.sub(r'"((?:width|depth|lr|epochs|seed)=[^"\n]*;[^"\n]*)"', f'"{TINY_GRID}"', text)
    text = re.sub(r"\b(epochs=)\d+", r"\g<1>1", text)
    text = re.sub(r"\b(repeats=)\d+", r"\g<1>2", text)
    text = re.sub(r"\b(random_draws=)\d+", r"\g<1>1", text)
    text = re.sub(r'engine="local"', 'engine="serial"', text)
    text = re.sub(r"(--(?:finetune-)?epochs)\s+\d+", r"\1 1", text)
    lines = []
    for line in text.split("\n"):
        if re.match(r"\s*netxray (scan|compare|modularity|prune)(?=\s)", line) and "--repeats" not in line:
            line = re.sub(r"^(\s*netxray \S+)", r"\1 --repeats 2", line)
        if re.match(r"\s*netxray zoo (train|analyze)\b", line) and "--engine" not in line:
            line = re.sub(r"^(\s*netxray zoo \S+)", r"\1 --engine serial", line)
        lines.append(line)
    return "\n".join(lines)


def _small_mode(monkeypatch) -> None:
    """Smaller defaults for what the README leaves at its defaults (not with NETXRAY_README_FULL=1):
    1 epoch per family, digits cut to every second sample (899: 719 train / 180 test — more test
    samples than the default MLP's 128 units, so its signature is determined and the README's
    scans exit 0), 2 modularity repeats in scan and compare, zoo analyses in one process."""
    import netxray.training
    from netxray.data import builtin
    from netxray.lenses import zoo
    from netxray.report import core

    for family in netxray.training.TRAIN_DEFAULTS.values():
        monkeypatch.setitem(family, "epochs", 1)
    full = builtin._digits_arrays
    monkeypatch.setattr(builtin, "_digits_arrays", lambda: tuple(a[::2] for a in full()))
    for fn in (core.scan, core.compare_report):
        monkeypatch.setitem(fn.__kwdefaults__, "repeats", 2)
    monkeypatch.setitem(zoo.analyze_zoo.__kwdefaults__, "engine", "serial")


def command_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for raw in joined.splitlines():
        line = re.sub(r"\s\[--[^\]]*\]", "", raw)  # optional groups of a synopsis
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def _run_command(line: str, where: str) -> None:
    import time

    t0 = time.perf_counter()
    try:
        _run_command_(line, where)
    finally:
        if os.environ.get("NETXRAY_README_TIMES"):
            print(f"{time.perf_counter() - t0:7.1f} s  {line}", file=sys.__stderr__)


def _run_command_(line: str, where: str) -> None:
    from typer.testing import CliRunner

    from netxray.cli import app

    words = shlex.split(line)
    if words[0] in NOT_RUN_HERE:
        return
    if words[0] == "netxray":
        res = CliRunner().invoke(app, words[1:])
        assert res.exit_code == 0, f"{where}: `{line}` exited {res.exit_code}:\n{res.output[-3000:]}\n{res.exception!r}"
        return
    if words[0] == "python":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
        proc = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{where}: `{line}` failed:\n{proc.stderr[-3000:]}"
        return
    pytest.fail(f"{where}: `{line}` is not a netxray or python command; mark its block "
                "<!-- readme-test: skip (why) --> if it must not run")  # fmt: skip


def test_extractor_reads_markers_and_shrinks_arguments():
    text = (
        "intro\n<!-- readme-test: skip (a synopsis) -->\n```\nnetxray weights CKPT\n```\n"
        "<!-- readme-test: setup\nx = 1\n-->\n```python\nprint(x)\n```\n"
        "<!-- readme-test: file a.py -->\n```python\nA = 2\n```\n```json\n{}\n```\n"
    )
    b = readme_blocks(text)
    assert [(x.lang, x.skip, x.file, x.setup) for x in b] == [
        ("", "(a synopsis)", None, ""), ("python", None, None, "x = 1\n"),
        ("python", None, "a.py", ""), ("json", None, None, ""),
    ]  # fmt: skip
    assert command_lines("netxray a \\\n   --b 1 [--c D]  # note\n\nmake x\n") == ["netxray a --b 1", "make x"]
    if not FULL:
        assert shrink('train(epochs=10) --epochs 5 --finetune-epochs 3 "width=8,32;lr=1e-3"') == (
            f'train(epochs=1) --epochs 1 --finetune-epochs 1 "{TINY_GRID}"'
        )


class Workspace:
    """One temporary directory and one Python namespace shared by the pages, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.namespace: dict = {"__name__": "__readme__"}
        self.done: list[str] = []


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        mp.setenv("HOME", str(path))  # "~/data/…" examples stay inside the temp dir
        mp.setenv("MPLBACKEND", "Agg")
        mp.syspath_prepend(str(path))  # `import my_net` as the README's user would
        if not FULL:
            _small_mode(mp)
        yield Workspace(path)


def run_page(page: str, ws: Workspace) -> int:
    """Run every example of ``page`` (relative to the repository) in ``ws``; the number run."""
    namespace = ws.namespace
    ran = 0
    for block in readme_blocks((ROOT / page).read_text(encoding="utf-8")):
        where = f"{page} line {block.line}"
        if block.skip:
            continue
        if block.setup:
            exec(compile(block.setup, f"{where} (setup)", "exec"), namespace)
        if block.file:
            Path(block.file).write_text(block.text)
            continue
        if block.lang == "python":
            import time

            t0 = time.perf_counter()
            exec(compile(shrink(block.text), where, "exec"), namespace)
            if os.environ.get("NETXRAY_README_TIMES"):
                print(f"{time.perf_counter() - t0:7.1f} s  python block at {where}", file=sys.__stderr__)
            ran += 1
        elif block.lang in ("bash", "sh", "shell", "console", ""):
            for line in command_lines(shrink(block.text)):
                _run_command(line, where)
            ran += 1
    ws.done.append(page)
    return ran


@pytest.mark.parametrize("page", PAGES)
def test_every_readme_example_runs(page, workspace):
    for earlier in PAGES[: PAGES.index(page)]:  # what this page takes as given
        if earlier not in workspace.done:
            run_page(earlier, workspace)
    ran = run_page(page, workspace)
    assert ran >= (3 if page == "README.md" else 1)  # its examples were found, not silently skipped


def test_every_docs_page_with_examples_runs():
    """A docs page with a block that would run is in PAGES or NOT_EXAMPLES (never forgotten)."""
    for path in sorted((ROOT / "docs").rglob("*.md")):
        page = path.relative_to(ROOT).as_posix()
        runnable = [b for b in readme_blocks(path.read_text(encoding="utf-8"))
                    if not b.skip and (b.file or b.lang in ("python", "bash", "sh", "shell", "console", ""))]  # fmt: skip
        if runnable and page not in PAGES:
            assert page in NOT_EXAMPLES, (
                f"{page} has examples (line {runnable[0].line}): add it to PAGES in "
                "tests/test_readme.py, or to NOT_EXAMPLES with the reason"
            )
