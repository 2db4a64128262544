"""Permutable axes of any model, read from a dataflow graph of one forward pass (lens 4's finder
for models that are not built-in).

The finder works on a small op list (:class:`GNode`) that adapters fill from a recorded graph:
inputs, parameters read directly (``x + self.pos_embedding``), module calls (a Linear, a
BatchNorm, an activation …), function/method calls (add, mul, cat, view, permute, mean …) and the
output, each with the shape of the tensor it produced.

Every tensor that flows through the graph gets a *feature structure*: which of its dimensions
carries features, and which *feature spaces* those features belong to (a list of segments, one
per concatenated part, each a space and a block length). A Linear/Conv/Embedding output starts a
new space; element-wise maps, BatchNorm, LayerNorm/RMSNorm (permutation-equivariant),
pooling, flatten (blocks of H·W), transposes and token-wise reshapes carry the structure along;
``a + b`` and ``a * b`` of two featured tensors merge their spaces (a residual add makes one
*residual stream* of every writer and reader; a gate·up product makes the gate and up rows move
together; a squeeze-and-excitation scale joins the channels it scales); ``cat`` along the
feature axis keeps each part's own space. Every parameter slice that touches a space becomes a
member of it: the rows that write it, the columns that read it, the norm/BN parameters and
running statistics on the way, embeddings and parameters added or multiplied in.

A space is *frozen* — it is no symmetry — when it reaches something that does not commute with a
permutation of its features: the model's output, an op the finder does not understand (a split
of the feature axis into heads, a matmul, an unknown layer type), a tensor of fixed features
added to it. Attention heads, which live inside such splits, come from the attention modules
themselves (:func:`head_axes`). Everything is a *claim*: :mod:`netxray.lenses.symmetry` verifies
each axis by applying a random element of it to a float64 copy and comparing outputs, and drops
the axes that fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["GNode", "Found", "find_axes", "head_axes", "recorded_graph"]


@dataclass
class GNode:
    """One op of a recorded forward pass. ``op``: "input" | "param" | "module" | "call" |
    "output"; ``target``: the module path ("module"), the state-dict key ("param"), the function
    or method name ("call"); ``args``/``kwargs`` hold other GNodes, constants and nested
    lists; ``shape``: the output tensor's shape (None when it is not a tensor)."""

    name: str
    op: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None


# ---------------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------------


def _fn_name(target: Any) -> str:
    if isinstance(target, str):
        name = target
    else:
        name = getattr(target, "__name__", str(target))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith(("i", "r")) and name[1:] in ("add", "sub", "mul", "truediv", "matmul"):
            name = name[1:]
    if name == "truediv":
        name = "div"
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in-place variants behave like their pure forms here
    return name


def _atomic(mod: nn.Module) -> bool:
    """Module calls read as one op (their insides are skipped): the standard layers whose
    ``forward`` is the library's own (a subclass that overrides it, e.g. a LayerNorm over NCHW
    maps, is read through the functions it calls), Hugging Face Conv1D, RMSNorm classes and
    parameter-free activation classes."""
    from netxray.capture.structure._parts import _module_kind

    std = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.GroupNorm, nn.Embedding,
           nn.MultiheadAttention, nn.Flatten, nn.Softmax, nn.LogSoftmax, nn.LSTM, nn.GRU, *_POOL_MODULES)
    if isinstance(mod, nn.GroupNorm):
        return True  # subclasses (timm's GroupNorm1) still normalise channel groups of axis 1
    for t in (*std, nn.modules.batchnorm._BatchNorm):
        if isinstance(mod, t):
            return type(mod).forward is t.forward or type(mod).__module__.startswith("torch.nn")
    if _is_conv1d_hf(mod) or _is_rmsnorm(mod) or _module_kind(mod) is not None:
        return True
    name = type(mod).__name__
    return not any(True for _ in mod.parameters()) and any(
        w in name for w in ("Activation", "GELU", "SiLU", "Swish")) and not list(mod.children())


_INDEX_NAMES = {"None": None, "Ellipsis": Ellipsis}


def _parse_index(text: str) -> Any:
    """The index of a ``x[...]`` call from its recorded repr, when it is made of ints, slices,
    None and Ellipsis only (parsed, never evaluated); None when it is anything else."""
    import ast

    def conv(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, int)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.Name) and node.id in _INDEX_NAMES:
            return _INDEX_NAMES[node.id]
        if isinstance(node, ast.Tuple):
            return tuple(conv(e) for e in node.elts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "slice" \
                and not node.keywords and len(node.args) <= 3:
            return slice(*[conv(a) for a in node.args])
        raise ValueError(text)

    try:
        return conv(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError):
        return _UNPARSED


_UNPARSED = object()
_ALIASES = {"to", "contiguous", "float", "type_as", "type", "detach", "clone", "double", "half"}


def recorded_graph(model: nn.Module, mg: Any) -> list[GNode]:
    """Op list from a :class:`netxray.capture.graph.ModelGraph` (one real forward pass): the
    calls of atomic modules (see :func:`_atomic`) as single ops, every other module read
    through the torch functions it called."""
    from netxray.capture.graph import _perm

    mods = dict(model.named_modules())
    atomic_ids: set[int] = set()
    inside: dict[int, bool] = {}

    def in_atomic(nid: int | None) -> bool:
        chain = []
        while nid is not None and nid not in inside:
            chain.append(nid)
            nid = mg.nodes[nid].parent
        res = inside.get(nid, False) if nid is not None else False
        for c in reversed(chain):
            res = res or c in atomic_ids
            inside[c] = res
        return res

    for n in mg.nodes:
        if n.kind == "module" and n.name in mods and _atomic(mods[n.name]):
            atomic_ids.add(n.id)
    vnode: dict[int, GNode] = {}
    out: list[GNode] = []

    def arg(v: int) -> GNode:
        g = vnode.get(v)
        prod = mg.nodes[mg.values[v].producer]
        while g is None and prod.kind == "op" and prod.name in _ALIASES and prod.inputs \
                and tuple(mg.values[prod.inputs[0]].shape) == tuple(mg.values[v].shape):
            # ``x.to(dtype)`` inside an atomic module returns x itself when the dtype agrees: the
            # recorder gives the same tensor a new value, which the caller then reads
            v = prod.inputs[0]
            g = vnode.get(v)
            prod = mg.nodes[mg.values[v].producer]
        if g is None:  # a value made inside something skipped and used outside: unknown origin
            g = GNode(f"v{v}", "input", None, shape=tuple(mg.values[v].shape))
            vnode[v] = g
            out.append(g)
        return g

    for n in sorted(mg.nodes, key=lambda n: (n.start, n.id)):
        if n.kind in ("input", "constant"):
            for v in n.outputs:
                vnode[v] = GNode(n.name, "input", n.name, shape=tuple(mg.values[v].shape))
                out.append(vnode[v])
            continue
        if n.kind == "param":
            for v in n.outputs:
                vnode[v] = GNode(n.name, "param", n.name, shape=tuple(mg.values[v].shape))
                out.append(vnode[v])
            continue
        if n.kind == "module":
            if n.id not in atomic_ids or (n.parent is not None and in_atomic(n.parent)):
                continue
            args = tuple(arg(v) for v in n.inputs)
            shape = tuple(mg.values[n.outputs[0]].shape) if n.outputs else None
            g = GNode(n.name, "module", n.name, args, {}, shape)
            out.append(g)
            if len(n.outputs) == 1 and not isinstance(mods[n.name], (nn.MultiheadAttention, nn.LSTM, nn.GRU)):
                vnode[n.outputs[0]] = g  # (attention returns (output, weights or None): indexed below)
            else:
                for k, v in enumerate(n.outputs):
                    gi = GNode(f"{n.name}[{k}]", "call", "getitem", (g, k), {}, tuple(mg.values[v].shape))
                    out.append(gi)
                    vnode[v] = gi
            continue
        # a function call
        if in_atomic(n.parent):
            continue
        args = tuple(arg(v) for v in n.inputs)
        name = n.name
        kwargs: dict[str, Any] = {}
        in_shape = mg.values[n.inputs[0]].shape if n.inputs else ()
        extra: tuple[Any, ...] = ()
        if name in ("permute", "transpose", "swapaxes", "swapdims"):
            perm = _perm(n, len(in_shape)) if name != "swapdims" else None
            if perm is None:
                name = "unknown-permute"
            else:
                name, extra = "permute", (tuple(perm),)
        elif name in ("cat", "concat", "concatenate"):
            d = n.args.get("dim", 0)
            args, kwargs = (args,), {"dim": int(d) if isinstance(d, int) else 0}
        elif name == "getitem":
            raw = (n.args.get("args") or [None])[0]
            idx = _parse_index(raw) if isinstance(raw, str) else _UNPARSED
            if idx is _UNPARSED:
                # an index tensor (or something unparsed): recorded as its own input
                extra = ()
                name = "getitem-tensor" if len(args) > 1 else "getitem-unknown"
            else:
                extra = (idx,)
        elif name in _REDUCE:
            rest = [a for a in n.args.get("args", []) if isinstance(a, int) and not isinstance(a, bool)]
            dims = n.args.get("dim", n.args.get("dims", rest if len(rest) > 1 else (rest[0] if rest else None)))
            kwargs = {"dim": dims}
        for k, v in enumerate(n.outputs or []):
            shape = tuple(mg.values[v].shape)
            g = GNode(name if len(n.outputs) == 1 else f"{name}", "call", name,
                      (args[0], *extra, *args[1:]) if extra and args else args, dict(kwargs), shape)
            if len(n.outputs) > 1:
                g.kwargs["_out"] = k
                g.kwargs["_shapes"] = [tuple(mg.values[o].shape) for o in n.outputs]
            out.append(g)
            vnode[v] = g
    outs = tuple(arg(v) for v in mg.outputs)
    out.append(GNode("output", "output", None, outs))
    return out


# ---------------------------------------------------------------------------------------------
# feature structures
# ---------------------------------------------------------------------------------------------

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


_ELEMENTWISE = {
    "relu": "homogeneous", "leaky_relu": "homogeneous", "prelu": None, "tanh": "odd",
    "softsign": "odd", "neg": "odd", "hardtanh": None,
    "gelu": "other", "silu": "other", "sigmoid": "other", "elu": "other", "celu": "other",
    "selu": "other", "softplus": "other", "mish": "other", "hardswish": "other",
    "hardsigmoid": "other", "relu6": "other", "logsigmoid": "other", "erf": "other",
    "exp": "other", "log": "other", "sqrt": "other", "rsqrt": "other", "abs": "other",
    "pow": "other", "square": "other", "reciprocal": "other", "sin": "other", "cos": "other",
    "softmax": "other", "log_softmax": "other", "clamp": "other", "clip": "other",
    "dropout": "identity", "contiguous": "identity", "clone": "identity", "detach": "identity",
    "to": "identity", "float": "identity", "double": "identity", "half": "identity",
    "bfloat16": "identity", "type_as": "identity", "type": "identity", "alpha_dropout": "identity",
    "identity": "identity",
    # stochastic depth / drop path: the identity in eval mode, a per-sample factor in training
    "stochastic_depth": "identity", "drop_path": "identity",
}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "norm", "logsumexp", "prod",
           "var_mean", "std_mean"}
_BINARY = {"add": "add", "sub": "add", "mul": "mul", "div": "mul", "rsub": "add",
           "maximum": "other", "minimum": "other", "where": "other"}
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_POOL_FUNCS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
               "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
               # resizing acts on the spatial axes of each channel alike (a segmentation head
               # resizes its features and logits to the input's size)
               "interpolate", "upsample", "upsample_bilinear", "upsample_nearest"}
