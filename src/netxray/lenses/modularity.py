"""Lens 2 — the modularity curve: how the classes separate layer by layer (SPEC §2.2).

For each probed layer l the features of a batch (flattened, never pooled) give a kNN cosine graph
and its Newman modularity Q_l with the true classes as communities
(:func:`netxray.measures.modularity.modularity`). Q is measured on ``repeats`` random
class-stratified subsets of ``n`` samples and reported as mean ± std per layer; the *same* subsets
are used at every layer, so the curve compares layers on equal footing.

Redundancy: ΔQ_l = Q_l − Q_{l−1}. A layer whose ΔQ is below a tolerance τ adds no class
separation — a *plateau* (|ΔQ| ≤ τ) or a *degradation* (ΔQ < −τ) — and is a pruning candidate.

Memory is bounded by a budget, not by the number of layers: consecutive layers are captured
together while their flattened rows (float32) fit in ``memory_budget``, a wider layer alone; the
forward pass stops right after the last layer it needs; then, one layer at a time, its rows are
reduced to an N × N Gram matrix accumulated over column chunks in float64 (the rows freed as it
is built), its Q computed and the Gram freed before the next layer's. Peak memory ≈
max(budget, P·d·4) + P²·8 bytes (P pooled samples, d the widest layer) plus the forward pass's
own working set, whatever the number of layers. When the P samples fit in one batch, each
layer's Gram matrix is formed inside its hook and no rows are kept (P²·8 bytes a layer), so
every layer shares one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.capture import resolve_layers
from netxray.capture.graph import unwrap_model
from netxray.capture.inputs import (
    _to_model,
    describe,
    model_dtype,
    place_model,
    resolve_samples,
)
from netxray.lenses._modularity_grams import (  # noqa: F401  (re-exported: they lived here)
    _CHUNK_BYTES,
    _chunk_repeats,
    _gram,
    _GramReducer,
    _layer_grams,
    _plan,
    _probe_layers,
    _StopForward,
    _sub_gram,
    _take,
)
from netxray.measures.modularity import modularity_from_gram

__all__ = [
    "layer_difference",
    "modularity_curve",
    "plot_layer_difference",
    "plot_modularity_curve",
    "redundant_layers",
    "stratified_subsets",
]

CURVE_COLUMNS = [
    "layer", "module", "q_mean", "q_std", "q_rel_mean", "q_rel_std", "f_in", "q_max",
    "n_clipped", "n", "k", "d", "repeats", "status", "error",
]  # fmt: skip

# default bound on the feature rows kept at once (float32): layers share a pass below it; a wider
# layer gets passes of its own, its repeats in turn
_FEATURE_BYTES = 512 << 20
# why a layer's Q is not a number, per status of the measure (netxray.measures.modularity)
_WHY = {
    "identical_rows": "every sample's features point the same way (e.g. constant inputs): "
    "kNN ties are broken by sample order, so Q would not describe the representation",
    "zero_rows": "every sample's features are zero: cosine similarity is undefined",
    "no_edges": "every kNN similarity was <= 0: modularity is undefined",
}


# --------------------------------------------------------------------------- sampling


def stratified_subsets(labels: Any, n: int, repeats: int, seed: int = 0) -> list[np.ndarray]:
    """``repeats`` random class-stratified subsets of ``n`` indices into ``labels`` (sorted each).

    Class c gets round(n·N_c/N) samples (largest-remainder rounding so the sizes add up to n),
    drawn without replacement with ``numpy.random.default_rng(seed)``. When n ≥ N every subset
    is the whole set (the repeats are then identical and their spread is 0).

    Example:
        >>> subs = stratified_subsets([0, 0, 0, 0, 1, 1, 1, 1], n=4, repeats=2, seed=0)
        >>> [len(s) for s in subs], [int((s >= 4).sum()) for s in subs]
        ([4, 4], [2, 2])
    """
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D vector, got shape {y.shape}")
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"n (samples per subset) must be an integer >= 2, got {n!r}")
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    total = len(y)
    if n >= total:
        return [np.arange(total) for _ in range(int(repeats))]
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    exact = n * counts / total
    take = np.floor(exact).astype(np.int64)
    # largest remainders get the leftover samples (ties: lower class code first, deterministic)
    order = np.lexsort((np.arange(len(classes)), -(exact - take)))
    take[order[: n - int(take.sum())]] += 1
    members = [np.flatnonzero(codes == c) for c in range(len(classes))]
    rng = np.random.default_rng(seed)
    subsets = []
    for _ in range(int(repeats)):
        parts = [rng.choice(m, size=int(t), replace=False) for m, t in zip(members, take, strict=True)]
        subsets.append(np.sort(np.concatenate(parts)))
    return subsets


# --------------------------------------------------------------------------- the curve


def _default_layers(model: nn.Module, layers: Any, example: Any = None) -> list[str]:
    # "auto" on a model that is not built-in: probes read from its graph on two samples
    paths = resolve_layers(model, layers, example)
    if isinstance(layers, str) and layers == "auto":
        # a pruned built-in model: removed layers are identities, not layers of the curve
        removed = set(getattr(model, "netxray_config", {}).get("removed", []))
        paths = [p for p in paths if p not in removed]
    if not paths:
        raise ValueError("modularity_curve: no layers to probe")
    return paths


def _eligible_samples(labels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Indices of the samples whose class has at least 2 of them, and a note on those left out.

    A sample alone in its class has no within-class neighbour: it can only lower Q, and a data
    set of such samples (a regression target read as classes, ids as labels) gives Q ≈ 0 that
    means nothing. Fewer than 2 classes with 2+ samples is a ``ValueError`` saying so.
    """
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    alone = counts[inverse] < 2
    usable = int((counts >= 2).sum())
    if usable < 2:
        if len(classes) < 2:
            raise ValueError("modularity_curve: the data has a single class; need at least 2")
        raise ValueError(
            f"modularity_curve: the labels give {len(classes)} classes, {int((counts < 2).sum())} of "
            f"them with a single sample, and only {usable} with 2 or more; modularity needs at "
            "least 2 classes with 2+ samples each (labels that are ids, or a regression target "
            "read as classes, make every sample its own class)"
        )
    if not alone.any():
        return np.arange(len(labels)), None
    note = (f"{int(alone.sum())} samples of {int((counts < 2).sum())} classes with a single sample "
            "are left out (a sample alone in its class has no within-class neighbour)")  # fmt: skip
    return np.flatnonzero(~alone), note


