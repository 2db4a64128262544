"""Zoo studies (SPEC §3.3): train a population of models over a grid, then ask whether good
networks look alike and how well weights alone predict accuracy.

Layout of a zoo directory written by :func:`train_zoo`::

    ZOO/zoo.json                      archs, dataset, grid (what was asked for)
    ZOO/models/<id>/model.safetensors  one checkpoint per model (netxray.save_checkpoint)
    ZOO/models/<id>/config.json
    ZOO/models/<id>/record.json        hyperparameters + metrics; written last

A model directory is built under ``models/.tmp-<id>-<pid>`` and renamed into place only when
complete, so a killed run never leaves a half-written model and a rerun trains only what is
missing. Engines: ``"local"`` (a process pool on this machine, the default), ``"ray"`` (a local
Ray instance, or an existing cluster via ``address``; workers need the zoo directory on a
shared filesystem) and ``"serial"`` (in-process, for debugging). The Small CNN Zoo layout of
Unterthiner et al. (2020) — ``weights.npy`` (one flat row per network), ``metrics.csv``,
``layout.csv`` — is read by :func:`analyze_zoo` too.

Example:
    >>> parse_grid("width=8,32;lr=1e-3;seed=0,1")
    {'width': [8, 32], 'lr': [0.001], 'seed': [0, 1]}
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netxray._meta import atomic_write_text, metadata
from netxray.lenses._zoo_features import (  # noqa: F401  (re-exported: they lived here)
    ALPHA_KEYS,
    STAT_KEYS,
    _feature_job,
    _features_from,
    _module_matrices,
    _module_tensors,
    _parse_shape,
    _scnn_matrices,
    _scnn_paths,
    _scnn_tensors,
    _spectral_features,
    _summary,
    _zoo_items,
    model_features,
    read_small_cnn_zoo,
)
from netxray.lenses._zoo_train import (  # noqa: F401  (re-exported: they lived here)
    ENGINES,
    MODELS,
    RECORD,
    TRAIN_KEYS,
    Engine,
    _fmt,
    _jsonable,
    _model_id,
    _parse_value,
    _progress,
    _ray_call,
    _spawn_reruns_main,
    _train_job,
    _worker_init,
    _zoo_record,
    choose_start_method,
    expand_grid,
    parse_grid,
    train_zoo,
)
from netxray.measures import weights as W

__all__ = [
    "ENGINES",
    "Engine",
    "ZooAnalysis",
    "alpha_vs_accuracy",
    "analyze_zoo",
    "expand_grid",
    "model_features",
    "parse_grid",
    "read_small_cnn_zoo",
    "stratified_comparisons",
    "train_zoo",
    "plot_zoo",
    "with_optimal_within",
    "write_results",
]


# --------------------------------------------------------------------------- analysis


@dataclass
class ZooAnalysis:
    """Result of :func:`analyze_zoo`.

    ``models``: one row per model (hyperparameters ``hp_*``, ``test_acc``, ``status``, ``class``,
    features ``f_*``, out-of-fold predictions ``pred_*``); ``comparisons``: spread of each
    statistic per class (MAD, Brown–Forsythe) and distribution distances (KS, Jeffreys) within
    and between classes, per family; ``predictors``: R² and Kendall τ of each predictor;
    ``histograms``: family → (edges, {id: density}); ``summary``: the headline numbers."""

    models: pd.DataFrame
    comparisons: pd.DataFrame
    predictors: pd.DataFrame
    histograms: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


COMPARE_STATS = (
    "global_mean", "global_std", "global_skewness", "global_kurtosis", "global_p0", "global_p25",
    "global_p50", "global_p75", "global_p100", "global_near_zero_frac", "bias_mean", "bias_std",
    "strength_abs_cv_mean", "strength_signed_std_mean", "strength_abs_mean_mean",
)


def _classify(df: pd.DataFrame, optimal_within: float, chance_margin: float) -> pd.Series:
    cls = pd.Series("suboptimal", index=df.index, dtype=object)
    ok = df["status"] == "ok"
    cls[~ok] = "error"
    chance = 1.0 / df["num_classes"].astype(float).where(df["num_classes"].astype(float) > 0, 10.0)
    div = ok & ((df["f_n_nonfinite"] > 0) | (df["test_acc"] <= chance + chance_margin) | ~np.isfinite(df["test_acc"]))
    if "train_diverged" in df.columns:
        div |= ok & df["train_diverged"].fillna(False).astype(bool)
    cls[div] = "diverged"
    live = ok & ~div
    for _, idx in df[live].groupby(["dataset", "arch"]).groups.items():
        best = df.loc[idx, "test_acc"].max()
        good = df.loc[idx, "test_acc"] >= best - optimal_within
        cls[good[good].index] = "optimal"
    return cls


def _comparisons(df: pd.DataFrame, hists: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> pd.DataFrame:
    rows = []
    for (dataset, arch), g in df[df["class"].isin(["optimal", "suboptimal"])].groupby(["dataset", "arch"]):
        opt, sub = g[g["class"] == "optimal"], g[g["class"] == "suboptimal"]
        for stat in COMPARE_STATS:
            col = "f_" + stat
            if col not in g:
                continue
            a, b = opt[col].to_numpy(float), sub[col].to_numpy(float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            row = {"dataset": dataset, "arch": arch, "measure": "spread", "statistic": stat,
                   "n_optimal": a.size, "n_suboptimal": b.size,
                   "mad_optimal": W.mad(a) if a.size else np.nan, "mad_suboptimal": W.mad(b) if b.size else np.nan}
            row["mad_ratio_sub_over_opt"] = row["mad_suboptimal"] / row["mad_optimal"] if row["mad_optimal"] > 0 else np.nan
            if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):
                row["bf_F"], row["bf_p"] = W.brown_forsythe(a, b)
            else:
                row["bf_F"] = row["bf_p"] = np.nan
            rows.append(row)
        # distribution distances of the global weight histograms, within and between classes
        if arch in hists:
            edges, h = hists[arch]
            ids_o = [i for i in opt["id"] if i in h]
            ids_s = [i for i in sub["id"] if i in h]
            dists: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
                "jeffreys": lambda p, q, e=edges: W.jeffreys_divergence(p, q, e),
                "ks_binned": lambda p, q, e=edges: W.binned_ks(p, q, e),
            }
            for dist_name, fn in dists.items():
                def mean_pair(xs: list[str], ys: list[str] | None, fn: Callable[..., float] = fn,
                              h: dict[str, np.ndarray] = h) -> float:
                    pairs = itertools.combinations(xs, 2) if ys is None else itertools.product(xs, ys)
                    vals = [fn(h[p], h[q]) for p, q in pairs]
                    return float(np.mean(vals)) if vals else float("nan")
                rows.append({
                    "dataset": dataset, "arch": arch, "measure": "distribution", "statistic": dist_name,
                    "n_optimal": len(ids_o), "n_suboptimal": len(ids_s),
                    "within_optimal": mean_pair(ids_o, None), "within_suboptimal": mean_pair(ids_s, None),
                    "between": mean_pair(ids_o, ids_s),
                })
    return pd.DataFrame(rows)


def _hp_matrix(df: pd.DataFrame) -> pd.DataFrame:
    cols = {}
    for c in df.columns:
        if not c.startswith("hp_") or c == "hp_seed":
            continue
        s = df[c]
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().all():
            cols[c] = np.log10(num) if c in ("hp_lr", "hp_learning_rate") and (num > 0).all() else num
        else:
            for v in sorted(map(str, s.dropna().unique())):
                cols[f"{c}={v}"] = (s.astype(str) == v).astype(float)
    for v in sorted(df["arch"].astype(str).unique()):
        cols[f"arch={v}"] = (df["arch"].astype(str) == v).astype(float)
    return pd.DataFrame(cols, index=df.index)


def _is_alpha(col: str) -> bool:
    return col.startswith("f_alpha_")


def _weights_matrix(df: pd.DataFrame, alpha: bool = False) -> pd.DataFrame:
    """Weight-statistics and strength features (plus the α features when ``alpha``)."""
    X = df[[c for c in df.columns if c.startswith("f_") and c not in ("f_n_params", "f_n_nonfinite")
            and (alpha or not _is_alpha(c))]].astype(float)
    # the family is readable from any checkpoint's tensor shapes; it is not a training choice
    for v in sorted(df["arch"].astype(str).unique()):
        X[f"arch={v}"] = (df["arch"].astype(str) == v).astype(float)
    return X


def _predict(df: pd.DataFrame, seed: int, n_splits: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy.stats import kendalltau
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    live = df[df["class"].isin(["optimal", "suboptimal"])]
    preds = pd.DataFrame(index=df.index)
    rows = []
    groups = live["run"].astype(str).to_numpy()
    k = min(n_splits, len(set(groups)))
    y = live["test_acc"].to_numpy(float)
    if k < 2 or len(live) < 10:
        return preds, pd.DataFrame([{"predictor": "-", "features": "-", "n": len(live), "r2": np.nan,
                                     "kendall_tau": np.nan, "status": f"skipped: {len(live)} models in {len(set(groups))} runs; need >= 10 models in >= 2 runs"}])
    Xw, Xh = _weights_matrix(live), _hp_matrix(live)
    # α alone: does the heavy-tail exponent of the weight spectra predict accuracy by itself?
    Xa = live[[c for c in live.columns if _is_alpha(c)]].astype(float)
    Xwa = _weights_matrix(live, alpha=True)

    def gbt() -> Any:
        return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                             min_samples_leaf=5, random_state=seed)

    def ridge() -> Any:
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             RidgeCV(alphas=np.logspace(-3, 3, 13)))

    specs = [("gbt", "weights", gbt, Xw), ("ridge", "weights", ridge, Xw),
             ("gbt", "hparams", gbt, Xh), ("ridge", "hparams", ridge, Xh),
             ("gbt", "alpha", gbt, Xa), ("ridge", "alpha", ridge, Xa),
             ("gbt", "weights+alpha", gbt, Xwa), ("ridge", "weights+alpha", ridge, Xwa)]
    cv = GroupKFold(n_splits=k)
    from threadpoolctl import threadpool_limits

    # a few hundred rows: OpenMP threads only add overhead (and stall badly on a shared CPU)
    with threadpool_limits(limits=1):
        return _fit_specs(specs, cv, y, groups, live, preds, rows, r2_score, kendalltau)


def _fit_specs(specs: list[Any], cv: Any, y: np.ndarray, groups: np.ndarray, live: pd.DataFrame,
               preds: pd.DataFrame, rows: list[dict[str, Any]], r2_score: Any, kendalltau: Any,
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    k = cv.get_n_splits()
    for name, feats, make, X in specs:
        oof = np.full(len(live), np.nan)
        Xa = X.to_numpy(float)
        try:
            if Xa.shape[1] == 0:
                raise ValueError("no features")
            for tr, te in cv.split(Xa, y, groups):
                # a feature absent from every training model (e.g. hidden-layer stats when all
                # are depth 1) carries nothing to learn from: drop it for this fold
                keep = ~np.isnan(Xa[tr]).all(axis=0)
                if not keep.any():
                    raise ValueError("no feature has a value in the training models (α: no layer has "
                                     "enough eigenvalues for a power-law fit)")
                m = make()
                m.fit(Xa[tr][:, keep], y[tr])
                oof[te] = m.predict(Xa[te][:, keep])
            tau = kendalltau(y, oof)
            rows.append({"predictor": name, "features": feats, "n": len(live), "n_features": Xa.shape[1],
                         "folds": k, "r2": float(r2_score(y, oof)), "kendall_tau": float(tau.statistic),
                         "status": "ok"})
        except Exception as exc:
            rows.append({"predictor": name, "features": feats, "n": len(live), "n_features": Xa.shape[1],
                         "folds": k, "r2": np.nan, "kendall_tau": np.nan, "status": f"error: {exc}"})
        preds.loc[live.index, f"pred_{name}_{feats}"] = oof
    return preds, pd.DataFrame(rows)


def analyze_zoo(
    zoo: str | os.PathLike[str],
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    bins: int = 100,
    optimal_within: float = 0.01,
    chance_margin: float = 0.02,
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> ZooAnalysis:
    """Analyse a zoo (a directory from :func:`train_zoo`, or a Small CNN Zoo directory).

    1. Per-model features (:func:`model_features`), computed on ``engine``. A model that cannot
       be read (corrupted checkpoint, missing record) is a row with ``status="error: …"`` and
       is left out of everything after, never a crash.
    2. Classes within each (dataset, family), SPEC §3.3: ``diverged`` = non-finite weights,
       training flagged diverged, or accuracy ≤ 1/num_classes + ``chance_margin``;
       ``optimal`` = accuracy ≥ best − ``optimal_within``; ``suboptimal`` = the rest.
    3. Comparisons per family: for each statistic the median absolute deviation within
       optimal vs suboptimal and a Brown–Forsythe test of equal spread; for the global weight
       histograms (``bins`` shared bins per family spanning the non-diverged models' range)
       the mean pairwise Jeffreys divergence and binned KS distance within each class and
       between them.
    4. Accuracy predictors on non-diverged models: gradient-boosted trees and ridge on weight
       features, and both on hyperparameters only; out-of-fold predictions with GroupKFold by
       training run (``run``); R² and Kendall τ.

    Example (not run here): ``res = analyze_zoo("ZOO"); res.predictors``
    """
    zoo = Path(zoo)
    if not zoo.exists():
        raise FileNotFoundError(f"zoo: {zoo} does not exist")
    t0 = time.perf_counter()
    items, df = _zoo_items(zoo)
    # one engine (one pool / Ray instance) for both passes: worker start-up is paid once
    with Engine(engine, workers, address) as eng:
        engine_detail = eng.description
        if progress:
            print(f"engine: {engine_detail}", file=sys.stderr)
        feats: list[dict[str, float] | None] = [None] * len(items)
        for i, res in eng.map(_feature_job, items, progress=progress,
                              desc=f"features of {len(items)} models ({engine})"):
            if res["status"] == "ok":
                feats[i] = res["features"]
            elif df.at[i, "status"] == "ok":
                df.at[i, "status"] = res["status"]
        t_features = time.perf_counter() - t0
        F = pd.DataFrame([f or {} for f in feats], index=df.index).add_prefix("f_")
        if "f_n_nonfinite" not in F:
            F["f_n_nonfinite"] = np.nan
        df = pd.concat([df, F], axis=1)
        df["class"] = _classify(df, optimal_within, chance_margin)
        # pass 2: global histograms on bin edges shared within each family
        hists: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        hist_items, hist_keys = [], []
        for arch, g in df[df["class"].isin(["optimal", "suboptimal"])].groupby("arch"):
            lo, hi = float(g["f_global_p0"].min()), float(g["f_global_p100"].max())
            edges = W.shared_bin_edges(range=(lo, hi), bins=bins)
            hists[str(arch)] = (edges, {})
            for i in g.index:
                hist_items.append({**items[i], "edges": edges})
                hist_keys.append((str(arch), df.at[i, "id"]))
        for j, res in eng.map(_feature_job, hist_items, progress=progress, desc="shared-bin histograms"):
            if res["status"] == "ok":
                arch, mid = hist_keys[j]
                hists[arch][1][mid] = res["hist"]
    t_hist = time.perf_counter() - t0 - t_features
    preds, predictors = _predict(df, seed, n_splits)
    t_pred = time.perf_counter() - t0 - t_features - t_hist
    df = pd.concat([df, preds], axis=1)
    comparisons = _comparisons(df, hists)
    summary = _summarize(df, comparisons, predictors)
    summary.update(seconds_total=time.perf_counter() - t0, seconds_features=t_features,
                   seconds_histograms=t_hist, seconds_predictors=t_pred, engine=engine,
                   engine_detail=engine_detail, optimal_within=optimal_within)
    meta = metadata(zoo=str(zoo), engine=engine, engine_detail=engine_detail, seed=seed, n=len(df), bins=bins,
                    optimal_within=optimal_within, chance_margin=chance_margin, n_splits=n_splits)
    for t in (df, comparisons, predictors):
        t.attrs["meta"] = meta
    return ZooAnalysis(df, comparisons, predictors, hists, summary)


def with_optimal_within(res: ZooAnalysis, optimal_within: float) -> ZooAnalysis:
    """The same analysis with another optimal threshold (accuracy ≥ best − ``optimal_within``):
    classes, comparisons and summary are recomputed from the stored features and histograms;
    the predictors (fitted on optimal ∪ suboptimal, which does not change) are kept.

    Example (not run here): ``with_optimal_within(res, 0.05).summary["families"]``
    """
    meta = dict(res.models.attrs.get("meta", {}))
    df = res.models.copy()
    live = df["class"].isin(["optimal", "suboptimal"])
    for _, idx in df[live].groupby(["dataset", "arch"]).groups.items():
        best = df.loc[idx, "test_acc"].max()
        df.loc[idx, "class"] = np.where(df.loc[idx, "test_acc"] >= best - optimal_within, "optimal", "suboptimal")
    comparisons = _comparisons(df, res.histograms)
    summary = {**res.summary, **_summarize(df, comparisons, res.predictors), "optimal_within": optimal_within}
    meta["optimal_within"] = optimal_within
    for t in (df, comparisons):
        t.attrs["meta"] = meta
    return ZooAnalysis(df, comparisons, res.predictors, res.histograms, summary)


def stratified_comparisons(res: ZooAnalysis, by: Sequence[str] = ("lr", "epochs"), *,
                           min_per_class: int = 2) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Optimal vs suboptimal comparisons *within* cells of equal hyperparameters ``by``.

    A zoo's classes are usually confounded with its grid (the optimal models share a learning
    rate and training length, and weight statistics move with both), so "optimal models look
    alike" may only say "equal hyperparameters look alike". Here the same spread and
    distribution comparisons are made inside each (dataset, family, *by) cell holding at least
    ``min_per_class`` optimal and suboptimal models. Returns the comparisons (with the cell's
    ``hp_*`` values) and a per-family summary pooled over cells (statistics compared, fraction
    with the larger suboptimal MAD, median MAD ratio, mean within-class Jeffreys).

    Example (not run here): ``comp, summ = stratified_comparisons(res, by=("lr",))``
    """
    df = res.models
    cols = [f"hp_{b}" for b in by]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"by: {missing} are not hyperparameter columns of this zoo; have "
                         f"{sorted(c for c in df.columns if c.startswith('hp_'))}")
    live = df[df["class"].isin(["optimal", "suboptimal"])]
    parts = []
    for key, g in live.groupby(["dataset", "arch", *cols]):
        counts = g["class"].value_counts()
        if counts.get("optimal", 0) < min_per_class or counts.get("suboptimal", 0) < min_per_class:
            continue
        comp = _comparisons(g, res.histograms)
        for c, v in zip(cols, key[2:], strict=True):
            comp[c] = v
        parts.append(comp)
    comp = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    summary: dict[str, Any] = {}
    if not comp.empty:
        for arch, g in comp.groupby("arch"):
            sp = g[g["measure"] == "spread"]
            ratio = sp["mad_ratio_sub_over_opt"].to_numpy(float)
            ratio = ratio[np.isfinite(ratio)]
            jd = g[(g["measure"] == "distribution") & (g["statistic"] == "jeffreys")]
            summary[str(arch)] = {
                "cells": int(len(jd)) if len(jd) else int(sp.groupby(cols).ngroups),
                "stats_compared": int(ratio.size),
                "frac_stats_sub_spread_larger": float(np.mean(ratio > 1)) if ratio.size else float("nan"),
                "median_mad_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
                "jeffreys_within_optimal": float(jd["within_optimal"].mean()) if len(jd) else float("nan"),
                "jeffreys_within_suboptimal": float(jd["within_suboptimal"].mean()) if len(jd) else float("nan"),
            }
    return comp, summary