_SHAPE_ONLY = {"size", "dim", "getattr", "numel", "eq", "ne", "lt", "gt", "le", "ge", "_assert",
               "floordiv", "ndimension", "is_floating_point", "shape", "device", "dtype",
               "new_zeros", "new_ones", "zeros_like", "ones_like", "full_like", "arange"}


def _is_conv1d_hf(mod: nn.Module) -> bool:
    # Hugging Face's GPT-2 style Conv1D: a Linear whose weight is stored (in, out)
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "nf") and getattr(mod, "weight", None) is not None


def _is_rmsnorm(mod: nn.Module) -> bool:
    if hasattr(nn, "RMSNorm") and isinstance(mod, nn.RMSNorm):
        return True
    # the RMSNorm classes of Hugging Face and timm: one 1-D weight, normalising the last axis
    name = type(mod).__name__
    return "RMSNorm" in name and isinstance(getattr(mod, "weight", None), torch.Tensor)


@dataclass
class Found:
    """What :func:`find_axes` read: the spaces (union-find roots), which keys each touches, and
    notes on the parts it could not follow."""

    spaces: list[_Space]
    notes: list[str]
    module_calls: dict[str, int]
    links: list[list[int]] = field(default_factory=list)  # per space: indices of spaces its groups move with


def find_axes(model: nn.Module, graph: list[GNode]) -> Found:
    """Run the feature-space propagation over ``graph`` (see the module docstring)."""
    from netxray.capture.structure._parts import Member, _module_kind

    mods = dict(model.named_modules())
    state_shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    uf = _UF()
    val: dict[int, Any] = {}
    notes: list[str] = []
    calls: dict[str, int] = {}
    out_space: dict[str, int] = {}  # module path → the space its output rows write (re-used modules)

    def freeze_val(v: Any, reason: str) -> None:
        for s in _spaces_of(v):
            uf.space(s).frozen.append(reason)

    def _spaces_of(v: Any) -> list[int]:
        if isinstance(v, _Feat):
            return [s for s, _ in v.segs if s != FIXED] + ([v.extra] if v.extra is not None else [])
        if isinstance(v, (list, tuple)):
            return [s for x in v for s in _spaces_of(x)]
        return []

    def value(a: Any) -> Any:
        if isinstance(a, GNode):
            v = val.get(id(a))
            if isinstance(v, _Feat) and uf.redirect:
                v = _Feat(v.dim, uf.resolve(v.segs), v.extra, v.outer)
            return v
        if isinstance(a, (list, tuple)):
            return [value(x) for x in a]
        return a

    def tensor_args(n: GNode) -> list[GNode]:
        res = []

        def walk(a: Any) -> None:
            if isinstance(a, GNode):
                res.append(a)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    walk(x)
            elif isinstance(a, dict):
                for x in a.values():
                    walk(x)

        walk(n.args)
        walk(n.kwargs)
        return res

    def length(f: _Feat, sp: bool = True) -> int:
        return sum((uf.space(s).size * b if s != FIXED else b) for s, b in f.segs)

    def add_members(f: _Feat, key: str, dim: int, role: str, who: str, extra_block: int = 1) -> None:
        off = 0
        for s, b in f.segs:
            if s == FIXED:
                off += b * extra_block
                continue
            sp = uf.space(s)
            sp.members.append((role, Member(key, dim, block=b * extra_block, offset=off)))
            if role == "w" and who not in sp.writers:
                sp.writers.append(who)
            if role == "r" and who not in sp.readers:
                sp.readers.append(who)
            off += sp.size * b * extra_block

    def new_space(size: int, order: int, who: str) -> _Feat:
        s = uf.new(size, order)
        return _Feat(-1, [(s, 1)])

    def ndim(n: GNode) -> int:
        return len(n.shape) if n.shape is not None else 0

    def norm_dim(d: int, nd: int) -> int:
        return d + nd if d < 0 else d

    for order, n in enumerate(graph):
        if n.op == "input":
            val[id(n)] = None
            continue
        if n.op == "param":
            shape = state_shapes.get(n.target)
            val[id(n)] = _Param(n.target, list(range(len(shape)))) if shape is not None else None
            continue
        if n.op == "output":
            for t in tensor_args(n):
                freeze_val(value(t), "reaches the model's output")
            continue
        ins = [value(t) for t in tensor_args(n)]
        extra = _extra_step(n, mods, ins, uf, add_members)
        if n.op == "module":
            path = n.target
            calls[path] = calls.get(path, 0) + 1
            mod = mods[path]
            x = ins[0] if ins else None
            val[id(n)] = _module_rule(n, path, mod, x, ins, uf, order, add_members, new_space,
                                      freeze_val, length, out_space, notes)
        else:
            val[id(n)] = _call_rule(n, ins, uf, order, add_members, freeze_val, length, state_shapes, notes,
                                    tensor_args, value)
        out = val[id(n)]
        folded = [v for v in ins if isinstance(v, _Feat) and v.outer > 1]
        if folded:
            ok = (n.op == "call" and (n.target in _FOLD_OK or (n.target in _ELEMENTWISE and len(ins) == 1))) \
                or (n.op == "module" and _module_kind(mods[n.target]) is not None) \
                or (n.op == "module" and isinstance(mods[n.target], (nn.Linear, nn.LayerNorm))
                    and all(_whole_fold(v, len(n.args[0].shape) if getattr(n.args[0], "shape", None) else 0)
                            for v in folded))
            if not ok:
                for v in folded:
                    freeze_val(v, f"channels folded with the batch or patch axes (an unfold into patches, as in "
                               f"MobileViT) reach {n.target!s}, which is not followed in that layout")
                val[id(n)] = out = None
        if extra is not None and isinstance(out, _Feat) and out.extra is None:
            val[id(n)] = _Feat(out.dim, out.segs, extra, out.outer)  # carried through an element-wise map
    alias: dict[str, str] = {}  # tied parameters stored under several keys: one name for all
    first: dict[int, str] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        alias[k] = first.setdefault(id(v), k)
    _join_shared(uf, alias)
    roots = sorted({uf.find(i) for i in range(len(uf.parent))}, key=lambda r: uf.spaces[r].order)
    pos = {r: i for i, r in enumerate(roots)}
    links = [sorted({pos[uf.find(t)] for t in uf.spaces[r].glinks} - {i}) for i, r in enumerate(roots)]
    return Found([uf.spaces[r] for r in roots], notes, calls, links)


def _join_shared(uf: _UF, alias: dict[str, str]) -> None:
    """Spaces that own the same slice of one tensor are one space: a tensor has one order of
    its rows, whatever the number of times it is read or written. A Linear(16, 16) called twice
    reads its input space and its own output space through the same columns, so both spaces
    (and the rows writing the second) move by one permutation: W → PWPᵀ. Tied weights (a
    decoder reading ``enc.weight.t()``) likewise. Two spaces owning overlapping slices of one
    tensor in different layouts (other blocks, offsets or sizes) cannot share a permutation:
    both are frozen, with the reason. A tensor stored under several keys (an LM head tied to
    the embedding) is one tensor (``alias``: key → the first key of its storage)."""
    def roots() -> list[int]:
        return sorted({uf.find(i) for i in range(len(uf.parent))})

    by_dim: dict[tuple[str, int], list[tuple[int, Any]]] = {}
    for r in roots():
        for _, m in uf.spaces[r].members:
            by_dim.setdefault((alias.get(m.key, m.key), m.dim), []).append((r, m))
    clash: list[tuple[int, int, str]] = []
    for (key, dim), entries in by_dim.items():
        for i, (ra, ma) in enumerate(entries):
            for rb, mb in entries[i + 1:]:
                a, b = uf.find(ra), uf.find(rb)
                if a == b:
                    continue
                lay_a = (ma.offset, ma.block, ma.segments, ma.groups, ma.row_dim)
                lay_b = (mb.offset, mb.block, mb.segments, mb.groups, mb.row_dim)
                if lay_a == lay_b and uf.spaces[a].size == uf.spaces[b].size:
                    uf.union(a, b, "shared")
                    continue
                span_a = ma.segments * uf.spaces[a].size * ma.block
                span_b = mb.segments * uf.spaces[b].size * mb.block
                if ma.offset < mb.offset + span_b and mb.offset < ma.offset + span_a:
                    clash.append((a, b, f"{key}[dim {dim}]"))
    for a, b, what in clash:
        for r in (a, b):
            uf.space(r).frozen.append(f"shares {what} with another feature space laid out differently "
                                      "(shared weights read in two layouts)")


def _extra_step(n: GNode, mods: dict[str, nn.Module], ins: list[Any], uf: _UF,
                add_members: Callable[..., None]) -> int | None:
    """What op ``n`` does to the token-mixing hidden units (``_Feat.extra``) of its inputs: an
    element-wise map of the same shape carries them (returned: the space to carry), a Linear over
    the last axis reads them (its columns join the space), anything else freezes them."""
    from netxray.capture.structure._parts import Member, _module_kind

    carried = None
    for v in ins:
        if not (isinstance(v, _Feat) and v.extra is not None):
            continue
        sp = uf.space(v.extra)
        xin = next((a for a in n.args if isinstance(a, GNode)), None)
        same = xin is not None and xin.shape is not None and n.shape == xin.shape
        mod = mods.get(n.target) if n.op == "module" else None
        if mod is not None and _module_kind(mod) is not None and same and len(ins) == 1:
            sp.acts.append(mod)
            carried = v.extra
        elif n.op == "call" and n.target in _ELEMENTWISE and same \
                and len([u for u in ins if isinstance(u, _Feat)]) == 1:
            kind = _ELEMENTWISE[n.target]
            if kind != "identity" or n.target == "dropout":
                sp.acts.append((kind or "other", n.target, _func_of(n.target, n)))
            carried = v.extra
        elif isinstance(mod, nn.Linear) and len(ins) == 1:
            sp.members.append(("r", Member(f"{n.target}.weight", 1)))
            if n.target not in sp.readers:
                sp.readers.append(n.target)
        else:
            what = f"{n.target} ({type(mod).__name__})" if mod is not None else f"`{n.target}`"
            sp.frozen.append(f"the hidden units of a Linear over tokens pass through {what}")
    return carried


def _fix_dim(f: _Feat, nd: int) -> _Feat:
    return _Feat(f.dim + nd if f.dim < 0 else f.dim, f.segs, outer=f.outer)


_FOLD_OK = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "movedim", "swapaxes",
            "contiguous", "view_as", "reshape_as"}


