"""Lens 3 — the learnable parameters of one model: statistics, histograms, node strengths (SPEC §3).

``weight_stats(model)`` gives one row per parameter tensor (role ``weight`` / ``bias`` / ``norm`` /
``embedding`` / ``other``) plus a ``<global>`` row over all weight tensors concatenated;
``node_strengths(model)`` gives one row per unit of every layer it can read as a weighted
bipartite graph (Linear, ConvNd as a channel graph, multi-head attention per head), and one row
per parameterized module it could not map, saying why. Nothing here modifies the model.

Example:
    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> weight_stats(m)[["name", "role", "count"]].values.tolist()[:2]
    [['0.weight', 'weight', 12], ['0.bias', 'bias', 3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.measures import weights as W

__all__ = [
    "weight_stats",
    "weight_histograms",
    "node_strengths",
    "strength_fluctuation",
    "plot_weight_histograms",
    "plot_strengths",
    "parameter_role",
]

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBED_TYPES = (nn.Embedding, nn.EmbeddingBag)

GLOBAL = "<global>"


def _to_f64(t: torch.Tensor) -> np.ndarray:
    # float64 on the CPU; bfloat16/half have no direct numpy view
    return t.detach().to(device="cpu", dtype=torch.float64).numpy().ravel()


def parameter_role(module: nn.Module, param_name: str) -> str:
    """Role of a parameter: ``norm`` (any parameter of a normalization layer), ``weight``,
    ``bias``, ``embedding`` or ``other`` (free tensors such as a ViT's ``cls_token``)."""
    if isinstance(module, _NORM_TYPES):
        return "norm"
    if isinstance(module, _EMBED_TYPES):
        return "embedding"
    if param_name == "bias" or param_name.endswith("_bias"):
        return "bias"
    if param_name == "weight" or param_name.endswith("_weight") or param_name.startswith("weight_"):
        return "weight"
    return "other"


def _named_params(model: nn.Module) -> list[tuple[str, str, nn.Module, str, torch.Tensor]]:
    """(full name, module path, module, local name, tensor) for every parameter, model order.

    A tensor shared by several modules (tied weights) is listed once, under its first name, as
    ``model.named_parameters()`` does, so it is not counted twice in the global statistics."""
    out, seen = [], set()
    for mpath, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mpath}.{pname}" if mpath else pname
            out.append((full, mpath, module, pname, p))
    return out


