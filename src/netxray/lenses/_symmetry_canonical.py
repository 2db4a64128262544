"""Symmetry lens, part 4 — canonical form, alignment and functional equivalence.

:func:`canonicalize` (one representative per symmetry orbit), :func:`align` (the distance between
two networks once symmetry is factored out) and :func:`functionally_equivalent`. Split out of
:mod:`netxray.lenses.symmetry`, which re-exports every name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.lenses._symmetry_axes import (
    _PRODUCERS,
    Axis,
    _Analysis,
    _concat_rows,
    _eval64,
    _group_units,
    _match_rows,
    _rows,
    _scale,
    _set_rows,
    _state64,
    _take,
    _unwrap,
)
from netxray.lenses._symmetry_find import (
    _verified_analysis,
)
from netxray.lenses._symmetry_verify import (
    _Probe,
    _probe_inputs,
    _run,
)
from netxray.measures import symmetry as msym


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