def alpha_vs_accuracy(df: pd.DataFrame, features: Sequence[str] = ("alpha_mean", "alpha_median",
                      "alpha_weighted_mean")) -> pd.DataFrame:
    """Rank correlation of each α feature with test accuracy, per family and pooled.

    Over the models that trained (classes optimal and suboptimal; diverged models would decide
    any correlation by themselves) with a finite feature: Spearman ρ (and its p-value) and
    Kendall τ. One row per (family, feature); family ``"all"`` pools the families (when
    there are several).

    Example:
        >>> d = pd.DataFrame({"arch": ["m"] * 4, "class": ["optimal"] * 4,
        ...                   "test_acc": [0.9, 0.8, 0.7, 0.6], "f_alpha_mean": [2.0, 3.0, 4.0, 5.0]})
        >>> alpha_vs_accuracy(d, ["alpha_mean"])[["arch", "n", "spearman"]].values.tolist()
        [['m', 4, -1.0]]
    """
    from scipy.stats import kendalltau, spearmanr

    live = df[df["class"].isin(["optimal", "suboptimal"])]
    rows = []
    groups = [(str(a), g) for a, g in live.groupby("arch")]
    if len(groups) > 1:
        groups.append(("all", live))
    for arch, g in groups:
        for feat in features:
            col = "f_" + feat
            if col not in g:
                continue
            x, y = g[col].to_numpy(float), g["test_acc"].to_numpy(float)
            m = np.isfinite(x) & np.isfinite(y)
            row = {"arch": arch, "feature": feat, "n": int(m.sum()), "spearman": np.nan,
                   "spearman_p": np.nan, "kendall_tau": np.nan}
            if m.sum() >= 3 and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0:
                sr = spearmanr(x[m], y[m])
                row.update(spearman=float(sr.statistic), spearman_p=float(sr.pvalue),
                           kendall_tau=float(kendalltau(x[m], y[m]).statistic))
            rows.append(row)
    return pd.DataFrame(rows, columns=["arch", "feature", "n", "spearman", "spearman_p", "kendall_tau"])


