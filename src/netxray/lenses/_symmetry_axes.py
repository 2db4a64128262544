"""Symmetry lens, part 1 — what an axis is and where the built-in families keep theirs.

:class:`Axis` (a set of units with every tensor slice that moves with them), the row helpers
that read, permute and scale an axis's slices in a state dict, and the documented layouts of the
four built-in families (MLP, CNN, ResNet, ViT). Split out of :mod:`netxray.lenses.symmetry`,
which re-exports every name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netxray.capture.structure._parts import (
    Member,
    _module_kind,
)
from netxray.measures import symmetry as msym


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


def _identical_unit_groups(state: Mapping[str, np.ndarray], ax: Axis) -> list[list[int]]:
    """Groups of units of ``ax`` whose entries are exactly equal in every tensor they own (only
    units of one group of a grouped axis), each unit in one group; read one member at a time —
    never the concatenation of every member's rows, which for a transformer's residual stream is
    a float64 copy of nearly all parameters.

    Each unit's rows are projected on K = 4 fixed random vectors, member by member, and summed.
    Identical units have projections equal up to the rounding of the dot products, at most
    k·2⁻⁵³·Σ|row|·|r| for k entries; units whose 4 projections all lie within 1e-8·max Σ|row|·|r|
    (far above that rounding) of another unit's are candidates, and only the candidates' rows
    are compared exactly (:func:`~netxray.measures.symmetry.duplicate_groups`, tol 0). So a
    duplicate is never missed, and a 2048-unit stream, whose closest pair on one projection is
    often inside the window, is settled without reading all its rows at once. Units with
    non-finite entries are nobody's duplicate.
    """
    size, members = ax.size, ax.writers + ax.readers
    singles = [[i] for i in range(size)]
    if size < 2 or not members:
        return singles if members or size < 2 else [list(range(size))]
    rng = np.random.default_rng(0)
    proj = np.zeros((size, 4))
    bound = np.zeros((size, 4))
    for m in members:
        rows = _rows(state, m, size)
        r = rng.standard_normal((rows.shape[1], 4))
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite unit is set aside below
            proj += rows @ r
            bound += np.abs(rows) @ np.abs(r)
        del rows
    finite = np.flatnonzero(np.isfinite(proj).all(axis=1) & np.isfinite(bound).all(axis=1))
    if finite.size < 2:
        return singles
    window = 1e-8 * bound[finite].max(axis=0)
    order = finite[np.argsort(proj[finite, 0], kind="stable")]
    close = np.diff(proj[order, 0]) <= window[0]
    unit_group = np.repeat(np.arange(ax.groups), size // ax.groups)
    cand: set[int] = set()
    start = 0
    for i in range(len(order)):  # runs of neighbours on projection 0, then all 4 compared
        if i < len(close) and close[i]:
            continue
        run = order[start : i + 1]
        for a_ in range(len(run)):
            for b_ in range(a_ + 1, len(run)):
                u, v = int(run[a_]), int(run[b_])
                if unit_group[u] == unit_group[v] and np.all(np.abs(proj[u] - proj[v]) <= window):
                    cand.update((u, v))
        start = i + 1
    if not cand:
        return singles
    idx = np.array(sorted(cand))
    sig = np.concatenate([_rows(state, m, size)[idx] for m in members], axis=1)
    merged: dict[int, list[int]] = {}
    for gid in np.unique(unit_group[idx]):
        sel = np.flatnonzero(unit_group[idx] == gid)
        for grp in msym.duplicate_groups(sig[sel], tol=0.0):
            units = [int(idx[sel[k]]) for k in grp]
            for u in units:
                merged[u] = units
    out, seen = [], set()
    for u in range(size):
        if u not in seen:
            g = merged.get(u, [u])
            seen.update(g)
            out.append(g)
    return out


def _concat_rows(state: dict[str, np.ndarray], members: Sequence[Member], size: int) -> np.ndarray:
    if not members:
        return np.zeros((size, 0))
    return np.concatenate([_rows(state, m, size) for m in members], axis=1)


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


class _LazyState64(Mapping[str, np.ndarray]):
    """The float tensors of a model as float64 numpy arrays, each converted when it is read and
    not kept: a reader that takes one tensor at a time (the identical-units count, member by
    member) holds one float64 tensor at a time, never a float64 copy of the whole model."""

    def __init__(self, model: nn.Module) -> None:
        self._tensors = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}

    def __getitem__(self, key: str) -> np.ndarray:
        return self._tensors[key].detach().cpu().to(torch.float64).numpy()

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _state64_views(m64: nn.Module) -> Mapping[str, np.ndarray]:
    """The float tensors of a float64 CPU copy (``_eval64``) as read-only numpy views (no copy);
    a copy in another dtype or on another device (:func:`_upcast_per_module`) is read tensor by
    tensor (:class:`_LazyState64`)."""
    state = {k: v for k, v in m64.state_dict().items() if v.is_floating_point()}
    if any(v.dtype != torch.float64 or v.device.type != "cpu" for v in state.values()):
        return _LazyState64(m64)
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


def _eval64(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    m = copy.deepcopy(model).to(dtype)
    m.eval()  # a copy: the user's model keeps its mode
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# above this many bytes for a float64 copy of the whole model (268 M parameter values), the
# verification copy keeps the model's dtype and upcasts one module at a time
# (:func:`_upcast_per_module`); a fixed size, not the free memory, so that the same model gets
# the same test (and the same numbers) on every machine
PER_MODULE_ABOVE_BYTES = 2 * 1024**3


def _floating_values(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.is_floating_point())


def _verification_copy(model: nn.Module, dtype: torch.dtype = torch.float64, copy_mode: str = "auto",
                       device: torch.device | None = None) -> nn.Module:  # fmt: skip
    """The copy the symmetry verification runs: ``"whole"`` — the whole model in ``dtype``
    (:func:`_eval64`); ``"per-module"`` — the model's own dtype, each module computing in ``dtype``
    while it runs (:func:`_upcast_per_module`); ``"auto"`` — whole unless its ``dtype`` copy would
    exceed :data:`PER_MODULE_ABOVE_BYTES` (2 GiB). ``device``: where the copy runs (default: the
    model's own device)."""
    m = _upcast_per_module(model, dtype) if _per_module(model, dtype, copy_mode) else _eval64(model, dtype)
    return m if device is None else m.to(device)


def _per_module(model: nn.Module, dtype: torch.dtype = torch.float64, copy_mode: str = "auto") -> bool:
    """Whether :func:`_verification_copy` makes a per-module copy of ``model``."""
    if copy_mode not in ("auto", "whole", "per-module"):
        raise ValueError(f"verify_copy: expected 'auto', 'whole' or 'per-module', got {copy_mode!r}")
    size = torch.empty(0, dtype=dtype).element_size()
    return copy_mode == "per-module" or (copy_mode == "auto" and size * _floating_values(model) > PER_MODULE_ABOVE_BYTES)


def _upcast_per_module(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """An eval-mode copy of ``model`` in its own dtype whose modules compute in ``dtype``: each
    module's own floating parameters and buffers are cast to ``dtype`` when it is called and
    given back their stored tensors when it returns (a hook that runs on errors too).

    Memory: the copy (2 bytes per parameter for bfloat16) plus the parameters of the modules
    being called at that moment in ``dtype`` — one decoder layer's Linear at a time, not 8 bytes
    per parameter for the whole model (a 1.1 B model: 2.2 GB instead of 8.8 GB). The forward pass
    computes what the whole-model ``dtype`` copy computes, because casting up is exact: every value
    of a bfloat16/float16/float32 tensor is a float64 value. Writers of the copy (the verification's
    permutations) must keep values representable in the stored dtype (see ``_Verifier``).
    """
    m = copy.deepcopy(model)
    m.eval()  # a copy: the user's model keeps its mode
    for p in m.parameters():
        p.requires_grad_(False)
    m._netxray_compute_dtype = dtype  # read by the verification's runner for the inputs' dtype
    depth: dict[int, int] = {}
    stashed: dict[int, list[tuple[Any, str, torch.Tensor]]] = {}

    # the casts are bookkeeping, not ops of the model: hidden from torch-function modes (the
    # verification's precision watch would take a cast parameter for a per-sample tensor)
    def cast(mod: nn.Module, *_: Any) -> None:
        d = depth.get(id(mod), 0)
        depth[id(mod)] = d + 1
        if d:  # re-entered: already cast
            return
        saved = []
        with torch._C.DisableTorchFunction():
            for name, p in mod._parameters.items():
                if p is not None and p.is_floating_point() and p.dtype != dtype:
                    saved.append((p, name, p.data))
                    p.data = p.data.to(dtype)
            for name, b in mod._buffers.items():
                if b is not None and b.is_floating_point() and b.dtype != dtype:
                    saved.append((None, name, b))
                    mod._buffers[name] = b.to(dtype)
        stashed[id(mod)] = saved

    def restore(mod: nn.Module, *_: Any) -> None:
        depth[id(mod)] -= 1
        if depth[id(mod)]:
            return
        with torch._C.DisableTorchFunction():
            for p, name, t in stashed.pop(id(mod), []):
                if p is not None:
                    p.data = t
                else:
                    mod._buffers[name] = t

    for mod in m.modules():
        own = [t for t in [*mod._parameters.values(), *mod._buffers.values()]
               if t is not None and t.is_floating_point() and t.dtype != dtype]  # fmt: skip
        if own:
            mod.register_forward_pre_hook(cast)
            mod.register_forward_hook(restore, always_call=True)
    return m


def _compute_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a verification copy computes in: a per-module copy's ``dtype``, else its
    parameters' own."""
    dtype = getattr(model, "_netxray_compute_dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float64)