def _strided(x: _Feat, a: list[int], b: list[int], gi: list[int], gj: list[int], uf: _UF) -> _Feat | None:
    """The feature structure after a reshape of the dimensions ``gi`` (shape ``a``) into ``gj``
    (shape ``b``, same product), by strides: within the flattened group, unit u of a part with
    block ``bl`` starts at ``o·L·T_a + (P + u·bl)·T_a`` (T_a: the product of the input dimensions
    after the feature one, L: the feature length, o < outer). It lands in output dimension j
    when T_b (the product of the output dimensions after j) divides every bl·T_a — each unit then
    owns bl·T_a/T_b consecutive entries of dimension j — and the whole layout fits whole into
    dimension j's span (the rest becomes ``outer`` repeats along it). None when no dimension
    qualifies (a split of the features, e.g. into heads)."""
    if any(sp == FIXED for sp, _ in x.segs):
        return None
    L = sum(uf.seg_len(sp, bl) for sp, bl in x.segs)
    T_a = math.prod(a[d] for d in gi if d > x.dim)
    for j in gj:
        T_b = math.prod(b[d] for d in gj if d > j)
        span = T_b * b[j]
        if all((bl * T_a) % T_b == 0 for _, bl in x.segs) and span % (L * T_a) == 0 and L * T_a <= span:
            return _Feat(j, [(sp, bl * T_a // T_b) for sp, bl in x.segs], outer=span // (L * T_a))
    return None


def _whole_fold(x: Any, in_nd: int) -> bool:
    """Features folded whole into the last axis: one space repeated ``outer`` times along it
    (Swin's patch merging: (B, H, W, C) → (B, H/2, W/2, 4·C), the 2×2 neighbours' channels side
    by side). A LayerNorm over that axis and a Linear reading it treat the repeats alike."""
    return (isinstance(x, _Feat) and x.outer > 1 and x.dim == in_nd - 1 and len(x.segs) == 1
            and x.segs[0][0] != FIXED and x.extra is None)  # fmt: skip


def _fold_members(x: _Feat, uf: _UF, key: str, dim: int, role: str, who: str) -> None:
    """The tensor ``key`` along ``dim`` holds the folded space's ``outer`` repeats (segments)."""
    from netxray.capture.structure._parts import Member

    s, b = x.segs[0]
    sp = uf.space(s)
    sp.members.append((role, Member(key, dim, block=b, segments=x.outer)))
    group = sp.readers if role == "r" else sp.writers if role == "w" else None
    if group is not None and who not in group:
        group.append(who)


def _module_rule(n, path, mod, x, ins, uf, order, add_members, new_space, freeze_val, length,
                 out_space, notes):  # noqa: ANN001, ANN202 - internal, called once per module op
    from netxray.capture.structure._parts import _module_kind

    nd = len(n.shape) if n.shape is not None else 0
    xin = n.args[0] if n.args else None
    in_nd = len(xin.shape) if isinstance(xin, GNode) and xin.shape is not None else 0
    if isinstance(x, _Feat):
        x = _fix_dim(x, in_nd)
    if len([v for v in ins if isinstance(v, _Feat)]) > 1 and not isinstance(mod, nn.MultiheadAttention):
        for v in ins:
            freeze_val(v, f"{path} ({type(mod).__name__}) takes several featured inputs")
        return None

    def out_new(size: int, wkey: str, wdim: int, bkey: str | None, fdim: int) -> _Feat:
        # a module called twice writes the same rows twice: both outputs share one space
        if path in out_space:
            s = out_space[path]
        else:
            s = uf.new(size, order)
            out_space[path] = s
            sp = uf.space(s)
            from netxray.capture.structure._parts import Member

            sp.members.append(("w", Member(wkey, wdim)))
            if bkey is not None:
                sp.members.append(("w", Member(bkey, 0)))
            sp.writers.append(path)
        return _Feat(fdim, [(s, 1)])

    def has(name: str) -> bool:
        return getattr(mod, name, None) is not None

    if (isinstance(mod, nn.Linear) or _is_conv1d_hf(mod)) and _whole_fold(x, in_nd):
        hf = _is_conv1d_hf(mod)
        _fold_members(x, uf, f"{path}.weight", 0 if hf else 1, "r", path)
        size = mod.weight.shape[1] if hf else mod.out_features
        return out_new(size, f"{path}.weight", 1 if hf else 0, f"{path}.bias" if has("bias") else None, nd - 1)
    if isinstance(mod, nn.Linear) or _is_conv1d_hf(mod):
        hf = _is_conv1d_hf(mod)
        if isinstance(x, _Feat):
            if x.dim != in_nd - 1:
                # a Linear over tokens (MLP-Mixer's token mixing) treats every feature alike: the
                # features pass, and its own output units become a second axis on the last
                # dimension, followed into the Linear that reads them (see _extra_step)
                if isinstance(ins[0], _Feat) and ins[0].extra is not None:
                    # that reading Linear (Mixer's fc2) writes one output per token again: token
                    # positions are tied to the input's patches, so no permutation moves them
                    return x
                s = uf.new(mod.out_features, order)
                sp = uf.space(s)
                from netxray.capture.structure._parts import Member

                sp.members.append(("w", Member(f"{path}.weight", 0)))
                if has("bias"):
                    sp.members.append(("w", Member(f"{path}.bias", 0)))
                sp.writers.append(path)
                sp.token = True
                return _Feat(x.dim, x.segs, s)
            add_members(x, f"{path}.weight", 0 if hf else 1, "r", path)
        size = mod.weight.shape[1] if hf else mod.out_features
        return out_new(size, f"{path}.weight", 1 if hf else 0, f"{path}.bias" if has("bias") else None, nd - 1)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        g = mod.groups
        if g == 1:
            if isinstance(x, _Feat):
                if x.dim != 1:
                    freeze_val(x, f"{path} mixes an axis other than the channels")
                else:
                    add_members(x, f"{path}.weight", 1, "r", path)
            return out_new(mod.out_channels, f"{path}.weight", 0, f"{path}.bias" if has("bias") else None, 1)
        if g == mod.in_channels and not (isinstance(x, _Feat) and x.dim == 1):
            freeze_val(x, f"{path}: depthwise convolution over an axis other than the channels")
            return None  # a depthwise conv of fixed channels: its output channels are fixed too
        if g == mod.in_channels:
            # depthwise: channel c's k = out/in filters read channel c alone, so they move with it
            k = mod.out_channels // g
            segs = [(s, b * k) for s, b in x.segs]
            f = _Feat(1, segs)
            add_members(f, f"{path}.weight", 0, "w", path)
            if has("bias"):
                add_members(f, f"{path}.bias", 0, "w", path)
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).joined.add("depthwise")
            return f
        f = out_new(mod.out_channels, f"{path}.weight", 0, f"{path}.bias" if has("bias") else None, 1)
        _grouped_input(x, f, g, f"{path}.weight", path, uf, freeze_val)
        return f
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if not isinstance(x, _Feat) or x.dim != 1:
            freeze_val(x, f"{path}: BatchNorm over an axis other than the features")
            return None if not isinstance(x, _Feat) else x
        for t in ("weight", "bias", "running_mean", "running_var"):
            if getattr(mod, t, None) is not None:
                add_members(x, f"{path}.{t}", 0, "n", path)
        for s in [s for s, _ in x.segs if s != FIXED]:
            sp = uf.space(s)
            sp.bn = path if sp.bn is None and len(sp.writers) == 1 and not sp.readers and not sp.acts else sp.bn
            if sp.bn != path:
                sp.joined.add("norm")
        return x
    if isinstance(mod, nn.LayerNorm) or _is_rmsnorm(mod):
        shp = tuple(getattr(mod, "normalized_shape", ()) or ())
        if _whole_fold(x, in_nd) and len(shp) <= 1:
            # normalised over all repeats together: the same permutation in each keeps it
            for t in ("weight", "bias"):
                if isinstance(getattr(mod, t, None), torch.Tensor):
                    _fold_members(x, uf, f"{path}.{t}", 0, "n", path)
            uf.space(x.segs[0][0]).joined.add("norm")
            return x
        if isinstance(x, _Feat):
            if x.dim != in_nd - 1 or (shp and len(shp) != 1):
                freeze_val(x, f"{path}: normalises more than the feature axis")
                return x
            for t in ("weight", "bias"):
                if isinstance(getattr(mod, t, None), torch.Tensor):
                    add_members(x, f"{path}.{t}", 0, "n", path)
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).joined.add("norm")
        return x
    if isinstance(mod, nn.GroupNorm):
        if isinstance(x, _Feat):
            if x.dim != 1 or mod.num_groups not in (1, mod.num_channels):
                freeze_val(x, f"{path}: GroupNorm with {mod.num_groups} groups")
                return x
            for t in ("weight", "bias"):
                if getattr(mod, t, None) is not None:
                    add_members(x, f"{path}.{t}", 0, "n", path)
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).joined.add("norm")
        return x
    if isinstance(mod, nn.Embedding):
        return out_new(mod.embedding_dim, f"{path}.weight", 1, None, nd - 1)
    if isinstance(mod, (nn.LSTM, nn.GRU)):
        return _recurrent_rule(n, path, mod, x, ins, in_nd, nd, uf, order, add_members, freeze_val)
    if isinstance(mod, nn.MultiheadAttention):
        feats = [v for v in ins[:3] if isinstance(v, _Feat)]
        same = len(n.args) >= 3 and n.args[0] is n.args[1] is n.args[2]
        if feats and (not same or not mod._qkv_same_embed_dim or feats[0].dim != in_nd - 1):
            for v in ins:
                freeze_val(v, f"{path}: attention over separate query/key/value inputs")
        elif feats:
            add_members(feats[0], f"{path}.in_proj_weight", 1, "r", path)
        f = out_new(mod.embed_dim, f"{path}.out_proj.weight", 0,
                    f"{path}.out_proj.bias" if mod.out_proj.bias is not None else None, nd - 1 if nd else 2)
        return [f, None]
    kind = _module_kind(mod)
    if isinstance(mod, nn.Flatten):
        return _reshape_rule(x, xin, n, uf, freeze_val, f"{path} (Flatten)")
    if isinstance(mod, _POOL_MODULES):
        if isinstance(x, _Feat):
            if x.dim != 1:
                freeze_val(x, f"{path}: pooling over the features")
                return None
            if "Max" in type(mod).__name__:
                for s in [s for s, _ in x.segs if s != FIXED]:
                    uf.space(s).maxpool = True
        return x
    if kind is not None:
        if isinstance(x, _Feat):
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).acts.append(mod)
        return x
    if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
        if isinstance(x, _Feat):
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).acts.append(("other", type(mod).__name__, mod))
        return x
    params = [k for k, _ in mod.named_parameters(recurse=True)]
    if not params and n.shape is not None and isinstance(x, _Feat) and xin is not None and xin.shape == n.shape \
            and any(w in type(mod).__name__ for w in ("Activation", "GELU", "SiLU", "Swish", "Act")):
        # parameter-free activation classes of model libraries (e.g. NewGELUActivation)
        for s in [s for s, _ in x.segs if s != FIXED]:
            uf.space(s).acts.append(("other", type(mod).__name__, mod))
        return x
    for v in ins:
        freeze_val(v, f"{path} ({type(mod).__name__}): layer type not understood")
    if params:
        notes.append(f"{path} ({type(mod).__name__}): layer type not understood; its parameters are not analysed")
    return None


def _recurrent_rule(n, path, mod, x, ins, in_nd, nd, uf, order, add_members, freeze_val):  # noqa: ANN001, ANN202
    """``nn.LSTM`` / ``nn.GRU``: the hidden units of each layer permute — the rows of every gate
    of ``weight_ih``/``weight_hh``/biases (4 gate segments for an LSTM, 3 for a GRU), the
    columns of ``weight_hh`` (the recurrence reads them back) and of the next layer's
    ``weight_ih``. Units are independent element-wise through the gates and the cell state,
    so a permutation (no rescaling) is a symmetry. The outputs: the sequence of the last
    layer's states (features on its last dim) and the final states (layers × batch × hidden;
    followed for one layer only). A bidirectional or projected layer is not followed."""
    from netxray.capture.structure._parts import Member

    outs = len(n.args) and (3 if isinstance(mod, nn.LSTM) else 2)
    if mod.bidirectional or getattr(mod, "proj_size", 0) or any(isinstance(v, _Feat) for v in ins[1:]):
        for v in ins:
            freeze_val(v, f"{path} ({type(mod).__name__}): a bidirectional, projected or initialised recurrent "
                       "layer is not followed")
        return [None] * outs
    gates = 4 if isinstance(mod, nn.LSTM) else 3
    H, L = mod.hidden_size, mod.num_layers
    if isinstance(x, _Feat):
        if x.dim != in_nd - 1:
            freeze_val(x, f"{path} reads an axis other than the features")
        else:
            add_members(x, f"{path}.weight_ih_l0", 1, "r", path)
    spaces = []
    for k in range(L):
        s = uf.new(H, order)
        sp = uf.space(s)
        for t in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if getattr(mod, f"{t}_l{k}", None) is not None:
                sp.members.append(("w", Member(f"{path}.{t}_l{k}", 0, segments=gates)))
        sp.members.append(("r", Member(f"{path}.weight_hh_l{k}", 1)))
        if k + 1 < L:
            sp.members.append(("r", Member(f"{path}.weight_ih_l{k + 1}", 1)))
        sp.writers.append(path)
        sp.joined.add("recurrent")
        spaces.append(s)
    seq = _Feat(nd - 1 if nd else 2, [(spaces[-1], 1)])
    state = _Feat(2, [(spaces[0], 1)]) if L == 1 else None
    return [seq, state, state][:outs]


