"""Permutable spaces, part 2 — the union-find over feature dimensions (:class:`_UF`) and the
features, parameter slices and spaces it joins.

Split out of :mod:`netxray.capture.structure._spaces`, which re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIXED = -1  # a segment of features no permutation may move (the model's own input features)


@dataclass
class _Feat:
    """Feature structure of a tensor: the feature dimension ``dim`` and its segments
    ``[(space, block)]`` in order (space FIXED: ``block`` fixed features)."""

    dim: int
    segs: list[tuple[int, int]]
    # a second permutable axis on the *last* dimension: the hidden units of a Linear applied over
    # an axis other than the features (MLP-Mixer's token mixing: fc1 over the tokens). It is
    # followed only through element-wise maps into the Linear that reads it (fc2); any other op
    # freezes it (see find_axes)
    extra: int | None = None
    # > 1: the features are folded with dimensions before them into ``dim`` (MobileViT's unfold
    # into patches: (B, C, H, W) → (B·C·n_h, p_h, n_w, p_w)): along ``dim`` the whole layout
    # repeats ``outer`` times. Only reshapes, transposes and element-wise maps may touch it.
    outer: int = 1


@dataclass
class _Param:
    """A parameter read directly, possibly reshaped: ``dims[i]``: the stored tensor's dimension
    behind dimension i of the current value (None: a new dimension of size 1 or an expanded one)."""

    key: str
    dims: list[int | None]
    # other parameters whose entries move with the stored rows (dim 0) of this one: the gain of
    # a weight standardised with F.batch_norm (timm's ScaledStdConv2d), as (key, stored dim)
    companions: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _Space:
    size: int
    members: list[tuple[str, Any]] = field(default_factory=list)  # ("w"|"r"|"n", Member)
    writers: list[str] = field(default_factory=list)  # module paths / param keys, forward order
    readers: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    joined: set[str] = field(default_factory=set)  # "add" | "mul" | "cat-token" | "norm" | …
    acts: list[Any] = field(default_factory=list)  # element-wise ops on the way (for rescaling)
    maxpool: bool = False
    bn: str | None = None
    order: int = 0
    # grouped convolutions: the features fall into ``groups`` contiguous blocks (a channel moves
    # only inside its block); ``glinks``: spaces whose blocks move with this one's (a grouped
    # conv's input and output); ``gfixed``: why its blocks cannot move at all
    groups: int = 1
    glinks: list[int] = field(default_factory=list)
    gfixed: list[str] = field(default_factory=list)
    token: bool = False  # written by a Linear over tokens (MLP-Mixer's token-mixing hidden units)


class _UF:
    """Union-find over feature spaces, plus two refinements a space may need once it meets a
    tensor whose features are laid out differently: ``refine`` (split it into consecutive unit
    ranges, each its own space: a residual add of a 16-channel stream with GhostNet's
    cat([P, P]) of two 8-channel halves, a chunk of the channel axis) and ``coarsen`` (let f
    consecutive units move as one: ShuffleNet's channel pairs after a shuffle). Both restrict the
    space's permutations to a subgroup, so every claim stays sound; values recorded before hold
    the old space and are rewritten by ``resolve`` when read."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.spaces: list[_Space] = []
        self.redirect: dict[int, list[tuple[int, int]]] = {}  # old root → [(new space, block factor)]

    def new(self, size: int, order: int) -> int:
        self.parent.append(len(self.parent))
        self.spaces.append(_Space(size, order=order))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int, how: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            self.spaces[ra].joined.add(how)
            return
        if self.spaces[ra].size != self.spaces[rb].size:  # pragma: no cover - callers check sizes
            raise ValueError("feature spaces of different sizes merged")
        keep, gone = (ra, rb) if self.spaces[ra].order <= self.spaces[rb].order else (rb, ra)
        self.parent[gone] = keep
        s, t = self.spaces[keep], self.spaces[gone]
        s.members += t.members
        s.writers += [w for w in t.writers if w not in s.writers]
        s.readers += [r for r in t.readers if r not in s.readers]
        s.frozen += t.frozen
        s.joined |= t.joined | {how}
        s.acts += t.acts
        s.maxpool |= t.maxpool
        s.bn = s.bn or t.bn
        s.glinks += t.glinks
        s.gfixed += t.gfixed
        if s.groups != t.groups and 1 not in (s.groups, t.groups):
            s.frozen.append(f"joins channels grouped in {s.groups} and in {t.groups} groups")
        s.groups = max(s.groups, t.groups)

    def space(self, i: int) -> _Space:
        return self.spaces[self.find(i)]

    def resolve(self, segs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for s, b in segs:
            if s == FIXED:
                out.append((s, b))
                continue
            r = self.find(s)
            if r in self.redirect:
                out += self.resolve([(t, b * f) for t, f in self.redirect[r]])
            else:
                out.append((r, b))
        return out

    def _replace(self, s: int, pieces: list[tuple[int, int, int]], order: int) -> list[int] | None:
        """Replace root ``s`` by new spaces, one per (first unit, units, factor f): the new space
        has units/f units, each owning f consecutive old units. None when a member cannot be cut
        (repeated segments, a grouped convolution's columns) or the space is grouped."""
        from netxray.capture.structure._parts import Member

        sp = self.spaces[s]
        if sp.groups > 1 or sp.glinks or any(m.segments != 1 or m.groups != 1 for _, m in sp.members):
            return None
        new = []
        for u0, n, f in pieces:
            t = self.new(n // f, order)
            tp = self.spaces[t]
            tp.members = [(role, Member(m.key, m.dim, block=m.block * f, offset=m.offset + u0 * m.block,
                                        match=m.match)) for role, m in sp.members]
            tp.writers, tp.readers, tp.frozen = list(sp.writers), list(sp.readers), list(sp.frozen)
            tp.joined, tp.acts, tp.maxpool, tp.bn = set(sp.joined), list(sp.acts), sp.maxpool, sp.bn
            tp.token, tp.order = sp.token, sp.order
            new.append(t)
        self.redirect[s] = [(t, f) for t, (_, _, f) in zip(new, pieces, strict=True)]
        sp.members, sp.writers, sp.readers = [], [], []
        return new

    def refine(self, s: int, cuts: list[int], order: int) -> bool:
        """Split space ``s`` at the given unit positions (0 < cut < size)."""
        s = self.find(s)
        size = self.spaces[s].size
        bounds = [0, *sorted(set(c for c in cuts if 0 < c < size)), size]
        if len(bounds) == 2:
            return True
        return self._replace(s, [(a, b - a, 1) for a, b in zip(bounds, bounds[1:], strict=False)], order) is not None

    def coarsen(self, s: int, f: int, order: int) -> bool:
        """Let every f consecutive units of space ``s`` move as one unit."""
        s = self.find(s)
        if f == 1:
            return True
        if self.spaces[s].size % f:
            return False
        return self._replace(s, [(0, self.spaces[s].size, f)], order) is not None

    def seg_len(self, s: int, b: int) -> int:
        return b if s == FIXED else self.space(s).size * b

    def cut(self, segs: list[tuple[int, int]], pos: int, order: int) -> list[tuple[int, int]] | None:
        """``segs`` with a segment boundary at feature position ``pos`` (refining the space it
        falls in); None when it cannot be made."""
        at = 0
        segs = self.resolve(segs)
        for k, (s, b) in enumerate(segs):
            n = self.seg_len(s, b)
            if at < pos < at + n:
                if s == FIXED:  # fixed features are cut freely
                    return [*segs[:k], (FIXED, pos - at), (FIXED, at + n - pos), *segs[k + 1:]]
                if (pos - at) % b or not self.refine(s, [(pos - at) // b], order):
                    return None
                return self.resolve(segs)
            at += n
        return self.resolve(segs)

    def sub(self, segs: list[tuple[int, int]], lo: int, hi: int, order: int) -> list[tuple[int, int]] | None:
        """The segments covering feature positions [lo, hi), cutting spaces where needed."""
        for p in (lo, hi):
            segs = self.cut(segs, p, order)
            if segs is None:
                return None
        out, at = [], 0
        for s, b in segs:
            n = self.seg_len(s, b)
            if lo <= at and at + n <= hi:
                if s == FIXED and out and out[-1][0] == FIXED:
                    out[-1] = (FIXED, out[-1][1] + n)
                else:
                    out.append((s, b))
            at += n
        return out

    def match(self, f1: list[tuple[int, int]], f2: list[tuple[int, int]], how: str, order: int) -> list[tuple[int, int]] | None:
        """Make two layouts of one feature axis agree — the same space at the same positions with
        the same block — by cutting, coarsening and merging spaces; the common layout, or None
        (fixed features against permutable ones, blocks that do not divide)."""
        for _ in range(4 * (len(f1) + len(f2)) + 8):
            f1, f2 = self.resolve(f1), self.resolve(f2)
            at = 0
            changed = False
            bounds1, bounds2 = set(), set()
            for segs, bounds in ((f1, bounds1), (f2, bounds2)):
                at = 0
                for s, b in segs:
                    at += self.seg_len(s, b)
                    bounds.add(at)
            for p in sorted(bounds1 ^ bounds2):
                for which in (1, 2):
                    segs = f1 if which == 1 else f2
                    new = self.cut(segs, p, order)
                    if new is None:
                        return None
                    if new != segs:
                        changed = True
                    if which == 1:
                        f1 = new
                    else:
                        f2 = new
            if changed:
                continue
            if len(f1) != len(f2):
                return None
            for (s1, b1), (s2, b2) in zip(f1, f2, strict=True):
                if (s1 == FIXED) != (s2 == FIXED):
                    return None
                if s1 == FIXED or (self.find(s1) == self.find(s2) and b1 == b2):
                    continue
                if b1 != b2:
                    lo, hi = (s1, b1), (s2, b2)
                    if b1 > b2:
                        lo, hi = hi, lo
                    if hi[1] % lo[1] or not self.coarsen(lo[0], hi[1] // lo[1], order):
                        return None
                else:
                    self.union(s1, s2, how)
                changed = True
                break
            if not changed:
                return self.resolve(f1)
        return None