def weight_stats(model: nn.Module, *, near_zero: float = 1e-3, include_global: bool = True) -> pd.DataFrame:
    """Per-tensor statistics of every parameter (SPEC §3.1) plus a global row over all weights.

    Columns: ``name, module, module_type, role, shape`` then :data:`STAT_COLUMNS`
    (count, n_finite, n_nonfinite, mean, population std, skewness, excess kurtosis,
    p0…p100, L1, L2, RMS, near-zero fraction) and ``status`` (``ok``, ``nonfinite`` when NaN/inf
    are present — statistics then use the finite values only — or ``error: …``). The global row
    (``name == "<global>"``, role ``global``) concatenates every tensor of role ``weight``.
    ``df.attrs["meta"]`` holds netxray version, model hash, parameter count, ``near_zero``.

    Example:
        >>> import torch
        >>> df = weight_stats(torch.nn.Linear(3, 2))
        >>> df.set_index("name").loc["<global>", "count"]
        np.int64(6)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    rows: list[dict[str, Any]] = []
    params = _named_params(model)
    n_params = sum(p.numel() for *_, p in params)
    is_weight = [parameter_role(mod, pname) == "weight" for _, _, mod, pname, _ in params]
    # one float64 buffer for the global row, filled tensor by tensor (no list + concatenate copy)
    n_global = sum(p.numel() for w, (*_, p) in zip(is_weight, params, strict=True) if w) if include_global else 0
    buf = np.empty(n_global, dtype=np.float64)
    pos = 0
    with torch.no_grad():
        for (full, mpath, module, pname, p), w in zip(params, is_weight, strict=True):
            row: dict[str, Any] = {
                "name": full,
                "module": mpath,
                "module_type": type(module).__name__,
                "role": parameter_role(module, pname),
                "shape": "x".join(map(str, p.shape)) or "scalar",
            }
            try:
                if w and include_global:
                    view = buf[pos:pos + p.numel()]
                    view[:] = p.detach().reshape(-1).cpu().to(torch.float64).numpy()
                    pos += p.numel()
                    row.update(W.tensor_stats(view, near_zero=near_zero))
                else:
                    row.update(W.tensor_stats(_to_f64(p), near_zero=near_zero))
                row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
            except Exception as exc:  # one odd tensor is a status, not a crash of the table
                row["status"] = f"error: {type(exc).__name__}: {exc}"
            rows.append(row)
    if include_global:
        row = {"name": GLOBAL, "module": "", "module_type": "", "role": "global", "shape": ""}
        if pos:
            row.update(W.tensor_stats(buf[:pos], near_zero=near_zero, overwrite=True))
            row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
        else:
            row.update({k: np.nan for k in W.STAT_COLUMNS})
            row["status"] = "empty: the model has no weight tensors"
        rows.append(row)
    del buf
    cols = ["name", "module", "module_type", "role", "shape", *W.STAT_COLUMNS, "status"]
    df = pd.DataFrame(rows).reindex(columns=cols)
    for c in ("count", "n_finite", "n_nonfinite"):
        df[c] = df[c].astype("Int64") if df[c].isna().any() else df[c].astype(np.int64)
    df.attrs["meta"] = metadata(
        model_hash=model_hash(model), n_params=int(n_params), near_zero=near_zero,
        model_type=type(model).__name__,
    )
    return df


def weight_histograms(
    models: nn.Module | Sequence[nn.Module],
    *,
    bins: int = 64,
    edges: Any | None = None,
    role: str = "weight",
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Histograms of parameters on bin edges shared by every model given (densities, ∫ = 1).

    For each model: a dict ``tensor name -> density`` for tensors of ``role`` plus ``"<global>"``
    (all of them concatenated). Edges span the finite range of all selected tensors of all
    models unless ``edges`` is given (values outside are then left out of the densities).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> e, h = weight_histograms([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)], bins=8)
        >>> float((h[0]["<global>"] * np.diff(e)).sum())
        1.0
    """
    if isinstance(models, nn.Module):
        models = [models]
    per_model: list[dict[str, np.ndarray]] = []
    with torch.no_grad():
        for m in models:
            per_model.append(
                {full: _to_f64(p) for full, _, mod, pname, p in _named_params(m)
                 if parameter_role(mod, pname) == role}
            )
    if edges is None:
        edges = W.shared_bin_edges([a for d in per_model for a in d.values()], bins=bins)
    edges = np.asarray(edges, dtype=np.float64)
    out = []
    for d in per_model:
        h = {k: W.histogram_density(v, edges)[0] for k, v in d.items()}
        if d:
            h[GLOBAL] = W.histogram_density(np.concatenate(list(d.values())), edges)[0]
        out.append(h)
    return edges, out


# --------------------------------------------------------------------------- node strengths

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Threshold,
)
# per-channel ops keep the channel graph intact (each channel maps only to itself)
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)
_ELEMENTWISE_FUNCS = {
    torch.relu, torch.tanh, torch.sigmoid, torch.nn.functional.relu, torch.nn.functional.gelu,
    torch.nn.functional.silu, torch.nn.functional.elu, torch.nn.functional.leaky_relu,
    torch.nn.functional.mish, torch.nn.functional.hardswish, torch.nn.functional.relu6,
    torch.nn.functional.softplus, torch.nn.functional.dropout, torch.nn.functional.tanh,
    torch.nn.functional.sigmoid,
}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "relu_", "contiguous"}
_CHANNELWISE_FUNCS = {
    torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d,
    torch.nn.functional.avg_pool1d, torch.nn.functional.avg_pool2d,
    torch.nn.functional.adaptive_avg_pool1d, torch.nn.functional.adaptive_avg_pool2d,
}


