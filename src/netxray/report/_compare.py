"""One comparer per lens: the side-by-side section of a comparison report.

:func:`compare_lens` calls the lens's comparer (signature distances, curve differences,
parameter statistics, symmetry-aware alignment) and, like the runners, turns an exception into
``status="failed"`` with its reason. It also holds what the runners share with it: the lens
titles and the wording of a failure (:func:`_reason`). Split out of
:mod:`netxray.report.runners`, which re-exports every name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from netxray.report import plots as P
from netxray.report.html import figure_to_plot
from netxray.report.results import LensResult

TITLES = {
    "nonlinearity": "Non-linearity signature",
    "modularity": "Modularity curve",
    "parameters": "Learnable parameters",
    "symmetry": "Symmetry",
}


# exceptions netxray raises with a message written for the reader (a clear error: what, why, and
# what would make it work); the report quotes that message, never the exception's class name
_WORDED = (ValueError, TypeError, OSError, LookupError, NotImplementedError, MemoryError)


def _reason(exc: BaseException) -> str:
    """Why something was not computed, in the words of its error message (no class names); an
    exception netxray did not word itself is said to be unexpected, with its message."""
    text = str(exc).strip()
    if isinstance(exc, MemoryError):
        return "not enough memory" + (f": {text}" if text else " (use fewer samples or a smaller model)")
    if isinstance(exc, _WORDED) and text:
        return text
    return ("an unexpected error (a bug in netxray or in the model's code; please report it)"
            + (f": {text}" if text else ""))


def compare_lens(
    lens: str, models: Mapping[str, nn.Module], children: Mapping[str, Any], *, seed: int = 0,
    settings: Mapping[str, Any] | None = None,
) -> LensResult:
    """Compare one lens across the per-model scans; failures become a failed result."""
    t0 = time.perf_counter()
    name = f"compare_{lens}"
    title = f"Comparison — {TITLES[lens].lower()}"
    ok = {m: c.results[lens] for m, c in children.items() if c.results.get(lens) and c.results[lens].status == "ok"}
    skipped = [m for m in children if m not in ok]
    if len(ok) < 2 and lens != "symmetry":
        res = LensResult(name, title, status="failed",
                         reason=f"fewer than two models have a {lens} result (not run on: {', '.join(skipped) or 'none'})")  # fmt: skip
    else:
        try:
            res = _COMPARERS[lens](models, ok, seed, dict(settings or {}))
            res.name, res.title = name, title
            from netxray._meta import metadata

            for df in res.tables.values():  # every table says how it was made
                df.attrs.setdefault("meta", metadata(
                    lens=name, seed=seed, models={m: children[m].meta.get("model_hash") for m in ok},
                    data=next(iter(children.values())).meta.get("data"), **dict(settings or {}),
                ))  # fmt: skip
        except Exception as exc:
            res = LensResult(name, title, status="failed", reason=_reason(exc))
    if skipped and res.status == "ok":
        res.notes.append(f"Left out (the lens did not run on them, see their sections): {', '.join(skipped)}.")
    res.seconds = time.perf_counter() - t0
    return res


def _compare_nonlinearity(
    models: Mapping[str, nn.Module], ok: Mapping[str, LensResult], seed: int, settings: dict[str, Any]
) -> LensResult:
    from netxray.lenses.nonlinearity import compare_signatures, plot_signatures

    sigs = {m: r.tables["signature"] for m, r in ok.items()}
    method = settings.get("signature_method", "dtw")
    cmp = compare_signatures(sigs, method, n_clusters=settings.get("clusters"))
    clustering = pd.DataFrame({"model": cmp.names,
                               "leaf_order": [cmp.order.index(i) for i in range(len(cmp.names))]})
    if cmp.labels is not None:
        clustering["cluster"] = cmp.labels
    clustering.attrs["linkage"] = cmp.linkage.tolist()
    long = pd.concat(
        [df.assign(model=m)[["model", "position", "site", "op", "n", "d", "affinity", "status"]
                            + (["estimator"] if "estimator" in df else [])]
         for m, df in sigs.items()], ignore_index=True,
    )  # fmt: skip
    order = [cmp.names[i] for i in cmp.order]
    res = LensResult(
        "compare_nonlinearity", "",
        tables={"signatures": long, "distances": cmp.distances, "clustering": clustering, "summary": cmp.summary},
        summary={"models": list(sigs), "dendrogram order": order,
                 "closest pair": _closest_pair(cmp.distances), "method": method},
    )  # fmt: skip
    ns = {int(r.table.attrs.get("meta", {}).get("n") or 0) if r.table is not None else 0 for r in ok.values()}
    res.howto = [
        "Signatures of all models against relative depth, their pairwise distances ("
        + ("dynamic time warping: square root of the accumulated squared difference along the best "
           "alignment of the two sequences; 0 = same shape" if method == "dtw" else
           "Euclidean after resampling both to a common length")
        + "), and an average-linkage clustering of the models on those distances: models in one "
        "branch use their non-linearities alike."
    ]
    if len(ns) > 1:
        res.notes.append(f"The models were measured at different n ({sorted(ns)}): the score is biased "
                         "by n and d, so compare with care.")  # fmt: skip
    res.plots.append(figure_to_plot(plot_signatures(sigs, x="relative", show_null=False), "Signatures overlaid",
                                    "Affinity score against relative depth, one line per model."))  # fmt: skip
    res.plots.append(figure_to_plot(P.distance_and_dendrogram(cmp.distances, cmp.linkage, method),
                                    f"{method.upper()} distances and clustering",
                                    f"Left: pairwise {method} distance between signatures; right: the "
                                    "average-linkage dendrogram."))  # fmt: skip
    return res


def _closest_pair(d: pd.DataFrame) -> str | None:
    if len(d) < 2:
        return None
    a = d.to_numpy(dtype=float).copy()
    np.fill_diagonal(a, np.inf)
    i, j = np.unravel_index(np.argmin(a), a.shape)
    return f"{d.index[i]} – {d.columns[j]} ({a[i, j]:.3g})"


def _compare_modularity(
    models: Mapping[str, nn.Module], ok: Mapping[str, LensResult], seed: int, settings: dict[str, Any]
) -> LensResult:
    parts = []
    for m, r in ok.items():
        curve, red = r.tables["curve"], r.tables["redundancy"]
        L = len(curve)
        parts.append(pd.DataFrame({
            "model": m, "layer": curve["layer"], "relative_depth": np.arange(L) / max(L - 1, 1),
            "q_mean": curve["q_mean"], "q_std": curve["q_std"], "kind": red["kind"].to_numpy(),
            "redundant": red["redundant"].to_numpy(), "n": curve["n"], "k": curve["k"],
        }))  # fmt: skip
    long = pd.concat(parts, ignore_index=True)
    last = {m: r.summary.get("Q last layer") for m, r in ok.items()}
    res = LensResult("compare_modularity", "", tables={"curves": long},
                     summary={"Q last layer": {m: round(float(v), 4) for m, v in last.items() if v is not None},
                              "redundant layers": {m: len(r.summary.get("redundant layers", [])) for m, r in ok.items()}})  # fmt: skip
    res.howto = ["Modularity curves of all models against relative depth (first probed layer at 0, "
                 "last at 1), same n, k and subsets' seed. A curve that reaches its ceiling early and "
                 "stays flat has redundant depth (marked points)."]  # fmt: skip
    res.plots.append(figure_to_plot(P.curves_overlaid(long), "Modularity curves overlaid",
                                    "Q ± std against relative depth; hollow markers: redundant layers."))  # fmt: skip
    return res


def _compare_parameters(
    models: Mapping[str, nn.Module], ok: Mapping[str, LensResult], seed: int, settings: dict[str, Any]
) -> LensResult:
    from netxray.lenses.parameters import GLOBAL, weight_histograms

    rows = []
    for m, r in ok.items():
        stats = r.tables["weight_stats"]
        g = stats[stats["name"] == GLOBAL]
        if len(g):
            rows.append({"model": m, **g.iloc[0].drop(labels=["name", "module", "module_type", "role", "shape"],
                                                       errors="ignore").to_dict()})  # fmt: skip
    side = pd.DataFrame(rows)
    names = list(ok)
    edges, hists = weight_histograms([models[m] for m in names], bins=80)
    dens = {m: h.get(GLOBAL) for m, h in zip(names, hists, strict=True) if h.get(GLOBAL) is not None}
    hist_table = pd.DataFrame({"left": edges[:-1], "right": edges[1:], **dens})
    fl = pd.concat([r.tables["fluctuation"].assign(model=m) for m, r in ok.items()], ignore_index=True)
    res = LensResult("compare_parameters", "", tables={"global_stats": side, "histograms": hist_table,
                                                       "fluctuation": fl},
                     summary={"weight std": {m: round(float(v), 4) for m, v in zip(side.get("model", []), side.get("std", []), strict=False)}})  # fmt: skip
    res.howto = ["Global weight statistics side by side and the densities of all weights on bin edges "
                 "shared by every model (each integrates to 1), so shapes compare directly: similar "
                 "spread and tails suggest similar training regimes (SPEC §3.3)."]  # fmt: skip
    res.plots.append(figure_to_plot(P.histograms_overlaid(edges, dens), "Weight densities overlaid",
                                    "All weights of each model on shared bins (log density)."))  # fmt: skip
    return res


def _layout(model: nn.Module) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _compare_symmetry(
    models: Mapping[str, nn.Module], ok: Mapping[str, LensResult], seed: int, settings: dict[str, Any]
) -> LensResult:
    from netxray.lenses.symmetry import align

    rows = []
    for m, r in ok.items():
        rows.append({"model": m, **{k: v for k, v in r.summary.items() if isinstance(v, (int, float, str))}})
    side = pd.DataFrame(rows)
    # alignment distances: only between models with the same parameter layout (same architecture)
    names = list(models)
    layouts = [_layout(models[m]) for m in names]  # once per model, not once per pair
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if layouts[i] != layouts[j]:
                continue
            a, b = models[names[i]], models[names[j]]
            try:
                out = align(a, b)
                pairs.append({"model_a": names[i], "model_b": names[j], **_alignment_numbers(out),
                              "status": "ok"})  # fmt: skip
            except Exception as exc:
                pairs.append({"model_a": names[i], "model_b": names[j], "status": "failed",
                              "error": _reason(exc)})  # fmt: skip
    align_table = pd.DataFrame(pairs)
    tables = {"group": side}
    summary: dict[str, Any] = {
        "log10 |G|": {m: round(float(r.summary["log10 |G|"]), 2) for m, r in ok.items()
                      if isinstance(r.summary.get("log10 |G|"), (int, float))},
        "aligned pairs": int(len(align_table)),
    }  # fmt: skip
    if len(align_table):
        tables["alignment"] = align_table
        if "relative_after" in align_table:
            summary["relative distance after alignment"] = {
                f"{r.model_a}–{r.model_b}": round(float(r.relative_after), 4)
                for r in align_table.itertuples() if r.status == "ok"
            }  # fmt: skip
    res = LensResult("compare_symmetry", "", tables=tables, summary=summary)
    res.howto = ["Symmetry figures side by side. Alignment distances (weight matching: units matched "
                 "layer by layer with a linear assignment) are a distance modulo permutation symmetry, "
                 "defined only between models of the same architecture."]  # fmt: skip
    fig = P.symmetry_comparison(summary["log10 |G|"], align_table)
    if fig is not None:
        res.plots.append(figure_to_plot(fig, "Symmetry side by side",
                                        "Left: log10 of each model's symmetry group; right: relative "
                                        "weight distance of same-architecture pairs before and after "
                                        "weight matching (the part removed is permutation symmetry)."))  # fmt: skip
    if not len(align_table):
        res.notes.append("No two models share an architecture (parameter names and shapes), so no "
                         "alignment distance is defined between them.")  # fmt: skip
    return res


def _alignment_numbers(out: Any) -> dict[str, Any]:
    """Pull the scalar distances out of whatever ``align`` returned."""
    if isinstance(out, tuple):
        for item in out:
            nums = _alignment_numbers(item)
            if nums:
                return nums
        return {}
    if isinstance(out, pd.DataFrame):
        attrs = out.attrs.get("summary", {})
        nums = {k: v for k, v in attrs.items() if isinstance(v, (int, float))}
        return nums or {f"{c}": float(pd.to_numeric(out[c], errors="coerce").sum())
                        for c in out.columns if "dist" in str(c)}  # fmt: skip
    if isinstance(out, Mapping):
        return {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
    nums = {}
    for attr in ("distance_raw", "distance_before", "distance_after", "relative_before", "relative_after"):
        v = getattr(out, attr, None)
        if isinstance(v, (int, float, np.floating)):
            nums[attr] = float(v)
    return nums


_COMPARERS: dict[str, Callable[[Mapping[str, nn.Module], Mapping[str, LensResult], int], LensResult]] = {
    "nonlinearity": _compare_nonlinearity,
    "modularity": _compare_modularity,
    "parameters": _compare_parameters,
    "symmetry": _compare_symmetry,
}
