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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from netxray.capture.structure._call_rules import (  # noqa: F401  (re-exported: they lived here)
    _MERGED,
    _as_stored,
    _binary_rule,
    _call_rule,
    _cat_rule,
    _func_of,
    _getitem_rule,
    _merge_rest,
    _param_member,
    _param_reshape,
)
from netxray.capture.structure._heads import (  # noqa: F401  (re-exported: they lived here)
    _QKVO,
    _fused_qkv_heads,
    _head,
    _head_dim_members,
    _join_position_bias_heads,
    _levit_heads,
    _linear_norm,
    _per_head_members,
    expert_axes,
    head_axes,
)
from netxray.capture.structure._module_rules import (  # noqa: F401  (re-exported: they lived here)
    _fix_dim,
    _fold_members,
    _grouped_input,
    _module_rule,
    _recurrent_rule,
    _reshape_rule,
    _strided,
    _whole_fold,
)
from netxray.capture.structure._ops import (  # noqa: F401  (re-exported: they lived here)
    _ALIASES,
    _BINARY,
    _ELEMENTWISE,
    _INDEX_NAMES,
    _POOL_FUNCS,
    _POOL_MODULES,
    _REDUCE,
    _SHAPE_ONLY,
    _UNPARSED,
    GNode,
    _atomic,
    _fn_name,
    _is_conv1d_hf,
    _is_rmsnorm,
    _parse_index,
    recorded_graph,
)
from netxray.capture.structure._union import (  # noqa: F401  (re-exported: they lived here)
    _UF,
    FIXED,
    _Feat,
    _Param,
    _Space,
)

__all__ = ["GNode", "Found", "find_axes", "head_axes", "recorded_graph"]


# ---------------------------------------------------------------------------------------------
# what find_axes read, and the walk from writers to readers
# ---------------------------------------------------------------------------------------------


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


_FOLD_OK = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "movedim", "swapaxes",
            "contiguous", "view_as", "reshape_as"}
