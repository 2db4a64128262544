"""Lens 4 — symmetry (SPEC §4): which reparameterizations leave a network's function unchanged,
what that does to its covering-number bound, its canonical form, and the distance between two
networks once symmetry is factored out.

The central object is a *permutable axis*: a set of units (hidden units, channels, attention
heads, residual-stream features) together with every tensor slice that moves with them — the
*writers* that determine a unit's activation (incoming rows, biases, BatchNorm parameters and
running statistics) and the *readers* that consume it linearly (the next layer's columns, a
Flatten's column blocks). Permuting every member of an axis by the same permutation leaves the
function unchanged; for positively homogeneous activations (ReLU) a per-unit factor a > 0 on the
writers' affine part and 1/a on the readers is a symmetry too, for odd ones (tanh) a factor ±1.

Axes are found from the model's structure: the four built-in families by their documented
layout, any other model from the graph of one real forward pass (``capture.graph.record_graph``:
module hooks plus a ``TorchFunctionMode``), following each hidden space from its writers
(Linear/Conv rows, norms, embeddings) through element-wise ops, residual additions,
concatenations, reshapes and (grouped) convolutions to its readers. Every axis reported is
verified by a permutation test on a copy of the model whose parameters all hold random values (an
axis is a claim about every parameter value: none may rest on a bias or a head that happens to
be zero). What could not be analysed is listed with its reason, never silently skipped.

Example
-------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> g = symmetry_group(net)
>>> g[["axis", "size", "log10_order"]].round(4).values.tolist()
[['0->2', 8, 4.6055]]
>>> canon = canonicalize(net)
>>> x = torch.randn(5, 4, dtype=torch.float64)
>>> bool(torch.allclose(canon(x), net.double()(x), atol=1e-10))
True
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.lenses._symmetry_parts import (  # noqa: F401  (re-exported: they lived here)
    _HOMOGENEOUS_FUNCS,
    _HOMOGENEOUS_MODULES,
    _IDENTITY_FUNCS,
    _IDENTITY_MODULES,
    _METHODS,
    _ODD_FUNCS,
    _ODD_MODULES,
    _OTHER_FUNCS,
    _OTHER_MODULES,
    Member,
    _module_kind,
)
from netxray.measures import symmetry as msym

__all__ = [
    "Alignment",
    "Equivalence",
    "align",
    "alignment_distances",
    "canonicalize",
    "covering_bounds",
    "effective_volume",
    "functionally_equivalent",
    "plot_effective_volume",
    "symmetry_group",
]

LN2 = math.log(2.0)
LN10 = math.log(10.0)

# ---------------------------------------------------------------------------------------------
# axes
# ---------------------------------------------------------------------------------------------


@dataclass
class Axis:
    """A permutable axis of a network (see the module docstring)."""

    name: str
    layer: str
    kind: str
    size: int
    writers: list[Member]
    readers: list[Member]
    scale: list[Member] = field(default_factory=list)  # affine part: × a (bias first)
    bias: Member | None = None  # primary sort key (descending)
    const_in: list[Member] = field(default_factory=list)  # all zero ⇒ the unit is constant σ(bias)
    act: str = "other"  # "homogeneous" | "odd" | "other": which per-unit factors are symmetries
    activation: str = ""
    sigma: Callable[[torch.Tensor], torch.Tensor] | None = None  # the element-wise map after writers
    fold: tuple[str, str | None] | None = None  # (reader Linear weight, its bias) for constant units
    reducible: bool = True
    primary: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None
    continuous_dims: int = 0
    sign_flips: bool = False
    note: str = ""
    alternatives: list[Axis] = field(default_factory=list)  # other layouts to verify if this one fails
    # > 1: the units fall into ``groups`` contiguous blocks of k = size/groups (the channels of a
    # grouped convolution) and the axis is the product of the permutations inside each block —
    # (k!)^groups elements; a unit never leaves its block (whole blocks move on their own axis)
    groups: int = 1
    # whole groups of grouped convolutions (kind "channel group"): how many channels of each
    # writer's space one unit (a group) holds, keyed by (key, dim, offset) — sorting and matching
    # compare groups by their channels' rows sorted inside the group, so that the comparison does
    # not depend on the order of channels inside a group (fixed only later, by the grouped axes)
    inner: dict[tuple[str, int, int], int] = field(default_factory=dict)
    # (key, n): the axis is tested non-vacuously only if the probe reaches each of the n slabs of
    # ``key`` along dim 0 (stacked experts): checked before it is verified
    reach: tuple[str, int] | None = None


@dataclass
class _Analysis:
    family: str
    axes: list[Axis]
    not_analysed: list[str]
    statement: str
    model: nn.Module | None = None  # the analysed model (a wrapper's inner model)
    wrapper: str | None = None
    readable: bool = True  # False: the structure could not be read at all
    probe: Any = None  # the example input the structure was read with, when one was needed
    m64: nn.Module | None = None  # its eval-mode float64 copy, when one was made
    calls: dict[str, int] | None = None  # the layers (module paths) the recorded pass called


def _index(size: int, m: Member, units: np.ndarray) -> np.ndarray:
    # positions along m.dim of the given units, segment by segment, block entries consecutive
    seg = np.arange(m.segments)[:, None, None] * (size * m.block)
    return (m.offset + seg + units[None, :, None] * m.block + np.arange(m.block)[None, None, :]).ravel()


def _grouped_view(t: np.ndarray, m: Member, size: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """A grouped member's tensor as (size, rest): unit u = j·k + i is row block j, column i (in
    each of its ``segments``: a stacked expert's gate and up rows)."""
    g, k, S = m.groups, size // m.groups, m.segments
    a = np.moveaxis(t, (m.row_dim, m.dim), (0, 1))
    shp = a.shape
    r = a.reshape(g, shp[0] // g, S, k, m.block, -1)
    return np.ascontiguousarray(r.transpose(0, 3, 1, 2, 4, 5)).reshape(size, -1), shp


def _grouped_set(state: dict[str, np.ndarray], m: Member, size: int, rows: np.ndarray) -> None:
    g, k, S = m.groups, size // m.groups, m.segments
    shp = np.moveaxis(state[m.key], (m.row_dim, m.dim), (0, 1)).shape
    r = rows.reshape(g, k, shp[0] // g, S, m.block, -1).transpose(0, 2, 3, 1, 4, 5).reshape(shp)
    state[m.key] = np.ascontiguousarray(np.moveaxis(r, (0, 1), (m.row_dim, m.dim)))


def _rows(state: dict[str, np.ndarray], m: Member, size: int) -> np.ndarray:
    """(size, k): every entry of the member that belongs to each unit."""
    if m.groups > 1:
        return _grouped_view(state[m.key], m, size)[0]
    a = np.take(state[m.key], _index(size, m, np.arange(size)), axis=m.dim)
    a = np.moveaxis(a, m.dim, 0).reshape(m.segments, size, m.block, -1)
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(size, -1)


def _set_rows(state: dict[str, np.ndarray], m: Member, size: int, rows: np.ndarray) -> None:
    if m.groups > 1:
        _grouped_set(state, m, size, rows)
        return
    full = np.moveaxis(state[m.key].copy(), m.dim, 0)
    pos = _index(size, m, np.arange(size))
    r = rows.reshape(size, m.segments, m.block, -1).transpose(1, 0, 2, 3).reshape((len(pos), *full.shape[1:]))
    full[pos] = r
    state[m.key] = np.ascontiguousarray(np.moveaxis(full, 0, m.dim))


def _take(state: dict[str, np.ndarray], axis: Axis, units: np.ndarray) -> None:
    """Keep (and reorder to) ``units`` in every member of the axis; entries of the tensor outside
    the member's slice stay where they are. A grouped axis (``axis.groups`` > 1) is only ever
    permuted inside its groups, never reduced: its grouped convolution needs equal groups."""
    if axis.groups > 1 and len(units) != axis.size:
        raise ValueError(f"axis {axis.name}: units of a grouped convolution cannot be dropped")
    for m in axis.writers + axis.readers:
        if m.groups > 1:
            _set_rows(state, m, axis.size, _rows(state, m, axis.size)[units])
            continue
        n = state[m.key].shape[m.dim]
        span = m.segments * axis.size * m.block
        idx = np.concatenate([np.arange(m.offset), _index(axis.size, m, units),
                              np.arange(m.offset + span, n)])
        state[m.key] = np.take(state[m.key], idx, axis=m.dim)
    axis.size = len(units)


def _scale(state: dict[str, np.ndarray], m: Member, size: int, factor: np.ndarray) -> None:
    if m.groups > 1:
        _set_rows(state, m, size, _rows(state, m, size) * factor[:, None])
        return
    n = state[m.key].shape[m.dim]
    f = np.ones(n)
    f[_index(size, m, np.arange(size))] = np.tile(np.repeat(factor, m.block), m.segments)
    shape = [1] * state[m.key].ndim
    shape[m.dim] = -1
    state[m.key] = state[m.key] * f.reshape(shape)


def _group_units(ax: Axis) -> list[np.ndarray]:
    """The units of each group of ``ax`` (one group of every unit for an ungrouped axis)."""
    k = ax.size // ax.groups
    return [np.arange(j * k, (j + 1) * k) for j in range(ax.groups)]


def _random_element(rng: np.random.Generator, ax: Axis) -> np.ndarray:
    """A random permutation of the axis that moves at least one unit, inside groups when the
    axis is grouped."""
    perm = np.concatenate([u[rng.permutation(len(u))] for u in _group_units(ax)]) if ax.size else np.arange(0)
    if ax.size > 1 and np.all(perm == np.arange(ax.size)):
        first = _group_units(ax)[0]
        perm[first] = np.roll(first, 1)
    return perm


def _match_rows(state: dict[str, np.ndarray], ax: Axis) -> np.ndarray:
    """(size, k): the features units are sorted and matched by — the writers already in
    canonical order (``match``); for a channel-group axis each group's channels' rows, sorted
    inside the group (invariant to the permutations inside groups)."""
    feats = [m for m in ax.writers if m.match]
    if not ax.inner:
        return _concat_rows(state, feats, ax.size)
    parts = []
    by_k: dict[int, list[np.ndarray]] = {}
    for m in feats:
        k = ax.inner.get((m.key, m.dim, m.offset), 1)
        r = _rows(state, m, ax.size).reshape(ax.size, m.segments, k, -1).transpose(0, 2, 1, 3)
        by_k.setdefault(k, []).append(r.reshape(ax.size, k, -1))
    for rs in by_k.values():
        r = np.concatenate(rs, axis=2)  # (groups, k channels, features)
        for j in range(ax.size):
            r[j] = r[j][np.lexsort(r[j].T[::-1])] if r.shape[2] else r[j]
        parts.append(r.reshape(ax.size, -1))
    return np.concatenate(parts, axis=1) if parts else np.zeros((ax.size, 0))


def _axis_log_order(ax: Axis) -> float:
    """ln |axis|: ln d! for an ungrouped axis, groups·ln k! for one grouped into blocks of k."""
    return ax.groups * msym.log_factorial(ax.size // ax.groups)


def _no_duplicate_units(state: dict[str, np.ndarray], members: Sequence[Member], size: int) -> bool:
    """True when no two units of the axis can be identical in every tensor they own, read one
    member at a time (never the concatenation of every member's rows: for a transformer's
    residual stream that is a float64 copy of nearly all parameters).

    Each unit's rows are projected on a fixed random vector, member by member, and summed.
    Identical units have projections equal up to the rounding of the dot products, at most
    k·2⁻⁵³·Σ|row|·|r| for k entries; any two projections closer than 1e-8·max Σ|row|·|r| (far
    above that rounding) send the caller to the exact comparison, so this never misses a
    duplicate. Units with non-finite entries are nobody's duplicate (as in ``duplicate_groups``).
    """
    if size < 2:
        return True
    rng = np.random.default_rng(0)
    proj = np.zeros(size)
    bound = np.zeros(size)
    for m in members:
        rows = _rows(state, m, size)
        r = rng.standard_normal(rows.shape[1])
        proj += rows @ r
        bound += np.abs(rows) @ np.abs(r)
        del rows
    ok = np.isfinite(proj) & np.isfinite(bound)
    p = np.sort(proj[ok])
    if p.size < 2:
        return True
    window = 1e-8 * float(bound[ok].max())
    return bool(np.all(np.diff(p) > window))


def _concat_rows(state: dict[str, np.ndarray], members: Sequence[Member], size: int) -> np.ndarray:
    if not members:
        return np.zeros((size, 0))
    return np.concatenate([_rows(state, m, size) for m in members], axis=1)


# ---------------------------------------------------------------------------------------------
# element-wise operations: which symmetries they admit (the tables and _module_kind live in
# _symmetry_parts, shared with _symmetry_graph)
# ---------------------------------------------------------------------------------------------


def _combine(kinds: Sequence[str]) -> str:
    # a composition keeps a property only if every non-identity part has it
    ks = {k for k in kinds if k != "identity"}
    if not ks:
        return "homogeneous"  # purely linear: every positive (indeed any) rescaling is a symmetry
    return ks.pop() if len(ks) == 1 else "other"


def _act_name(mod_or_fn: Any) -> str:
    if isinstance(mod_or_fn, nn.Module):
        return type(mod_or_fn).__name__
    return getattr(mod_or_fn, "__name__", str(mod_or_fn))


# ---------------------------------------------------------------------------------------------
# structure: built-in families
# ---------------------------------------------------------------------------------------------


def _family(model: nn.Module) -> str:
    cfg = getattr(model, "netxray_config", None)
    arch = cfg.get("arch") if isinstance(cfg, dict) else None
    name = type(model).__name__
    if arch in ("mlp", "cnn", "resnet", "vit") and name.lower() == arch:
        return arch
    return "generic"


def _has(state_keys: set[str], key: str) -> bool:
    return key in state_keys


def _linear_axis(
    name: str, prod: str, cons: str, size: int, acts: list[Any], keys: set[str], kind: str,
    cons_linear: bool, block: int = 1, bn: str | None = None,
    has_maxpool: bool = False, layer: str | None = None,
) -> Axis:
    """Axis between a producer (Linear/Conv, optional BatchNorm) and a linear consumer."""
    kinds = [_module_kind(a) if isinstance(a, nn.Module) else a[0] for a in acts]
    act = _combine([k for k in kinds if k is not None])
    names = [_act_name(a) if isinstance(a, nn.Module) else a[1] for a, k in zip(acts, kinds, strict=True)
             if k != "identity"]  # dropout/identity change nothing: leave them out of the name
    writers = [Member(f"{prod}.weight", 0)]
    pb = f"{prod}.bias" if _has(keys, f"{prod}.bias") else None
    if pb:
        writers.append(Member(pb, 0))
    scale: list[Member]
    if bn is not None and _has(keys, f"{bn}.weight"):
        writers += [Member(f"{bn}.{t}", 0) for t in ("bias", "weight", "running_mean", "running_var")]
        scale = [Member(f"{bn}.bias", 0), Member(f"{bn}.weight", 0)]
        bias = Member(f"{bn}.bias", 0)
        const_in = [Member(f"{bn}.weight", 0)]
    elif bn is not None:  # BN without affine parameters: nothing carries a post-BN scale
        writers += [Member(f"{bn}.{t}", 0) for t in ("running_mean", "running_var") if _has(keys, f"{bn}.{t}")]
        scale, bias, const_in = [], None, []
        act = "other" if act == "homogeneous" else act
    else:
        scale = ([Member(pb, 0)] if pb else []) + [Member(f"{prod}.weight", 0)]
        bias = Member(pb, 0) if pb else None
        const_in = [Member(f"{prod}.weight", 0)]
    if act == "odd" and has_maxpool:
        act = "other"  # max(−x) ≠ −max(x): sign flips do not commute with max-pooling
    readers = [Member(f"{cons}.weight", 1, block=block)]
    fold = (f"{cons}.weight", f"{cons}.bias" if _has(keys, f"{cons}.bias") else None) if cons_linear and block == 1 else None

    def sigma(t: torch.Tensor, _acts: list[Any] = acts) -> torch.Tensor:
        for a in _acts:
            t = a(t) if isinstance(a, nn.Module) else a[2](t)
        return t

    return Axis(
        name=name, layer=layer or prod, kind=kind, size=size, writers=writers, readers=readers,
        scale=scale, bias=bias, const_in=const_in, act=act,
        activation="∘".join(reversed(names)) or "none", sigma=sigma, fold=fold,
        continuous_dims=size if (act == "homogeneous" and scale) else 0,
        sign_flips=act == "odd" and bool(scale),
    )


def _mlp_axes(model: nn.Module, keys: set[str]) -> list[Axis]:
    axes = []
    hidden = list(model.hidden)
    for i, layer in enumerate(hidden):
        cons = f"hidden.{i + 1}.linear" if i + 1 < len(hidden) else "head"
        axes.append(_linear_axis(
            f"hidden.{i}", f"hidden.{i}.linear", cons, layer.linear.out_features, [layer.act],
            keys, "hidden unit", cons_linear=True,
        ))
    return axes


def _cnn_axes(model: nn.Module, keys: set[str]) -> list[Axis]:
    axes = []
    feats = list(model.features.named_children())
    blocks = [(n, m) for n, m in feats if hasattr(m, "conv") and hasattr(m, "bn")]
    for n, blk in blocks:
        pos = [k for k, _ in feats].index(n)
        later = feats[pos + 1 :]
        nxt = next(((k, m) for k, m in later if hasattr(m, "conv")), None)
        between = [m for k, m in later[: [k for k, _ in later].index(nxt[0])]] if nxt else [m for _, m in later]
        maxpool = any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) for m in between)
        c = blk.conv.out_channels
        if nxt is not None:
            cons, block, lin = f"features.{nxt[0]}.conv", 1, False
        else:
            cons, lin = "classifier", True
            block = model.classifier.in_features // c
        axes.append(_linear_axis(
            f"features.{n}", f"features.{n}.conv", cons, c, [blk.act], keys, "channel",
            cons_linear=lin, block=block, bn=f"features.{n}.bn", has_maxpool=maxpool,
            layer=f"features.{n}",
        ))
    return axes


def _resnet_axes(model: nn.Module, keys: set[str]) -> list[Axis]:
    bn_t = ("bias", "weight", "running_mean", "running_var")

    def bn_members(p: str) -> list[Member]:
        return [Member(f"{p}.{t}", 0) for t in bn_t]

    blocks: list[tuple[str, nn.Module]] = []
    for s in range(model.num_stages):
        stage = getattr(model, f"layer{s + 1}")
        blocks += [(f"layer{s + 1}.{i}", b) for i, b in enumerate(stage)]
    # residual streams: the stem starts one, every projection shortcut starts the next
    streams: list[dict[str, Any]] = [{
        "start": "stem", "size": model.stem.conv.out_channels,
        "writers": [Member("stem.conv.weight", 0), *bn_members("stem.bn")],
        "bias": Member("stem.bn.bias", 0), "readers": [], "blocks": [],
    }]
    internal: list[Axis] = []
    for path, blk in blocks:
        cur = streams[-1]
        cur["readers"].append(Member(f"{path}.conv1.weight", 1))
        if not isinstance(blk.shortcut, nn.Identity):
            convs = [n for n, m in blk.shortcut.named_children() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
            bns = [n for n, m in blk.shortcut.named_children() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            sc, sb = f"{path}.shortcut.{convs[0]}", f"{path}.shortcut.{bns[0]}"
            cur["readers"].append(Member(f"{sc}.weight", 1))
            streams.append({
                "start": path, "size": blk.conv2.out_channels,
                "writers": [Member(f"{sc}.weight", 0), *bn_members(sb)],
                "bias": Member(f"{sb}.bias", 0), "readers": [], "blocks": [],
            })
        out = streams[-1]
        out["blocks"].append(path)
        # conv2's columns index the block-internal axis, aligned only later: no tie-break
        out["writers"] += [Member(f"{path}.conv2.weight", 0, match=False), *bn_members(f"{path}.bn2")]
        internal.append(_linear_axis(
            f"{path}.inner", f"{path}.conv1", f"{path}.conv2", blk.conv1.out_channels, [blk.relu],
            keys, "block-internal channel", cons_linear=False, bn=f"{path}.bn1",
            layer=path,
        ))
    streams[-1]["readers"].append(Member("fc.weight", 1, block=model.fc.in_features // streams[-1]["size"]))
    stream_axes = []
    for k, st in enumerate(streams):
        span = f"{st['start']} … {st['blocks'][-1]}" if st["blocks"] else st["start"]
        stream_axes.append(Axis(
            name=f"stream.{k}", layer=span, kind="residual stream", size=st["size"],
            writers=st["writers"], readers=st["readers"], bias=st["bias"], act="homogeneous",
            # every writer's BN affine part × a, every reader ÷ a: the ReLU after the stem and
            # after each sum is positively homogeneous, and identity shortcuts carry the factor
            scale=[m for m in st["writers"] if _is_bn_affine(m.key, model)],
            activation="ReLU (after stem and sums)", reducible=False, continuous_dims=st["size"],
            note="one permutation and one positive rescaling per channel, shared by the stem or "
            "projection shortcut, every block's conv2/bn2 in this stage, and the readers "
            "(conv1, the next shortcut, fc)",
        ))
    return stream_axes + internal


def _is_bn_affine(key: str, model: nn.Module) -> bool:
    path, _, name = key.rpartition(".")
    return name in ("weight", "bias") and isinstance(
        model.get_submodule(path), nn.modules.batchnorm._BatchNorm
    )


def _vit_axes(model: nn.Module, keys: set[str]) -> list[Axis]:
    dim = model.patch_embed.out_channels
    writers = [Member("patch_embed.weight", 0), Member("cls_token", 2), Member("pos_embed", 2)]
    bias = None
    if _has(keys, "patch_embed.bias"):
        writers.insert(1, Member("patch_embed.bias", 0))
        bias = Member("patch_embed.bias", 0)
    readers = []
    blocks_axes: list[Axis] = []
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}"
        writers += [Member(f"{p}.norm1.weight", 0), Member(f"{p}.norm1.bias", 0),
                    Member(f"{p}.norm2.weight", 0), Member(f"{p}.norm2.bias", 0),
                    Member(f"{p}.attn.proj.weight", 0, match=False), Member(f"{p}.attn.proj.bias", 0),
                    Member(f"{p}.mlp.fc2.weight", 0, match=False), Member(f"{p}.mlp.fc2.bias", 0)]
        readers += [Member(f"{p}.attn.qkv.weight", 1), Member(f"{p}.mlp.fc1.weight", 1)]
        H, hd = blk.attn.num_heads, blk.attn.head_dim
        qk = f"{p}.attn.qkv.weight"

        def primary(state: dict[str, np.ndarray], _qk: str = qk, _H: int = H, _hd: int = hd) -> np.ndarray:
            # ‖W_Qᵀ W_K‖_F per head: invariant to the head's own GL(d_head) symmetry
            w = state[_qk].reshape(3, _H, _hd, -1)
            return np.array([np.linalg.norm(w[0, h].T @ w[1, h]) for h in range(_H)])

        blocks_axes.append(Axis(
            name=f"{p}.heads", layer=f"{p}.attn", kind="attention head", size=H,
            writers=[Member(qk, 0, block=hd, segments=3), Member(f"{p}.attn.qkv.bias", 0, block=hd, segments=3)],
            readers=[Member(f"{p}.attn.proj.weight", 1, block=hd)], act="other",
            activation="softmax attention", reducible=False, primary=primary,
            continuous_dims=2 * hd * hd * H,
            note="per head, Q/K admit x→Ax, K→A⁻ᵀ and V/O admit B, B⁻¹ (GL(d_head) each): "
            "counted as continuous dimensions; heads sorted by ‖W_Qᵀ W_K‖_F",
        ))
        blocks_axes.append(_linear_axis(
            f"{p}.mlp", f"{p}.mlp.fc1", f"{p}.mlp.fc2", blk.mlp.fc1.out_features, [blk.mlp.act], keys,
            "MLP hidden unit", cons_linear=True, layer=f"{p}.mlp",
        ))
    writers += [Member("norm.weight", 0), Member("norm.bias", 0)]
    readers.append(Member("head.weight", 1))
    stream = Axis(
        name="stream", layer="patch_embed … norm", kind="residual stream", size=dim,
        writers=writers, readers=readers, bias=bias, act="other", activation="LayerNorm",
        reducible=False,
        note="one permutation of the embedding dimension shared by the embedding, every block "
        "(LayerNorms are permutation-equivariant) and the head",
    )
    return [stream, *blocks_axes]


# ---------------------------------------------------------------------------------------------
# structure: any model, from the dataflow graph of one forward pass
# ---------------------------------------------------------------------------------------------

_PRODUCERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _unwrap(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The model inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile``
    wrappers (their symmetries are the inner model's), and the wrappers' names."""
    from netxray.capture.graph import unwrap_model_with_names

    inner, names = unwrap_model_with_names(model)
    return inner, " ∘ ".join(names) or None


def _dedupe(members: list[Member]) -> list[Member]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for m in members:
        k = (m.key, m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim)
        if k not in seen:
            seen.add(k)
            out.append(m)
    return out


def _graph_of(model: nn.Module, probe: _Probe) -> tuple[list[Any] | None, str | None]:
    """The op list of one real forward pass of ``model`` on ``probe``
    (:func:`netxray.capture.graph.record_graph`), or why it could not be read."""
    from netxray.capture.graph import record_graph
    from netxray.lenses import _symmetry_graph as sg

    p = next((t for t in model.parameters() if t.is_floating_point()), None)

    def cast(x: Any) -> Any:  # the example runs in the model's own dtype and device
        if isinstance(x, torch.Tensor):
            return x.to(dtype=p.dtype if (p is not None and x.is_floating_point()) else x.dtype,
                        device=p.device if p is not None else x.device)
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        return type(x)(cast(v) for v in x) if isinstance(x, (list, tuple)) else x

    example = cast(dict(probe.kwargs)) if probe.kwargs else cast(probe.args[0] if len(probe.args) == 1 else tuple(probe.args))
    try:
        mg = record_graph(model, example)  # eval mode, no grad, every flag and weight restored
    except Exception as exc:  # a model that does not run: say so, analyse nothing
        return None, f"its forward pass could not be recorded ({type(exc).__name__}: {str(exc)[:200]})"
    ops = sg.recorded_graph(model, mg)
    return ops, ("; ".join(mg.notes) if mg.notes else None)


def _generic_axes(
    model: nn.Module, graph: list[Any], keys: set[str]
) -> tuple[list[Axis], list[str], list[str], set[str]]:
    """Axes of any model from its op list (see :mod:`netxray.lenses._symmetry_graph`)."""
    from netxray.lenses import _symmetry_graph as sg

    found = sg.find_axes(model, graph)
    heads = sg.head_axes(model)
    experts = sg.expert_axes(model)
    mods = dict(model.named_modules())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    head_keys = {m.key for h in heads + experts for m in h["writers"] + h["readers"]} \
        | {k for h in heads + experts for k in h.get("explains", [])}
    notes = list(found.notes)
    outputs: list[str] = []
    output_keys: set[str] = set()
    axes: list[tuple[int, Axis]] = []
    for sp in found.spaces:
        writer_keys = {m.key for role, m in sp.members if role == "w"}
        if sp.frozen:
            if writer_keys and writer_keys <= head_keys:
                continue  # queries, keys, values: their heads are axes of their own
            if not sp.members:
                # features no parameter writes or reads (Llama's rotary cos/sin products inside a
                # head): there is nothing to permute, so nothing was left unanalysed; parameters
                # that no axis reached are listed below on their own
                continue
            who = ", ".join(sp.writers[:3]) + (f" (+{len(sp.writers) - 3})" if len(sp.writers) > 3 else "")
            reasons = sorted(set(sp.frozen))
            if reasons == ["reaches the model's output"]:
                outputs.append(f"{who} ({sp.size})")  # observed features: fixed, and rightly so
                output_keys.update(m.key for _, m in sp.members)
            else:
                notes.append(f"{who or 'features'} ({sp.size}): " + "; ".join(reasons[:3]))
            continue
        if sp.size < 2 or not sp.writers:
            continue
        ax = _space_axis(sp, mods, shapes, keys)
        if sp.token:
            ax.kind = "token-mixing hidden unit"
        if sp.groups > 1:
            if sp.size == sp.groups:
                continue  # one channel per group: only whole groups move (the group axis below)
            ax.groups, ax.kind = sp.groups, "grouped channel"
            ax.note = (f"{sp.size} channels in {sp.groups} groups of {sp.size // sp.groups} (a grouped "
                       f"convolution): each channel permutes inside its group only, "
                       f"({sp.size // sp.groups}!)^{sp.groups} elements; " + ax.note)
        axes.append((sp.order, ax))
    axes += [(o, a) for o, a in _group_block_axes(found, notes)]
    # a head axis is processed where its projections' outputs start (the frozen q/k/v space)
    start = {m.key: sp.order for sp in found.spaces for role, m in sp.members if role == "w"}
    for h in heads:
        if h["size"] < 2:
            # one head: nothing to permute. Its tensors were read (the q/k/v spaces are accounted
            # for, not frozen) and are fixed by every symmetry: listed with the output side, not
            # as parts left unanalysed (a 1-head window attention's position-bias table)
            output_keys.update(m.key for m in h["writers"] + h["readers"])
            output_keys.update(h.get("explains", []))
            continue
        ax = Axis(name=h["name"], layer=h["layer"], kind=h["kind"], size=h["size"], writers=h["writers"],
                  readers=h["readers"], act="other", activation="softmax attention", reducible=False,
                  note=h["note"], alternatives=[
                      Axis(name=h["name"], layer=h["layer"], kind=h["kind"], size=a["size"], writers=a["writers"],
                           readers=a["readers"], act="other", activation="softmax attention", reducible=False,
                           note=a["note"]) for a in h.get("alternatives", [])])
        order = min((start[m.key] for m in h["writers"] if m.key in start), default=10**9)
        axes.append((order + 0.5, ax))
    for e in experts:  # stacked experts × router; each expert's hidden units (grouped by expert)
        def axis(d: dict[str, Any]) -> Axis:
            return Axis(name=d["name"], layer=d["layer"], kind=d["kind"], size=d["size"], writers=d["writers"],
                        readers=d["readers"], act="other", activation="routed experts", reducible=False,
                        note=d["note"], groups=d["groups"], reach=d.get("reach"))

        ax = axis(e)
        ax.alternatives = [axis(a) for a in e.get("alternatives", [])]
        order = min((start[m.key] for m in e["writers"] if m.key in start), default=10**9)
        axes.append((order + 0.6, ax))
    axes.sort(key=lambda t: t[0])
    out = [a for _, a in axes]
    # names are keys (verification, alignment): pieces of one cut space share their writers,
    # hence their name — the repeats are numbered in forward order
    seen: dict[str, int] = {}
    for a in out:
        seen[a.name] = seen.get(a.name, 0) + 1
        if seen[a.name] > 1:
            a.name = f"{a.name}#{seen[a.name]}"
    head_paths = [h["layer"].split(".") for h in heads]
    for a in out:
        if a.kind in ("hidden unit", "gated hidden unit"):
            # an FFN: a hidden layer inside the block that holds an attention module
            w = a.layer.split(".")
            for hp in head_paths:
                common = next((i for i, (x, y) in enumerate(zip(w, hp, strict=False)) if x != y), min(len(w), len(hp)))
                if common >= max(1, len(hp) - 2):
                    a.kind = "FFN " + a.kind
                    break
    _set_match(out, shapes)
    return out, notes, outputs, output_keys, dict(found.module_calls)


def _group_block_axes(found: Any, notes: list[str]) -> list[tuple[float, Axis]]:
    """Whole groups of grouped convolutions permuted as blocks.

    A grouped convolution with g groups reads input block j (C_in/g channels) into output
    block j (C_out/g channels) only. Permuting the g blocks by σ — the input space's blocks,
    the output space's blocks (the conv's row blocks, its BN) and every other writer/reader of
    either space, by the same σ — leaves the function unchanged, while the conv's own column
    dimension (the position inside a group) stays. Spaces linked through grouped convolutions
    (input and output of one, or a space read by two) form one component and share σ: one axis
    of g! elements. Together with the grouped-channel axes (each channel inside its group:
    (k!)^g for a space of g blocks of k) the symmetry of a bottleneck ``A →(grouped)→ B`` is the
    wreath-product-like group of order (k_A!)^g · (k_B!)^g · g! — g! only once, since A's and
    B's blocks move together. The component has no such axis when one of its spaces is frozen,
    its blocks are pinned (it reads the model's input) or its spaces disagree on g."""
    out: list[tuple[float, Axis]] = []
    seen: set[int] = set()
    for i, sp in enumerate(found.spaces):
        if sp.groups < 2 or i in seen:
            continue
        comp, stack = [], [i]
        while stack:
            j = stack.pop()
            if j in seen:
                continue
            seen.add(j)
            comp.append(j)
            stack += found.links[j]
        spaces = [found.spaces[j] for j in sorted(comp)]
        g = spaces[0].groups
        who = ", ".join(w for s in spaces for w in s.writers[:1])
        why = ([f"the groups of {s.size} channels ({', '.join(s.writers[:1])}) are frozen: "
                + "; ".join(sorted(set(s.frozen))[:2]) for s in spaces if s.frozen]
               + [r for s in spaces for r in s.gfixed]
               + (["its spaces are grouped differently"] if any(s.groups != g for s in spaces) else []))
        if why:
            if any(not s.frozen for s in spaces):  # otherwise the frozen spaces are reported already
                notes.append(f"channel groups of {who}: whole groups cannot be permuted ({'; '.join(why[:2])})")
            continue
        if g < 2:
            continue
        writers, readers = [], []
        inner: dict[tuple[str, int, int], int] = {}
        for s in spaces:
            k = s.size // g
            for role, m in s.members:
                if m.groups > 1:
                    continue  # the grouped conv's columns: the position inside a group stays
                mm = Member(m.key, m.dim, block=m.block * k, segments=m.segments, offset=m.offset)
                (readers if role == "r" else writers).append(mm)
                inner[(m.key, m.dim, m.offset)] = k
        writers, readers = _dedupe(writers), _dedupe(readers)
        sizes = " and ".join(f"{s.size // g}" for s in spaces)
        # before the grouped-channel axes of its spaces: groups are placed first (compared by
        # their channels sorted inside each group), then the channels inside each group
        out.append((min(s.order for s in spaces) - 0.25, Axis(
            name=f"groups@{spaces[0].writers[0]}", layer=", ".join(s.writers[0] for s in spaces),
            kind="channel group", size=g, writers=writers, readers=readers, act="other",
            activation="grouped convolution", reducible=False, inner=inner,
            note=f"{g} groups of {sizes} channels permuted as whole blocks, the same permutation for the "
            f"input and output channels of the grouped convolution(s) and every tensor that writes or reads "
            f"them ({g}! elements)",
        )))
    return out


def _space_axis(sp: Any, mods: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]], keys: set[str]) -> Axis:
    from netxray.lenses import _symmetry_graph as sg

    writers = _dedupe([m for role, m in sp.members if role in ("w", "n")])
    # a slice both written and read (a tied decoder reads the encoder's rows) moves once
    written = {(m.key, m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim) for m in writers}
    read = _dedupe([m for role, m in sp.members if role == "r"])
    readers = [m for m in read if (m.key, m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim) not in written]
    if len(readers) < len(read):
        joined_extra = {"shared"}
    else:
        joined_extra = set()
    full = all(m.offset == 0 and shapes[m.key][m.dim] == m.segments * sp.size * m.block for m in writers + readers)
    w_mods = [mods.get(w) for w in sp.writers]
    r_mods = [mods.get(r) for r in sp.readers]
    joined = {j for j in sp.joined if j not in ("add-broadcast", "mul-broadcast")} | joined_extra
    simple = (
        full and len(sp.writers) == 1 and len(sp.readers) == 1 and not joined and readers
        and sp.writers[0] != sp.readers[0]  # not a module reading its own rows (tied weights)
        and isinstance(w_mods[0], _PRODUCERS) and getattr(w_mods[0], "groups", 1) == 1
        and isinstance(r_mods[0], _PRODUCERS) and getattr(r_mods[0], "groups", 1) == 1
        and all(isinstance(a, nn.Module) or a[2] is not None for a in sp.acts)
    )
    if simple:
        prod, cons = sp.writers[0], sp.readers[0]
        block = next(m.block for m in readers)
        return _linear_axis(
            f"{prod}->{cons}", prod, cons, sp.size, list(sp.acts), keys,
            "channel" if not isinstance(w_mods[0], nn.Linear) else "hidden unit",
            cons_linear=isinstance(r_mods[0], nn.Linear), block=block, bn=sp.bn, has_maxpool=sp.maxpool,
        )
    if "add" in joined:
        kind = "residual stream"
    elif "mul" in joined and len(sp.writers) > 1:
        kind = "gated hidden unit" if all(isinstance(m, nn.Linear) or (m is not None and sg._is_conv1d_hf(m))
                                          for m in w_mods if m is not None and m.__class__ is not nn.Embedding) \
            and not any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in w_mods) else "channel"
    elif any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in w_mods):
        kind = "channel"
    elif any(isinstance(m, nn.Embedding) for m in w_mods):
        kind = "embedding"
    else:
        kind = "hidden unit"
    first = sp.writers[0]
    name = f"{first}->{sp.readers[0]}" if len(sp.writers) == 1 and len(sp.readers) == 1 else \
        f"{first}+{len(sp.writers) - 1}" if len(sp.writers) > 1 else first
    if kind == "residual stream":
        name = f"stream@{first}"
    parts = [p.split(".") for p in sp.writers + sp.readers if p in mods]
    common = []
    for seg in zip(*parts, strict=False):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    layer = ".".join(common) or f"{first} … {(sp.readers or sp.writers)[-1]}"
    bias = next((m for m in writers if m.key.endswith(".bias") and m.key.rsplit(".", 1)[0] == first), None)
    acts = sorted({_act_name(a) if isinstance(a, nn.Module) else a[1] for a in sp.acts
                   if (_module_kind(a) if isinstance(a, nn.Module) else a[0]) != "identity"})
    how = {"add": "residual additions", "mul": "element-wise products", "norm": "normalisations",
           "cat-token": "token concatenation", "depthwise": "depthwise convolutions", "reduced": "reductions",
           "add-param": "added parameters", "mul-param": "scaling parameters", "roll": "spatial rolls",
           "grouped": "grouped convolutions", "shuffle": "channel shuffles",
           "shared": "shared weights (a module called more than once, tied parameters)",
           "recurrent": "a recurrent layer's gates and states"}
    through = [how[j] for j in sorted(joined) if j in how]
    return Axis(
        name=name, layer=layer, kind=kind, size=sp.size, writers=writers, readers=readers, bias=bias,
        act="other", activation="∘".join(acts) or ("LayerNorm" if "norm" in joined else "none"),
        reducible=False,
        note=f"one permutation shared by {len(sp.writers)} writer(s) and {len(sp.readers)} reader(s)"
        + (" through " + ", ".join(through) if through else "") + "; permutation only (no rescaling is claimed)",
    )


def _set_match(axes: list[Axis], shapes: dict[str, tuple[int, ...]]) -> None:
    """A slice is a sort/matching feature of its axis only when every other dimension of its
    tensor is permuted by an axis processed earlier (or by none)."""
    by_dim: dict[tuple[str, int], list[int]] = {}
    for i, ax in enumerate(axes):
        for m in ax.writers + ax.readers:
            by_dim.setdefault((m.key, m.dim), []).append(i)
    for i, ax in enumerate(axes):
        def ok(m: Member, i: int = i) -> bool:
            return all(j <= i for d in range(len(shapes[m.key])) if d != m.dim for j in by_dim.get((m.key, d), []))
        ax.writers = [dataclasses.replace(m, match=ok(m)) for m in ax.writers]


def _analyse(model: nn.Module, data: Any = None) -> _Analysis:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    model, wrapper = _unwrap(model)
    keys = set(model.state_dict().keys())
    fam = _family(model)
    notes: list[str] = []
    outputs: list[str] = []
    output_keys: set[str] = set()
    readable = True
    probe, m64, calls = None, None, None
    if fam == "mlp":
        axes = _mlp_axes(model, keys)
    elif fam == "cnn":
        axes = _cnn_axes(model, keys)
    elif fam == "resnet":
        axes = _resnet_axes(model, keys)
    elif fam == "vit":
        axes = _vit_axes(model, keys)
    else:
        try:
            m64, probe = _copy_that_runs(model, data)
        except ValueError as exc:
            probe, graph, why = None, None, str(exc)
        else:
            graph, why = _graph_of(model, probe)
        if graph is None:
            axes, notes, readable = [], [f"the model's structure could not be read: {why}; no symmetry was proven for it"], False
        else:
            try:
                axes, notes, outputs, output_keys, calls = _generic_axes(model, graph, keys)
            except Exception as exc:  # a layer the finder trips over: a stated failure, never a crash
                axes, readable = [], False
                notes = [f"the axis finder failed on this model's graph ({type(exc).__name__}: {str(exc)[:200]}); "
                         "no symmetry was proven for it"]
            if why:  # parts of the pass the graph could not follow
                notes.insert(0 if readable else 1, f"graph: {why}")
    covered = {m.key for a in axes for m in a.writers + a.readers}
    sd = model.state_dict(keep_vars=True)
    float_keys = [k for k, v in sd.items() if v.is_floating_point()]
    # a tensor stored under several keys (tied weights: ALBERT's predictions.bias is its
    # decoder's bias) is covered, or shown at the output, under all of them
    names: dict[int, list[str]] = {}
    for k in float_keys:
        names.setdefault(id(sd[k]), []).append(k)
    covered |= {a for k in covered if k in sd for a in names.get(id(sd[k]), [])}
    output_keys = output_keys | {a for k in output_keys if k in sd for a in names.get(id(sd[k]), [])}

    def owner(k: str) -> str:
        return k.rsplit(".", 1)[0] if "." in k else k

    touched = {owner(k) for k in covered | output_keys}
    untouched = sorted({owner(k) for k in float_keys if owner(k) not in touched})
    fixed = [k for k in float_keys if k not in covered and owner(k) in touched]
    def why_untouched(o: str) -> str:
        if calls is not None and not any(c == o or c.startswith(o + ".") for c in calls):
            # a route the probe's samples did not take (an expert of a top-1 mixture): its
            # structure was never recorded, so no axis through it can be proven or verified
            return f"{o}: not called on the probe inputs (a route they did not take), so not analysed"
        return f"{o}: no permutable axis proven through it"

    not_analysed = notes + ([why_untouched(o) for o in untouched] if readable else [])
    if fam == "generic":
        statement = (
            "arbitrary model: axes read from the dataflow of one forward pass (feature spaces "
            "carried through element-wise maps, norms, residual additions, gates and "
            "concatenations; attention heads from the attention modules); "
            + ("not analysed: " + "; ".join(not_analysed) if not_analysed
               else "every layer with parameters is covered by some axis")
        )
    else:
        statement = f"built-in {fam}: every axis of its documented layout is listed"
        if untouched:
            statement += "; not analysed: " + "; ".join(not_analysed)
    if outputs:
        statement += "; features fixed because the model's output shows them: " + ", ".join(outputs)
    if fixed:
        statement += "; tensors fixed by every symmetry (output side): " + ", ".join(fixed[:20]) + \
            (f" (+{len(fixed) - 20} more)" if len(fixed) > 20 else "")
    if wrapper:
        statement = f"unwrapped from {wrapper}; " + statement
    return _Analysis(fam, axes, not_analysed, statement, model, wrapper, readable, probe, m64, calls)


# ---------------------------------------------------------------------------------------------
# probe inputs and verification
# ---------------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """Positional and keyword inputs of one call of the model."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    source: str


def _first_rows(x: Any, n: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[:n]
    if isinstance(x, dict):
        return {k: _first_rows(v, n) for k, v in x.items()}
    return x


def _data_probes(data: Any, n: int) -> list[_Probe]:
    """Probe inputs from the first ``n`` samples of ``data``, in every form the other lenses take
    (:func:`netxray.capture.inputs.resolve_samples`): a tensor, an ``(x, y)`` tuple,
    ``((x1, x2), y)`` or ``(x1, x2)`` for a model with several positional inputs, a dict of
    keyword tensors, a list of (dict) batches, a Dataset or DataLoader, a netxray Dataset.
    A tuple of tensors is ambiguous — ``(x, y)`` or two inputs: the first is tried alone first,
    then all of them as positional inputs."""
    from netxray.capture.inputs import resolve_samples

    d = getattr(data, "test", data)  # DataSplits → test split
    d = getattr(d, "x", d)  # Dataset → inputs
    if isinstance(d, torch.Tensor):
        if d.ndim < 1 or len(d) == 0:
            raise ValueError("data: expected a tensor of inputs with a batch dimension (N, ...)")
        return [_Probe((d[:n],), {}, "data")]
    if isinstance(d, dict) and d and any(isinstance(v, torch.Tensor) for v in d.values()):
        return [_Probe((), _first_rows(dict(d), n), "data")]
    if isinstance(d, (tuple, list)) and len(d) >= 2 and all(isinstance(t, torch.Tensor) and t.ndim for t in d) \
            and len({len(t) for t in d}) == 1:
        return [_Probe((d[0][:n],), {}, "data"),
                _Probe(tuple(t[:n] for t in d), {}, f"data ({len(d)} positional inputs)")]
    try:
        samples = resolve_samples(data, n_samples=n)
        inputs, _ = samples.take(torch.arange(min(n, len(samples))))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data: {exc}") from exc
    if isinstance(inputs, dict):
        return [_Probe((), dict(inputs), "data")]
    if isinstance(inputs, tuple):
        return [_Probe(tuple(inputs), {}, f"data ({len(inputs)} positional inputs)")]
    return [_Probe((inputs,), {}, "data")]


def _probe_candidates(model: nn.Module, data: Any, n: int, seed: int) -> list[_Probe]:
    if data is not None:
        return _data_probes(data, n)
    g = torch.Generator().manual_seed(seed)
    cfg = getattr(model, "netxray_config", None)
    if isinstance(cfg, dict) and "input_shape" in cfg:
        return [_Probe((torch.rand((n, *[int(s) for s in cfg["input_shape"]]), generator=g),), {}, "netxray config")]
    hf = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if hf is not None and main == "input_ids" and getattr(hf, "vocab_size", None):
        seq = max(1, min(8, int(getattr(hf, "max_position_embeddings", 8) or 8)))
        ids = torch.randint(0, int(hf.vocab_size), (n, seq), generator=g)
        return [_Probe((), {"input_ids": ids}, "token ids (Hugging Face config)")]
    if hf is not None and main == "pixel_values":
        size = getattr(hf, "image_size", 32)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        ch = int(getattr(hf, "num_channels", 3))
        return [_Probe((), {"pixel_values": torch.randn((n, ch, *size), generator=g)}, "pixel values (Hugging Face config)")]
    first = next((m for m in model.modules() if isinstance(m, (*_PRODUCERS, nn.Embedding))), None)
    cands: list[_Probe] = []
    # the size the model was built for, where its patch embedding keeps it (timm: ``patch_embed`` /
    # ``stem`` .img_size). It comes before the pretrained config, which describes the pretrained
    # weights and stays at 224 for a model created with ``img_size=32``
    declared = next(((path, m.img_size) for path, m in model.named_modules()
                     if _two_ints(getattr(m, "img_size", None)) is not None), None)
    chans = next((int(m.in_chans) for m in model.modules() if isinstance(getattr(m, "in_chans", None), int)),
                 first.in_channels if isinstance(first, nn.Conv2d) else None)
    if declared is not None and chans:
        hw = _two_ints(declared[1])
        cands.append(_Probe((torch.randn((n, chans, *hw), generator=g),), {},
                            f"{declared[0] or 'the model'}.img_size ({hw[0]}×{hw[1]})"))
    pc = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(pc, dict) and isinstance(pc.get("input_size"), (tuple, list)):
        shape = tuple(int(s) for s in pc["input_size"])
        cands.append(_Probe((torch.randn((n, *shape), generator=g),), {},
                            f"timm pretrained config ({'×'.join(map(str, shape))})"))
    if isinstance(getattr(model, "image_size", None), int) and isinstance(first, nn.Conv2d):
        s = model.image_size
        cands.append(_Probe((torch.randn((n, first.in_channels, s, s), generator=g),), {}, "the model's image_size"))
    if isinstance(first, nn.Linear) and not cands:
        return [_Probe((torch.randn((n, first.in_features), generator=g),), {}, "the first Linear layer")]
    if isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        # the spatial size is not declared (or the declared one does not run): the first size
        # the model runs on
        k = first.weight.ndim - 2
        cands += [_Probe((torch.randn((n, first.in_channels, *[s] * k), generator=g),), {},
                         f"the first {type(first).__name__} ({'×'.join([str(s)] * k)}, the first size that runs)")
                  for s in (32, 8, 16, 28, 64, 224)]
    if cands:
        return cands
    raise ValueError(f"cannot infer probe inputs for {type(model).__name__}; pass data=<a batch of its inputs>")


def _two_ints(v: Any) -> tuple[int, int] | None:
    """(h, w) from an int or a pair of ints (a patch embedding's ``img_size``), else None."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, int) and e > 0 for e in v):
        return (int(v[0]), int(v[1]))
    return None


def _probe_inputs(model: nn.Module, data: Any, n: int = 2, seed: int = 0, m64: nn.Module | None = None) -> _Probe:
    """``n`` probe inputs: the first rows of ``data`` when given (a tensor, an (x, y) tuple, a
    dict of tensors passed as keywords, a netxray Dataset/DataSplits), else generated from what
    the model declares: a netxray config's input shape, a Hugging Face config (token ids below
    ``vocab_size`` for text models, ``pixel_values`` of ``image_size``), the ``img_size`` its
    patch embedding was built for (timm ``create_model(..., img_size=32)``), a timm pretrained
    config, torchvision's ``image_size``, the first Linear layer, or for a conv net the first of
    32, 8, 16, 28, 64, 224 pixels that the model runs on — the first of these that runs. The inputs are checked by one forward
    pass of an eval-mode float64 copy (the model itself is not run: its BatchNorm statistics and
    mode stay as they are)."""
    cands = _probe_candidates(model, data, n, seed)
    m64 = _eval64(model) if m64 is None else m64
    errors = []
    for c in cands:
        try:
            _run(m64, c)
            return c
        except Exception as exc:  # the wrong guess of an input size: try the next
            errors.append(f"{c.source}: {type(exc).__name__}: {str(exc)[:120]}")
    raise ValueError(f"the model does not run on the probe inputs ({'; '.join(errors[:2])}); pass data=<a batch of its inputs>")


def _float_outputs(y: Any) -> list[torch.Tensor]:
    """Every floating-point tensor in a model's output (tensors, tuples, dicts, ModelOutputs)."""
    if isinstance(y, torch.Tensor):
        return [y] if y.is_floating_point() or y.is_complex() else []
    if isinstance(y, dict):
        return [t for v in y.values() for t in _float_outputs(v)]
    if isinstance(y, (list, tuple)):
        return [t for v in y for t in _float_outputs(v)]
    return []


def _to64(x: Any, dtype: torch.dtype = torch.float64) -> Any:
    """Floating tensors of ``x`` (nested in tuples, lists, dicts) cast to ``dtype``."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _to64(v, dtype) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to64(v, dtype) for v in x)
    return x


def _run(model: nn.Module, probe: _Probe) -> list[torch.Tensor]:
    """The floating outputs of ``model`` on ``probe``, its floating inputs cast to the model's
    floating dtype (float64 for the verification copy, float32 where the model needs it)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float64)
    with torch.no_grad():
        return _float_outputs(model(*_to64(probe.args, dtype), **_to64(probe.kwargs, dtype)))


def _lowest_precision(m64: nn.Module, probe: _Probe) -> torch.dtype:
    """The least precise floating dtype any op of the float64 copy computes a per-sample tensor
    in (its first axis is the batch): float64 unless the model casts down itself (Llama's
    RMSNorm runs in float32 whatever the weights' dtype)."""
    from torch.overrides import TorchFunctionMode

    batch = next((t.shape[0] for t in list(probe.args) + list(probe.kwargs.values())
                  if isinstance(t, torch.Tensor) and t.ndim), None)
    order = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
    seen = {"worst": 0}

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in _float_outputs(out):
                if t.ndim and t.shape[0] == batch and t.dtype in order:
                    seen["worst"] = max(seen["worst"], order.index(t.dtype))
            return out

    with Watch():
        _run(m64, probe)
    return order[seen["worst"]]


class _Verifier:
    """Applies random group elements to a float64 copy of the model (``_eval64``) and compares its
    outputs on ``probe`` with the unmoved copy's: ``max|y' − y| ≤ rtol · max|y|``. The unmoved
    state and outputs are read once; every check restores the tensors it moved."""

    def __init__(self, model: nn.Module, probe: _Probe, seed: int = 0, rtol: float = 1e-10,
                 y0: list[torch.Tensor] | None = None) -> None:  # fmt: skip
        self.m64 = model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = device
        self.probe = _Probe(_to_device(probe.args, device), _to_device(probe.kwargs, device), probe.source)
        self.live = {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self.base = _state64(model)
        self.y0 = _run(model, self.probe) if y0 is None else y0  # the unmoved outputs, if known
        self.ref = max((float(t.abs().max()) for t in self.y0 if t.numel()), default=0.0)
        self.rng = np.random.default_rng(seed)
        self.rtol = rtol
        self.forwards = 0  # how many moved forward passes the checks took (benchmarks read it)

    def _element(self, st: dict[str, np.ndarray], ax: Axis) -> str:
        """Write one random element of ``ax`` into ``st``: a permutation that moves every unit it
        can, with a random rescaling a ∈ [0.5, 2] or sign flip where the axis claims one."""
        a = copy.copy(ax)
        perm = _random_element(self.rng, a)
        what = "permutation"
        if a.act == "homogeneous" and a.scale and a.continuous_dims:
            f = self.rng.uniform(0.5, 2.0, a.size)
            what += " and positive rescaling"
        elif a.sign_flips and a.scale:
            f = self.rng.choice([-1.0, 1.0], a.size)
            what += " and sign flips"
        else:
            f = None
        if f is not None:
            for m in a.scale:
                _scale(st, m, a.size, f)
            for m in a.readers:
                _scale(st, m, a.size, 1.0 / f)
        _take(st, a, perm)
        return what

    def check(self, axes: Sequence[Axis]) -> tuple[bool, float, str]:
        """One random element of each of ``axes``, composed (applied one after the other to the
        same state), then one forward pass. Returns (passed, relative difference, reason)."""
        st = dict(self.base)
        whats = [self._element(st, ax) for ax in axes]
        what = whats[0] if len(whats) == 1 else f"composition of {len(whats)} axes' elements"
        moved = {m.key for ax in axes for m in ax.writers + ax.readers}
        try:
            with torch.no_grad():
                for k in moved:
                    self.live[k].copy_(torch.from_numpy(st[k]).to(self.device))
            _flush(self.m64)
            self.forwards += 1
            y = _run(self.m64, self.probe)
            y0 = self.y0
            if len(y) != len(y0) or any(t.shape != t0.shape for t, t0 in zip(y, y0, strict=True)):
                return False, math.inf, f"a random {what} changed the output shapes"
            err = max((float((t - t0).abs().max()) for t, t0 in zip(y, y0, strict=True) if t.numel()), default=0.0)
            rel = err / self.ref if self.ref > 0 else err
            if rel <= self.rtol:
                return True, rel, ""
            return False, rel, (f"a random {what} along it changed the outputs by {rel:.2e} "
                                f"(relative; allowed {self.rtol:g})")  # fmt: skip
        except Exception as exc:  # a wrongly claimed axis may break shapes: it is no symmetry
            return False, math.inf, f"moving it broke the forward pass ({type(exc).__name__}: {str(exc)[:120]})"
        finally:
            with torch.no_grad():
                for k in moved:
                    self.live[k].copy_(torch.from_numpy(self.base[k]).to(self.device))

    def check_each(self, axes: Sequence[Axis]) -> list[tuple[bool, float, str]]:
        """Every axis verified, in as few forward passes as the results allow (group testing).

        All axes' random elements are composed and checked in one pass; a group that fails is
        split in halves, down to single axes, whose verdict is their own. Why a passing group
        verifies each member: if every other axis of the group is a symmetry (of any parameters),
        the composition changes the outputs exactly as the remaining axis's element alone does,
        so the group test *is* that axis's single test. Only two or more wrong axes whose random
        elements cancel to 1e-10 could pass together — a coincidence of measure zero over the
        random permutations and rescalings. ViT-B/16: 25 axes, one float64 forward instead of 25.
        """
        out: list[tuple[bool, float, str] | None] = [None] * len(axes)

        def solve(idx: list[int]) -> None:
            ok, rel, why = self.check([axes[i] for i in idx])
            if ok or len(idx) == 1:
                for i in idx:
                    out[i] = (ok, rel, why)
                return
            half = len(idx) // 2
            solve(idx[:half])
            solve(idx[half:])

        if axes:
            solve(list(range(len(axes))))
        return [r for r in out if r is not None]


def _layers_not_reached(m: nn.Module, probe: _Probe, calls: dict[str, int]) -> set[str]:
    """The layers the recorded pass called (``calls``: module path → count) that one pass of
    the randomised copy ``m`` on ``probe`` does not call."""
    mods = dict(m.named_modules())
    seen: set[str] = set()
    hooks = [mods[p].register_forward_pre_hook(lambda *_, p=p: seen.add(p)) for p in calls if p in mods]
    try:
        _run(m, probe)
    finally:
        for h in hooks:
            h.remove()
    return {p for p in calls if p in mods and p not in seen}


def _unreached(v: _Verifier, key: str, n: int) -> list[int]:
    """The slabs j < n of ``key`` along dim 0 (stacked experts) whose change does not move the
    outputs on the probe: no probe token reaches them, so an axis moving them is untested."""
    out = []
    t = v.live[key]
    for j in range(n):
        with torch.no_grad():
            saved = t[j].clone()
            t[j].mul_(1.5).add_(0.1)
        try:
            _flush(v.m64)
            y = _run(v.m64, v.probe)
            moved = max((float((a - b).abs().max()) for a, b in zip(y, v.y0, strict=True) if a.numel()), default=0.0)
            if moved <= v.rtol * max(v.ref, 1e-300):
                out.append(j)
        finally:
            with torch.no_grad():
                t[j].copy_(saved)
            _flush(v.m64)
    return out


def _verify_axes(
    model: nn.Module, axes: Sequence[Axis], probe: _Probe, seed: int = 0, rtol: float = 1e-10
) -> list[tuple[bool, float, str]]:
    """Each axis checked on its own (one random element, one forward pass per axis); see
    :class:`_Verifier`. Returns (passed, relative difference, reason) per axis."""
    v = _Verifier(model, probe, seed=seed, rtol=rtol)
    return [v.check([ax]) for ax in axes]


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x


_STAT_BUFFERS = ("running_mean", "running_var")


def _randomized(m64: nn.Module, seed: int) -> int:
    """Give every floating-point parameter of the copy ``m64`` (our own copy, never the user's
    model) and every running statistic (BatchNorm ``running_mean`` / ``running_var``) random
    non-zero values, in place; returns how many tensors were filled.

    An axis is a claim about *every* value of the parameters: a permutation test on the model's
    own values can pass only because some tensor is zero or constant (timm BEiT's ``q_bias`` is
    zero at init: a head axis that forgets it passes on a fresh model and fails on a trained
    one). So the test runs on values no initialisation can make special. Each tensor keeps its
    scale where it has one: mean + std · N(0, 1) of its own entries; a constant tensor (zeros,
    ones, LayerScale's 1e-5) gets c + s · N(0, 1) with s = 1/√fan_in for a matrix and
    max(0.1, 0.1·|c|) for a vector; running variances are drawn from U(0.5, 2) × their mean.
    Other buffers (masks, position indices, rotary tables) are constants of the architecture,
    not parameters, and keep their values. Shared (tied) parameters are filled once and stay
    tied. In place, not on a second copy: a second float64 copy of ViT-H/14 is 5 GB."""
    g = torch.Generator().manual_seed(seed)
    tensors: list[tuple[str, torch.Tensor]] = [
        (k, p) for k, p in m64.named_parameters() if p.is_floating_point() and p.numel()]
    seen = {id(p) for _, p in tensors}
    for path, mod in m64.named_modules():
        for name in _STAT_BUFFERS:
            b = getattr(mod, name, None)
            if isinstance(b, torch.Tensor) and b.is_floating_point() and b.numel() and id(b) not in seen:
                seen.add(id(b))
                tensors.append((f"{path}.{name}" if path else name, b))
    with torch.no_grad():
        for key, t in tensors:
            flat = t.detach().reshape(-1).to(torch.float64)
            c = float(flat.mean()) if math.isfinite(float(flat.mean())) else 0.0
            sd = float(flat.std()) if flat.numel() > 1 else 0.0
            noise = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if key.endswith("running_var"):
                new = torch.empty(t.shape, dtype=torch.float64).uniform_(0.5, 2.0, generator=g) * (c if c > 0 else 1.0)
            elif sd > 0 and math.isfinite(sd):
                new = c + sd * noise
            elif t.ndim >= 2:
                new = c + noise / math.sqrt(max(1, t[0].numel()))
            else:
                new = c + max(0.1, 0.1 * abs(c)) * noise
            t.copy_(new.to(t.dtype))
    return len(tensors)


def _flush(m: nn.Module) -> None:
    """Drop tensors that modules of our copy ``m`` derived from their parameters and cache in
    eval mode (timm LeViT's ``attention_bias_cache`` is cleared by ``train()``), so that the
    next forward pass reads the parameters as they are now; the copy ends in eval mode."""
    m.train()
    m.eval()


def _restore(m64: nn.Module, source: nn.Module) -> None:
    """Copy the source model's own values back into its copy ``m64`` (after
    :func:`_randomized`), so that the copy holds the model's values for the identical-units
    count; tensor by tensor, without a second copy of the model."""
    src = source.state_dict()
    with torch.no_grad():
        for k, v in m64.state_dict(keep_vars=True).items():
            if v.is_floating_point() and k in src:
                v.copy_(src[k].detach().to(device=v.device, dtype=v.dtype))
    _flush(m64)


def _verified_analysis(model: nn.Module, data: Any, verify: bool, seed: int) -> tuple[_Analysis, dict[str, Any]]:
    """The analysis with every axis verified (see :func:`_verify_axes`); failed axes are
    removed from ``an.axes`` and listed in the returned report with their reason."""
    an = _analyse(model, data)
    rep: dict[str, Any] = {"verified": {}, "rejected": [], "probe": None, "verification": "not requested",
                           "rtol": None, "precision": None}
    if not verify or not an.axes:
        if verify:
            rep["verification"] = "nothing to verify"
        return an, rep
    m64 = an.m64 if an.m64 is not None else _eval64(an.model)
    try:
        probe = an.probe if an.probe is not None else _probe_inputs(an.model, data, seed=seed, m64=m64)
    except ValueError as exc:
        rep["verification"] = f"not possible: {exc}"
        return an, rep
    try:
        return _verify_on_copy(an, rep, m64, probe, seed)
    finally:
        _restore(m64, an.model)  # the copy holds the model's own values again


def _verify_on_copy(an: _Analysis, rep: dict[str, Any], m64: nn.Module, probe: _Probe,
                    seed: int) -> tuple[_Analysis, dict[str, Any]]:
    """:func:`_verified_analysis` on the copy ``m64`` (float64, or the dtype the model needs),
    whose parameters are given random values first (:func:`_randomized`); the caller restores
    them."""
    rep["probe"] = probe.source
    why = ""
    for attempt in range(3):
        n = _randomized(m64, seed + 1000 + attempt)
        _flush(m64)
        y0 = _run(m64, probe)
        finite = all(bool(torch.isfinite(t).all()) for t in y0)
        nonzero = any(t.numel() and bool((t != 0).any()) for t in y0)
        if finite and nonzero:
            break
        why = "not finite (NaN/inf)" if not finite else "all zero"
    else:
        # no comparison can pass or fail on such outputs; the model's own values would make
        # the test vacuous or unsound (a claim resting on a zero tensor), so nothing is claimed
        rep["verification"] = (f"not possible: with random values in its parameters the model's outputs on the "
                               f"probe inputs are {why} (3 seeds)")
        return an, rep
    rep["randomized"] = (f"every axis was tested on a copy whose {n} parameter tensors and running statistics "
                         "(biases, norms, LayerScale and zero-initialised heads included) hold random values — "
                         "an axis is a claim about every parameter value, so none may rest on a tensor being "
                         "zero or constant")
    precision = _lowest_precision(m64, probe)
    rtol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(precision, 1e-2)
    rep["rtol"] = rtol
    copy_dtype = next((p.dtype for p in m64.parameters() if p.is_floating_point()), torch.float64)
    if copy_dtype != torch.float64:
        rep["precision"] = (f"the model does not run in float64 (an op that takes {str(copy_dtype).replace('torch.', '')} "
                            f"and lower only): verified on a {str(copy_dtype).replace('torch.', '')} copy, "
                            f"tolerance {rtol:g} relative")
    elif precision != torch.float64:
        rep["precision"] = (f"the model computes part of its forward pass in {str(precision).replace('torch.', '')} "
                            f"even in a float64 copy (e.g. a norm that upcasts to float32): tolerance {rtol:g}")
    verifier = _Verifier(m64, probe, seed=seed, rtol=rtol, y0=y0)
    results = verifier.check_each(an.axes)
    lost = _layers_not_reached(m64, probe, an.calls) if an.calls else set()
    for i, ax in enumerate(an.axes):
        gone = sorted({m.key.rsplit(".", 1)[0] for m in ax.writers + ax.readers} & lost)
        if gone and results[i][0]:
            # data-dependent control flow (routing, early exits): with random values the probe
            # takes another path, and a test that does not run these layers proves nothing
            results[i] = (False, math.nan, f"with random parameter values the probe inputs no longer reach "
                          f"{', '.join(gone[:3])} (data-dependent routing), so the test would not exercise it")
    for i, ax in enumerate(an.axes):
        if ax.reach is not None and results[i][0]:
            missed = _unreached(verifier, *ax.reach)
            if missed:
                results[i] = (False, math.nan, f"the probe inputs reach no token to expert(s) {missed[:8]}, so their "
                              "units would pass untested (pass data that reaches every expert)")
    keep = []
    for ax, (ok, rel, why) in zip(an.axes, results, strict=True):
        for alt in ax.alternatives if not ok else []:  # another layout of the same units
            ok2, rel2, _ = verifier.check([alt])
            if ok2:
                ax, ok, rel = alt, True, rel2
                break
        if ok:
            keep.append(ax)
            rep["verified"][ax.name] = rel
        else:
            rep["rejected"].append({"axis": ax.name, "kind": ax.kind, "size": ax.size, "reason": why})
    an.axes = keep
    rep["verification"] = "done"
    if rep["rejected"]:
        an.not_analysed = an.not_analysed + [f"{r['axis']}: claimed {r['kind']} axis failed verification: {r['reason']}"
                                             for r in rep["rejected"]]
        an.statement += "; failed verification (not counted): " + "; ".join(
            f"{r['axis']} ({r['reason']})" for r in rep["rejected"])
    return an, rep


# ---------------------------------------------------------------------------------------------
# symmetry_group
# ---------------------------------------------------------------------------------------------


def symmetry_group(model: nn.Module, data: Any = None, *, verify: bool = True, seed: int = 0) -> pd.DataFrame:
    """Table of the permutable axes of ``model`` and the order of its symmetry group.

    Axes come from the built-in families' documented layouts, or, for any other model, from the
    dataflow of one forward pass (feature spaces through element-wise maps, norms, residual
    additions, gates and concatenations; attention heads from the attention modules). A
    wrapper (``nn.DataParallel``, ``torch.compile``) is unwrapped. With ``verify`` (default),
    **every axis is verified**: one random element of it (a permutation, plus the rescaling or
    sign flips it claims) is applied to a float64 copy whose parameters and running statistics
    all hold random non-zero values — zero- and constant-initialised ones (biases, LayerScale,
    zero heads) included, so that no claim rests on a tensor being zero — and the outputs on
    probe inputs (the first rows of ``data`` — a tensor, an ``(x, y)`` pair, ``(x1, x2)`` or
    ``((x1, x2), y)`` for several positional inputs, a dict of keyword tensors, a list of (dict)
    batches, a Dataset —, else inputs generated from the model's declared input: token ids for
    Hugging Face text models) must agree to 1e-10 relative (1e-5 where the
    model computes in float32); an axis that fails is not counted and is listed in
    ``summary["rejected"]`` with the reason. The user's model is never modified.

    One row per axis: ``axis``, ``layer``, ``kind`` (hidden unit / channel / block-internal
    channel / residual stream / attention head / key/value head group / (FFN) hidden unit /
    gated hidden unit / MLP hidden unit / grouped channel / channel group), ``size`` d,
    ``groups`` g (1, or for the channels of a grouped convolution the number of groups they
    stay inside), ``tensors`` (the slices it moves), ``activation``, ``log_order = ln d!``
    (grouped: g·ln (d/g)!) and ``log10_order`` (lgamma, never overflows),
    ``sign_flips`` and ``log10_sign_flips = d·log10 2`` for odd activations,
    ``continuous_dims`` (ReLU rescaling: d extra dimensions, not counted in the order;
    attention in the built-in ViT: 2·d_head² per head), ``identical_units`` and
    ``log10_orbit = log10(d!/∏ m_g!)`` — the number of distinct parameter vectors the
    permutations actually reach, smaller than the group when m_g units are identical (e.g.
    zero units) —, ``verified`` (True once the permutation test passed; False when it could not
    be run) and a ``note``.

    ``df.attrs["summary"]``: ``status`` ("ok" | "partial: …" | "unverified: …" | "failed: …" —
    never "ok" when a part could not be read), ``readable`` (False: the structure could not be
    read at all — the model does not run on the probe, or the finder failed), totals ``log10_permutations = Σ log10 d!``,
    ``log10_order`` (with sign flips), ``log10_orbit``, ``continuous_dims``, ``n_params``,
    ``statement`` (what was and was not analysed), ``not_analysed``, ``rejected``,
    ``wrapper`` and ``probe`` (where the probe inputs came from). ``df.attrs["meta"]``:
    provenance.

    >>> from torch import nn
    >>> g = symmetry_group(nn.Sequential(nn.Linear(2, 10), nn.Tanh(), nn.Linear(10, 1)))
    >>> round(g.attrs["summary"]["log10_order"], 4)  # 10! · 2^10
    9.5701
    >>> bool(g["verified"].all()), g.attrs["summary"]["status"]
    (True, 'ok')
    """
    from netxray.measures.cost import check_cost, model_units, per_unit_cost

    if not isinstance(model, nn.Module):
        raise TypeError(f"symmetry_group: model must be a torch.nn.Module, got {type(model).__name__}")
    # a float64 copy of the model (and a permuted one to verify) plus per-unit arrays of every
    # axis (about 500 bytes per unit): a 10^7-unit layer is gigabytes; estimated before any copy
    n_values, n_units = model_units(model)
    need, secs = per_unit_cost(n_values, n_units, copies=2, bytes_per_unit=500)
    check_cost(f"symmetry_group: {n_units} units in {n_values} parameter values", bytes_needed=need,
               seconds=secs, option="leave the symmetry lens out (scan: --lenses without symmetry) or "
               "analyse a narrower model")  # fmt: skip
    an, rep = _verified_analysis(model, data, verify, seed)
    inner = an.model if an.model is not None else model
    # read-only views of the float64 copy the analysis already made (the same values), instead
    # of a second float64 copy of every parameter (690 MB for ViT-B/16)
    state = _state64_views(an.m64) if an.m64 is not None else _state64(inner)
    rows = []
    done = rep["verification"] == "done"
    for ax in an.axes:
        lo = _axis_log_order(ax)
        # units identical in every tensor they own are fixed by swapping them: the orbit of these
        # very parameters is d!/∏ m_g! for groups of m_g identical units (zero units included);
        # in a grouped axis only units of one group can be swapped
        members = ax.writers + ax.readers
        if _no_duplicate_units(state, members, ax.size):
            groups = [[i] for i in range(ax.size)]
        else:
            rows_ = _concat_rows(state, members, ax.size)
            groups = [g for u in _group_units(ax) for g in msym.duplicate_groups(rows_[u], tol=0.0)]
        stab = sum(msym.log_factorial(len(g)) for g in groups)
        rows.append({
            "axis": ax.name,
            "layer": ax.layer,
            "kind": ax.kind,
            "size": ax.size,
            "groups": ax.groups,
            "tensors": "; ".join(m.describe() for m in ax.writers + ax.readers),
            "activation": ax.activation,
            "log_order": lo,
            "log10_order": lo / LN10,
            "sign_flips": ax.sign_flips,
            "log10_sign_flips": ax.size * LN2 / LN10 if ax.sign_flips else 0.0,
            "continuous_dims": ax.continuous_dims,
            "identical_units": ax.size - len(groups),
            "log10_orbit": (lo - stab) / LN10,
            "verified": done and ax.name in rep["verified"],
            "note": ax.note,
        })
    cols = ["axis", "layer", "kind", "size", "groups", "tensors", "activation", "log_order", "log10_order",
            "sign_flips", "log10_sign_flips", "continuous_dims", "identical_units", "log10_orbit",
            "verified", "note"]
    df = pd.DataFrame(rows, columns=cols)
    n_params = sum(p.numel() for p in inner.parameters())
    perm = float(df["log10_order"].sum()) if len(df) else 0.0
    flips = float(df["log10_sign_flips"].sum()) if len(df) else 0.0
    if not an.readable:
        status = "failed: " + (an.not_analysed[0] if an.not_analysed else "the structure could not be read")
    elif verify and not done and an.axes:
        status = f"unverified: verification {rep['verification']}"
    elif not verify and an.axes:
        status = "unverified: verification not requested"
    elif an.not_analysed or rep["rejected"]:
        parts = []
        if rep["rejected"]:
            parts.append(f"{len(rep['rejected'])} claimed axes failed verification")
        if an.not_analysed:
            parts.append(f"{len(an.not_analysed)} parts not analysed")
        status = ("partial: " if len(df) else "failed: no axis proven; ") + ", ".join(parts)
    else:
        status = "ok"
    df.attrs["summary"] = {
        "status": status,
        "readable": an.readable,
        "family": an.family,
        "n_axes": len(df),
        "log_permutations": perm * LN10,
        "log10_permutations": perm,
        "log10_order": perm + flips,
        "log10_orbit": float(df["log10_orbit"].sum()) if len(df) else 0.0,
        "continuous_dims": int(df["continuous_dims"].sum()) if len(df) else 0,
        "n_params": n_params,
        "statement": an.statement,
        "not_analysed": an.not_analysed,
        "rejected": rep["rejected"],
        "wrapper": an.wrapper,
        "probe": rep["probe"],
        "verify_rtol": rep.get("rtol"),
    }
    if rep.get("precision"):
        df.attrs["summary"]["statement"] += "; verification: " + rep["precision"]
    if rep.get("randomized"):
        df.attrs["summary"]["statement"] += "; verification: " + rep["randomized"]
    df.attrs["meta"] = metadata(model_hash=model_hash(inner), family=an.family)
    return df


# ---------------------------------------------------------------------------------------------
# canonical form
# ---------------------------------------------------------------------------------------------


def _state64_views(m64: nn.Module) -> dict[str, np.ndarray]:
    """The float tensors of a float64 CPU copy (``_eval64``) as read-only numpy views (no copy);
    anything else falls back to :func:`_state64`."""
    state = {k: v for k, v in m64.state_dict().items() if v.is_floating_point()}
    if any(v.dtype != torch.float64 or v.device.type != "cpu" for v in state.values()):
        return _state64(m64)
    out = {}
    for k, v in state.items():
        a = v.detach().numpy()
        a.flags.writeable = False  # a view of the copy's own tensors: never written through
        out[k] = a
    return out


def _state64(model: nn.Module) -> dict[str, np.ndarray]:
    return {
        k: v.detach().cpu().to(torch.float64).numpy().copy()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }


def _require_finite(state: dict[str, np.ndarray], what: str) -> None:
    """One clear error instead of numpy RuntimeWarnings and NaN-filled results: rescaling,
    merging and matching units are undefined for NaN/inf parameters."""
    bad = {k: int((~np.isfinite(v)).sum()) for k, v in state.items() if not np.isfinite(v).all()}
    if bad:
        listed = ", ".join(f"{k} ({n})" for k, n in list(bad.items())[:4]) + (" …" if len(bad) > 4 else "")
        raise ValueError(f"{what}: the model has non-finite (NaN/inf) parameters in {listed}; "
                         "a canonical form or an alignment needs finite weights")


def _check_align_cost(state: dict[str, np.ndarray], axes: Sequence[Axis]) -> None:
    """Warn or refuse (netxray.measures.cost) before the d×d assignments of the widest axis."""
    from netxray.measures.cost import assignment_cost, check_cost

    worst = None
    for ax in axes:
        k = sum(state[m.key].size for m in ax.writers if m.match) // max(ax.size, 1)
        b, sec = assignment_cost(ax.size, k)
        if worst is None or b > worst[1]:
            worst = (ax, b, sec)
    if worst is not None:
        ax, b, sec = worst
        check_cost(f"align: axis {ax.name} has {ax.size} units, a {ax.size}×{ax.size} assignment",
                   bytes_needed=b, seconds=sec,
                   option="compare canonical forms instead (netxray.canonicalize sorts units, "
                   "O(d log d), no assignment) or align smaller models")  # fmt: skip


def _normalize_axis(state: dict[str, np.ndarray], ax: Axis) -> None:
    """ReLU-like: ‖affine part of unit‖₂ = 1 (factor pushed into readers); odd: first non-zero
    entry of the affine part (bias first) positive. Units whose affine part is 0 are left."""
    if not ax.scale or ax.act not in ("homogeneous", "odd") or ax.size == 0:
        return
    aff = _concat_rows(state, ax.scale, ax.size)
    if ax.act == "homogeneous":
        n = np.linalg.norm(aff, axis=1)
        a = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 1.0)
        inv = np.where(n > 0, n, 1.0)
    else:
        nz = aff != 0
        first = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)
        s = np.sign(aff[np.arange(ax.size), first])
        a = np.where(s == 0, 1.0, s)
        inv = a
    for m in ax.scale:
        _scale(state, m, ax.size, a)
    for m in ax.readers:
        _scale(state, m, ax.size, inv)