def _is_flatten(node: Any, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        m = modules[node.target]
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        return node.args[1:2] == (1,) or node.kwargs.get("start_dim") == 1
    return False


def _hidden_links(model: nn.Module) -> tuple[list[tuple[str, str, bool]], str]:
    """Pairs (layer a, layer b, through_flatten) where a's output units feed b through
    element-wise (or, for conv channel graphs, channel-wise) ops only.

    Found on the torch.fx graph: from each Linear/Conv call, follow the single-user chain of
    allowed ops to the next Linear/Conv call. Returns the pairs and a note (why none could be
    found, e.g. the model is not traceable)."""
    try:
        import torch.fx as fx

        gm = fx.symbolic_trace(model)
    except Exception as exc:
        return [], f"total strength not computed: torch.fx could not trace the model ({type(exc).__name__}: {exc})"
    modules = dict(gm.named_modules())
    layer_types = (nn.Linear, *_CONV_TYPES)
    links: list[tuple[str, str, bool]] = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), layer_types):
            continue
        is_conv = isinstance(modules[node.target], _CONV_TYPES)
        cur, flattened = node, False
        while True:
            users = list(cur.users)
            if len(users) != 1:
                break
            nxt = users[0]
            if nxt.args[:1] != (cur,):  # the chain must be the op's first (data) argument
                break
            if nxt.op == "call_module" and isinstance(modules.get(nxt.target), layer_types):
                if len(nxt.args) == 1 and not nxt.kwargs:
                    links.append((node.target, nxt.target, flattened))
                break
            ok = False
            if nxt.op == "call_module":
                m = modules.get(nxt.target)
                ok = isinstance(m, _ELEMENTWISE_MODULES) or (
                    is_conv and not flattened and isinstance(m, _CHANNELWISE_MODULES))
            elif nxt.op == "call_function":
                ok = nxt.target in _ELEMENTWISE_FUNCS or (
                    is_conv and not flattened and nxt.target in _CHANNELWISE_FUNCS)
            elif nxt.op == "call_method":
                ok = nxt.target in _ELEMENTWISE_METHODS
            if not ok and is_conv and not flattened and _is_flatten(nxt, modules):
                ok = flattened = True
            if not ok:
                break
            cur = nxt
    return links, ""


def _attention_blocks(module: nn.Module) -> tuple[torch.Tensor, ...] | None:
    """(W_q, W_k, W_v, W_o, num_heads) of a multi-head attention module, or None."""
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            wq, wk, wv = module.in_proj_weight.chunk(3, dim=0)
        else:
            wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        return wq, wk, wv, module.out_proj.weight, module.num_heads
    qkv, proj, heads = getattr(module, "qkv", None), getattr(module, "proj", None), getattr(module, "num_heads", None)
    if isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int):
        if qkv.out_features == 3 * proj.in_features:
            wq, wk, wv = qkv.weight.chunk(3, dim=0)
            return wq, wk, wv, proj.weight, heads
    return None


def _unit_rows(layer: str, mtype: str, kind: str, signed: np.ndarray, absv: np.ndarray,
               detail: str = "") -> pd.DataFrame:
    return pd.DataFrame({
        "layer": layer, "module_type": mtype, "kind": kind,
        "unit": np.arange(signed.size, dtype=np.int64), "signed": signed, "abs": absv,
        "status": "ok", "detail": detail,
    })


