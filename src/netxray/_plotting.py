"""Axes over many named positions (activation sites, probed layers, weight tensors).

One helper labels such an axis at any scale: every position is named when the names fit, else
consecutive names are grouped by their common module-path prefix (a ResNet's ``layer3``,
torchvision's ``features.3``, a BERT's ``bert.encoder.layer.7``) and each group is labelled once,
with faint separators between groups; labels that would still collide are hidden. The names stay
on demand: :func:`hover_regions` turns every registered position into a rectangle (in figure
fractions) with the position's full name, which the HTML report lays over the image as native
tooltips. Lenses and the report both draw through this module, so every per-layer plot reads the
same way.

Example
-------
>>> from matplotlib.figure import Figure
>>> names = [f"features.{i}.block.{j}.act" for i in range(8) for j in range(3)]
>>> fig = Figure(figsize=(6, 3), layout="constrained")
>>> ax = fig.add_subplot()
>>> _ = ax.plot(range(len(names)), range(len(names)))
>>> label_positions(ax, names, max_labels=10)
>>> finish_figure(fig)
>>> [t.get_text() for t in ax.get_xticklabels() if t.get_visible()][:3]
['features.0', 'features.1', 'features.2']
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PAGE_WIDTH",
    "drawn_tick_labels",
    "finish_figure",
    "hover_regions",
    "label_positions",
    "row_slices",
    "short_label",
    "stage_groups",
    "stage_of",
]

# Width (inches) of a plot that spans the report's column: at the report's 96 dpi it is 1075 px,
# the content width of a section in the 1180 px page.
PAGE_WIDTH = 11.2

_CALL = re.compile(r"(#\d+)$")


def _parts(name: str) -> list[str]:
    """Module-path components of a site name: ``a.b:F.relu#2`` → ``['a', 'b', 'F.relu#2']``."""
    path, sep, func = str(name).partition(":")
    parts = [p for p in path.split(".") if p] or [path]
    if sep:
        parts.append(func)
    return parts


def stage_of(name: str, depth: int) -> str:
    """The first ``depth`` module-path components of a site name, joined by dots.

    >>> stage_of("features.3.1.block.2.act", 2)
    'features.3'
    """
    return ".".join(_parts(name)[:depth])


@dataclass(frozen=True)
class Group:
    """Consecutive positions ``start`` .. ``stop - 1`` sharing the label ``label``."""

    start: int
    stop: int
    label: str


def _runs(keys: Sequence[str]) -> list[Group]:
    out: list[Group] = []
    for i, k in enumerate(keys):
        if out and out[-1].label == k:
            out[-1] = Group(out[-1].start, i + 1, k)
        else:
            out.append(Group(i, i + 1, k))
    return out