def _reduce_axis(
    state: dict[str, np.ndarray], ax: Axis, tol: float, log: dict[str, Any], stage: str
) -> None:
    """stage "drop": drop units that cannot influence the output (zero outgoing weights, or
    constant and folded into the next bias); stage "merge": merge duplicate units (run after
    normalization, when rescaled copies of one unit have become identical)."""
    if not ax.reducible or ax.size == 0:
        return
    if stage == "merge":
        _merge_duplicates(state, ax, tol, log)
        return
    drop = np.zeros(ax.size, dtype=bool)
    out = _concat_rows(state, ax.readers, ax.size)
    scale_out = max(1e-300, float(np.max(np.abs(out)))) if out.size else 1.0
    drop |= np.max(np.abs(out), axis=1) <= tol * scale_out if out.size else drop
    if ax.const_in and ax.sigma is not None:
        w = _concat_rows(state, ax.const_in, ax.size)
        const = (np.max(np.abs(w), axis=1) == 0) & ~drop
        if const.any():
            b = _rows(state, ax.bias, ax.size)[:, 0] if ax.bias is not None else np.zeros(ax.size)
            with torch.no_grad():
                c = ax.sigma(torch.from_numpy(b.copy())).numpy()
            for u in np.flatnonzero(const):
                if c[u] == 0:
                    drop[u] = True
                elif ax.fold is not None and ax.fold[1] is not None:
                    wkey, bkey = ax.fold
                    state[bkey] = state[bkey] + state[wkey][:, u] * c[u]
                    drop[u] = True
    if drop.any():
        log["dropped"][ax.name] = int(drop.sum())
        _take(state, ax, np.flatnonzero(~drop))