def _summarize(df: pd.DataFrame, comp: pd.DataFrame, pred: pd.DataFrame) -> dict[str, Any]:
    s: dict[str, Any] = {"n_models": int(len(df)), "classes": df["class"].value_counts().to_dict(),
                         "errors": df.loc[df["status"] != "ok", ["id", "status"]].values.tolist()}
    per_family = {}
    if not comp.empty:
        for arch, g in comp.groupby("arch"):
            sp = g[g["measure"] == "spread"]
            ratio = sp["mad_ratio_sub_over_opt"].to_numpy(float)
            ratio = ratio[np.isfinite(ratio)]
            dist = g[(g["measure"] == "distribution") & (g["statistic"] == "jeffreys")]
            fam = {
                "n_optimal": int(sp["n_optimal"].max()) if len(sp) else 0,
                "n_suboptimal": int(sp["n_suboptimal"].max()) if len(sp) else 0,
                "stats_compared": int(ratio.size),
                "frac_stats_sub_spread_larger": float(np.mean(ratio > 1)) if ratio.size else float("nan"),
                "median_mad_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
                "bf_significant_sub_larger": int(((sp["bf_p"] < 0.05) & (sp["mad_ratio_sub_over_opt"] > 1)).sum()),
                "bf_significant_opt_larger": int(((sp["bf_p"] < 0.05) & (sp["mad_ratio_sub_over_opt"] < 1)).sum()),
            }
            if len(dist):
                d = dist.iloc[0]
                fam.update(jeffreys_within_optimal=float(d["within_optimal"]),
                           jeffreys_within_suboptimal=float(d["within_suboptimal"]),
                           jeffreys_between=float(d["between"]))
            # "good networks look alike": optimal models tighter on most statistics and in distribution
            fam["claim_holds"] = bool(
                ratio.size and np.mean(ratio > 1) > 0.5
                and fam.get("jeffreys_within_optimal", np.inf) < fam.get("jeffreys_within_suboptimal", -np.inf)
            )
            per_family[str(arch)] = fam
    s["families"] = per_family
    s["predictors"] = pred.to_dict(orient="records")
    s["alpha_vs_accuracy"] = alpha_vs_accuracy(df).to_dict(orient="records") if "class" in df else []
    return s


