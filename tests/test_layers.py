"""The import graph of ``src/netxray``: no circle and no import up the layers (docs/architecture,
``DESIGN.md``: data flows down, imports point down).

Every ``import`` / ``from … import`` counts, at any level: one at the top of a module, one inside
a function (a lazy import is still a dependency) or under ``if TYPE_CHECKING``. The graph is read
from the source files with :mod:`ast`, nothing is imported, so the check is fast and runs from
the repository alone.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "netxray"

# The layers, lowest first; an import may point to its own layer or a lower one. The first
# component under ``netxray`` decides a module's layer (``netxray.capture.core`` -> "capture").
LAYERS: list[set[str]] = [
    {"_errors", "_device", "_meta", "_files", "_threads", "_plotting"},  # helpers every layer may use
    {"measures", "data"},  # pure math on arrays; data sets
    {"models"},  # built-in architectures, model sources, checkpoints
    {"training"},  # a plain training loop (over data and models)
    {"capture"},  # how a running model is observed, and its recorded structure
    {"lenses"},  # one module per question
    {"report"},  # results, the HTML report, `scan`
    {"cli"},  # the commands
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# Imports up the layers kept on purpose, each with its reason (keep this list empty if you can).
ALLOWED_UP: set[tuple[str, str]] = set()


def _modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    mods = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _targets(mods: dict[str, pathlib.Path], cur: str, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    pkg = cur.split(".") if mods[cur].name == "__init__.py" else cur.split(".")[:-1]
    if node.level:
        pkg = pkg[: len(pkg) - (node.level - 1)]
        prefix = ".".join(pkg + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def import_graph(root: pathlib.Path = ROOT) -> dict[str, set[str]]:
    """Module -> the netxray modules it imports (anywhere in its source). An import of a module's
    own ancestor package is left out: importing a submodule imports its packages first anyway."""
    mods = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(mods, m, node):
                    while t and t not in mods:
                        t = t.rpartition(".")[0]
                    if t and t != m and not m.startswith(t + "."):
                        edges[m].add(t)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the netxray package itself


def test_the_graph_is_read():
    edges = import_graph()
    assert "netxray.capture.core" in edges and "netxray.lenses.symmetry" in edges
    assert "netxray.capture.graph" in edges["netxray.capture.core"]


def test_no_import_circle_between_modules():
    edges = import_graph()
    found = circles(edges)
    assert not found, "import circles: " + " | ".join(
        "; ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c) for c in found
    )


def test_no_import_circle_between_packages():
    edges = import_graph()
    packages: dict[str, set[str]] = {}
    for m, ts in edges.items():
        a = _part(m)
        if a is None:
            continue
        packages.setdefault(a, set()).update(
            b for t in ts if (b := _part(t)) is not None and b != a and (m, t) not in ALLOWED_UP
        )
    assert not circles(packages), f"package circles: {circles(packages)}"


def test_every_part_has_a_layer():
    parts = {_part(m) for m in import_graph()} - {None}
    assert parts <= set(RANK), f"modules with no layer in LAYERS: {sorted(parts - set(RANK))}"


def imports_up(edges: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for each import of a higher layer's module (those in ALLOWED_UP left out)."""
    return [
        f"{m} -> {t}"
        for m, ts in sorted(edges.items())
        for t in sorted(ts)
        if _part(m) in RANK and _part(t) in RANK and RANK[_part(t)] > RANK[_part(m)]
        and (m, t) not in ALLOWED_UP
    ]


def test_no_import_up_the_layers():
    up = imports_up(import_graph())
    assert not up, "imports up the layers: " + "; ".join(up)


def test_the_checks_catch_a_circle_and_an_arrow_up(tmp_path):
    pkg = tmp_path / "netxray"
    (pkg / "capture").mkdir(parents=True)
    (pkg / "lenses").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "capture" / "__init__.py").write_text("")
    (pkg / "lenses" / "__init__.py").write_text("")
    (pkg / "capture" / "a.py").write_text("def f():\n    from netxray.lenses import b\n")
    (pkg / "lenses" / "b.py").write_text("from ..capture.a import f\n")
    edges = import_graph(pkg)
    # a lazy import inside a function counts; "from netxray.lenses import b" imports both
    assert edges["netxray.capture.a"] == {"netxray.lenses", "netxray.lenses.b"}
    assert edges["netxray.lenses.b"] == {"netxray.capture.a"}
    assert circles(edges) == [["netxray.capture.a", "netxray.lenses.b"]]
    assert imports_up(edges) == ["netxray.capture.a -> netxray.lenses", "netxray.capture.a -> netxray.lenses.b"]