def _grouped_input(x: Any, out: _Feat, g: int, wkey: str, who: str, uf: _UF,
                   freeze_val: Callable[[Any, str], None]) -> None:
    """A grouped convolution (1 < g < C_in) with weight ``wkey`` reads ``x`` and writes ``out``.

    Output group j (rows j·C_out/g …) reads input group j only (columns 0 … C_in/g − 1 of its
    rows), so: both the input and the output channels fall into g blocks; a permutation inside
    an input block moves the weight's columns inside that block's rows (a *grouped* member); a
    permutation inside an output block moves rows as usual; and a permutation of whole blocks
    must move the input blocks, the output blocks (rows) and everything else touching either
    space together — the two spaces are *linked*. Input of fixed features (the model's input) or
    of several concatenated parts: the input is not permutable, and the output's blocks cannot
    move (their channels still permute inside each block)."""
    from netxray.capture.structure._parts import Member

    so = out.segs[0][0]
    uf.space(so).groups = g if uf.space(so).groups in (1, g) else uf.space(so).groups
    feats = [(s, b) for s, b in x.segs] if isinstance(x, _Feat) else []
    if not (isinstance(x, _Feat) and x.dim == 1 and len(feats) == 1 and feats[0][0] != FIXED):
        if isinstance(x, _Feat) and any(s != FIXED for s, _ in feats):
            freeze_val(x, f"{who}: grouped convolution (groups={g}) over concatenated parts or another axis")
        uf.space(so).gfixed.append(f"{who} (groups={g}) reads fixed or concatenated channels")
        return
    s, b = feats[0]
    sp = uf.space(s)
    if sp.size % g:
        freeze_val(x, f"{who}: grouped convolution (groups={g}) over {sp.size} channels")
        uf.space(so).gfixed.append(f"{who}: groups do not divide its input")
        return
    if sp.groups not in (1, g):
        sp.frozen.append(f"read by grouped convolutions of {sp.groups} and {g} groups")
    sp.groups = g if sp.groups == 1 else sp.groups
    sp.members.append(("r", Member(wkey, 1, block=b, groups=g, row_dim=0)))
    if who not in sp.readers:
        sp.readers.append(who)
    sp.joined.add("grouped")
    uf.space(so).joined.add("grouped")
    sp.glinks.append(so)
    uf.space(so).glinks.append(s)


def _reshape_rule(x, xin, n, uf, freeze_val, what):  # noqa: ANN001, ANN202 - uf may be None
    """view/reshape/flatten/unsqueeze/squeeze by shapes: the feature axis keeps its identity when
    it is its own group (sizes matched between input and output), or when it is merged with the
    dimensions right after it (then every feature owns a block of their product)."""
    if not isinstance(x, _Feat):
        return x
    if xin is None or xin.shape is None or n.shape is None:
        freeze_val(x, f"{what}: shapes unknown")
        return None
    a, b = list(xin.shape), list(n.shape)
    x = _fix_dim(x, len(a))
    # group dims into runs of equal products
    i = j = 0
    while i < len(a) or j < len(b):
        gi, gj = [i], [j]
        pa = a[i] if i < len(a) else 1
        pb = b[j] if j < len(b) else 1
        i += 1
        j += 1
        while pa != pb:
            if pa < pb:
                if i >= len(a):
                    break
                pa *= a[i]
                gi.append(i)
                i += 1
            else:
                if j >= len(b):
                    break
                pb *= b[j]
                gj.append(j)
                j += 1
        if x.dim in gi:
            real_a = [d for d in gi if d < len(a) and a[d] != 1]
            real_b = [d for d in gj if d < len(b) and b[d] != 1]
            if x.outer == 1 and real_a == [x.dim] and len(real_b) == 1:
                return _Feat(real_b[0], x.segs)
            if x.outer == 1 and real_a and real_a[0] == x.dim and len(real_b) == 1:
                extra = math.prod(a[d] for d in real_a[1:])
                return _Feat(real_b[0], [(s, bl * extra) for s, bl in x.segs])
            if a[x.dim] == 1:
                return None
            if uf is not None and pa == pb and (x.outer > 1 or real_a[0] != x.dim):
                # the features folded with the dimensions before them (MobileViT's unfold and
                # fold of patches), or unfolded again
                f = _strided(x, a, b, [d for d in gi if d < len(a)], [d for d in gj if d < len(b)], uf)
                if f is not None:
                    return f
            if real_a == [x.dim] and len(real_b) == 2 and uf is not None:
                # (…, C, …) → (…, g, C/g, …): the g chunks of C/g channels line up as one layout
                # (ShuffleNet's channel shuffle starts so: its g parts are the concatenated
                # branches; the transpose and view after it give each unit a block of g). Chunks
                # that are pieces of one space (attention heads) are not followed here.
                g, c = b[real_b[0]], b[real_b[1]]
                at, bounds = 0, {0}
                for s_, bl in x.segs:
                    at += uf.seg_len(s_, bl)
                    bounds.add(at)
                if g > 1 and all(j * c in bounds for j in range(g + 1)):
                    chunks = [uf.sub(x.segs, j * c, (j + 1) * c, 0) for j in range(g)]
                    common = chunks[0]
                    for ch in chunks[1:]:
                        common = None if common is None or ch is None else uf.match(common, ch, "shuffle", 0)
                    if common is not None:
                        for s_, _ in common:
                            if s_ != FIXED:
                                uf.space(s_).joined.add("shuffle")
                        return _Feat(real_b[1], common)
                if g > 1 and all(j * c in bounds for j in range(g + 1)) and any(s_ == FIXED for s_, _ in x.segs):
                    why = (f"{what}: a channel shuffle ({a[x.dim]} channels as {g}×{c}) interleaves these channels "
                           "with channels that are fixed or were not followed")
                elif g > 1 and all(j * c in bounds for j in range(g + 1)):
                    why = (f"{what}: a channel shuffle ({a[x.dim]} channels as {g}×{c}) interleaves parts whose "
                           "units cannot be lined up")
                else:
                    why = (f"{what}: the feature axis ({a[x.dim]}) is split into {g}×{c} inside one part "
                           "(attention heads: their permutations come from the attention module)")
                freeze_val(x, why)
                return None
            freeze_val(x, f"{what}: the feature axis ({a[x.dim]}) is split or merged with another axis "
                       f"({tuple(a)} → {tuple(b)})")
            return None
    freeze_val(x, f"{what}: shapes do not match")
    return None