def node_strengths(model: nn.Module, *, include_bias: bool = True) -> pd.DataFrame:
    """Node strengths of every layer read as a weighted bipartite graph (SPEC §3.2).

    One row per unit: ``layer`` (module path), ``module_type``, ``kind`` and ``unit``, then
    ``signed`` and ``abs`` strengths.
    - ``kind="in"``: output unit j of a layer, s_in_j = Σ_i W_ji (+ b_j if ``include_bias``);
      ``"out"``: input unit i, s_out_i = Σ_j W_ji. Conv layers use the channel graph
      A_oc = Σ_{u,v} K[o, c, u, v] (abs: Σ|K|).
    - ``kind="total"``: a hidden unit's in-strength from ``layer`` plus its out-strength into the
      next layer (named in ``detail``), only where nothing but element-wise ops (per-channel ops
      for conv channels; a flatten maps channel c to its block of columns) sit between the two.
    - ``kind="q"|"k"|"v"|"o"``: per-head strength of attention modules (``unit`` = head).
    Parameterized modules it cannot map are rows with ``status`` ``"skipped"`` (normalization,
    free tensors, embeddings: not a bipartite layer) or ``"unmapped"`` (no rule for that
    type), the reason in ``detail`` — never silently dropped. Non-finite weights count as 0.
    Per-layer fluctuation: :func:`strength_fluctuation`.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1., 2.], [3., 4.]])); _ = lin.bias.zero_()
        >>> node_strengths(torch.nn.Sequential(lin)).query("kind == 'in'")["signed"].tolist()
        [3.0, 7.0]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    parts: list[pd.DataFrame] = []
    notes: list[dict[str, str]] = []
    cache: dict[str, dict[str, np.ndarray]] = {}

    def note(layer: str, mtype: str, status: str, reason: str) -> None:
        notes.append({"layer": layer, "module_type": mtype, "status": status, "detail": reason})

    covered: set[int] = set()  # ids of parameters some rule read
    with torch.no_grad():
        for path, module in model.named_modules():
            mtype = type(module).__name__
            try:
                if isinstance(module, nn.Linear):
                    s = W.linear_strengths(
                        module.weight, module.bias if include_bias and module.bias is not None else None
                    )
                elif isinstance(module, _CONV_TYPES):
                    a, aa = W.conv_channel_matrix(module.weight, groups=module.groups)
                    s = {"in_signed": a.sum(1), "in_abs": aa.sum(1),
                         "out_signed": a.sum(0), "out_abs": aa.sum(0)}
                    if include_bias and module.bias is not None:
                        b = np.nan_to_num(_to_f64(module.bias), nan=0.0, posinf=0.0, neginf=0.0)
                        s["in_signed"] = s["in_signed"] + b
                        s["in_abs"] = s["in_abs"] + np.abs(b)
                else:
                    s = None
                if s is not None:
                    cache[path] = s
                    covered.update(id(p) for p in module.parameters(recurse=False))
                    parts.append(_unit_rows(path, mtype, "in", s["in_signed"], s["in_abs"]))
                    parts.append(_unit_rows(path, mtype, "out", s["out_signed"], s["out_abs"]))
                    continue
                blocks = _attention_blocks(module)
                if blocks is not None:
                    h = W.attention_head_strengths(*blocks[:4], num_heads=int(blocks[4]))
                    for k in "qkvo":
                        parts.append(_unit_rows(path, mtype, k, h[f"{k}_signed"], h[f"{k}_abs"]))
                    if isinstance(module, nn.MultiheadAttention):
                        covered.update(id(p) for p in module.parameters(recurse=False))
            except Exception as exc:  # one layer failing is a row, not a crash
                note(path, mtype, "error", f"{type(exc).__name__}: {exc}")
                covered.update(id(p) for p in module.parameters(recurse=False))
        # say which parameterized modules no rule mapped, and why
        for path, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if id(p) not in covered]
            if not own:
                continue
            mtype = type(module).__name__
            names = ", ".join(n for n, _ in own)
            if isinstance(module, _NORM_TYPES):
                note(path, mtype, "skipped", f"normalization layer ({names}): an element-wise affine map, no edges between units")
            elif isinstance(module, _EMBED_TYPES):
                note(path, mtype, "skipped", f"embedding table ({names}): a lookup, not a bipartite layer between units")
            elif isinstance(module, nn.MultiheadAttention):
                continue
            elif not any(True for _ in module.children()):  # a leaf layer of a type we do not know
                note(path, mtype, "unmapped", f"no strength rule for {mtype} (parameters: {names}); supported: Linear, Conv1d/2d/3d, multi-head attention")
            else:  # tensors held directly by a container (a ViT's cls_token, pos_embed)
                note(path or "<model>", mtype, "skipped", f"free parameter tensor(s) {names}: not the edges of a layer")
    # total strength of hidden units between consecutive layers
    links, link_note = _hidden_links(model)
    for a, b, through_flatten in links:
        if a not in cache or b not in cache:
            continue
        s_in = cache[a]["in_signed"], cache[a]["in_abs"]
        s_out = cache[b]["out_signed"], cache[b]["out_abs"]
        n_units = s_in[0].size
        if through_flatten:
            if s_out[0].size % n_units:
                note(a, "", "error", f"total strength: {b} has {s_out[0].size} inputs, not a multiple of {n_units} channels")
                continue
            # Flatten(C, *spatial) → channel c owns the contiguous block of columns c·HW … (c+1)·HW−1
            s_out = tuple(x.reshape(n_units, -1).sum(1) for x in s_out)
        if s_out[0].size != n_units:
            note(a, "", "error", f"total strength: {a} has {n_units} outputs but {b} reads {s_out[0].size}")
            continue
        mtype = type(model.get_submodule(a)).__name__
        parts.append(_unit_rows(a, mtype, "total", s_in[0] + s_out[0], s_in[1] + s_out[1], detail=f"next={b}"))
    if link_note:
        note("<model>", type(model).__name__, "note", link_note)
    for n in notes:
        parts.append(pd.DataFrame([{**n, "kind": "-", "unit": -1, "signed": np.nan, "abs": np.nan}]))
    cols = ["layer", "module_type", "kind", "unit", "signed", "abs", "status", "detail"]
    df = pd.concat(parts, ignore_index=True).reindex(columns=cols) if parts else pd.DataFrame(columns=cols)
    df["unit"] = df["unit"].astype(np.int64)
    mapped = sorted(set(df.loc[df["status"] == "ok", "layer"]))
    df.attrs["meta"] = metadata(model_hash=model_hash(model), include_bias=include_bias,
                                model_type=type(model).__name__)
    df.attrs["summary"] = {
        "layers_mapped": len(mapped),
        "not_mapped": [f"{n['layer']} ({n['module_type']}): {n['status']}: {n['detail']}" for n in notes],
    }
    return df


def strength_fluctuation(strengths: pd.DataFrame) -> pd.DataFrame:
    """Per-layer summary of a :func:`node_strengths` table: for each (layer, kind) the number of
    units and mean / std ("layer fluctuation", population) / min / max of signed and abs strengths.

    Example:
        >>> import torch
        >>> f = strength_fluctuation(node_strengths(torch.nn.Linear(3, 2)))
        >>> sorted(f["kind"])
        ['in', 'out']
    """
    ok = strengths[strengths["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame(columns=["layer", "kind", "n_units"])
    g = ok.groupby(["layer", "kind"], sort=False)
    out = g.agg(
        n_units=("unit", "size"),
        signed_mean=("signed", "mean"), signed_std=("signed", lambda s: float(np.std(s))),
        signed_min=("signed", "min"), signed_max=("signed", "max"),
        abs_mean=("abs", "mean"), abs_std=("abs", lambda s: float(np.std(s))),
        abs_min=("abs", "min"), abs_max=("abs", "max"),
    ).reset_index()
    return out


# --------------------------------------------------------------------------- plots


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (8, 5)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)


def plot_weight_histograms(
    model: nn.Module, path: str | Path | None = None, *, bins: int = 64, max_lines: int = 13
) -> Any:
    """Figure: density of all weights (top) and of each weight tensor (bottom) on shared edges.

    Up to ``max_lines`` tensors: one line each. More: a heat map with one row per tensor (in
    parameter order, labelled by tensor or by stage, see
    :func:`netxray._plotting.label_positions`) and log10 density as colour, which stays
    readable at hundreds of tensors. Returns the matplotlib Figure; saves it when ``path`` is given.
    """
    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions

    edges, (h,) = weight_histograms(model, bins=bins)
    centers = 0.5 * (edges[1:] + edges[:-1])
    names = [k for k in h if k != GLOBAL]
    many = len(names) > max_lines
    low = min(9.0, 1.6 + 0.018 * len(names)) if many else 3.4
    fig, axes = _figure(2, 1, (PAGE_WIDTH if many else 8, 3.0 + low))
    if GLOBAL in h:
        axes[0, 0].stairs(h[GLOBAL], edges, fill=True, alpha=0.6)
    axes[0, 0].set(title="all weights", xlabel="weight", ylabel="density")
    ax = axes[1, 0]
    if many:
        dens = np.stack([h[k] for k in names])
        with np.errstate(divide="ignore"):
            img = np.log10(np.where(dens > 0, dens, np.nan))
        im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap="viridis",
                       extent=(edges[0], edges[-1], len(names) - 0.5, -0.5))  # fmt: skip
        fig.colorbar(im, ax=ax, label="log10 density", pad=0.01)
        label_positions(ax, names, axis="y", max_labels=30)
        ax.set(title=f"per weight tensor ({len(names)} tensors, one row each, shared bins)", xlabel="weight")
    else:
        for name in names:
            ax.plot(centers, h[name], lw=1, label=name)
        ax.set(title="per weight tensor (shared bins)", xlabel="weight", ylabel="density", yscale="symlog")
        if names:
            ax.legend(fontsize=7)
    finish_figure(fig)
    _save(fig, path)
    return fig


def plot_strengths(
    strengths: pd.DataFrame, path: str | Path | None = None, *, kind: str = "in", max_boxes: int = 40
) -> Any:
    """Figure: distribution of |w| strengths per layer and the layer fluctuation (std of signed
    and abs strengths) against depth, for strengths of ``kind``.

    Up to ``max_boxes`` layers: one box plot per layer, the two panels side by side. More: each
    layer's distribution summarized as its median with the interquartile range (dark band) and
    the 5–95 % range (light band), and both panels span the page one above the other; the x axes
    are labelled by layer or by stage (:func:`netxray._plotting.label_positions`). Returns the
    matplotlib Figure; saves it when ``path`` is given.
    """
    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions

    ok = strengths[(strengths["status"] == "ok") & (strengths["kind"] == kind)]
    layers = list(dict.fromkeys(ok["layer"]))
    many = len(layers) > max_boxes
    if many or len(layers) > 12:
        fig, axes = _figure(2, 1, (PAGE_WIDTH, 7.6))
        box_ax, fl_ax = axes[0, 0], axes[1, 0]
    else:
        fig, axes = _figure(1, 2, (12, 4.5))
        box_ax, fl_ax = axes[0, 0], axes[0, 1]
    if layers:
        x = np.arange(len(layers), dtype=float)
        groups = {lay: g["abs"].to_numpy(dtype=float) for lay, g in ok.groupby("layer", sort=False)}
        values = [groups[lay] for lay in layers]
        q = np.array([np.percentile(v, [5, 25, 50, 75, 95]) for v in values])
        units = [len(v) for v in values]
        if many:
            box_ax.fill_between(x, q[:, 0], q[:, 4], color="tab:blue", alpha=0.15, lw=0, label="5–95 %")
            box_ax.fill_between(x, q[:, 1], q[:, 3], color="tab:blue", alpha=0.35, lw=0, label="25–75 %")
            box_ax.plot(x, q[:, 2], "-", color="tab:blue", lw=1.2, label="median")
            box_ax.legend(fontsize=8, ncol=3)
        else:
            box_ax.boxplot(values, positions=x, showfliers=False, widths=0.6)
        tips = [f"{lay} — {n} units, median |w| strength {m:.3g} (IQR {a:.3g}–{b:.3g})"
                for lay, n, m, a, b in zip(layers, units, q[:, 2], q[:, 1], q[:, 3], strict=True)]  # fmt: skip
        label_positions(box_ax, [str(v) for v in layers], x, tips=tips)
        fl = strength_fluctuation(ok).set_index("layer").loc[layers]
        ms = 4 if len(layers) <= 200 else 2
        fl_ax.plot(x, fl["abs_std"], "o-", ms=ms, label="std of |w| strength")
        fl_ax.plot(x, fl["signed_std"], "s--", ms=ms, label="std of signed strength")
        ftips = [f"{lay} — std |w| {a:.3g}, std signed {b:.3g}"
                 for lay, a, b in zip(layers, fl["abs_std"], fl["signed_std"], strict=True)]  # fmt: skip
        label_positions(fl_ax, [str(v) for v in layers], x, tips=ftips)
        for a in (box_ax, fl_ax):
            a.set_xlim(-0.6, len(layers) - 0.4)
            a.grid(alpha=0.3, axis="y")
        fl_ax.legend(fontsize=8)
    box_ax.set(title=f"|w| {kind}-strength per layer" + (" (median and ranges)" if many else ""), ylabel="strength")
    fl_ax.set(title="layer fluctuation", ylabel="std")
    finish_figure(fig)
    _save(fig, path)
    return fig
