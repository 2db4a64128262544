"""Permutable spaces, part 5 — how a function call joins or fixes feature dimensions
(element-wise and binary ops, indexing, concatenation, reshapes of parameters).

Split out of :mod:`netxray.capture.structure._spaces`, which re-exports every name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from netxray.capture.structure._module_rules import (
    _fix_dim,
    _grouped_input,
    _reshape_rule,
)
from netxray.capture.structure._ops import (
    _BINARY,
    _ELEMENTWISE,
    _POOL_FUNCS,
    _REDUCE,
    _SHAPE_ONLY,
    GNode,
)
from netxray.capture.structure._union import (
    FIXED,
    _Feat,
    _Param,
)


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
