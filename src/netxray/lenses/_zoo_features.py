"""Zoo lens, part 2 — the features of each zoo member.

Weight statistics and spectral (power-law α) features of one model (:func:`model_features`),
reading the Small CNN Zoo (:func:`read_small_cnn_zoo`) and the per-member feature jobs. Split
out of :mod:`netxray.lenses.zoo`, which re-exports every name.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netxray.lenses._zoo_train import (
    MODELS,
    RECORD,
)
from netxray.measures import weights as W

STAT_KEYS = ("mean", "std", "p0", "p25", "p50", "p75", "p100")


def _summary(prefix: str, x: np.ndarray | None, extra: bool = False) -> dict[str, float]:
    keys = STAT_KEYS + (("skewness", "kurtosis", "near_zero_frac") if extra else ())
    if x is None or x.size == 0:
        return {f"{prefix}_{k}": float("nan") for k in keys}
    s = W.tensor_stats(x)
    return {f"{prefix}_{k}": s[k] for k in keys}


def _features_from(
    tensors: list[tuple[str, str, np.ndarray]],
    strengths: list[tuple[str, np.ndarray, np.ndarray, int]],
) -> tuple[dict[str, float], np.ndarray]:
    """Features of one model from its tensors ``(name, role, flat float64)`` in model order and
    the in-strengths ``(layer, signed, abs, fan_in)`` of its layers; also returns all weights.

    Tensor sets differ across depths and families, so instead of one block per tensor (the
    Small CNN Zoo recipe for a fixed architecture) the per-tensor statistics are taken for the
    first weight tensor, the last one, all others concatenated, all biases and all
    normalization parameters, plus the global view *(choice)*."""
    weights = [x for _, r, x in tensors if r == "weight"]
    allw = np.concatenate(weights) if weights else np.zeros(0)
    f: dict[str, float] = {
        "n_params": float(sum(x.size for _, _, x in tensors)),
        "n_nonfinite": float(sum(int((~np.isfinite(x)).sum()) for _, _, x in tensors)),
    }
    f.update(_summary("global", allw, extra=True))
    f.update(_summary("first", weights[0] if weights else None))
    f.update(_summary("last", weights[-1] if weights else None))
    f.update(_summary("hidden", np.concatenate(weights[1:-1]) if len(weights) > 2 else None))
    biases = [x for _, r, x in tensors if r == "bias"]
    f.update(_summary("bias", np.concatenate(biases) if biases else None))
    norms = [x for _, r, x in tensors if r == "norm"]
    f.update(_summary("norm", np.concatenate(norms) if norms else None))
    # strengths grow with fan-in, so use scale-free or fan-in-normalized summaries per layer
    cv, sstd, amean = [], [], []
    for _, s, a, fan_in in strengths:
        m = float(np.mean(a))
        cv.append(float(np.std(a)) / m if m > 0 else np.nan)
        sstd.append(float(np.std(s)) / math.sqrt(max(fan_in, 1)))
        amean.append(m / max(fan_in, 1))
    for name, v in (("strength_abs_cv", cv), ("strength_signed_std", sstd), ("strength_abs_mean", amean)):
        arr = np.asarray(v, dtype=np.float64)
        ok = arr[np.isfinite(arr)]
        f[f"{name}_mean"] = float(ok.mean()) if ok.size else float("nan")
        f[f"{name}_max"] = float(ok.max()) if ok.size else float("nan")
    return f, allw


ALPHA_KEYS = ("alpha_mean", "alpha_median", "alpha_min", "alpha_max", "alpha_first", "alpha_hidden",
              "alpha_last", "alpha_weighted_mean", "alpha_fit_frac")


def _spectral_features(matrices: list[tuple[str, np.ndarray]], min_tail: int = 10) -> dict[str, float]:
    """Heavy-tail (power-law α) features of one model's weight matrices, in model order.

    Per matrix (a Linear weight, a ConvNd kernel read as out × in·k…): α of the upper tail of
    the eigenvalues λ of WᵀW (:func:`netxray.measures.spectral.fit_power_law`: continuous MLE,
    x_min by minimal KS distance, a tail of ≥ ``min_tail`` eigenvalues; a matrix with fewer
    than ``min_tail`` + 1 positive eigenvalues has no α). Model features over the matrices
    with a fit: ``alpha_mean``, ``alpha_median``, ``alpha_min``, ``alpha_max``,
    ``alpha_weighted_mean`` (WeightWatcher's α̂ = α·log10 λ_max, averaged) and the per-layer
    values of the layers that align across any depth: ``alpha_first``, ``alpha_last`` (first
    and last matrix; NaN without a fit) and ``alpha_hidden`` (mean over the ones between);
    ``alpha_fit_frac``: the fraction of matrices with a fit (NaN features are imputed by the
    ridge and split on by the trees, never silently read as 0).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> f = _spectral_features([("w", rng.normal(size=(5, 4)))])
        >>> f["alpha_fit_frac"], bool(np.isnan(f["alpha_mean"]))  # 4 eigenvalues: no fit
        (0.0, True)
    """
    from netxray.measures import spectral as S

    alphas, weighted = [], []
    for _, m in matrices:
        try:
            evals = S.singular_values(m) ** 2
            fit = S.fit_power_law(evals, min_tail=min_tail)
        except Exception:  # a matrix the eigensolver refuses (non-finite): no α for it
            alphas.append(np.nan)
            weighted.append(np.nan)
            continue
        ok = fit.status == "ok" and np.isfinite(fit.alpha)
        alphas.append(fit.alpha if ok else np.nan)
        weighted.append(fit.alpha * np.log10(fit.xmax) if ok and fit.xmax > 0 else np.nan)
    a = np.asarray(alphas, dtype=np.float64)
    ok = a[np.isfinite(a)]
    w = np.asarray(weighted, dtype=np.float64)
    w = w[np.isfinite(w)]
    nan = float("nan")
    hidden = a[1:-1][np.isfinite(a[1:-1])] if a.size > 2 else np.zeros(0)
    return {
        "alpha_mean": float(ok.mean()) if ok.size else nan,
        "alpha_median": float(np.median(ok)) if ok.size else nan,
        "alpha_min": float(ok.min()) if ok.size else nan,
        "alpha_max": float(ok.max()) if ok.size else nan,
        "alpha_first": float(a[0]) if a.size else nan,
        "alpha_hidden": float(hidden.mean()) if hidden.size else nan,
        "alpha_last": float(a[-1]) if a.size else nan,
        "alpha_weighted_mean": float(w.mean()) if w.size else nan,
        "alpha_fit_frac": float(ok.size / a.size) if a.size else nan,
    }


def _module_matrices(model: Any) -> list[tuple[str, np.ndarray]]:
    """The weight matrices of a model's Linear and ConvNd layers in module order (float64,
    a kernel read as out × in·k…), the layers whose spectra the α features describe."""
    import torch
    from torch import nn

    from netxray.lenses.parameters import _CONV_TYPES
    from netxray.measures.spectral import as_weight_matrix

    out = []
    with torch.no_grad():
        for path, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, *_CONV_TYPES)):
                out.append((path, as_weight_matrix(mod.weight)))
    return out


def _module_tensors(model: Any) -> tuple[list[tuple[str, str, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray, int]]]:
    import torch
    from torch import nn

    from netxray.lenses.parameters import _CONV_TYPES, _named_params, _to_f64, parameter_role

    tensors, strengths = [], []
    with torch.no_grad():
        for full, _, mod, pname, p in _named_params(model):
            tensors.append((full, parameter_role(mod, pname), _to_f64(p)))
        for path, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                s = W.linear_strengths(mod.weight, mod.bias)
                strengths.append((path, s["in_signed"], s["in_abs"], mod.in_features))
            elif isinstance(mod, _CONV_TYPES):
                a, aa = W.conv_channel_matrix(mod.weight, groups=mod.groups)
                fan_in = int(np.prod(mod.weight.shape[1:]))
                strengths.append((path, a.sum(1), aa.sum(1), fan_in))
    return tensors, strengths


def model_features(model: Any) -> dict[str, float]:
    """Weight features of one model used by the zoo predictor (see :func:`_features_from`):
    for the global weights, the first/last/other weight tensors, biases and normalization
    parameters: mean, std, percentiles 0/25/50/75/100; node-strength summaries normalized by
    fan-in; parameter and non-finite counts; and the spectral heavy-tail features
    ``alpha_*`` (power-law α of each Linear/Conv weight's ESD, :func:`_spectral_features`).

    Example:
        >>> import torch
        >>> f = model_features(torch.nn.Linear(4, 2))
        >>> f["n_params"]
        10.0
    """
    tensors, strengths = _module_tensors(model)
    features = _features_from(tensors, strengths)[0]
    features.update(_spectral_features(_module_matrices(model)))
    return features


def _scnn_paths(directory: Path) -> tuple[Path, Path, Path]:
    for name in ("weights.npy", "layout.csv", "metrics.csv"):
        if not (directory / name).exists():
            raise FileNotFoundError(
                f"Small CNN Zoo layout: {directory / name} is missing; expected weights.npy "
                "(one flat row per network), metrics.csv and layout.csv")
    return directory / "weights.npy", directory / "layout.csv", directory / "metrics.csv"


def _parse_shape(text: Any) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(text))
    return tuple(int(n) for n in nums)


def read_small_cnn_zoo(directory: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the index of a Small CNN Zoo directory (Unterthiner et al., 2020).

    ``metrics.csv``: one row per network, an accuracy column (``test_accuracy``, or
    ``test_acc``), hyperparameters as ``config.*`` columns, optionally ``modeldir`` (the
    training run: checkpoints of one run share it). ``layout.csv``: one row per tensor with
    ``varname``, ``start_idx``, ``end_idx`` (exclusive) and ``shape`` in TensorFlow order
    (dense kernels in × out, conv kernels kh × kw × in × out). ``weights.npy``: (networks × P).
    Returns ``(metrics, layout)`` after checking that they agree with the weights' shape.

    Example (fixture written by the tests): ``metrics, layout = read_small_cnn_zoo("zoo_dir")``
    """
    directory = Path(directory)
    wpath, lpath, mpath = _scnn_paths(directory)
    weights = np.load(wpath, mmap_mode="r")
    layout = pd.read_csv(lpath)
    metrics = pd.read_csv(mpath)
    need = {"varname", "start_idx", "end_idx", "shape"}
    if not need <= set(layout.columns):
        raise ValueError(f"{lpath}: expected columns {sorted(need)}, got {list(layout.columns)}")
    acc = "test_accuracy" if "test_accuracy" in metrics.columns else "test_acc"
    if acc not in metrics.columns:
        raise ValueError(f"{mpath}: expected a 'test_accuracy' column, got {list(metrics.columns)}")
    if weights.ndim != 2 or weights.shape[0] != len(metrics):
        raise ValueError(f"{wpath}: expected {len(metrics)} rows (one per metrics.csv row), got shape {weights.shape}")
    for r in layout.itertuples():
        shape = _parse_shape(r.shape)
        if int(np.prod(shape)) != r.end_idx - r.start_idx or r.end_idx > weights.shape[1]:
            raise ValueError(f"{lpath}: tensor {r.varname!r} slice [{r.start_idx}, {r.end_idx}) does not fit shape {shape} or the {weights.shape[1]} columns")
    return metrics, layout


def _scnn_tensors(directory: str, row: int) -> tuple[list[tuple[str, str, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray, int]]]:
    weights = np.load(Path(directory) / "weights.npy", mmap_mode="r")
    layout = pd.read_csv(Path(directory) / "layout.csv")
    flat = np.asarray(weights[row], dtype=np.float64)
    tensors, strengths = [], []
    for r in layout.itertuples():
        x = flat[int(r.start_idx):int(r.end_idx)]
        shape = _parse_shape(r.shape)
        name = str(r.varname)
        low = name.lower()
        role = "bias" if "bias" in low else "norm" if ("batch_norm" in low or "gamma" in low or "beta" in low) else "weight"
        tensors.append((name, role, x))
        if role == "weight" and len(shape) in (2, 4):
            k = x.reshape(shape)
            # TF layout: dense (in, out); conv (kh, kw, in, out) → channel graph A[o, c]
            a = k.T if k.ndim == 2 else np.moveaxis(k, (3, 2), (0, 1))
            A, AA = W.conv_channel_matrix(a) if a.ndim > 2 else (a, np.abs(a))
            fan_in = int(np.prod(shape[:-1]))
            strengths.append((name, A.sum(1), AA.sum(1), fan_in))
    return tensors, strengths


def _scnn_matrices(directory: str, row: int) -> list[tuple[str, np.ndarray]]:
    """The dense and conv kernels of one Small CNN Zoo network as out × in(·kh·kw) matrices."""
    weights = np.load(Path(directory) / "weights.npy", mmap_mode="r")
    layout = pd.read_csv(Path(directory) / "layout.csv")
    flat = np.asarray(weights[row], dtype=np.float64)
    out = []
    for r in layout.itertuples():
        name, shape = str(r.varname), _parse_shape(r.shape)
        low = name.lower()
        if "bias" in low or "batch_norm" in low or "gamma" in low or "beta" in low or len(shape) not in (2, 4):
            continue
        k = flat[int(r.start_idx):int(r.end_idx)].reshape(shape)
        # TF layout: dense (in, out) → out × in; conv (kh, kw, in, out) → out × (kh·kw·in)
        out.append((name, k.T if k.ndim == 2 else k.reshape(-1, shape[-1]).T))
    return out


def _feature_job(item: dict[str, Any]) -> dict[str, Any]:
    """Features (pass 1) or the global-weight histogram on given edges (pass 2); never raises."""
    try:
        if item["kind"] == "scnn":
            tensors, strengths = _scnn_tensors(item["dir"], item["row"])
            matrices = lambda: _scnn_matrices(item["dir"], item["row"])  # noqa: E731
        else:
            from netxray.models.checkpoint import load

            model = load(item["path"])
            tensors, strengths = _module_tensors(model)
            matrices = lambda: _module_matrices(model)  # noqa: E731
        if item.get("edges") is not None:
            parts = [x for _, r, x in tensors if r == "weight"]
            allw = np.concatenate(parts) if parts else np.zeros(0)
            dens, n_out = W.histogram_density(allw, np.asarray(item["edges"]))
            return {"status": "ok", "hist": dens, "n_outside": n_out}
        features = _features_from(tensors, strengths)[0]
        features.update(_spectral_features(matrices()))
        return {"status": "ok", "features": features}
    except Exception as exc:
        return {"status": f"error: {type(exc).__name__}: {exc}"}


def _zoo_items(zoo: Path) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Analysis items and the per-model table (hyperparameters, accuracy) of a zoo directory."""
    if (zoo / "weights.npy").exists() and (zoo / "layout.csv").exists():
        metrics, _ = read_small_cnn_zoo(zoo)
        acc = "test_accuracy" if "test_accuracy" in metrics.columns else "test_acc"
        hp = [c for c in metrics.columns if c.startswith("config.")]
        run = metrics["modeldir"].astype(str) if "modeldir" in metrics.columns else pd.Series(
            [f"row{i}" for i in range(len(metrics))])
        ids = [f"{r}@{s}" for r, s in zip(run, metrics["step"], strict=True)] if "step" in metrics.columns else [f"net{i}" for i in range(len(metrics))]
        table = pd.DataFrame({
            "id": ids, "run": run.to_numpy(),
            "arch": metrics["config.dnn_architecture"].astype(str) if "config.dnn_architecture" in metrics.columns else "cnn",
            "dataset": metrics["config.dataset"].astype(str) if "config.dataset" in metrics.columns else "small_cnn_zoo",
            "test_acc": metrics[acc].astype(float).to_numpy(),
            "num_classes": 10, "status": "ok",
        })
        for c in hp:
            table["hp_" + c[len("config."):]] = metrics[c].to_numpy()
        items = [{"kind": "scnn", "dir": str(zoo), "row": i} for i in range(len(metrics))]
        return items, table
    models_dir = zoo / MODELS
    if not models_dir.is_dir():
        raise FileNotFoundError(
            f"zoo: {zoo} is neither a netxray zoo (no {MODELS}/ directory) nor a Small CNN Zoo "
            "(weights.npy + layout.csv + metrics.csv)")
    rows, items = [], []
    for d in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"id": d.name, "run": d.name, "arch": "", "dataset": "",
                               "test_acc": np.nan, "num_classes": np.nan, "status": "ok"}
        try:
            rec = json.loads((d / RECORD).read_text())
            row.update(run=rec["run"], arch=rec["arch"], dataset=rec["dataset"],
                       test_acc=float(rec["metrics"]["test_acc"]),
                       num_classes=rec.get("num_classes") or np.nan)
            for k, v in rec["params"].items():
                row["hp_" + k] = v
            row["train_diverged"] = bool(rec["metrics"].get("diverged", False))
        except FileNotFoundError:
            row["status"] = f"error: {RECORD} missing (an incomplete model directory)"
        except Exception as exc:
            row["status"] = f"error: unreadable {RECORD}: {type(exc).__name__}: {exc}"
        rows.append(row)
        items.append({"kind": "checkpoint", "path": str(d)})
    if not rows:
        raise ValueError(f"zoo: {models_dir} holds no model directories")
    return items, pd.DataFrame(rows)