def _indexable(data: Any, what: str):
    # the class-stratified subsets need every label first: a stream is read whole
    return resolve_samples(data, need_labels=what)


def _data_name(data: Any) -> str:
    return describe(data)


def _mean(v: list[float]) -> float:
    return float(np.mean(v)) if v and np.all(np.isfinite(v)) else float("nan")


def _std(v: list[float]) -> float:
    # sample std over the repeats (ddof = 1); a single repeat has no spread to report: 0
    if not v or not np.all(np.isfinite(v)):
        return float("nan")
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _curve(
    model: nn.Module, data, subsets: list[np.ndarray], paths: list[str], *, k: int,
    batch_size: int, device, progress: bool, label: str = "modularity",
    memory_budget: int = _FEATURE_BYTES,
) -> pd.DataFrame:
    labels = data.labels.detach().cpu().numpy()
    x_one = _take(data, subsets[0][:2])
    sites = _probe_layers(model, x_one, paths, device)
    ok_sites = [s for s in sites if s["status"] == "ok"]
    results: dict[str, dict[str, Any]] = {
        s["name"]: {"q": [], "q_rel": [], "f_in": [], "q_max": [], "clipped": [], "d": s["d"],
                    "status": s["status"], "error": s["error"]}
        for s in sites
    }  # fmt: skip
    jobs = _plan(ok_sites, subsets, memory_budget, batch_size)
    it: Any = jobs
    if progress:
        from rich.progress import track

        it = track(jobs, description=label, transient=True)
    for group, repeat_groups in it:
        modules = list(dict.fromkeys(s["module"] for s in group))
        # stop after the group's last layer when every layer in it runs once per forward
        stop = group[-1]["module"] if all(s["calls"] == 1 for s in group) else None
        for reps in repeat_groups:
            pool = np.unique(np.concatenate([subsets[r] for r in reps]))
            # each repeat's rows in the pool's Gram matrices and its labels: the same for every layer
            picks = [(np.searchsorted(pool, subsets[r]), labels[subsets[r]]) for r in reps]
            try:
                grams = _layer_grams(model, data, modules, pool, stop_after=stop,
                                     batch_size=batch_size, device=device)  # fmt: skip
            except Exception as exc:  # the whole pass failed: every layer in it says so
                grams = {s["name"]: exc for s in group}
            for site in group:
                res = results[site["name"]]
                got = grams.get(site["name"], RuntimeError("the layer was not reached"))
                if res["status"] != "ok":
                    continue
                if isinstance(got, Exception):
                    # NaN/inf outputs get their own status; anything else is an error with its reason
                    nonfinite = "NaN or infinite" in str(got)
                    res["status"] = "non_finite" if nonfinite else "error"
                    res["error"] = f"{type(got).__name__}: {got}"
                    continue
                try:
                    # one layer's Gram at a time, its rows freed as it is built (flat in layers)
                    gram, d = got.gram()
                    res["d"] = d
                    for pos, rep_labels in picks:
                        m = modularity_from_gram(_sub_gram(gram, pos), rep_labels, k, d=d)
                        if m.status != "ok":
                            res["status"], res["error"] = m.status, _WHY[m.status]
                        res["q"].append(m.q)
                        res["q_rel"].append(m.q_rel)
                        res["f_in"].append(m.f_in)
                        res["q_max"].append(m.q_max)
                        res["clipped"].append(m.n_clipped)
                except Exception as exc:  # one failing layer is a status in its row
                    res["status"], res["error"] = "error", f"{type(exc).__name__}: {exc}"
                finally:
                    grams.pop(site["name"], None)
                    gram = got = None  # nothing of this layer outlives its Q
            del grams  # free these layers before the next pass
    rows = []
    for site in sites:
        res = results[site["name"]]
        if res["status"] != "ok":  # partial values of a failed layer are not a result
            res.update(q=[], q_rel=[], f_in=[], q_max=[], clipped=[])
        rows.append({
            "layer": site["name"], "module": site["module"], "q_mean": _mean(res["q"]),
            "q_std": _std(res["q"]), "q_rel_mean": _mean(res["q_rel"]),
            "q_rel_std": _std(res["q_rel"]), "f_in": _mean(res["f_in"]),
            "q_max": _mean(res["q_max"]),
            "n_clipped": float(np.mean(res["clipped"])) if res["clipped"] else float("nan"),
            "n": int(len(subsets[0])), "k": k, "d": res["d"], "repeats": len(subsets),
            "status": res["status"], "error": res["error"],
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    # per-repeat Q, repeat r on the same subset at every layer: redundant_layers pairs them
    frame.attrs["q_repeats"] = {site["name"]: list(results[site["name"]]["q"]) for site in sites}
    return frame


def modularity_curve(
    model: nn.Module,
    data: Any,
    layers: str | Sequence[str] | None = "auto",
    n: int = 500,
    k: int = 3,
    repeats: int = 5,
    seed: int = 0,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
    memory_budget: int = _FEATURE_BYTES,
) -> pd.DataFrame:
    """The modularity curve: Q of the kNN cosine graph of each probed layer (SPEC §2.2).

    For r = 1..R a class-stratified random subset of ``n`` samples (the same subsets at every
    layer) gives Q_l^r = modularity(flatten(h_l(x)), y, k) with the true labels y; the table
    reports mean and std over r of Q and of Q/Q_max (std with ddof = 1).

    Args:
        model: any ``nn.Module`` (not modified; run in eval mode, its flags restored).
        data: labelled samples in any container (Dataset, DataSplits (test split), DataLoader,
            torch Dataset, ``(x, y)`` tensors or numpy arrays, dict batches with a ``labels``
            key, a spec string…; see :func:`netxray.capture.inputs.resolve_samples`).
        device: None (where the model is), ``"cpu"``, ``"cuda"``, ``"auto"``.
        layers: ``"auto"`` (natural probes: a built-in model's hidden layers, ConvBlocks, stem and
            residual blocks, transformer blocks; any other model's stem, repeated blocks and
            pre-head read from its graph, :func:`netxray.capture.natural_probes`), or module paths.
        n, k, repeats, seed: subset size, neighbours, number of subsets, RNG seed.
        memory_budget: bytes of feature rows (float32) kept at once. Consecutive layers share a
            forward pass while their rows fit; a wider layer gets its own pass(es). Peak memory
            ≈ max(memory_budget, n_pool·d_max·4) + n_pool²·8, whatever the number of layers;
            a smaller budget means more (early-stopped) forward passes.

    Returns:
        DataFrame, one row per layer in execution order: layer, module, q_mean, q_std,
        q_rel_mean, q_rel_std, f_in, q_max, n_clipped, n, k, d, repeats, status, error;
        ``attrs["meta"]`` (version, seed, n, k, repeats, data, model hash) and ``attrs["summary"]``.

    Example:
        >>> import torch
        >>> from netxray.models import build_model
        >>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [8, 8]})
        >>> x, y = torch.randn(60, 4), torch.arange(60) % 2
        >>> curve = modularity_curve(m, (x, y), n=40, repeats=2)
        >>> list(curve["layer"]), list(curve["status"])
        (['hidden.0', 'hidden.1'], ['ok', 'ok'])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)  # DataParallel / torch.compile: the same answers as the model
    data_ = _indexable(data, "modularity_curve")
    all_labels = data_.labels.detach().cpu().numpy()
    eligible, singleton_note = _eligible_samples(all_labels)
    labels = all_labels[eligible]
    n_eff = min(int(n), len(labels))
    subset_note = None
    if n_eff >= len(labels) and repeats > 1:
        # every repeat would use all samples: no spread, and the redundancy tolerance is built
        # from it. Subsets of 80 % differ between repeats (a choice, recorded in the metadata).
        n_eff = max(int(k) + 2 if isinstance(k, (int, np.integer)) else 2, int(0.8 * len(labels)))
        n_eff = min(n_eff, len(labels))
        subset_note = (
            f"the data has only {len(labels)} labelled samples (<= n = {n}): each of the {repeats} "
            f"repeats uses a stratified subset of n = {n_eff} (80 %) so that the repeats differ and "
            "their spread is measured"
        )
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 or k >= n_eff:
        raise ValueError(
            f"k must be an integer with 1 <= k < n (samples per subset): got k={k!r}, n={n_eff}"
        )
    subsets = [eligible[sub] for sub in stratified_subsets(labels, n_eff, repeats, seed)]
    # device=None: where the model is; another device runs a copy of it there
    run_model, target = place_model(model, device)
    example = _to_model(_take(data_, subsets[0][:2]), target, model_dtype(run_model))
    paths = _default_layers(run_model, layers, example)
    from netxray.measures.cost import FLOPS, check_cost

    pool = len(np.unique(np.concatenate(subsets)))
    # per pass: the pool's P×P Gram matrix and one repeat's copy of it; kNN scans P² per repeat
    check_cost(f"modularity_curve: Gram matrices of {pool} samples", bytes_needed=16.0 * pool * pool,
               seconds=len(paths) * repeats * 10.0 * pool * pool / FLOPS,
               option="pass a smaller n (samples per subset) or fewer repeats")  # fmt: skip
    curve = _curve(
        run_model, data_, subsets, paths, k=int(k), batch_size=batch_size, device=target,
        progress=progress, memory_budget=int(memory_budget),
    )
    curve.attrs["meta"] = metadata(
        lens="modularity_curve", seed=seed, n=n_eff, k=int(k), repeats=int(repeats),
        data=_data_name(data), n_available=len(labels), model_hash=model_hash(model),
        model=type(model).__name__, identical_repeats=n_eff >= len(labels) and repeats > 1,
        n_requested=int(n), subset_note=subset_note, singleton_note=singleton_note,
        n_classes=int(len(np.unique(labels))),
    )  # fmt: skip
    ok = curve[curve["status"] == "ok"]
    left = {str(k): int(v) for k, v in curve.loc[curve["status"] != "ok", "status"].value_counts().items()}
    curve.attrs["summary"] = {
        "layers": len(curve),
        "n_ok": int(len(ok)),
        "failed": int((curve["status"] != "ok").sum()),
        "left_out": left,
        "note": (f"statistics over {len(ok)} of {len(curve)} layers (status ok); left out: "
                 + "; ".join(f"{v} {k}" for k, v in left.items())) if left else None,
        "q_first": float(ok["q_mean"].iloc[0]) if len(ok) else float("nan"),
        "q_last": float(ok["q_mean"].iloc[-1]) if len(ok) else float("nan"),
        "q_peak_layer": str(ok.loc[ok["q_mean"].idxmax(), "layer"]) if len(ok) else None,
    }
    return curve


# --------------------------------------------------------------------------- redundancy


def _curve_frame(curve: Any) -> pd.DataFrame:
    if not isinstance(curve, pd.DataFrame):
        raise TypeError(f"curve must be the DataFrame of modularity_curve, got {type(curve).__name__}")
    missing = [c for c in ("layer", "q_mean") if c not in curve.columns]
    if missing:
        raise ValueError(f"curve is missing column(s) {missing}; expected modularity_curve's table")
    return curve


def redundant_layers(
    curve: pd.DataFrame, tol: float | None = None, *, min_tol: float = 1e-3
) -> pd.DataFrame:
    """ΔQ per layer and the plateau / degradation segments of a modularity curve (SPEC §2.2).

    ΔQ_l = Q_l − Q_{l'} with l' the previous layer whose status is ok. With τ the tolerance:
    ΔQ > τ is a *rise*; |ΔQ| ≤ τ a *plateau*; ΔQ < −τ a *degradation*. Plateau and degradation
    layers are *redundant* (they add no class separation). Default τ_l (a choice, SPEC §2.2:
    "from the repeat standard deviation"): two standard errors of ΔQ over the R repeats. Repeat r
    uses the same samples at every layer, so Q_l and Q_{l'} are correlated and the standard error
    comes from the paired differences: τ_l = max(min_tol, 2·std_r(Q_l,r − Q_{l',r})/√R) when the
    curve carries its per-repeat values (``attrs["q_repeats"]``, set by :func:`modularity_curve`);
    otherwise (a curve read back from CSV) the unpaired max(min_tol, 2·sqrt((s_l² + s_{l'}²)/R)).
    Pass ``tol`` to fix it.

    Returns a DataFrame (layer, q_mean, dq, tol, kind, redundant, segment) with
    ``attrs["segments"]``: runs of consecutive redundant layers of one kind
    ({kind, layers, dq_total}), and ``attrs["meta"]``.

    Example:
        >>> import pandas as pd
        >>> c = pd.DataFrame({"layer": ["a", "b", "c", "d"], "q_mean": [0.1, 0.5, 0.5, 0.4],
        ...                   "q_std": [0.01] * 4, "repeats": [5] * 4, "status": ["ok"] * 4})
        >>> list(redundant_layers(c)["kind"])
        ['first', 'rise', 'plateau', 'degradation']
    """
    curve = _curve_frame(curve)
    if tol is not None and (not np.isfinite(tol) or tol < 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    status = curve["status"] if "status" in curve else pd.Series(["ok"] * len(curve))
    std = curve["q_std"].fillna(0.0) if "q_std" in curve else pd.Series([0.0] * len(curve))
    reps = curve["repeats"] if "repeats" in curve else pd.Series([1] * len(curve))
    per_repeat = curve.attrs.get("q_repeats") or {}
    rows, prev = [], None
    for i in range(len(curve)):
        q = float(curve["q_mean"].iloc[i])
        ok = status.iloc[i] == "ok" and np.isfinite(q)
        row = {"layer": curve["layer"].iloc[i], "q_mean": q, "dq": float("nan"),
               "tol": float("nan"), "kind": "n/a", "redundant": False}  # fmt: skip
        if ok and prev is None:
            row["kind"] = "first"
        elif ok:
            dq = q - float(curve["q_mean"].iloc[prev])
            r = max(int(reps.iloc[i]), 1)
            paired = _paired_differences(per_repeat, curve["layer"].iloc[i], curve["layer"].iloc[prev])
            if tol is not None:
                t = tol
            elif paired is not None:
                t = max(min_tol, 2.0 * float(np.std(paired, ddof=1)) / math.sqrt(len(paired)))
            else:
                t = max(min_tol, 2.0 * math.sqrt((std.iloc[i] ** 2 + std.iloc[prev] ** 2) / r))
            kind = "rise" if dq > t else ("degradation" if dq < -t else "plateau")
            row.update(dq=dq, tol=float(t), kind=kind, redundant=kind != "rise")
        if ok:
            prev = i
        rows.append(row)
    out = pd.DataFrame(rows, columns=["layer", "q_mean", "dq", "tol", "kind", "redundant"])
    seg_ids, segments, current = [], [], None
    for _, r in out.iterrows():
        if r["redundant"] and current is not None and current["kind"] == r["kind"]:
            current["layers"].append(r["layer"])
            current["dq_total"] += r["dq"]
        elif r["redundant"]:
            current = {"kind": r["kind"], "layers": [r["layer"]], "dq_total": r["dq"]}
            segments.append(current)
        elif r["kind"] != "n/a":  # a failed layer does not split a segment; a rise does
            current = None
        seg_ids.append(len(segments) - 1 if r["redundant"] else -1)
    out["segment"] = seg_ids
    out.attrs["segments"] = segments
    out.attrs["meta"] = metadata(
        lens="redundant_layers", tol=tol, min_tol=min_tol,
        tol_rule="given" if tol is not None else (
            "max(min_tol, 2*std(paired dQ over repeats)/sqrt(R))" if per_repeat
            else "max(min_tol, 2*sqrt((s_l^2+s_prev^2)/R))"
        ),
        curve=dict(curve.attrs.get("meta", {})),
    )  # fmt: skip
    return out


def _paired_differences(per_repeat: dict, layer: str, prev_layer: str) -> np.ndarray | None:
    """Q_l,r − Q_{l',r} over the repeats, or None when the two layers lack ≥ 2 paired values."""
    a = np.asarray(per_repeat.get(layer, []), dtype=np.float64)
    b = np.asarray(per_repeat.get(prev_layer, []), dtype=np.float64)
    if len(a) < 2 or len(a) != len(b) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    return a - b


def layer_difference(curve: pd.DataFrame, *, relative: bool = False) -> pd.DataFrame:
    """Representation difference between layers, D_ij = |Q_i − Q_j| (Q/Q_max with ``relative``).

    Example:
        >>> import pandas as pd
        >>> c = pd.DataFrame({"layer": ["a", "b"], "q_mean": [0.2, 0.7]})
        >>> round(float(layer_difference(c).loc["a", "b"]), 12)
        0.5
    """
    curve = _curve_frame(curve)
    col = "q_rel_mean" if relative else "q_mean"
    q = curve[col].to_numpy(dtype=np.float64)
    names = list(curve["layer"])
    d = pd.DataFrame(np.abs(q[:, None] - q[None, :]), index=names, columns=names)
    d.attrs["meta"] = metadata(lens="layer_difference", quantity=col)
    return d


# --------------------------------------------------------------------------- plots


def _figure(ax, size):
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path) -> None:
    if path is not None:
        fig.savefig(path, dpi=120)


def plot_modularity_curve(
    curve: pd.DataFrame,
    redundant: pd.DataFrame | None = None,
    *,
    relative: bool = False,
    path: str | None = None,
    ax: Any = None,
    label: str | None = None,
    per_row: int = 160,
) -> Any:
    """Plot Q (or Q/Q_max) per layer with a ±1 std band; redundant layers shaded and marked.

    ``redundant`` defaults to :func:`redundant_layers` (curve). The x axis is labelled by layer,
    or by stage when the names do not fit (:func:`netxray._plotting.label_positions`); a curve
    of more than ``per_row`` layers is split over stacked rows (not when drawing into ``ax``).
    Returns the matplotlib Figure and saves it to ``path`` when given.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions, row_slices

    curve = _curve_frame(curve)
    if redundant is None:
        redundant = redundant_layers(curve)
    names = curve["layer"].astype(str).tolist()
    if ax is not None:
        fig, axes, rows = ax.figure, [ax], [slice(0, len(curve))]
    else:
        rows = row_slices(names, per_row)
        width = PAGE_WIDTH if len(curve) > 12 else max(5.0, 0.45 * len(curve) + 2)
        fig = Figure(figsize=(width, 0.6 + 3.2 * len(rows)), layout="constrained")
        axes = list(fig.subplots(len(rows), 1, squeeze=False)[:, 0])
    mean_col, std_col = ("q_rel_mean", "q_rel_std") if relative else ("q_mean", "q_std")
    all_x = np.arange(len(curve), dtype=float)
    all_mean = curve[mean_col].to_numpy(dtype=float)
    all_std = curve[std_col].fillna(0).to_numpy(dtype=float) if std_col in curve else np.zeros_like(all_mean)
    kinds = redundant["kind"].astype(str).to_numpy()
    bad_all = (curve["status"] != "ok").to_numpy() if "status" in curve else np.zeros(len(curve), bool)
    colors = {"plateau": "tab:orange", "degradation": "tab:red"}
    tips = [f"{n} — Q {m:.3f} ± {s:.3f}" + (f", {k}" if k in colors else "")
            for n, m, s, k in zip(names, all_mean, all_std, kinds, strict=True)]  # fmt: skip
    for r, (a, sl) in enumerate(zip(axes, rows, strict=True)):
        first = r == 0
        xs, mean, std = all_x[sl], all_mean[sl], all_std[sl]
        line = a.plot(xs, mean, marker="o", ms=4 if len(curve) <= 200 else 2.5,
                      label=(label or ("Q / Q_max" if relative else "Q")) if first else None)[0]  # fmt: skip
        a.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.25)
        for kind, color in colors.items():
            sel = kinds[sl] == kind
            if sel.any():  # one collection of full-height bands, not one patch per layer
                a.add_collection(PolyCollection(
                    [[(x - 0.5, 0), (x + 0.5, 0), (x + 0.5, 1), (x - 0.5, 1)] for x in xs[sel]],
                    transform=a.get_xaxis_transform(), facecolor=color, alpha=0.12, lw=0), autolim=False)  # fmt: skip
            if sel.any():
                a.scatter(xs[sel], mean[sel], color=color, zorder=3, s=14, label=kind)
        bad = bad_all[sl]
        if bad.any():
            a.scatter(xs[bad], np.zeros(bad.sum()), marker="x", color="k", label="failed")
        label_positions(a, names[sl], xs, tips=tips[sl])
        if len(xs):
            a.set_xlim(xs[0] - 0.6, xs[-1] + 0.6)
        a.set_ylabel("Q / Q_max" if relative else "modularity Q")
        a.grid(alpha=0.3, axis="y")
    axes[0].set_title("modularity curve")
    legend: dict[str, Any] = {}  # one entry per label over every row of a split curve
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    if legend:
        axes[0].legend(list(legend.values()), list(legend), fontsize=8)
    finish_figure(fig)
    _save(fig, path)
    return fig


def plot_layer_difference(
    curve: pd.DataFrame, *, relative: bool = False, path: str | None = None, ax: Any = None
) -> Any:
    """Heatmap of D_ij = |Q_i − Q_j|; returns the Figure (saved to ``path`` when given)."""
    from netxray._plotting import finish_figure, label_positions

    d = layer_difference(curve, relative=relative)
    n = len(d)
    side = min(10.0, max(3.5, 0.4 * n + 1.5))
    fig, ax = _figure(ax, (side + 1.0, side))
    im = ax.imshow(d.to_numpy(), cmap="viridis", vmin=0)
    label_positions(ax, [str(c) for c in d.columns], axis="x", separators=False, hover=False)
    label_positions(ax, [str(c) for c in d.index], axis="y", separators=False)
    ax.set_title("layer difference |Q_i − Q_j|")
    fig.colorbar(im, ax=ax)
    finish_figure(fig)
    _save(fig, path)
    return fig