def _merge_duplicates(state: dict[str, np.ndarray], ax: Axis, tol: float, log: dict[str, Any]) -> None:
    if ax.size < 2:
        return
    sig = _concat_rows(state, ax.writers, ax.size)
    groups = msym.duplicate_groups(sig, tol)
    if len(groups) < ax.size:
        rows = {m.key: _rows(state, m, ax.size) for m in ax.readers}
        for m in ax.readers:
            r = rows[m.key]
            for g in groups:
                if len(g) > 1:
                    r[g[0]] = r[g].sum(axis=0)
            _set_rows(state, m, ax.size, r)
        log["merged"][ax.name] = ax.size - len(groups)
        _take(state, ax, np.array([g[0] for g in groups], dtype=np.int64))


def _sort_order(state: dict[str, np.ndarray], ax: Axis) -> np.ndarray:
    if ax.primary is not None:
        prim = ax.primary(state)
    elif ax.bias is not None:
        prim = _rows(state, ax.bias, ax.size)[:, 0]
    else:
        prim = np.zeros(ax.size)
    inc = _match_rows(state, ax)
    outg = _concat_rows(state, ax.readers, ax.size) if not ax.reducible and not ax.inner else None
    if ax.groups > 1:  # sorted inside each group: a unit never leaves its group
        return np.concatenate([u[msym.unit_sort_order(prim[u], inc[u], None if outg is None else outg[u])]
                               for u in _group_units(ax)])
    return msym.unit_sort_order(prim, inc, outg)


