"""Permutable spaces, part 4 — how a module call joins or fixes feature dimensions (linear,
convolution, norms, pooling, recurrent layers, reshapes, grouped inputs).

Split out of :mod:`netxray.capture.structure._spaces`, which re-exports every name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netxray.capture.structure._ops import (
    _POOL_MODULES,
    GNode,
    _is_conv1d_hf,
    _is_rmsnorm,
)
from netxray.capture.structure._union import (
    _UF,
    FIXED,
    _Feat,
)


def _fix_dim(f: _Feat, nd: int) -> _Feat:
    return _Feat(f.dim + nd if f.dim < 0 else f.dim, f.segs, outer=f.outer)


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