def _call_rule(n, ins, uf, order, add_members, freeze_val, length, state_shapes, notes, tensor_args, value):  # noqa: ANN001, ANN202
    from netxray.capture.structure._parts import Member

    name = n.target
    nd = len(n.shape) if n.shape is not None else 0
    x = value(n.args[0]) if n.args else None
    xin = n.args[0] if n.args and isinstance(n.args[0], GNode) else None
    in_nd = len(xin.shape) if xin is not None and xin.shape is not None else 0
    if isinstance(x, _Feat):
        x = _fix_dim(x, in_nd)
    if name in _SHAPE_ONLY:
        return None
    if name == "getitem":
        return _getitem_rule(n, x, xin, freeze_val, uf)
    params = [v for v in ins if isinstance(v, _Param)]

    def new_writer(size: int, wkey: str, wdim: int, bkey: str | None, fdim: int) -> _Feat:
        s = uf.new(size, order)
        sp = uf.space(s)
        sp.members.append(("w", Member(wkey, wdim)))
        if bkey is not None:
            sp.members.append(("w", Member(bkey, 0)))
        sp.writers.append(wkey.rsplit(".", 1)[0])
        sp.joined.add("functional")  # not a module call: permutation only
        return _Feat(fdim, [(s, 1)])

    # functional layers called by modules that override forward (timm's BatchNormAct2d,
    # LayerNorm2d, StdConv2d …): their parameters arrive as inputs of the call
    if name == "linear" and params and len(state_shapes[params[0].key]) == 2 and params[0].dims == [1, 0]:
        # a transposed weight (a tied decoder: F.linear(h, enc.weight.t())): the stored rows
        # are read, the stored columns written
        w = params[0]
        b = params[1].key if len(params) > 1 and len(state_shapes[params[1].key]) == 1 else None
        if isinstance(x, _Feat):
            if x.dim != in_nd - 1:
                freeze_val(x, f"`linear` ({w.key}ᵀ) mixes an axis other than the features")
            else:
                add_members(x, w.key, 0, "r", w.key.rsplit(".", 1)[0])
        return new_writer(state_shapes[w.key][1], w.key, 1, b, nd - 1)
    if name in ("linear", "conv1d", "conv2d", "conv3d", "embedding") and params \
            and len(state_shapes[params[0].key]) >= 2 and _as_stored(params[0], state_shapes[params[0].key]):
        w = params[0]
        wshape = state_shapes[w.key]
        b = params[1].key if len(params) > 1 and len(state_shapes[params[1].key]) == 1 else None

        def comp(f: _Feat) -> _Feat:  # a standardised weight's gain moves with its rows
            for ck, cd in w.companions:
                add_members(f, ck, cd, "w", w.key.rsplit(".", 1)[0])
            return f

        if name == "embedding":
            return new_writer(wshape[1], w.key, 1, None, nd - 1)
        if name == "linear":
            if isinstance(x, _Feat):
                if x.dim != in_nd - 1:
                    freeze_val(x, f"`linear` ({w.key}) mixes an axis other than the features")
                else:
                    add_members(x, w.key, 1, "r", w.key.rsplit(".", 1)[0])
            return comp(new_writer(wshape[0], w.key, 0, b, nd - 1))
        cin = xin.shape[1] if xin is not None and xin.shape is not None and len(xin.shape) > 1 else None
        g = cin // wshape[1] if cin else None
        if g == 1:
            if isinstance(x, _Feat):
                if x.dim != 1:
                    freeze_val(x, f"`{name}` ({w.key}) mixes an axis other than the channels")
                else:
                    add_members(x, w.key, 1, "r", w.key.rsplit(".", 1)[0])
            return comp(new_writer(wshape[0], w.key, 0, b, 1))
        if g == cin:
            if not isinstance(x, _Feat) or x.dim != 1:
                return None
            f = _Feat(1, [(sp, bl * (wshape[0] // cin)) for sp, bl in x.segs])
            add_members(f, w.key, 0, "w", w.key.rsplit(".", 1)[0])
            if b is not None:
                add_members(f, b, 0, "w", w.key.rsplit(".", 1)[0])
            return comp(f)
        f = comp(new_writer(wshape[0], w.key, 0, b, 1))
        if g is None or wshape[0] % g or (cin or 0) % g:
            freeze_val(x, f"`{name}` ({w.key}): a convolution whose groups could not be read")
            uf.space(f.segs[0][0]).frozen.append(f"`{name}` ({w.key}): groups could not be read")
            return f
        _grouped_input(x, f, g, w.key, w.key.rsplit(".", 1)[0], uf, freeze_val)
        return f
    if name in ("linear", "conv1d", "conv2d", "conv3d") and len(n.args) > 1 and isinstance(n.args[1], GNode) \
            and not isinstance(value(n.args[1]), _Param):
        # a weight computed from parameters (timm's ScaledStdConv2d standardises its weight with
        # batch_norm and a gain): not followed, and said so; its input and output stay fixed
        src = next((p.key.rsplit(".", 1)[0] for p in params), None) or str(n.args[1].target)
        why = (f"`{name}` with a weight computed from parameters ({src}: e.g. weight standardisation), "
               "which the finder does not follow")
        freeze_val(x, why)
        if why not in notes:
            notes.append(why)
        return None
    if name in ("batch_norm", "layer_norm", "rms_norm", "instance_norm") and isinstance(x, _Feat):
        want = 1 if name in ("batch_norm", "instance_norm") else in_nd - 1
        ok = x.dim == want and all(len(state_shapes[p.key]) == 1 and p.dims == [0] for p in params)
        if name in ("layer_norm", "rms_norm") and n.shape is not None:
            ok = ok and all(state_shapes[p.key][0] == n.shape[-1] for p in params)
        if not ok:
            freeze_val(x, f"`{name}` over more than the feature axis")
            return None
        for p in params:
            add_members(x, p.key, 0, "n", p.key.rsplit(".", 1)[0])
        for sp in [sp for sp, _ in x.segs if sp != FIXED]:
            uf.space(sp).joined.add("norm")
        return x
    if not any(isinstance(v, _Feat) for v in ins):
        # no featured tensor: parameters being reshaped keep track of their stored dimensions
        if isinstance(x, _Param) and n.shape is not None:
            if name == "batch_norm" and len(x.dims) > 1 and x.dims[1] == 0:
                # a weight standardised per output channel (rows in dim 1 of the value): the
                # batch_norm's weight/bias (a gain) move with the rows
                comp = [(q.key, q.dims[0]) for q in params[1:] if len(q.dims) == 1 and isinstance(q.dims[0], int)]
                return _Param(x.key, list(x.dims), x.companions + comp)
            return _param_reshape(x, xin, n, state_shapes.get(x.key))
        return None
    if name in _ELEMENTWISE and len([v for v in ins if isinstance(v, _Feat)]) == 1 and isinstance(x, _Feat) \
            and (n.shape is None or xin is None or xin.shape == n.shape):
        kind = _ELEMENTWISE[name]
        if name in ("softmax", "log_softmax"):
            kind = "other"
        if kind != "identity" or name == "dropout":
            fn = _func_of(name, n)
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).acts.append((kind or "other", name, fn))
        return x
    if name in _POOL_FUNCS and isinstance(x, _Feat):
        if x.dim != 1:
            freeze_val(x, f"{name} over the features")
            return None
        if "max" in name:
            for s in [s for s, _ in x.segs if s != FIXED]:
                uf.space(s).maxpool = True
        return x
    if name in _REDUCE and isinstance(x, _Feat):
        for s in [s for s, _ in x.segs if s != FIXED]:
            uf.space(s).joined.add("reduced")
        a = list(xin.shape) if xin is not None and xin.shape is not None else None
        b = list(n.shape) if n.shape is not None else None
        if a is not None and b is not None and len(a) == len(b):  # keepdim: reduced axes became 1
            return x if a[x.dim] == b[x.dim] and a[x.dim] != 1 else None
        dims = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
        if dims is None or (b is not None and len(b) == 0):
            return None  # a full reduction: invariant under every permutation
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            freeze_val(x, f"`{name}` over axes that were not recorded")
            return None
        dims = [d + in_nd if d < 0 else d for d in dims]
        if x.dim in dims:
            return None
        if b is not None and len(b) == in_nd - len(dims) or b is None:
            return _Feat(x.dim - sum(d < x.dim for d in dims), x.segs)
        return _Feat(x.dim, x.segs)
    if name in ("chunk", "split", "unbind", "split_with_sizes", "tensor_split") and isinstance(x, _Feat):
        a = list(xin.shape) if xin is not None and xin.shape is not None else None
        b = list(n.shape) if n.shape is not None else None
        if a is not None and b is not None:
            if len(a) == len(b) and a[x.dim] == b[x.dim]:
                return x  # split along another axis: every piece carries all features
            if len(b) == len(a) - 1 and name == "unbind":
                d = n.args[1] if len(n.args) > 1 and isinstance(n.args[1], int) else n.kwargs.get("dim", 0)
                d = d + in_nd if isinstance(d, int) and d < 0 else d
                if isinstance(d, int) and d != x.dim:
                    return _Feat(x.dim - (d < x.dim), x.segs)
            shapes = n.kwargs.get("_shapes")
            k = n.kwargs.get("_out", 0)
            if len(a) == len(b) and name != "unbind" and shapes and all(len(t) == len(a) for t in shapes):
                # pieces of the channel axis (ShuffleNet's x.chunk(2, dim=1)): each piece holds
                # the parts (and, cut where needed, the spaces) at its positions
                lo = sum(t[x.dim] for t in shapes[:k])
                segs = uf.sub(x.segs, lo, lo + b[x.dim], order)
                if segs is not None:
                    return _Feat(x.dim, segs)
        blocks = sorted({bl for s_, bl in x.segs if s_ != FIXED})
        freeze_val(x, f"`{name}` splits the {sum(uf.seg_len(s_, bl) for s_, bl in x.segs)} channels inside a unit "
                   f"that moves as one block of {'/'.join(map(str, blocks))} channels (after channel shuffles the "
                   "finder moves interleaved channels together, a subgroup of the true symmetry, and here such a "
                   "block would be cut)" if blocks and max(blocks) > 1 else
                   f"`{name}` splits the feature axis where its parts cannot be cut")
        return None
    if name in ("getitem-tensor", "getitem-unknown") and isinstance(x, _Feat):
        a = list(xin.shape) if xin is not None and xin.shape is not None else None
        b = list(n.shape) if n.shape is not None else None
        if a is not None and b is not None and x.dim == len(a) - 1 and b and b[-1] == a[-1]:
            return _Feat(len(b) - 1, x.segs)  # rows selected (tokens, samples); features kept
        freeze_val(x, "indexing that may select features")
        return None
    if name in _BINARY:
        return _binary_rule(n, name, value, uf, add_members, freeze_val, nd)
    if name in ("view", "reshape", "flatten", "unsqueeze", "squeeze", "unflatten", "view_as", "reshape_as"):
        return _reshape_rule(x, xin, n, uf, freeze_val, name)
    if name in ("permute", "transpose", "movedim", "swapaxes", "t") and isinstance(x, _Feat):
        rest = [a for a in n.args[1:]]
        if name == "permute":
            dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else list(rest)
            dims = [d + in_nd if d < 0 else d for d in dims]
            return _Feat(dims.index(x.dim), x.segs, outer=x.outer)
        if name in ("transpose", "swapaxes", "movedim") and len(rest) == 2:
            d0, d1 = (d + in_nd if d < 0 else d for d in rest)
            if name == "movedim":
                order_ = [d for d in range(in_nd) if d != d0]
                order_.insert(d1, d0)
                return _Feat(order_.index(x.dim), x.segs, outer=x.outer)
            return _Feat(d1 if x.dim == d0 else d0 if x.dim == d1 else x.dim, x.segs, outer=x.outer)
        if name == "t" and in_nd == 2:
            return _Feat(1 - x.dim, x.segs, outer=x.outer)
    if name == "roll" and isinstance(x, _Feat) and xin is not None and xin.shape == n.shape:
        # Swin's shifted windows roll the spatial axes; the graph does not keep roll's dims, so
        # this is a claim: a roll of the features would make the verification reject the axis
        for sp in [sp for sp, _ in x.segs if sp != FIXED]:
            uf.space(sp).joined.add("roll")
        return x
    if name == "pad" and isinstance(x, _Feat) and xin is not None and xin.shape is not None and n.shape is not None:
        if len(xin.shape) == len(n.shape) and xin.shape[x.dim] == n.shape[x.dim]:
            return x  # spatial padding (Swin's windows): every feature padded alike
        freeze_val(x, "`pad` of the feature axis")
        return None
    if name == "expand" and isinstance(x, _Feat):
        return _Feat(x.dim + (nd - in_nd), x.segs)
    if name in ("cat", "concat", "concatenate"):
        return _cat_rule(n, uf, add_members, freeze_val, value, nd)
    for v in ins:
        freeze_val(v, f"passes through `{name}`, which may not commute with a permutation of its features")
    return None


def _func_of(name: str, n: GNode) -> Callable[[torch.Tensor], torch.Tensor] | None:
    import torch.nn.functional as F

    fn = getattr(F, name, None) or getattr(torch, name, None)
    if fn is None:
        return None
    const = [a for a in n.args[1:] if not isinstance(a, GNode)]
    kwargs = {k: v for k, v in n.kwargs.items() if not isinstance(v, GNode) and k != "inplace"}

    def call(t: torch.Tensor) -> torch.Tensor:
        return fn(t, *const, **kwargs)

    return call


def _param_reshape(p: _Param, xin: GNode | None, n: GNode, stored: tuple[int, ...] | None = None) -> _Param | None:
    if xin is None or xin.shape is None or n.shape is None:
        return None
    a, b = list(xin.shape), list(n.shape)
    name = n.target
    if name in ("to", "float", "double", "contiguous", "clone", "detach", "type_as") and a == b:
        return p
    if name in ("t", "transpose", "swapaxes", "permute") and len(a) == len(b):
        # a transposed parameter (a tied decoder's enc.weight.t()): its stored dims, reordered
        args = [v for v in n.args[1:] if isinstance(v, int)] or \
            [v for v in (n.args[1] if len(n.args) > 1 and isinstance(n.args[1], (list, tuple)) else [])]
        nd = len(a)
        if name == "t":
            perm = list(range(nd))[::-1] if nd == 2 else list(range(nd))
        elif name == "permute" and len(args) == nd:
            perm = [d % nd for d in args]
        elif name != "permute" and len(args) == 2:
            d0, d1 = (d % nd for d in args)
            perm = list(range(nd))
            perm[d0], perm[d1] = d1, d0
        else:
            return None
        return _Param(p.key, [p.dims[d] for d in perm], p.companions)
    if name == "expand":
        pad = len(b) - len(a)
        dims = [None] * pad + [d if a[i] == b[i + pad] else None for i, d in enumerate(p.dims)]
        return _Param(p.key, dims, p.companions)
    # view/reshape/unsqueeze/squeeze: keep the stored dims whose sizes > 1 survive in order
    real_a = [(i, s) for i, s in enumerate(a) if s != 1]
    real_b = [(j, s) for j, s in enumerate(b) if s != 1]
    if [s for _, s in real_a] != [s for _, s in real_b]:
        return _merge_rest(p, a, b, stored)
    dims: list[int | None] = [None] * len(b)
    for (i, _), (j, _) in zip(real_a, real_b, strict=True):
        dims[j] = p.dims[i]
    return _Param(p.key, dims, p.companions)


def _as_stored(p: _Param, shape: tuple[int, ...]) -> bool:
    """Whether the value of ``p`` is laid out as the stored tensor (size-1 dims may have lost
    their trace through a reshape: a 1×1 convolution's (C_out, C_in, 1, 1) weight)."""
    return len(p.dims) == len(shape) and all(d == i or (d is None and shape[i] == 1) for i, d in enumerate(p.dims))


_MERGED = -1  # a dimension of a parameter value holding several stored dimensions, flattened


def _merge_rest(p: _Param, a: list[int], b: list[int], stored: tuple[int, ...] | None) -> _Param | None:
    """A parameter reshaped so that its stored dim 0 stays and the rest is flattened
    (ScaledStdConv2d: (C_out, C_in, k, k) → (1, C_out, C_in·k·k)), or reshaped back to its
    stored shape from such a value (``reshape_as(weight)``); None for any other reshape."""
    if stored is None:
        return None
    real_b = [(j, s) for j, s in enumerate(b) if s != 1]
    if list(a) == list(stored) and p.dims == list(range(len(stored))) and len(real_b) == 2 \
            and len(stored) > 2 and real_b[0][1] == stored[0] and real_b[1][1] == math.prod(stored[1:]):
        dims: list[int | None] = [None] * len(b)
        dims[real_b[0][0]], dims[real_b[1][0]] = 0, _MERGED
        return _Param(p.key, dims, p.companions)
    if list(b) == list(stored) and sorted(d for d in p.dims if d is not None) == [_MERGED, 0] \
            and p.dims.index(0) < p.dims.index(_MERGED):
        return _Param(p.key, list(range(len(stored))), p.companions)
    return None


def _param_member(p: _Param, pshape: tuple[int, ...], out_dim: int, out_nd: int) -> int | None:
    """The stored dimension of parameter value ``p`` (current shape ``pshape``) that lines up with
    output dimension ``out_dim`` under broadcasting; None when it is broadcast (size 1)."""
    i = out_dim - (out_nd - len(pshape))
    if i < 0 or pshape[i] == 1:
        return None
    return p.dims[i] if i < len(p.dims) else None


def _binary_rule(n, name, value, uf, add_members, freeze_val, nd):  # noqa: ANN001, ANN202
    args = [a for a in n.args[:2]]
    if name == "where":
        args = list(n.args[1:3])
    vals = []
    for a in args:
        if isinstance(a, GNode):
            vals.append((a, value(a)))
        else:
            vals.append((None, None))
    feats = [(a, v) for a, v in vals if isinstance(v, _Feat)]
    fdims = {(_fix_dim(v, len(a.shape) if a.shape else 0).dim - (len(a.shape) if a.shape else 0)) for a, v in feats}
    if len(fdims) != 1:
        for _, v in vals:
            freeze_val(v, f"`{name}` of tensors with different feature axes")
        return None
    rel = fdims.pop()
    out_dim = nd + rel
    base = _Feat(out_dim, feats[0][1].segs)
    if name == "where" or _BINARY[name] == "other":
        if len(feats) != 2:
            for _, v in vals:
                freeze_val(v, f"`{name}` with a tensor of fixed features")
            return None
    if len(feats) == 2:
        f1, f2 = feats[0][1], feats[1][1]
        if f1.segs != f2.segs:
            # e.g. a residual add of a 16-channel stream and GhostNet's cat([P, P]) of two 8-channel
            # halves: the stream is cut in two halves, each merged with P
            common = uf.match(f1.segs, f2.segs, _BINARY[name], 0)
            if common is None:
                why = f"`{name}` of tensors whose features are arranged differently (the parts do not line up)"
                freeze_val(f1, why)
                freeze_val(f2, why)
                return None
            for s, _ in common:
                if s != FIXED:
                    uf.space(s).joined.add(_BINARY[name])
            return _Feat(out_dim, common)
        for s, _ in f1.segs:
            if s != FIXED:
                uf.space(s).joined.add(_BINARY[name])
        return _Feat(out_dim, [(s if s == FIXED else uf.find(s), b) for s, b in f1.segs])
    # one featured operand; the other is a parameter, a fixed tensor or a number
    (fa, f), = feats
    other = [(a, v) for a, v in vals if a is not fa]
    for a, v in other:
        if a is None:
            continue  # a Python number broadcasts over every feature alike
        oshape = a.shape
        if oshape is None:
            continue
        i = out_dim - (nd - len(oshape))
        if i < 0 or oshape[i] == 1:
            for s, _ in f.segs:
                if s != FIXED:
                    uf.space(s).joined.add(_BINARY[name] + "-broadcast")
            continue  # broadcast along the features: the same value for every feature
        if isinstance(v, _Param):
            d = v.dims[i] if i < len(v.dims) else None
            if d is None:
                freeze_val(f, f"`{name}` with parameter {v.key} reshaped across its features")
                return None
            add_members(f, v.key, d, "n", v.key)
            for s, _ in f.segs:
                if s != FIXED:
                    uf.space(s).joined.add(_BINARY[name] + "-param")
            continue
        freeze_val(f, f"`{name}` with a tensor of fixed features")
        return None
    return base


def _getitem_rule(n, x, xin, freeze_val, uf):  # noqa: ANN001, ANN202
    idx = n.args[1] if len(n.args) > 1 else None
    if isinstance(x, list):  # a tuple output (MultiheadAttention, split) indexed by position
        return x[idx] if isinstance(idx, int) and -len(x) <= idx < len(x) else None
    if not isinstance(x, _Feat):
        return None
    if xin is None or xin.shape is None:
        freeze_val(x, "indexing with unknown shapes")
        return None
    nd_in = len(xin.shape)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(isinstance(i, GNode) for i in items):
        # an index tensor selects along the first axis (tokens, samples), never the features
        if x.dim == 0:
            freeze_val(x, "indexing the feature axis")
            return None
        pos = [k for k, i in enumerate(items) if isinstance(i, GNode)]
        if pos != [0] and not (len(items) >= 1 and all(i == slice(None) for i in items[:pos[0]])):
            freeze_val(x, "advanced indexing")
            return None
        return _Feat(x.dim + (len(n.shape) - nd_in) if n.shape is not None else x.dim, x.segs)
    # expand Ellipsis
    if any(i is Ellipsis for i in items):
        k = items.index(Ellipsis)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items = items[:k] + [slice(None)] * (nd_in - used) + items[k + 1:]
    d_in, d_out, new_dim = 0, 0, None
    segs = x.segs
    for it in items:
        if it is None:
            d_out += 1
            continue
        if d_in == x.dim:
            n_feat = xin.shape[x.dim]
            if isinstance(it, slice) and it.step in (None, 1) and (it.start or 0) >= 0 \
                    and (it.stop is None or it.stop >= 0):
                lo, hi = it.start or 0, n_feat if it.stop is None else min(it.stop, n_feat)
                # whole concatenated parts kept (x[:, :C] of a cat, GhostNet's out[:, :oup]): the
                # parts keep their spaces; a cut through a part's channels is not followed
                # a cut through a part's channels splits that part's space in two (GhostNet's
                # out[:, :oup] with oup odd: P's last channels appear once, the others twice)
                segs = uf.sub(x.segs, lo, hi, 0) if hi > lo else None
                if segs is None:
                    freeze_val(x, f"a slice [{lo}:{hi}] of the {n_feat} channels cuts through a part that "
                               "cannot be split (a grouped or repeated layout)")
                    return None
                new_dim = d_out
            else:
                freeze_val(x, "an index or strided slice of the feature axis")
                return None
        if isinstance(it, int):
            d_in += 1
        else:
            d_in += 1
            d_out += 1
    if new_dim is None:
        new_dim = d_out + (x.dim - d_in)
    return _Feat(new_dim, segs) if segs else None


def _cat_rule(n, uf, add_members, freeze_val, value, nd):  # noqa: ANN001, ANN202
    parts = n.args[0] if n.args else n.kwargs.get("tensors")
    dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
    dim = dim + nd if dim < 0 else dim
    vals = [(p, value(p)) for p in parts]
    feats = [v for _, v in vals if isinstance(v, _Feat)]
    fd = {_fix_dim(v, nd).dim for v in feats}
    if len(fd) > 1:
        for _, v in vals:
            freeze_val(v, "`cat` of tensors with different feature axes")
        return None
    fdim = fd.pop()
    if fdim == dim:  # along the features: each part keeps its own space
        segs: list[tuple[int, int]] = []
        for p, v in vals:
            if isinstance(v, _Feat):
                segs += v.segs
            elif p.shape is not None:
                if isinstance(v, _Param):
                    freeze_val(feats[0], "`cat` of a parameter along the features")
                    return None
                segs.append((FIXED, p.shape[dim]))
        return _Feat(fdim, segs)
    # along tokens: every part carries the same features
    f0 = feats[0]
    for p, v in vals:
        if isinstance(v, _Feat):
            if v is f0:
                continue
            if v.segs != f0.segs:
                if len(v.segs) == len(f0.segs) == 1 and v.segs[0][1] == f0.segs[0][1]:
                    uf.union(v.segs[0][0], f0.segs[0][0], "cat-token")
                else:
                    freeze_val(v, "`cat` of tensors whose features are arranged differently")
                    freeze_val(f0, "`cat` of tensors whose features are arranged differently")
                    return None
        elif isinstance(v, _Param) and p.shape is not None:
            i = fdim - (nd - len(p.shape))
            d = v.dims[i] if 0 <= i < len(v.dims) else None
            if d is None:
                freeze_val(f0, "`cat` with a parameter reshaped across its features")
                return None
            add_members(f0, v.key, d, "n", v.key)
        else:
            freeze_val(f0, "`cat` with a tensor of fixed features")
            return None
    return _Feat(fdim, [(s if s == FIXED else uf.find(s), b) for s, b in f0.segs])


# ---------------------------------------------------------------------------------------------
# attention heads, from the attention modules themselves
# ---------------------------------------------------------------------------------------------


def head_axes(model: nn.Module) -> list[dict[str, Any]]:
    """Head permutations of the attention modules of ``model`` whose layout is known:
    ``nn.MultiheadAttention`` (packed in_proj), Hugging Face q/k/v(/o) projections (BERT, ViT,
    RoBERTa: ``query/key/value`` with the output projection in the sibling ``output.dense``;
    Llama-style ``q_proj/k_proj/v_proj/o_proj`` with grouped-query attention; GPT-2's packed
    ``c_attn``/``c_proj`` Conv1D), timm/netxray ``qkv``/``proj``. Each entry: name, layer,
    size, members (writers, readers) and the note; with grouped-query attention one entry for
    the key/value groups and one per group for the query heads inside it."""
    from netxray.capture.structure._parts import Member

    out: list[dict[str, Any]] = []
    mods = dict(model.named_modules())

    def cfg_int(mod: nn.Module, *names: str) -> int | None:
        for nm in names:
            v = getattr(mod, nm, None)
            if isinstance(v, int) and v > 0:
                return v
            c = getattr(mod, "config", None)
            v = getattr(c, nm, None) if c is not None else None
            if isinstance(v, int) and v > 0:
                return v
        return None

    def bias(path: str) -> list[Any]:
        m = mods.get(path)
        return [path + ".bias"] if m is not None and getattr(m, "bias", None) is not None else []

    for path, mod in mods.items():
        p = f"{path}." if path else ""
        if isinstance(mod, nn.MultiheadAttention) and mod._qkv_same_embed_dim:
            H, hd = mod.num_heads, mod.head_dim
            w = [Member(f"{p}in_proj_weight", 0, block=hd, segments=3)]
            if mod.in_proj_bias is not None:
                w.append(Member(f"{p}in_proj_bias", 0, block=hd, segments=3))
            out.append(_head(path, H, hd, w, [Member(f"{p}out_proj.weight", 1, block=hd)], "q/k/v"))
            continue
        names = set(dict(mod.named_children()))
        qkvo = next((t for t in _QKVO if set(t) <= names), None)
        if qkvo is not None:
            qn, kn, vn, on = qkvo
            q, k, v, o = (mods[p + s] for s in qkvo)
            if not all(isinstance(m, nn.Linear) for m in (q, k, v, o)):
                continue
            hd = cfg_int(mod, "head_dim", "attention_head_size")
            H = cfg_int(mod, "num_heads", "num_attention_heads", "n_heads")
            if hd is None and H:
                hd = q.out_features // H
            if not hd or q.out_features % hd or k.out_features % hd:
                continue
            H, G = q.out_features // hd, k.out_features // hd
            if H % G:
                continue
            r = H // G
            qb = [Member(f"{p}{qn}.weight", 0, block=hd * r)] + [Member(b, 0, block=hd * r) for b in bias(p + qn)]
            kv = [Member(f"{p}{s}.weight", 0, block=hd) for s in (kn, vn)]
            kv += [Member(b, 0, block=hd) for s in (kn, vn) for b in bias(p + s)]
            if G == 1 or G == H:  # one key/value head for all (multi-query), or plain multi-head
                shared = []
                if G == 1:  # the single key/value head is shared by every query head: it stays
                    qb = [Member(f"{p}{qn}.weight", 0, block=hd)] + [Member(b, 0, block=hd) for b in bias(p + qn)]
                    shared = [f"{p}{s}.weight" for s in (kn, vn)]
                    kv = []
                out.append(_head(path, H, hd, qb + kv, [Member(f"{p}{on}.weight", 1, block=hd)], "q/k/v"))
                out[-1]["explains"] = shared
                continue
            out.append(_head(path, G, hd, qb + kv, [Member(f"{p}{on}.weight", 1, block=hd * r)],
                             "key/value group", name=f"{path}.kv_groups", kind="key/value head group",
                             note=f"grouped-query attention: {G} key/value heads, each shared by {r} query "
                             "heads; the groups permute (k/v rows and their query heads move together)"))
            for g in range(G):
                w = [Member(f"{p}{qn}.weight", 0, block=hd, offset=g * r * hd)]
                w += [Member(b, 0, block=hd, offset=g * r * hd) for b in bias(p + qn)]
                out.append(_head(path, r, hd, w, [Member(f"{p}{on}.weight", 1, block=hd, offset=g * r * hd)],
                                 "query heads", name=f"{path}.heads.g{g}", kind="attention head",
                                 note=f"the {r} query heads sharing key/value head {g} permute among themselves"))
            continue
        fused = _fused_qkv_heads(mod, path, p, names, mods, cfg_int, bias)
        if fused is not None:
            out += fused
            continue
        trio = next((t for t in (("query", "key", "value"), ("query_proj", "key_proj", "value_proj")) if set(t) <= names),
                    None)
        if trio is not None:
            # BERT/ViT/ALBERT ``query/key/value``; DeBERTa-v2's ``query_proj/key_proj/value_proj``
            # (its relative-position embeddings go through the same projections, or through
            # ``pos_key_proj``/``pos_query_proj``, whose rows move with the heads too)
            q = mods[p + trio[0]]
            H = cfg_int(mod, "num_attention_heads", "num_heads")
            hd = cfg_int(mod, "attention_head_size", "head_dim") or (q.out_features // H if H else None)
            parent, _, _ = path.rpartition(".")
            # the output projection: BERT/ViT's sibling ``output.dense``, ALBERT's own ``dense``
            opath = f"{parent}.output.dense" if parent and isinstance(mods.get(f"{parent}.output.dense"), nn.Linear) \
                else f"{p}dense"
            o = mods.get(opath)
            if not (H and hd and isinstance(o, nn.Linear) and all(isinstance(mods[p + s], nn.Linear) for s in trio)):
                continue
            srcs = list(trio) + [s for s in ("pos_key_proj", "pos_query_proj")
                                 if isinstance(mods.get(p + s), nn.Linear) and mods[p + s].out_features == H * hd]
            w = [Member(f"{p}{s}.weight", 0, block=hd) for s in srcs]
            w += [Member(b, 0, block=hd) for s in srcs for b in bias(p + s)]
            out.append(_head(path, H, hd, w, [Member(f"{opath}.weight", 1, block=hd)], "q/k/v"))
            continue
        if {"c_attn", "c_proj"} <= names and _is_conv1d_hf(mods[p + "c_attn"]):
            H = cfg_int(mod, "num_heads", "n_head")
            hd = cfg_int(mod, "head_dim")
            if not (H and hd) or getattr(mod, "is_cross_attention", False):
                continue
            w = [Member(f"{p}c_attn.weight", 1, block=hd, segments=3)] + [Member(b, 0, block=hd, segments=3) for b in bias(p + "c_attn")]
            out.append(_head(path, H, hd, w, [Member(f"{p}c_proj.weight", 0, block=hd)], "q/k/v"))
            continue
        levit = _levit_heads(mod, p, mods, names)
        if levit is not None:
            out.append(levit)
            continue
        if {"q", "kv", "proj"} <= names and all(isinstance(mods[p + c], nn.Linear) for c in ("q", "kv", "proj")):
            # PVT-v2 / SegFormer-style: queries from q, keys and values from kv (C → 2C: all keys,
            # then all values) over spatially reduced tokens, output through proj
            q, kv, proj = mods[p + "q"], mods[p + "kv"], mods[p + "proj"]
            H = cfg_int(mod, "num_heads")
            if not H or q.out_features % H or kv.out_features != 2 * q.out_features \
                    or proj.in_features != q.out_features:
                continue
            hd = q.out_features // H
            w = [Member(f"{p}q.weight", 0, block=hd)] + [Member(b, 0, block=hd) for b in bias(p + "q")]
            w += [Member(f"{p}kv.weight", 0, block=hd, segments=2)] + [Member(b, 0, block=hd, segments=2)
                                                                       for b in bias(p + "kv")]
            out.append(_head(path, H, hd, w, [Member(f"{p}proj.weight", 1, block=hd)], "q and k/v"))
            continue
        if {"qkv", "proj"} <= names and isinstance(mods[p + "qkv"], nn.Linear) and isinstance(mods[p + "proj"], nn.Linear):
            qkv, proj = mods[p + "qkv"], mods[p + "proj"]
            H = cfg_int(mod, "num_heads")
            if not H or qkv.out_features % H or proj.in_features % H:
                continue
            # parameters of the attention module indexed by head first (EfficientFormer's
            # attention_biases (H, N)) move with their head
            per_head = _per_head_members(mod, p, H, exclude=("qkv", "proj"))
            ob = proj.in_features // H
            layouts = []
            hd = cfg_int(mod, "head_dim") or qkv.out_features // 3 // H
            if qkv.out_features == 3 * H * hd:  # timm ViT: all queries, then all keys, then values
                w = [Member(f"{p}qkv.weight", 0, block=hd, segments=3)]
                w += [Member(b, 0, block=hd, segments=3) for b in bias(p + "qkv")]
                # BEiT/EVA's separate q_bias and v_bias, EVA's norm over the heads' outputs
                w += _head_dim_members(mod, p, H, hd, exclude=("qkv", "proj"))
                layouts.append((w, "q/k/v"))
            blk = qkv.out_features // H  # per head, its q, k and v rows together (EfficientFormer)
            w = [Member(f"{p}qkv.weight", 0, block=blk)] + [Member(b, 0, block=blk) for b in bias(p + "qkv")]
            layouts.append((w, "per-head interleaved q/k/v"))
            first = _head(path, H, hd if layouts[0][1] == "q/k/v" else blk, layouts[0][0] + per_head,
                          [Member(f"{p}proj.weight", 1, block=ob)], layouts[0][1])
            first["alternatives"] = [_head(path, H, blk, w2 + per_head, [Member(f"{p}proj.weight", 1, block=ob)], what)
                                     for w2, what in layouts[1:]]
            out.append(first)
    return _join_position_bias_heads(out, mods)


def _join_position_bias_heads(heads: list[dict[str, Any]], mods: dict[str, nn.Module]) -> list[dict[str, Any]]:
    """T5: the first self-attention of a stack owns ``relative_attention_bias`` (an Embedding of
    buckets × H) and its output — one bias per head — is added to the scores of *every* layer's
    self-attention in the stack. Head h of every layer reads column h of that one table, so the
    heads of all these layers move by one permutation, with the table's columns: one joint axis
    of H! for the stack, instead of one per layer (each of which fails alone)."""
    from netxray.capture.structure._parts import Member

    for path, mod in mods.items():
        emb = getattr(mod, "relative_attention_bias", None)
        if not (isinstance(emb, nn.Embedding) and getattr(mod, "has_relative_attention_bias", False)
                and ".block." in path):
            continue
        stack, rest = path.split(".block.", 1)
        role = rest.split(".", 1)[1] if "." in rest else ""
        group = [h for h in heads if h["name"] == f"{h['layer']}.heads" and h["layer"].startswith(stack + ".block.")
                 and h["layer"].split(".block.", 1)[1].split(".", 1)[-1] == role and h["size"] == emb.embedding_dim]
        if not any(h["layer"] == path for h in group):
            continue
        hd = group[0]["head_dim"]
        joint = _head(f"{stack}.block", emb.embedding_dim, hd,
                      [m for h in group for m in h["writers"]] + [Member(f"{path}.relative_attention_bias.weight", 1)],
                      [m for h in group for m in h["readers"]], "q/k/v", name=f"{stack}.block.*.{role}.heads",
                      note=f"the {emb.embedding_dim} heads of all {len(group)} layers' {role} move together with the "
                      f"columns of {path}.relative_attention_bias, the one per-head position bias they all add "
                      "(the per-head GL(d_head) symmetries are not counted)")
        heads = [h for h in heads if not any(h is g for g in group)] + [joint]
    return heads


def expert_axes(model: nn.Module) -> list[dict[str, Any]]:
    """Axes of mixture-of-experts blocks whose experts are stacked in tensors with a leading
    expert dimension (Hugging Face Mixtral/Qwen-MoE style ``experts.gate_up_proj`` (E, 2F, d),
    ``experts.down_proj`` (E, d, F), optional biases) next to a router whose weight is (E, d):

    - the experts permute with the router's rows (E!): the same tokens reach the same (moved)
      expert with the same weight;
    - inside each expert, its F hidden units permute (its gate and up rows, its down columns):
      one grouped axis of E groups, (F!)^E. A gated layout is tried as [gate; up] halves first,
      then interleaved (gate, up) pairs; the verification keeps the one that holds and checks
      that the probe reaches every expert (an expert no probe token is routed to would pass
      vacuously: then the axis is rejected and says so).

    Read from the module tree (the routing itself — top-k, sorting tokens by expert, grouped
    matmuls — is no op the graph follows). Each entry as :func:`head_axes`'."""
    from netxray.capture.structure._parts import Member

    out: list[dict[str, Any]] = []
    for path, mod in model.named_modules():
        experts = getattr(mod, "experts", None)
        if not isinstance(experts, nn.Module) or isinstance(experts, (nn.ModuleList, nn.ModuleDict)):
            continue
        p = f"{path}." if path else ""
        stacked = {n: t for n, t in experts.named_parameters(recurse=False)}
        router = next(((n, c) for n, c in mod.named_children() if n != "experts"
                       and isinstance(getattr(c, "weight", None), torch.Tensor) and c.weight.ndim == 2), None)
        if router is None or "gate_up_proj" not in stacked or "down_proj" not in stacked:
            continue
        E, d = router[1].weight.shape
        gu, dn = stacked["gate_up_proj"], stacked["down_proj"]
        if gu.ndim != 3 or dn.ndim != 3 or gu.shape[0] != E or dn.shape[0] != E:
            continue
        F = next((s for s in dn.shape[1:] if s != d), None)
        if F is None or 2 * F not in gu.shape[1:] or d not in gu.shape[1:]:
            continue
        gdim = list(gu.shape).index(2 * F, 1)
        ddim = 1 + [i for i, s in enumerate(dn.shape[1:]) if s == F][0]
        rkey = f"{p}{router[0]}.weight"
        keys = [f"{p}experts.{n}" for n in stacked]
        ex = [Member(rkey, 0)] + [Member(k, 0) for k in keys]
        if getattr(router[1], "bias", None) is not None:
            ex.append(Member(f"{p}{router[0]}.bias", 0))
        out.append({"name": f"{path}.experts", "layer": path, "size": E, "writers": ex, "readers": [],
                    "kind": "expert", "head_dim": 0, "groups": 1, "explains": [rkey],
                    "note": f"{E} experts permute with the router's rows ({rkey}): every stacked expert tensor "
                    "moves along its expert dimension"})

        layouts = []  # [gate; up] halves (Mixtral), then interleaved (gate, up) pairs
        for segments, block in ((2, 1), (1, 2)):
            w = [Member(f"{p}experts.gate_up_proj", gdim, block=block, segments=segments, groups=E, row_dim=0),
                 Member(f"{p}experts.down_proj", ddim, groups=E, row_dim=0)]
            if "gate_up_proj_bias" in stacked and tuple(stacked["gate_up_proj_bias"].shape) == (E, 2 * F):
                w.append(Member(f"{p}experts.gate_up_proj_bias", 1, block=block, segments=segments, groups=E,
                                row_dim=0))
            layouts.append(w)
        note = (f"inside each of the {E} experts, its {F} hidden units permute (its gate and up rows, its "
                f"down-projection columns): ({F}!)^{E}")
        first = {"name": f"{path}.experts.hidden", "layer": path, "size": E * F, "writers": layouts[0],
                 "readers": [], "kind": "expert hidden unit", "head_dim": 0, "groups": E, "note": note,
                 "reach": (f"{p}experts.gate_up_proj", E)}
        first["alternatives"] = [dict(first, writers=layouts[1], note=note + " (gate and up rows interleaved)")]
        out.append(first)
    return out


# (query, key, value, output) projection names: Llama/Mistral/Qwen…, DistilBERT, T5, diffusers,
# OPT/CLIP/BART/Whisper
_QKVO = (("q_proj", "k_proj", "v_proj", "o_proj"), ("q_lin", "k_lin", "v_lin", "out_lin"),
         ("q", "k", "v", "o"), ("to_q", "to_k", "to_v", "to_out"), ("q_proj", "k_proj", "v_proj", "out_proj"))


def _fused_qkv_heads(mod: nn.Module, path: str, p: str, names: set[str], mods: dict[str, nn.Module],
                     cfg_int: Callable[..., int | None], bias: Callable[[str], list[Any]]) -> list[dict[str, Any]] | None:
    """Heads of attention modules whose queries, keys and values come from one fused Linear:

    - ``query_key_value`` + ``dense`` (GPT-NeoX, Bloom): the output is viewed as (…, H, 3·d_head),
      each head's q, k and v rows in one contiguous block of 3·d_head rows; the dense layer's
      column blocks of d_head move with them (Bloom's ALiBi slopes are fixed per head position,
      so its heads are no symmetry: the verification rejects them, and that is the answer);
    - ``qkv_proj`` + ``o_proj`` (Phi-3): H·d query rows, then G·d key rows, then G·d value rows
      (grouped-query attention: one axis for the key/value groups with their query heads, one
      per group for the query heads sharing it, as for Llama's separate projections).

    None when the module is not one of these layouts."""
    from netxray.capture.structure._parts import Member

    if {"query_key_value", "dense"} <= names:
        qkv, o = mods[p + "query_key_value"], mods[p + "dense"]
        if not (isinstance(qkv, nn.Linear) and isinstance(o, nn.Linear)):
            return None
        H = cfg_int(mod, "num_attention_heads", "num_heads", "n_head")
        if not H or qkv.out_features % (3 * H):
            return None
        hd = cfg_int(mod, "head_size", "head_dim") or qkv.out_features // (3 * H)
        if qkv.out_features != 3 * H * hd or o.in_features != H * hd:
            return None
        w = [Member(f"{p}query_key_value.weight", 0, block=3 * hd)]
        w += [Member(b, 0, block=3 * hd) for b in bias(p + "query_key_value")]
        return [_head(path, H, hd, w, [Member(f"{p}dense.weight", 1, block=hd)], "per-head interleaved q/k/v")]
    if {"qkv_proj", "o_proj"} <= names:
        qkv, o = mods[p + "qkv_proj"], mods[p + "o_proj"]
        if not (isinstance(qkv, nn.Linear) and isinstance(o, nn.Linear)):
            return None
        H = cfg_int(mod, "num_attention_heads", "num_heads")
        G = cfg_int(mod, "num_key_value_heads") or H
        hd = cfg_int(mod, "head_dim") or (o.in_features // H if H else None)
        if not (H and G and hd) or H % G or qkv.out_features != (H + 2 * G) * hd or o.in_features != H * hd:
            return None
        r = H // G
        key, bkeys = f"{p}qkv_proj.weight", bias(p + "qkv_proj")
        if G == H or G == 1:
            blk = hd
            w = [Member(k, 0, block=blk) for k in [key, *bkeys]]
            if G == H:
                w += [Member(k, 0, block=hd, offset=off) for k in [key, *bkeys] for off in (H * hd, 2 * H * hd)]
            head = _head(path, H, hd, w, [Member(f"{p}o_proj.weight", 1, block=hd)], "fused q/k/v")
            return [head]
        groups = [Member(k, 0, block=hd * r) for k in [key, *bkeys]]
        groups += [Member(k, 0, block=hd, offset=off) for k in [key, *bkeys] for off in (H * hd, (H + G) * hd)]
        out = [_head(path, G, hd, groups, [Member(f"{p}o_proj.weight", 1, block=hd * r)], "key/value group",
                     name=f"{path}.kv_groups", kind="key/value head group",
                     note=f"grouped-query attention in one fused qkv projection: {G} key/value heads, each shared "
                     f"by {r} query heads; the groups permute (k/v rows and their query heads move together)")]
        for g in range(G):
            w = [Member(k, 0, block=hd, offset=g * r * hd) for k in [key, *bkeys]]
            out.append(_head(path, r, hd, w, [Member(f"{p}o_proj.weight", 1, block=hd, offset=g * r * hd)],
                             "query heads", name=f"{path}.heads.g{g}", kind="attention head",
                             note=f"the {r} query heads sharing key/value head {g} permute among themselves"))
        return out
    return None


def _linear_norm(path: str, mods: dict[str, nn.Module]) -> tuple[str, str | None] | None:
    """(Linear path, BatchNorm path or None) of a projection that is a Linear, a Linear followed
    by a BatchNorm (timm LeViT's LinearNorm: ``.linear``, ``.bn``) or a Sequential ending in one
    after parameter-free modules (LeViT's ``proj = (act, ln)``, ``q = (subsample, ln)``)."""
    m = mods.get(path)
    if isinstance(m, nn.Linear):
        return path, None
    if m is None:
        return None
    kids = dict(m.named_children())
    if isinstance(kids.get("linear"), nn.Linear) and isinstance(kids.get("bn"), nn.modules.batchnorm._BatchNorm) \
            and len(kids) == 2:
        return f"{path}.linear", f"{path}.bn"
    if isinstance(m, nn.Sequential) and kids:
        *rest, last = list(kids)
        if all(not any(True for _ in kids[r].parameters()) for r in rest):
            return _linear_norm(f"{path}.{last}", mods)
    return None


def _levit_heads(mod: nn.Module, p: str, mods: dict[str, nn.Module], names: set[str]) -> dict[str, Any] | None:
    """Heads of an attention whose projections write one contiguous row block per head (timm
    LeViT: ``qkv(x).view(B, N, H, -1).split([key_dim, key_dim, val_dim])``, and its downsampling
    attention with separate ``kv`` and ``q``), each projection a Linear optionally followed by a
    BatchNorm over its outputs: the head's rows, BN parameters and running statistics, its
    attention biases (H, N) and its ``val_dim`` columns of the output projection move together."""
    from netxray.capture.structure._parts import Member

    H, kd, vd = (getattr(mod, a, None) for a in ("num_heads", "key_dim", "val_dim"))
    if not all(isinstance(v, int) and v > 0 for v in (H, kd, vd)) or "proj" not in names:
        return None
    srcs = ["qkv"] if "qkv" in names else (["kv", "q"] if {"kv", "q"} <= names else None)
    if srcs is None:
        return None
    writers: list[Any] = []
    for src in srcs:
        ln = _linear_norm(p + src, mods)
        if ln is None or mods[ln[0]].out_features % H:
            return None
        blk = mods[ln[0]].out_features // H
        writers.append(Member(f"{ln[0]}.weight", 0, block=blk))
        if mods[ln[0]].bias is not None:
            writers.append(Member(f"{ln[0]}.bias", 0, block=blk))
        if ln[1] is not None:
            writers += [Member(f"{ln[1]}.{t}", 0, block=blk) for t in ("weight", "bias", "running_mean", "running_var")
                        if getattr(mods[ln[1]], t, None) is not None]
    pr = _linear_norm(p + "proj", mods)
    if pr is None or mods[pr[0]].in_features != H * vd:
        return None
    writers += _per_head_members(mod, p, H, exclude=(*srcs, "proj"))
    path = p[:-1]
    return _head(path, H, vd, writers, [Member(f"{pr[0]}.weight", 1, block=vd)], "per-head q/k/v (LeViT)")


def _head_dim_members(mod: nn.Module, p: str, H: int, hd: int, exclude: tuple[str, ...]) -> list[Any]:
    """Parameters of an attention module laid out along the H·d_head features of its heads,
    which move with their head in blocks of d_head: timm BEiT/EVA's ``q_bias`` and ``v_bias``
    (the qkv Linear has no bias of its own: ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))``),
    a 3·H·d_head packed bias (three segments), EVA's LayerNorm over the concatenated heads'
    outputs (``attn.norm``) and the rows of a Linear that writes those features (a gate). Left
    out, such a tensor makes a head axis that holds only while it is zero (BEiT at init): the
    verification on random values rejects that. A wrong guess fails verification too."""
    from netxray.capture.structure._parts import Member

    out = []
    if hd < 2:
        return out
    for n, t in mod.named_parameters():
        if n.split(".")[0] in exclude or t.ndim < 1:
            continue
        if t.shape[0] == H * hd:
            out.append(Member(f"{p}{n}", 0, block=hd))
        elif t.shape[0] == 3 * H * hd:
            out.append(Member(f"{p}{n}", 0, block=hd, segments=3))
    return out


def _per_head_members(mod: nn.Module, p: str, H: int, exclude: tuple[str, ...]) -> list[Any]:
    """Parameters of an attention module indexed by head, which move with their head: a direct
    parameter with exactly one axis of length H (EfficientFormer's ``attention_biases`` (H, N),
    Swin's ``relative_position_bias_table`` (N, H), Swin V2's ``logit_scale`` (H, 1, 1)), and the
    rows of a Linear inside it that outputs one value per head (Swin V2's position-bias MLP).
    A wrong guess fails verification, and the layout without it is not claimed."""
    from netxray.capture.structure._parts import Member

    out = []
    for n, t in mod.named_parameters(recurse=False):
        dims = [d for d, k in enumerate(t.shape) if k == H]
        if len(dims) == 1 and t.ndim >= 1:
            out.append(Member(f"{p}{n}", dims[0]))
    for n, sub in mod.named_modules():
        if n and n.split(".")[0] not in exclude and isinstance(sub, nn.Linear) and sub.out_features == H:
            out.append(Member(f"{p}{n}.weight", 0))
            if sub.bias is not None:
                out.append(Member(f"{p}{n}.bias", 0))
    return out


def _head(path: str, size: int, hd: int, writers: list[Any], readers: list[Any], what: str, *,
          name: str | None = None, kind: str = "attention head", note: str | None = None) -> dict[str, Any]:
    return {
        "name": name or f"{path}.heads", "layer": path, "size": size, "writers": writers,
        "readers": readers, "kind": kind, "head_dim": hd,
        "note": note or f"{size} heads of {hd} dims: {what} row blocks and output-projection column "
        "blocks move together (the per-head GL(d_head) symmetries are not counted)",
    }