def _fix_modules(model: nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            mod.out_channels = mod.weight.shape[0]
            mod.in_channels = mod.weight.shape[1] * mod.groups
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            ref = mod.weight if mod.weight is not None else mod.running_mean
            if ref is not None:
                mod.num_features = ref.shape[0]


def _build(model: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    """A float64 deep copy of ``model`` holding ``state`` (shapes may have shrunk)."""
    new = copy.deepcopy(model).to(torch.float64)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for key, arr in state.items():
        path, _, name = key.rpartition(".")
        mod = new.get_submodule(path) if path else new
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)  # stay where the user's model is
        if name in mod._parameters and mod._parameters[name] is not None:
            mod._parameters[name] = nn.Parameter(t, requires_grad=mod._parameters[name].requires_grad)
        elif name in mod._buffers:
            mod._buffers[name] = t
        else:  # pragma: no cover - keys come from the model's own state dict
            raise KeyError(key)
    _fix_modules(new)
    return new


def _canonical_state(
    model: nn.Module, *, reduce: bool, normalize: bool, sort: bool, tol: float, data: Any = None
) -> tuple[dict[str, np.ndarray], list[Axis], dict[str, Any], _Analysis]:
    from netxray.measures.cost import FLOPS, check_cost

    inner = _unwrap(model)[0]
    n_values = sum(v.numel() for v in inner.state_dict().values() if v.is_floating_point())
    # a float64 copy, its normalized and sorted versions alive at once; ~50 flops per value
    check_cost(f"canonicalize: {n_values} parameters", bytes_needed=3 * 8 * n_values,
               seconds=50 * n_values / FLOPS, option="canonicalize a smaller model or fewer layers")  # fmt: skip
    # finite weights first: the permutation test of the axes would fail on NaN outputs
    _require_finite(_state64(inner), "canonicalize")
    # only verified axes are used: a claimed axis that failed the permutation test would change
    # the function
    an, _ = _verified_analysis(model, data, True, 0)
    state = _state64(an.model)
    log: dict[str, Any] = {"dropped": {}, "merged": {}}
    axes = [copy.copy(a) for a in an.axes]  # sizes change while reducing
    for ax in axes:
        if reduce:
            _reduce_axis(state, ax, tol, log, "drop")  # zero-outgoing and constant units
        if normalize:
            _normalize_axis(state, ax)
        if reduce:
            _reduce_axis(state, ax, tol, log, "merge")  # duplicates only show once normalized
        if sort and ax.size > 1:
            _take(state, ax, _sort_order(state, ax))
    return state, axes, log, an


def canonicalize(
    model: nn.Module, *, reduce: bool = True, normalize: bool = True, tol: float = 1e-12, data: Any = None
) -> nn.Module:
    """A new model (float64 deep copy; the input is never modified) in canonical form (SPEC §4.3).

    Axis by axis in forward order (residual streams first, since everything reads them):

    1. reduce — drop units whose outgoing weights are all zero, fold constant units
       (zero incoming weights: output σ(b)) into the next Linear's bias, and, after (2), merge
       duplicate units (identical normalized incoming parameters: sum their outgoing columns);
    2. normalize — positively homogeneous activations (ReLU, LeakyReLU): scale each unit so
       that ‖(b_i, w_i)‖₂ = 1 and push the factor into the readers; odd activations (tanh):
       flip so the first non-zero of (b_i, w_i) is positive;
    3. sort — bias descending, ties broken by the incoming row (see
       :func:`netxray.measures.symmetry.unit_sort_order`).

    What is canonicalized per family: MLP hidden units (all three steps); CNN channels
    (conv filter, BN parameters and running statistics move together; a Flatten into the
    classifier moves column blocks of H·W; with BN after the conv, the ReLU rescaling acts on
    the BN affine part (β_c, γ_c) — the conv filters and running statistics are left as
    trained, since a conv rescale is absorbed by BN only up to its ε); ResNet block-internal
    channels (all three steps, on bn1) and residual streams (normalized over the affine parts
    of every BN writing the stream, then sorted by the stem's/shortcut's BN bias); ViT residual stream (permutation only), attention heads
    (permutation, sorted by ‖W_Qᵀ W_K‖_F) and MLP hidden units (reduce + sort; GELU admits no
    rescaling). Any other model: the axes :func:`symmetry_group` finds and verifies
    (``data``: its probe inputs) — every unit of a simple Linear/Conv → element-wise →
    Linear/Conv chain gets all three steps, every other axis (residual streams, gated FFN
    units, heads, concatenated parts, depthwise-coupled channels) is sorted only — the channels
    of a grouped convolution inside their group, after the groups themselves are sorted by
    their channels' rows (sorted inside the group), so the form is unique. A wrapped
    model (``nn.DataParallel``, ``torch.compile``) gives its inner model's canonical form.

    The result computes the same function (eval mode) to float64 rounding (≈1e-12; a model
    that computes parts in float32 itself, like Llama's RMSNorm, to float32 rounding); a reduced
    MLP gets its ``netxray_config["widths"]`` updated; ``model.netxray_canonical`` records
    what was dropped and merged.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> c = canonicalize(net)
    >>> bool(torch.all(c[0].bias[:-1] >= c[0].bias[1:]))  # sorted by bias, descending
    True
    """
    state, axes, log, an = _canonical_state(model, reduce=reduce, normalize=normalize, sort=True, tol=tol,
                                            data=data)
    model = an.model  # a wrapper's inner model: the canonical form is returned unwrapped
    new = _build(model, state)
    cfg = getattr(model, "netxray_config", None)
    if isinstance(cfg, dict):
        cfg = copy.deepcopy(cfg)
        if an.family == "mlp":
            cfg["widths"] = [ax.size for ax in axes]
        new.netxray_config = cfg
    new.netxray_canonical = {
        "family": an.family, "reduce": reduce, "normalize": normalize, "tol": tol,
        "dropped": log["dropped"], "merged": log["merged"],
        "source_hash": model_hash(model),
    }
    return new


# ---------------------------------------------------------------------------------------------
# alignment and equivalence
# ---------------------------------------------------------------------------------------------


@dataclass
class Alignment:
    """Result of :func:`align`: ``permutations`` (axis → indices: aligned b = b[perm]),
    ``table`` (one row per axis: size, matching cost before and after, units moved),
    distances between the two networks (L2 over every float tensor): ``distance_raw`` as given,
    ``distance_before`` once both are normalized (rescaling/sign factored out) and
    ``distance_after`` once b's units are also permuted onto a's; ``relative_*`` divide by
    ‖normalized a‖; ``aligned`` is b (float64, normalized and permuted: the same function)."""

    permutations: dict[str, np.ndarray]
    table: pd.DataFrame
    distance_raw: float
    distance_before: float
    distance_after: float
    relative_before: float
    relative_after: float
    aligned: nn.Module


def _distance(sa: dict[str, np.ndarray], sb: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum((sa[k] - sb[k]) ** 2)) for k in sa))