# --------------------------------------------------------------------------- plots & output


def plot_zoo(res: ZooAnalysis, directory: str | os.PathLike[str]) -> list[Path]:
    """Write the zoo plots to ``directory``: statistic distributions by class
    (``stats_by_class.png``), global weight histograms of optimal vs suboptimal models per
    family (``histograms_<family>.png``), the mean power-law α of the weight spectra against
    accuracy (``alpha_vs_accuracy.png``) and predicted vs measured accuracy
    (``predicted_vs_measured.png``). Returns the paths written.

    They replace only files netxray provably wrote there (:func:`netxray.report.write_owned_files`):
    with a user's file of one of these names, nothing is written and ``FileExistsError`` names it."""
    from matplotlib.figure import Figure

    from netxray._files import write_owned_files

    out = Path(directory)
    files: dict[str, bytes] = {}
    df = res.models
    live = df[df["class"].isin(["optimal", "suboptimal", "diverged"])]
    stats = ["global_std", "global_kurtosis", "global_p25", "global_p75", "strength_abs_cv_mean", "bias_std"]
    archs = sorted(live["arch"].astype(str).unique())
    colors = {"optimal": "tab:green", "suboptimal": "tab:orange", "diverged": "tab:red"}
    if archs:
        fig = Figure(figsize=(3.2 * len(stats), 2.6 * len(archs)), layout="constrained")
        axes = fig.subplots(len(archs), len(stats), squeeze=False)
        for r, arch in enumerate(archs):
            g = live[live["arch"].astype(str) == arch]
            for c, st in enumerate(stats):
                ax = axes[r, c]
                for k, cls in enumerate(("optimal", "suboptimal", "diverged")):
                    v = g.loc[g["class"] == cls, "f_" + st].to_numpy(float)
                    v = v[np.isfinite(v)]
                    if v.size:
                        jitter = np.random.default_rng(k).uniform(-0.15, 0.15, v.size)
                        ax.scatter(k + jitter, v, s=8, color=colors[cls], alpha=0.7)
                ax.set_xticks([0, 1, 2], ["opt", "sub", "div"])
                ax.set_title(f"{arch}: {st}", fontsize=8)
        p = out / "stats_by_class.png"
        files[p.name] = _png(fig)
    for arch, (edges, h) in res.histograms.items():
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.subplots()
        cls_of = dict(zip(df["id"], df["class"], strict=True))
        for mid, dens in h.items():
            cls = cls_of.get(mid, "suboptimal")
            ax.stairs(dens, edges, color=colors.get(cls, "gray"), alpha=0.35 if cls == "suboptimal" else 0.8, lw=0.8)
        ax.set(title=f"{arch}: global weight densities (green optimal, orange suboptimal)", xlabel="weight",
               ylabel="density", yscale="symlog")
        p = out / f"histograms_{re.sub(r'[^A-Za-z0-9_.-]', '_', arch)}.png"
        files[p.name] = _png(fig)
    alpha = _plot_alpha(res, colors)
    if alpha is not None:
        files["alpha_vs_accuracy.png"] = _png(alpha)
    pcols = [c for c in df.columns if c.startswith("pred_")]
    if pcols:
        fig = Figure(figsize=(3.3 * len(pcols), 3.3), layout="constrained")
        axes = fig.subplots(1, len(pcols), squeeze=False)
        for ax, c in zip(axes[0], pcols, strict=True):
            m = df[c].notna()
            ax.scatter(df.loc[m, "test_acc"], df.loc[m, c], s=8, c=[colors.get(k, "gray") for k in df.loc[m, "class"]])
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ax.set(title=c[5:], xlabel="measured accuracy", ylabel="predicted")
        p = out / "predicted_vs_measured.png"
        files[p.name] = _png(fig)
    write_owned_files(out, files, "--plot")
    return [out / name for name in files]