def stage_groups(names: Sequence[str], max_groups: int) -> tuple[int | None, list[Group]]:
    """Group consecutive names by their module-path prefix: the deepest prefix depth whose
    number of contiguous runs is at most ``max_groups``.

    Returns ``(depth, groups)``; ``depth`` is None when every name gets its own group (the names
    themselves fit). When the level that fits says almost nothing (fewer than ``max_groups // 4``
    groups, e.g. one ``features``) and the next level has at most ``4 * max_groups`` runs, the
    next level is returned, its labels thinned when drawn; when even the first component gives
    too many runs, depth 1 is returned anyway (thinned as well).

    >>> names = [f"layer{s}.{b}.relu" for s in (1, 2) for b in range(3)]
    >>> d, g = stage_groups(names, 3)
    >>> d, [(x.start, x.stop, x.label) for x in g]
    (1, [(0, 3, 'layer1'), (3, 6, 'layer2')])
    """
    names = [str(n) for n in names]
    if len(names) <= max_groups:
        return None, [Group(i, i + 1, n) for i, n in enumerate(names)]
    parts = [_parts(n) for n in names]
    deepest = max(len(p) for p in parts)
    best: tuple[int, list[Group]] | None = None
    over: tuple[int, list[Group]] | None = None  # the first level with too many runs
    for depth in range(1, deepest + 1):
        runs = _runs([".".join(p[:depth]) for p in parts])
        if len(runs) > max_groups:
            over = (depth, runs)
            break
        if best is None or len(runs) > len(best[1]):  # a deeper prefix that splits nothing further
            best = (depth, runs)                       # only makes the labels longer
    # a level that says almost nothing ("features" for 500 sites) loses to the next one when that
    # is at most 4× over: finish_figure thins its labels, the separators still show every group
    if over is not None and (best is None or len(best[1]) < max(2, max_groups // 4)) \
            and len(over[1]) <= 4 * max_groups:
        return over
    if best is None:
        return 1, _runs([p[0] for p in parts])
    return best


def short_label(text: str, limit: int = 30) -> str:
    """``text`` shortened to at most ``limit`` characters, keeping what tells sites apart.

    Module-path components are dropped from the middle, the longest named one first (numbers,
    the first and the last component stay), each run of dropped ones shown as ``…``; when that
    is not enough the text is cut in the middle.

    >>> short_label("bert.encoder.layer.3.intermediate.intermediate_act_fn:F.gelu", 30)
    'bert.encoder.layer.3.…:F.gelu'
    >>> short_label("features.3.1.block.2.scale_activation", 20)
    'features.3…ctivation'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    path, sep, func = text.partition(":")
    parts = path.split(".")
    keep = [True] * len(parts)

    def render() -> str:
        out: list[str] = []
        for p, k in zip(parts, keep, strict=True):
            if k:
                out.append(p)
            elif not out or out[-1] != "…":
                out.append("…")
        return ".".join(out) + (sep + func)

    middle = sorted((i for i in range(1, len(parts) - (0 if sep else 1)) if not parts[i].isdigit()),
                    key=lambda i: (-len(parts[i]), -i))  # fmt: skip
    for i in middle:
        if len(render()) <= limit:
            break
        keep[i] = False
    short = render()
    if len(short) <= limit:
        return short
    head = (limit - 1) // 2 + (limit - 1) % 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def row_slices(names: Sequence[str], per_row: int = 160) -> list[slice]:
    """Split a long sequence of positions into rows of at most ``per_row``, cutting at a stage
    boundary (a change of the first two path components) near each even split when there is one.

    >>> [(s.start, s.stop) for s in row_slices([f"b.{i // 10}.x" for i in range(50)], 20)]
    [(0, 20), (20, 40), (40, 50)]
    """
    n = len(names)
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    if n <= per_row:
        return [slice(0, n)]
    rows = -(-n // per_row)
    target = -(-n // rows)
    keys = [stage_of(x, 2) for x in names]
    bounds = [i for i in range(1, n) if keys[i] != keys[i - 1]]
    out, start = [], 0
    while n - start > per_row:
        ideal = start + target
        near = [b for b in bounds if start < b <= start + per_row and abs(b - ideal) <= target // 4]
        cut = min(near, key=lambda b: abs(b - ideal)) if near else min(ideal, start + per_row)
        out.append(slice(start, cut))
        start = cut
    out.append(slice(start, n))
    return out


@dataclass
class _Named:
    axis: str  # "x" or "y"
    positions: np.ndarray
    tips: list[str]


# axes → the named positions registered on it (weak: a figure that is dropped is forgotten)
_REGISTRY: weakref.WeakKeyDictionary[Any, list[_Named]] = weakref.WeakKeyDictionary()
# x axes whose few labels start horizontal and turn vertical only if they collide
_UPRIGHT: weakref.WeakSet[Any] = weakref.WeakSet()


def label_positions(
    ax: Any,
    names: Sequence[str],
    positions: Sequence[float] | None = None,
    *,
    axis: str = "x",
    tips: Sequence[str] | None = None,
    max_labels: int = 40,
    fontsize: float = 7,
    separators: bool = True,
    limit: int = 30,
    hover: bool = True,
) -> None:
    """Label ``axis`` of ``ax`` with the names of the positions drawn there.

    Up to ``max_labels`` names: one tick per position, labelled with its (middle-shortened)
    name. More: one labelled tick per group of consecutive names sharing a module-path prefix
    (:func:`stage_groups`), at the group's centre, a short mark at each position and a faint
    line between groups. Names longer than ``limit`` characters lose middle path parts
    (:func:`short_label`; the tooltip keeps the whole name). x labels are vertical (a dozen or
    fewer stay horizontal when they fit side by side), so their extents never overlap sideways;
    :func:`finish_figure` hides any label that would still touch its neighbour. The
    positions and ``tips`` (default: the names) are registered for :func:`hover_regions` unless
    ``hover`` is false (a heat map names its rows, not also its columns, on hover).
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    names = [str(n) for n in names]
    pos = np.arange(len(names), dtype=float) if positions is None else np.asarray(positions, dtype=float)
    if len(pos) != len(names):
        raise ValueError(f"{len(names)} names for {len(pos)} positions")
    tips = [str(t) for t in tips] if tips is not None else names
    if len(tips) != len(names):
        raise ValueError(f"{len(tips)} tips for {len(names)} names")
    if hover:
        _REGISTRY.setdefault(ax, []).append(_Named(axis, pos, tips))
    if not names:
        return
    target = ax.xaxis if axis == "x" else ax.yaxis
    depth, groups = stage_groups(names, max_labels)
    centers = [(pos[g.start] + pos[g.stop - 1]) / 2 for g in groups]
    labels = [short_label(g.label, limit) for g in groups]
    upright = axis == "x" and len(labels) <= 12  # few labels: horizontal if they fit side by side
    rot = 90 if axis == "x" and not upright else 0
    target.set_ticks(centers, labels, fontsize=fontsize, rotation=rot)
    if upright:
        _UPRIGHT.add(target)
    if depth is not None:  # grouped: a short mark at each position, a faint line between groups
        # one Line2D of markers, not hundreds of minor Tick objects (each a line and two texts)
        marks = dict(ls="none", color="0.35", ms=3, clip_on=False, zorder=1)
        if axis == "x":
            ax.plot(pos, np.zeros(len(pos)), marker="|", transform=ax.get_xaxis_transform(), **marks)
        else:
            ax.plot(np.zeros(len(pos)), pos, marker="_", transform=ax.get_yaxis_transform(), **marks)
        if separators and len(groups) > 1:
            line = ax.axvline if axis == "x" else ax.axhline
            for g in groups[1:]:
                line((pos[g.start - 1] + pos[g.start]) / 2, color="0.55", lw=0.5, alpha=0.5, zorder=0)
        target.set_tick_params(which="major", length=6)


def _overlapping(boxes: list[Any], pad: float) -> list[bool]:
    """Greedy keep-mask: a box is kept when it does not touch the last kept one (boxes sorted
    along the axis)."""
    keep, last = [], None
    for b in boxes:
        ok = last is None or not (b.x0 < last.x1 + pad and b.x1 + pad > last.x0
                                  and b.y0 < last.y1 + pad and b.y1 + pad > last.y0)
        keep.append(ok)
        if ok:
            last = b
    return keep


def drawn_tick_labels(axis: Any) -> list[Any]:
    """The tick labels of a matplotlib ``Axis`` that a draw shows: visible, not empty, and at a
    tick inside the view interval (ticks outside it keep stale labels that are never drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    out = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        if not lo - span <= tick.get_loc() <= hi + span:
            continue
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text():
                out.append(label)
    return out


def finish_figure(fig: Any, *, pad: float = 1.0, rounds: int = 3) -> None:
    """Lay the figure out and hide every tick label that would overlap the one before it.

    Runs on every axis of every axes (labels set by :func:`label_positions` or by anyone else),
    so a figure passed through it has no two visible tick labels touching. Repeats the layout
    while hiding changes it (a constrained layout may move an axes once labels are hidden).
    """
    while getattr(fig, "figure", fig) is not fig:  # a SubFigure (drawing into a user's axes): its root
        fig = fig.figure
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure: measure text with Agg
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    for _ in range(rounds + 1):
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        changed = False
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                labels = drawn_tick_labels(axis)
                if len(labels) < 2:
                    continue
                boxes = [t.get_window_extent(renderer) for t in labels]
                key = (lambda b: b.x0) if axis is ax.xaxis else (lambda b: b.y0)
                order = sorted(range(len(labels)), key=lambda i: key(boxes[i]))
                keep = _overlapping([boxes[i] for i in order], pad)
                if axis in _UPRIGHT:  # decided once: horizontal if all fit, else vertical
                    _UPRIGHT.discard(axis)
                    if not all(keep):
                        axis.set_tick_params(which="major", labelrotation=90)
                        changed = True
                        continue
                for i, k in zip(order, keep, strict=True):
                    if not k:
                        labels[i].set_visible(False)
                        changed = True
        if not changed:
            return


def _clip(a: float, b: float, lo: float, hi: float) -> tuple[float, float]:
    a, b = sorted((a, b))
    return max(a, lo), min(b, hi)


def hover_regions(fig: Any) -> list[tuple[float, float, float, float, str]]:
    """Rectangles ``(left, top, width, height, name)`` in fractions of the figure (origin top
    left), one per position registered with :func:`label_positions`, spanning the axes across
    the position's slot (half-way to each neighbour). Call after the figure was drawn."""
    out: list[tuple[float, float, float, float, str]] = []
    to_fig = fig.transFigure.inverted()
    for ax in fig.axes:
        for named in _REGISTRY.get(ax, []):
            if not len(named.positions):
                continue
            box = ax.get_window_extent()
            (ax0, ay0), (ax1, ay1) = to_fig.transform([[box.x0, box.y0], [box.x1, box.y1]])
            p = named.positions
            mids = (p[1:] + p[:-1]) / 2
            lo = np.concatenate([[p[0] - (mids[0] - p[0] if len(p) > 1 else 0.5)], mids])
            hi = np.concatenate([mids, [p[-1] + (p[-1] - mids[-1] if len(p) > 1 else 0.5)]])
            for a, b, tip in zip(lo, hi, named.tips, strict=True):
                if named.axis == "x":
                    (fa, _), (fb, _) = to_fig.transform(ax.transData.transform([[a, 0], [b, 0]]))
                    fa, fb = _clip(fa, fb, ax0, ax1)
                    if fb - fa <= 0:
                        continue
                    out.append((fa, 1 - ay1, fb - fa, ay1 - ay0, tip))
                else:
                    (_, fa), (_, fb) = to_fig.transform(ax.transData.transform([[0, a], [0, b]]))
                    fa, fb = _clip(fa, fb, ay0, ay1)
                    if fb - fa <= 0:
                        continue
                    out.append((ax0, 1 - fb, ax1 - ax0, fb - fa, tip))
    return out