def _check_same_layout(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        diff = sorted(set(sa) ^ set(sb))[:5]
        raise ValueError(f"align: the two models have different tensors (e.g. {diff}); expected one architecture")
    bad = [k for k in sa if sa[k].shape != sb[k].shape]
    if bad:
        k = bad[0]
        raise ValueError(
            f"align: tensor {k!r} has shape {tuple(sa[k].shape)} in a but {tuple(sb[k].shape)} in b; "
            "expected two networks of one architecture"
        )


def align(a: nn.Module, b: nn.Module, *, normalize: bool = True, data: Any = None) -> Alignment:
    """Weight matching (SPEC §4.3): the permutations of b's units that best match a's.

    Both networks are first normalized (ReLU scale / tanh sign, as in :func:`canonicalize`),
    then axis by axis in forward order the units of b — with the previous axes' permutations
    already applied to their incoming tensors — are matched to a's by a linear assignment on
    the squared distances between their incoming parameter vectors
    (``min_π Σ_i ‖w_a,i − w_b,π(i)‖²``). The axes are a's, verified as in
    :func:`symmetry_group` (``data``: probe inputs). Neither input is modified.

    >>> import torch
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> b = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> _ = b.load_state_dict(a.state_dict())
    >>> with torch.no_grad():
    ...     p = torch.randperm(5)
    ...     _ = b[0].weight.copy_(b[0].weight[p]), b[0].bias.copy_(b[0].bias[p])
    ...     _ = b[2].weight.copy_(b[2].weight[:, p])
    >>> r = align(a, b)
    >>> r.distance_after < 1e-6 < r.distance_before
    True
    """
    a, b = _unwrap(a)[0], _unwrap(b)[0]
    _check_same_layout(a, b)
    an, _ = _verified_analysis(a, data, True, 0)  # a's verified axes (b has the same layout)
    sa_raw, sb_raw = _state64(a), _state64(b)
    _require_finite(sa_raw, "align: first model")
    _require_finite(sb_raw, "align: second model")
    sa, sb = dict(sa_raw), dict(sb_raw)
    axes = [copy.copy(x) for x in an.axes]
    _check_align_cost(sa, axes)
    if normalize:
        for ax in axes:
            _normalize_axis(sa, ax)
            _normalize_axis(sb, ax)
    before = _distance(sa, sb)
    perms: dict[str, np.ndarray] = {}
    rows = []
    for ax in axes:
        fa, fb = _match_rows(sa, ax), _match_rows(sb, ax)
        if ax.groups > 1:  # one assignment per group: a unit is matched only inside its group
            parts = [(u, *msym.match_units(fa[u], fb[u])) for u in _group_units(ax)]
            perm = np.concatenate([u[p] for u, p, _, _ in parts])
            c0, c1 = sum(c for _, _, c, _ in parts), sum(c for _, _, _, c in parts)
        else:
            perm, c0, c1 = msym.match_units(fa, fb)
        _take(sb, ax, perm)
        perms[ax.name] = perm
        rows.append({"axis": ax.name, "kind": ax.kind, "size": ax.size, "cost_before": c0,
                     "cost_after": c1, "units_moved": int(np.sum(perm != np.arange(ax.size)))})
    after = _distance(sa, sb)
    norm_a = math.sqrt(sum(float(np.sum(v**2)) for v in sa.values())) or 1.0
    table = pd.DataFrame(rows, columns=["axis", "kind", "size", "cost_before", "cost_after", "units_moved"])
    table.attrs["meta"] = metadata(model_hash_a=model_hash(a), model_hash_b=model_hash(b), normalize=normalize)
    return Alignment(
        permutations=perms, table=table, distance_raw=_distance(sa_raw, sb_raw),
        distance_before=before, distance_after=after, relative_before=before / norm_a,
        relative_after=after / norm_a, aligned=_build(b, sb),
    )


@dataclass
class Equivalence:
    """Result of :func:`functionally_equivalent`: ``verdict`` ("equivalent" | "not equivalent"
    | "inconclusive"), a ``reason``, the ``witness`` input (for "not equivalent"), the largest
    output difference seen on probes ``max_abs_diff`` and the certificate's parameter
    difference ``param_diff`` (canonical or aligned tensors)."""

    verdict: str
    reason: str
    witness: torch.Tensor | None
    max_abs_diff: float
    param_diff: float | None
    n_probes: int

    def __bool__(self) -> bool:
        return self.verdict == "equivalent"


def _input_shape(model: nn.Module) -> tuple[int, ...] | None:
    cfg = getattr(model, "netxray_config", None)
    if isinstance(cfg, dict) and "input_shape" in cfg:
        return tuple(int(s) for s in cfg["input_shape"])
    first = next((m for m in model.modules() if isinstance(m, _PRODUCERS)), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    return None


def _copy_that_runs(model: nn.Module, data: Any) -> tuple[nn.Module, _Probe]:
    """An eval-mode copy of ``model`` for the verification and the probe inputs it runs on:
    float64 unless the model does not run in float64 (Mixtral's grouped expert matmul takes
    float32/bfloat16 only) — then float32, and the verification tolerance follows (1e-5
    relative instead of 1e-10; :func:`_verify_on_copy` states it)."""
    m64 = _eval64(model)
    try:
        return m64, _probe_inputs(model, data, m64=m64)
    except ValueError as exc:
        why = str(exc)
    del m64  # (the exception's frames no longer hold the float64 copy either)
    if data is None and "cannot infer probe inputs" in why:
        raise ValueError(why)
    m32 = _eval64(model, torch.float32)
    try:
        probe = _probe_inputs(model, data, m64=m32)
    except ValueError:
        raise ValueError(why) from None
    return m32, probe


def _eval64(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    m = copy.deepcopy(model).to(dtype)
    m.eval()  # a copy: the user's model keeps its mode
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def functionally_equivalent(
    a: nn.Module,
    b: nn.Module,
    *,
    inputs: torch.Tensor | None = None,
    n_probes: int = 256,
    tol: float = 1e-6,
    seed: int = 0,
    search_steps: int = 100,
) -> Equivalence:
    """Do ``a`` and ``b`` compute the same function (eval mode)? Three outcomes (SPEC §4.3):

    - "not equivalent": a *witness* input x with ``max|f_a(x) − f_b(x)| > tol·(1 + max|f_a(x)|)``,
      found among the probes (``inputs``, or ``n_probes`` seeded inputs of the model's input
      shape: a quarter uniform [0, 1], a quarter each N(0, s²) for s = 1, 10, 100) or by
      gradient ascent on ``‖f_a(x) − f_b(x)‖²`` started from the worst probes;
    - "equivalent": certified by symmetry — the canonical forms (or, when sorting ties make
      them differ, the aligned tensors) agree within ``tol`` (relative to the parameter scale);
    - "inconclusive": the outputs agree on every probe but no symmetry explains it (finite
      probes cannot certify equivalence in general).

    >>> import torch
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> functionally_equivalent(a, canonicalize(a)).verdict
    'equivalent'
    """
    a, b = _unwrap(a)[0], _unwrap(b)[0]
    fa, fb = _eval64(a), _eval64(b)
    declared = getattr(a, "main_input_name", None) is not None and hasattr(a, "config")  # Hugging Face
    if isinstance(inputs, dict) or (inputs is None and (declared or _input_shape(a) is None)):
        # token ids (Hugging Face text models), keyword inputs, or inputs the model declares
        try:
            probe = (_Probe((), {k: v[:n_probes] for k, v in inputs.items()}, "inputs") if isinstance(inputs, dict)
                     else _probe_inputs(a, None, n=n_probes, seed=seed, m64=fa))
        except ValueError as exc:
            raise ValueError(
                "functionally_equivalent: cannot infer the input shape of this model; "
                f"pass inputs=<tensor of probe inputs> ({exc})"
            ) from exc
        if probe.kwargs or not probe.args[0].is_floating_point():
            return _equivalence_on_probe(a, b, fa, fb, probe, tol)
        inputs = probe.args[0]
    if inputs is None:
        shape = _input_shape(a)
        if shape is None:
            raise ValueError(
                "functionally_equivalent: cannot infer the input shape of this model; "
                "pass inputs=<tensor of probe inputs>"
            )
        g = torch.Generator().manual_seed(seed)
        # uniform [0, 1] (image-like) and Gaussians at growing scales: at large scale biases
        # matter less, so about half of all ReLU units are active on some probe even when they
        # are dead on the data — a changed weight of a rarely active unit still shows
        q = max(1, n_probes // 4)
        x = torch.cat([
            torch.rand((n_probes - 3 * q, *shape), generator=g, dtype=torch.float64),
            *[s * torch.randn((q, *shape), generator=g, dtype=torch.float64) for s in (1.0, 10.0, 100.0)],
        ])
    else:
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
            raise ValueError("inputs must be a tensor of probe inputs with a batch dimension (N, ...)")
        x = inputs.detach().to(torch.float64)
    device = next((p.device for p in fa.parameters()), torch.device("cpu"))
    fb = fb.to(device)
    x = x.to(device)
    with torch.no_grad():
        ya, yb = fa(x), fb(x)
    if ya.shape != yb.shape:
        return Equivalence("not equivalent", f"output shapes differ: {tuple(ya.shape)} vs {tuple(yb.shape)}",
                           x[:1], math.inf, None, len(x))
    # per-probe tolerance: outputs at scale-100 inputs are large, and must not hide a small
    # difference at scale-1 inputs
    scale = 1.0 + ya.reshape(len(x), -1).abs().amax(dim=1)
    diff = (ya - yb).reshape(len(x), -1).abs().amax(dim=1)
    worst = int((diff / scale).argmax())
    if float(diff[worst]) > tol * float(scale[worst]):
        return Equivalence("not equivalent", "outputs differ on a probe input", x[worst : worst + 1].clone(),
                           float(diff[worst]), None, len(x))
    best_gap = float(diff[worst])
    if search_steps > 0:  # look harder for a witness where the outputs already differ most
        starts = x[(diff / scale).argsort(descending=True)[: min(8, len(x))]].clone().requires_grad_(True)
        opt = torch.optim.Adam([starts], lr=0.05)
        with torch.enable_grad():  # callers may be inside torch.no_grad()
            for _ in range(search_steps):
                opt.zero_grad()
                gap = ((fa(starts) - fb(starts)) ** 2).reshape(len(starts), -1).sum(1)
                (-gap.sum()).backward()
                opt.step()
        with torch.no_grad():
            d = (fa(starts) - fb(starts)).reshape(len(starts), -1).abs().amax(1)
            s = 1.0 + fa(starts).reshape(len(starts), -1).abs().amax(1)
        k = int((d / s).argmax())
        best_gap = max(best_gap, float(d[k]))
        if float(d[k]) > tol * float(s[k]):
            return Equivalence("not equivalent", "outputs differ at an input found by gradient search",
                               starts[k : k + 1].detach().clone(), float(d[k]), None, len(x))
    return _certify(a, b, tol, best_gap, len(x))


def _equivalence_on_probe(
    a: nn.Module, b: nn.Module, fa: nn.Module, fb: nn.Module, probe: _Probe, tol: float
) -> Equivalence:
    """Outputs compared on probe inputs that cannot be searched by gradient (token ids)."""
    ya, yb = _run(fa, probe), _run(fb, probe)
    n = next((len(t) for t in list(probe.args) + list(probe.kwargs.values()) if isinstance(t, torch.Tensor)), 0)
    first = next((t[:1].clone() for t in list(probe.args) + list(probe.kwargs.values()) if isinstance(t, torch.Tensor)), None)
    if len(ya) != len(yb) or any(u.shape != v.shape for u, v in zip(ya, yb, strict=True)):
        return Equivalence("not equivalent", "output shapes differ", first, math.inf, None, n)
    gap = 0.0
    for u, v in zip(ya, yb, strict=True):
        if not u.numel():
            continue
        d = float((u - v).abs().max())
        gap = max(gap, d)
        if d > tol * (1.0 + float(u.abs().max())):
            return Equivalence("not equivalent", "outputs differ on a probe input", first, d, None, n)
    return _certify(a, b, tol, gap, n)


def _certify(a: nn.Module, b: nn.Module, tol: float, best_gap: float, n: int) -> Equivalence:
    # certify by symmetry: canonical forms, then alignment of the canonical forms
    sa, _, _, _ = _canonical_state(a, reduce=True, normalize=True, sort=True, tol=1e-12)
    sb, _, _, _ = _canonical_state(b, reduce=True, normalize=True, sort=True, tol=1e-12)
    pscale = 1.0 + max((float(np.max(np.abs(v))) for v in sa.values() if v.size), default=0.0)
    if list(sa) == list(sb) and all(sa[k].shape == sb[k].shape for k in sa):
        pd_ = max((float(np.max(np.abs(sa[k] - sb[k]))) for k in sa if sa[k].size), default=0.0)
        if pd_ <= tol * pscale:
            return Equivalence("equivalent", "canonical forms agree", None, best_gap, pd_, n)
        ca, cb = _build(a, sa), _build(b, sb)
        al = align(ca, cb)
        sal = _state64(al.aligned)
        sca = _state64(ca)
        pd2 = max((float(np.max(np.abs(sca[k] - sal[k]))) for k in sca if sca[k].size), default=0.0)
        if pd2 <= tol * pscale:
            return Equivalence("equivalent", "aligned canonical tensors agree", None, best_gap, pd2, n)
        return Equivalence("inconclusive", "outputs agree on every probe but the canonical and aligned "
                           "parameters differ: no symmetry found that explains it", None, best_gap,
                           min(pd_, pd2), n)
    return Equivalence("inconclusive", "outputs agree on every probe but the reduced networks have "
                       "different shapes: no symmetry found that explains it", None, best_gap, None, n)


# ---------------------------------------------------------------------------------------------
# covering bounds and effective volume
# ---------------------------------------------------------------------------------------------

_RHO = {"ReLU": 1.0, "LeakyReLU": 1.0, "Tanh": 1.0, "Identity": 1.0, "Hardtanh": 1.0,
        "Softsign": 1.0, "GELU": 1.1289, "SiLU": 1.0998, "Sigmoid": 0.25, "ELU": 1.0,
        "Softplus": 1.0, "Mish": 1.0886}
_SIGMA0_NONZERO = {"Sigmoid", "Softplus"}


def _mlp_widths(model: nn.Module) -> tuple[list[int], list[str]]:
    """Widths d_0..d_{L+1} of a fully connected chain, and its activation names."""
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, _PRODUCERS) and not isinstance(m, nn.Linear)]
    if convs or not lin:  # said before the analysis (a graph record and every axis: 16 s on ViT-B/16)
        raise ValueError(
            "covering_bounds: the SPEC §4.2 bound is stated for fully connected networks "
            "(Linear → element-wise activation → … → Linear); this model is not one "
            f"({type(model).__name__}: {len(lin)} Linear layers, {len(convs)} conv layers); "
            "pass widths=[d_0, ..., d_L+1] instead"
        )
    # parameters outside Linear layers first: it needs no analysis, and it is the reason for
    # LSTMs, embeddings and norms (Mistral), whose hidden-unit axes are no §4.2 hidden layers
    in_linear = {id(p) for m in lin for p in m.parameters()}
    elsewhere = [
        f"{path} ({type(m).__name__})"
        for path, m in model.named_modules()
        if any(id(p) not in in_linear for p in m.parameters(recurse=False))
    ]
    if elsewhere:  # e.g. an LSTM feeding a Linear head: bounding the head alone would mislead
        raise ValueError(
            "covering_bounds: the SPEC §4.2 bound covers fully connected networks only; "
            f"parameters outside nn.Linear layers in {elsewhere[:6]}{' …' if len(elsewhere) > 6 else ''} "
            "are not covered by it; pass widths=[d_0, ..., d_L+1] to bound a fully connected part explicitly"
        )
    an = _analyse(model)
    hidden_axes = [a for a in an.axes if a.kind == "hidden unit"]
    if len(hidden_axes) != len(lin) - 1 or len(an.axes) != len(hidden_axes):
        if not an.readable:
            what = "its structure could not be read without data"
        else:
            other = sorted({a.kind for a in an.axes if a.kind != "hidden unit"})
            what = (f"{len(hidden_axes)} plain hidden-unit axes for {len(lin) - 1} hidden layers"
                    + (f", and axes of other kinds: {', '.join(other)}" if other else ""))
        raise ValueError(
            "covering_bounds: the SPEC §4.2 bound is stated for fully connected networks "
            "(Linear → element-wise activation → … → Linear); this model is not one "
            f"(family {an.family!r}, {len(lin)} Linear layers, {len(convs)} conv layers; {what}); "
            "pass widths=[d_0, ..., d_L+1] instead"
        )
    widths = [lin[0].in_features] + [m.out_features for m in lin]
    acts = [a.activation for a in hidden_axes]
    return widths, acts


def covering_bounds(
    model_or_widths: nn.Module | Sequence[int],
    eps: float | Sequence[float] = 0.01,
    B: float | None = None,
    rho: float | None = None,
) -> pd.DataFrame:
    """Classical and permutation-reduced log covering numbers (SPEC §4.2, Shen 2024), in log space.

    ``model_or_widths``: widths ``[d_0, …, d_{L+1}]`` or a fully connected model (its widths
    are read off). ``B`` defaults to 1 for widths and to the model's largest parameter
    magnitude; ``rho`` to 1 for widths and to the activation's Lipschitz constant for a model.
    One row per ``eps`` with S, log Λ, log m, the classical and reduced bounds (natural and
    log10), their difference (≈ Σ_l log d_l!), the relative reduction and a plain
    ``verdict`` sentence. ``df.attrs["summary"]`` holds the verdict of the first row.

    >>> df = covering_bounds([10, 100, 1], eps=0.01)
    >>> int(df.S[0]), round(float(df.classical_log10[0])), round(float(df.reduced_log10[0]))
    (1201, 6421, 6263)
    """
    notes = []
    if isinstance(model_or_widths, nn.Module):
        widths, acts = _mlp_widths(model_or_widths)
        if B is None:
            B = max(float(p.detach().abs().max()) for p in model_or_widths.parameters())
        if rho is None:
            unknown = [a for a in acts if a not in _RHO]
            if unknown:
                raise ValueError(f"covering_bounds: no Lipschitz constant known for {unknown}; pass rho=")
            rho = max(_RHO[a] for a in acts) if acts else 1.0
        if any(a in _SIGMA0_NONZERO for a in acts):
            notes.append("the bound assumes σ(0) = 0, which this activation violates")
        source, mh = "model", model_hash(model_or_widths)
    else:
        widths = [int(w) for w in model_or_widths]
        B = 1.0 if B is None else float(B)
        rho = 1.0 if rho is None else float(rho)
        source, mh = "widths", None
    epss = [eps] if isinstance(eps, (int, float)) else list(eps)
    rows = []
    for e in epss:
        r = msym.covering_log_bounds(widths, float(e), B=float(B), rho=float(rho))
        row = {"widths": ",".join(map(str, widths)), "eps": float(e), "B": float(B), "rho": float(rho), **r}
        row["verdict"] = _verdict(r)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["summary"] = {"verdict": rows[0]["verdict"], "notes": notes}
    df.attrs["meta"] = metadata(source=source, model_hash=mh, widths=widths)
    return df


def _verdict(r: dict[str, float]) -> str:
    return (
        f"The hidden-unit permutations form a group of {msym.format_power_of_ten(r['sum_log10_factorials'])} "
        "elements, "
        f"yet they lower the log10 covering bound only from {r['classical_log10']:.4g} to "
        f"{r['reduced_log10']:.4g} (by {r['difference_log10']:.6g}, a relative reduction of "
        f"{100 * r['relative_reduction']:.3g}%): astronomically many equivalent parameterizations, "
        "but a small reduction in log terms."
    )


def effective_volume(
    widths: Sequence[int] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    depth: int = 2,
    d_in: int = 784,
    d_out: int = 10,
) -> pd.DataFrame:
    """Effective-volume ratio of the permutation-reduced parameter space against width.

    For ``depth`` hidden layers of width w: ``Vol(representatives)/Vol(Θ) = 1/(w!)^depth``
    (log10 column ``log10_volume_ratio``, vanishing as w grows) and per parameter
    ``log10_ratio_per_parameter = −depth·log10 w!/S`` (the per-dimension shrink factor, which
    goes to 1 as log w / w: large in total, small per dimension).

    >>> effective_volume([10], depth=1, d_in=10, d_out=1).log10_volume_ratio.round(5).tolist()
    [-6.55976]
    """
    df = pd.DataFrame(msym.effective_volume_table(list(widths), depth=depth, d_in=d_in, d_out=d_out))
    df.attrs["meta"] = metadata(depth=depth, d_in=d_in, d_out=d_out)
    return df


def plot_effective_volume(df: pd.DataFrame | None = None, path: str | None = None) -> Any:
    """Plot of :func:`effective_volume` (log10 volume ratio and per-parameter ratio vs width).
    Returns the matplotlib Figure; saves it when ``path`` is given."""
    from matplotlib.figure import Figure

    df = effective_volume() if df is None else df
    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(df["width"], df["log10_volume_ratio"], "o-")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("hidden width w")
    ax1.set_ylabel("log10 Vol(representatives)/Vol(Θ)")
    ax1.set_title("total: −depth·log10 w!")
    ax2.plot(df["width"], df["log10_ratio_per_parameter"], "o-", color="C1")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("hidden width w")
    ax2.set_ylabel("log10 ratio per parameter")
    ax2.set_title("per dimension: → 0 (ratio → 1)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


# ---------------------------------------------------------------------------------------------
# populations: distance before/after alignment
# ---------------------------------------------------------------------------------------------


def alignment_distances(
    models: Sequence[nn.Module], labels: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Pairwise distances between networks of one architecture before and after factoring out
    symmetry: one row per pair (i < j) with ``distance_raw``, ``distance_before`` (normalized),
    ``distance_after`` (normalized and aligned, :func:`align`), their relative versions and
    ``reduction = 1 − after/before``. With ``labels`` (e.g. "optimal"/"suboptimal"), the pair's
    ``pair`` label ("a|b", sorted) and ``df.attrs["summary"]`` the mean relative distances per
    pair label.

    >>> from torch import nn
    >>> nets = [nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in range(3)]
    >>> len(alignment_distances(nets))
    3
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"alignment_distances needs at least 2 models, got {len(models)}")
    if labels is not None and len(labels) != len(models):
        raise ValueError(f"labels has {len(labels)} entries for {len(models)} models; expected one per model")
    rows = []
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            r = align(models[i], models[j])
            row = {"i": i, "j": j, "distance_raw": r.distance_raw, "distance_before": r.distance_before,
                   "distance_after": r.distance_after, "relative_before": r.relative_before,
                   "relative_after": r.relative_after,
                   "reduction": 1.0 - r.distance_after / r.distance_before if r.distance_before > 0 else 0.0}
            if labels is not None:
                li, lj = labels[i], labels[j]
                row.update(label_i=li, label_j=lj, pair="|".join(sorted(map(str, (li, lj)))))
            rows.append(row)
    df = pd.DataFrame(rows)
    if labels is not None:
        g = df.groupby("pair")[["relative_before", "relative_after", "reduction"]].mean()
        df.attrs["summary"] = {p: g.loc[p].to_dict() for p in g.index}
    df.attrs["meta"] = metadata(n_models=len(models))
    return df