PLOT_NAMES = ("stats_by_class.png", "alpha_vs_accuracy.png", "predicted_vs_measured.png")  # and histograms_<family>


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _plot_alpha(res: ZooAnalysis, colors: dict[str, str]) -> Any:
    """``alpha_vs_accuracy.png``: mean power-law α of each model's weight spectra against its
    accuracy, one panel per family, coloured by class, Spearman ρ in the title."""
    from matplotlib.figure import Figure

    df = res.models
    if "f_alpha_mean" not in df:
        return None
    live = df[df["class"].isin(["optimal", "suboptimal", "diverged"]) & np.isfinite(df["f_alpha_mean"].astype(float))]
    archs = sorted(live["arch"].astype(str).unique())
    if not archs:
        return None
    corr = alpha_vs_accuracy(df, ["alpha_mean"]).set_index("arch")
    fig = Figure(figsize=(3.6 * len(archs), 3.3), layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        g = live[live["arch"].astype(str) == arch]
        for cls in ("optimal", "suboptimal", "diverged"):
            h = g[g["class"] == cls]
            ax.scatter(h["f_alpha_mean"], h["test_acc"], s=10, color=colors[cls], alpha=0.75, label=cls)
        rho = corr["spearman"].get(arch, np.nan) if arch in corr.index else np.nan
        n = int(corr["n"].get(arch, 0)) if arch in corr.index else 0
        ax.set(title=f"{arch}: Spearman rho = {rho:.2f} (n = {n})", xlabel="mean power-law alpha over layers",
               ylabel="test accuracy")
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=7)
    return fig


def result_side_files(out: str | os.PathLike[str]) -> list[str]:
    """The names of the side files :func:`write_results` writes beside ``out``."""
    stem = Path(out).with_suffix("").name
    return [f"{stem}.comparisons.csv", f"{stem}.predictors.csv", f"{stem}.summary.json"]


def write_results(res: ZooAnalysis, out: str | os.PathLike[str], *, own_out: bool = False) -> list[Path]:
    """Write ``out`` (Parquet, one row per model; CSV if the name ends in .csv) and, beside it,
    ``<stem>.comparisons.csv``, ``<stem>.predictors.csv`` and ``<stem>.summary.json``.

    The side files replace only files netxray provably wrote (hash in the folder's
    ``.netxray-files.json``, :func:`netxray.report.check_owned_files`): a user's file of that
    name is kept and ``FileExistsError`` names it, before anything is written. ``own_out``: ``out``
    is a name netxray chose (``zoo demo``), not the user's, and is checked the same way.
    """
    from netxray._files import check_owned_files, record_owned_files

    out = Path(out)
    side = [*([out.name] if own_out else []), *result_side_files(out)]
    check_owned_files(out.parent, side, beside=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = res.models.copy()
    for c in df.columns:  # mixed-type hyperparameter columns → strings so Parquet can store them
        if df[c].dtype == object and not df[c].map(lambda v: isinstance(v, str) or v is None).all():
            df[c] = df[c].astype(str)
    if out.suffix == ".csv":
        atomic_write_text(out, df.to_csv(index=False))
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        from netxray._meta import atomic_write_bytes

        atomic_write_bytes(out, buf.getvalue())
    paths = [out]
    for name, table in (("comparisons", res.comparisons), ("predictors", res.predictors)):
        p = out.with_name(f"{out.with_suffix('').name}.{name}.csv")
        atomic_write_text(p, table.to_csv(index=False))
        paths.append(p)
    p = out.with_name(f"{out.with_suffix('').name}.summary.json")
    atomic_write_text(p, json.dumps({"summary": res.summary, "meta": res.models.attrs.get("meta", {})},
                                    indent=2, default=_jsonable) + "\n")
    paths.append(p)
    record_owned_files(out.parent, side)
    return paths
