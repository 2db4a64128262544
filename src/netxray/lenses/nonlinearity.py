"""Lens 1 — the non-linearity signature of a network (Bouniot et al., CVPR 2025).

The signature is the sequence of affinity scores (SPEC §1.1) of every activation call of the
network, in execution order, for a given input distribution. Each call is observed once by
:func:`netxray.capture.collect` — its real input and output, pooled inside the hook — so
in-place activations are measured correctly, functional activations (``F.relu``, ``torch.tanh``,
``x.relu()``) are not missed, and a module called twice gives two entries.

Reading a score: 1 means the activation acts on this data as a PSD-affine map (it is linear
where the data lives); lower means more non-linear. The estimator is biased low in high
dimension (a rotation scores ~0.46 at d = 16, ~0.12 at d = 256 with n = 2048), so every row
carries its n and d, and ``null_baseline=True`` adds the score of a rotated copy of the same
input at the same (n, d) to read the score against.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._device import resolve_device
from netxray.measures.affinity import affinity_score
from netxray.measures.companions import histogram_entropy, linear_cka, linear_r2, sparsity
from netxray.measures.signature import (
    cluster_signatures,
    distance_matrix,
    signature_summary,
)

__all__ = [
    "nonlinearity_signature",
    "signature_vector",
    "compare_signatures",
    "SignatureComparison",
    "plot_signatures",
    "random_rotation",
    "rotated_copy",
]

COLUMNS = [
    "position", "site", "module_path", "op", "call_index", "input_shape", "output_shape",
    "n", "per_input_max", "d", "affinity", "cka", "r2", "sparsity_in", "sparsity_out", "entropy_in",
    "entropy_out", "w2_sq", "two_tr_cov_y", "moment_residual", "status", "error",
]  # fmt: skip
# the estimators of SPEC §1.2, as every table, card and plot names them
ESTIMATORS = {
    "positions": "positions as samples",
    "pooled": "pooled per input (the paper's pipeline)",
}
# statuses whose affinity is a number (the signature's entries); only ``ok`` enters summaries
SCORED = ("ok", "degenerate", "under_determined", "too_few_samples")
# why a row is left out of the summary statistics, per status
LEFT_OUT_WHY = {
    "degenerate": "constant output or input (score set to 1.0, not a measurement)",
    "too_few_samples": "fewer samples than the affinity score's minimum",
    "under_determined": "n <= d: fewer samples than features, score biased towards 1",
    "shape_mismatch": "input and output widths differ: no affinity score",
    "non_finite": "NaN or inf in the captured values",
    "error": "the site could not be measured (see its error column)",
}


def random_rotation(d: int, seed: int) -> np.ndarray:
    """A Haar-random d×d orthogonal matrix (QR of a Gaussian matrix, signs fixed), seeded.

    >>> q = random_rotation(3, 0)
    >>> bool(np.allclose(q @ q.T, np.eye(3)))
    True
    """
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]  # sign fix makes the draw Haar-distributed


def rotated_copy(x: np.ndarray, seed: int) -> np.ndarray:
    """``x @ Q`` for a Haar-random d×d rotation Q (seeded), at O(n²d) instead of O(d³) when n < d.

    With n ≥ d it is exactly ``x @ random_rotation(d, seed)``. With fewer samples than features
    the full d×d rotation is never formed: write x = Z Pᵀ with P (d×n) orthonormal (a QR of xᵀ);
    then x Q = Z (Pᵀ Q), and Pᵀ Q is a uniformly distributed n-frame of R^d (Haar Q is invariant
    under right multiplication), the law of Wᵀ for W the sign-fixed QR factor of a d×n Gaussian.
    So ``Z Wᵀ`` has exactly the law of ``x Q`` — the same Gram matrix x xᵀ (inner products between
    samples), a uniformly random orientation — for two d×n QRs instead of one d×d. At d = 3072,
    n = 512 (a BERT-base FFN site) that is ~0.2 s instead of ~5 s per site. (Another draw than
    ``x @ random_rotation(d, seed)``, from the same distribution.)

    >>> x = np.random.default_rng(0).normal(size=(5, 40))
    >>> y = rotated_copy(x, 0)
    >>> y.shape, bool(np.allclose(y @ y.T, x @ x.T))
    ((5, 40), True)
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n >= d:
        return x @ random_rotation(d, seed)
    r = np.linalg.qr(x.T, mode="r")  # xᵀ = P R, so x = Rᵀ Pᵀ; P itself is never needed
    rng = np.random.default_rng(seed)
    w, rw = np.linalg.qr(rng.standard_normal((d, n)))
    w = w * np.sign(np.diag(rw))[None, :]  # sign fix: a Haar (uniform) frame
    return r.T @ w.T


def _to_numpy(t: Any) -> np.ndarray | None:
    if t is None:
        return None
    if hasattr(t, "detach"):
        t = t.detach().cpu().double().numpy()
    a = np.asarray(t, dtype=np.float64)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _site_row(rec: Any, position: int, *, eps: float, companions: bool, bins: int,
              sparsity_tol: float, null_baseline: bool, seed: int,
              ridge: str = "relative", context: dict[str, Any] | None = None,
              device: Any = None) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = dict.fromkeys(COLUMNS, np.nan)
    row.update(
        position=position, site=rec.name, module_path=rec.module_path, op=rec.op,
        call_index=rec.call_index,
        input_shape=str(tuple(rec.input_shape)) if rec.input_shape is not None else "",
        output_shape=str(tuple(rec.output_shape)) if rec.output_shape is not None else "",
        n=0, d=0, status="error", error="",
    )  # fmt: skip
    if null_baseline:
        row["null_affinity"] = np.nan
    if rec.status != "ok":  # the capture could not observe this call: say why
        if rec.status == "not_data_dependent":  # listed apart with its reason, not an error
            row["status"] = rec.status
        row["error"] = rec.error or f"capture status {rec.status}"
        return row
    try:
        x = _to_numpy(rec.inputs)
        y = _to_numpy(rec.outputs)
        if x is None or y is None or x.ndim != 2 or y.ndim != 2:
            raise ValueError("the capture did not give (n, d) input and output matrices")
        row["n"], row["d"] = int(y.shape[0]), int(y.shape[1])
        row["per_input_max"] = rec.per_input if rec.per_input is not None else 1
        if min(x.shape[0], y.shape[0]) < 2:  # a routed expert one sample reached: no covariance
            row.update(status="too_few_samples", error=_why_and_remedy("too_few_samples", row["n"], row["d"],
                                                                      context or {}))  # fmt: skip
            return row
        _check_site_cost(rec.name, *y.shape)
        res = affinity_score(x, y, eps=eps, ridge=ridge, device=device)
        row.update(affinity=res.score, w2_sq=res.w2_sq, two_tr_cov_y=res.two_tr_cov_y,
                   moment_residual=res.moment_residual, status=res.status, error=res.message)  # fmt: skip
        if res.status in ("under_determined", "too_few_samples", "non_finite") and context is not None:
            row["error"] = _why_and_remedy(res.status, row["n"], row["d"], context)
        finite = res.status != "non_finite"
        if companions and finite:
            row.update(sparsity_in=sparsity(x, sparsity_tol), sparsity_out=sparsity(y, sparsity_tol),
                       entropy_in=histogram_entropy(x, bins), entropy_out=histogram_entropy(y, bins))  # fmt: skip
            if x.shape[0] == y.shape[0]:  # CKA and R² need paired samples; dimensions may differ
                row["cka"] = linear_cka(x, y)
                row["r2"] = linear_r2(x, y)
        if null_baseline and finite:
            # same input, same (n, d), a transformation whose population score is exactly 1
            xq = rotated_copy(x, seed * 100_003 + position)
            row["null_affinity"] = affinity_score(x, xq, eps=eps, ridge=ridge, device=device).score
    except Exception as exc:  # one failing site is a status in its row, never a crashed run
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _why_and_remedy(status: str, n: int, d: int, context: dict[str, Any]) -> str:
    """Why a site has no meaningful score, and what would give it one (the report's remedy).

    ``context``: ``samples`` (estimator), ``n_samples``, ``n_inputs`` (inputs run), ``n_total``
    (inputs in the data), ``nonfinite_inputs`` (NaN/inf values in the inputs),
    ``nonfinite_params`` (parameter tensors holding NaN/inf).
    """
    if status == "non_finite":
        if context.get("nonfinite_inputs"):
            return (f"the data's inputs contain {context['nonfinite_inputs']} NaN/inf values: clean the "
                    "inputs (the model's parameters are not at fault)")  # fmt: skip
        bad = context.get("nonfinite_params") or []
        if bad:
            return (f"the model's parameters contain NaN/inf ({', '.join(bad[:3])}"
                    f"{' …' if len(bad) > 3 else ''}): a diverged or corrupted checkpoint")  # fmt: skip
        return "NaN/inf arose inside the model (inputs and parameters are finite: an overflow)"
    need = d + 1 if status == "under_determined" else 10
    what = f"n = {n} samples {'<=' if status == 'under_determined' else '<'} " + (
        f"d = {d} features" if status == "under_determined" else "10 (the minimum)")
    inputs, total, cap = context.get("n_inputs") or 0, context.get("n_total") or 0, context.get("n_samples")
    if context.get("samples") == "pooled":
        return (f"{what}: give at least {need} inputs (here {inputs}), or use samples='positions' "
                "(--samples positions: every pixel/token a sample)")  # fmt: skip
    remedy = []
    if cap is not None and cap < need:
        remedy.append(f"raise n_samples (--n-samples) to at least {need}")
    if n < (cap or n + 1) and inputs:  # the inputs ran out of positions
        per_input = max(n / inputs, 1e-9)
        more = int(np.ceil(need / per_input))
        remedy.append(f"give at least {more} inputs (here {inputs} of {total} give {n} positions, "
                      f"{per_input:.3g} each)")  # fmt: skip
    return f"{what}: " + ("; ".join(remedy) if remedy else "more samples are needed")


def _check_site_cost(site: str, n: int, d: int) -> None:
    """Warn or refuse before an affinity score whose n×n transport or eigenproblems are huge,
    estimated for the computation as done (:func:`netxray.measures.cost.affinity_cost`: the map in
    min(d, 2n − 2) dimensions, the float32 cost matrix, the LAPJV assignment)."""
    from netxray.measures.cost import affinity_cost, check_cost

    b, sec = affinity_cost(n, d)
    check_cost(f"affinity score of site {site}: n = {n} samples, d = {d} features",
               bytes_needed=b, seconds=sec, option="pass a smaller n_samples (--n-samples)")  # fmt: skip


def _resolve_data(data: Any, seed: int) -> tuple[Any, str]:
    if isinstance(data, (str, Path)):
        from netxray.data import load_data

        spec = str(data)
        return load_data(spec, seed=seed), spec
    from netxray.capture.inputs import describe

    return data, describe(data)


def nonlinearity_signature(
    model: Any,
    data: Any,
    n_samples: int | None = 2048,
    *,
    seed: int = 0,
    batch_size: int = 256,
    samples: str = "positions",
    tokens: str = "mean",
    channel_axis: int | None = None,
    eps: float = 1e-6,
    ridge: str = "relative",
    null_baseline: bool = False,
    companions: bool = True,
    entropy_bins: int = 64,
    sparsity_tol: float = 1e-3,
    device: Any = None,
) -> pd.DataFrame:
    """The non-linearity signature: one row per activation call, in execution order.

    Columns: ``position`` (execution order), ``site`` (stable name: module path, ``#k`` call
    index when called more than once, ``<path>:F.relu`` for functional calls), ``module_path``,
    ``op`` (activation type), ``call_index``, raw ``input_shape``/``output_shape``, ``n``, ``d``,
    ``affinity`` (ρ_aff = 1 − sqrt(W2²/(2·tr Σ_Y))), ``cka`` (linear CKA input vs output),
    ``r2`` (in-sample R² of the least-squares fit output ~ input), ``sparsity_in/out``
    (fraction |v| ≤ ``sparsity_tol``), ``entropy_in/out`` (histogram entropy in nats,
    ``entropy_bins`` bins), ``w2_sq``, ``two_tr_cov_y``, ``moment_residual``, ``status``
    (ok / degenerate / shape_mismatch / non_finite / error) and ``error`` (why), plus
    ``null_affinity`` with ``null_baseline=True``.

    Args:
        model: any ``nn.Module`` (never modified; its train/eval flags are restored).
        data: samples in any container :func:`netxray.capture.inputs.resolve_samples` reads:
            a ``Dataset``/``DataSplits`` (test split), a data spec string (``"digits"``), a
            tensor or numpy array, an ``(x, y)`` tuple, a dict of tensors, a torch ``Dataset``
            or ``DataLoader``, or an iterable of batches (tensors, tuples, or dicts passed as
            keyword arguments, e.g. for Hugging Face models). Labels are not needed.
        device: None (where the model is), ``"cpu"``, ``"cuda"`` or ``"auto"``: where the model
            runs and where each site is scored — on a GPU the affinity score's products, covariances,
            map and n × n cost matrix run there in float64 (the exact assignment stays on the
            CPU; :func:`netxray.measures.affinity.affinity_score`), the null baseline too.
        n_samples: samples per site (default 2048, the reference's batch). With
            ``samples="positions"``: the rows (positions) scored at each site, drawn seeded
            across up to ``n_samples`` inputs by rank level — every input's first draw before
            any input's second, so each gives about n_samples / inputs (``per_input_max``
            column), more only where others have fewer positions; None: every input and
            max(2048, inputs) rows. With ``"pooled"``: inputs drawn (None: all).
        samples: the estimator (SPEC §1.2). ``"positions"`` (default): every position of an
            activation's input (pixel of a conv map, real token of a token tensor — padding is
            never a sample) is a sample of d = channels features, so a site is determined
            (n > d) at the data people have: 200 images at 7×7 positions are 9 800 candidate
            samples of d = 1 280. ``"pooled"``: the paper's pipeline, one pooled row per input
            (conv maps averaged over space, tokens by ``tokens``); under-determined whenever
            n ≤ d. Signatures compare only under the same estimator, n and d.
        tokens: with ``samples="pooled"``, token tensors (B, T, D): ``"mean"`` (mean over the
            real tokens — the attention mask's padding left out —, features = D, default),
            ``"reference"`` (the paper code's mean over D, features = T) or ``"samples"``
            (every position a row, padding included).
        channel_axis: None (default): each site's feature axis read from the model's graph (a
            Conv/BatchNorm reads axis 1, a Linear/LayerNorm the last: ConvNeXt, Swin and MaxViT
            sites report d = channels), else 1. An integer (1, or -1 for channel-last maps)
            overrides every site.
        eps, ridge: the covariance ridge of the affinity score, ε·(tr Σ/d)·I (``"relative"``,
            scale-free, default) or ε·I (``"absolute"``, the reference code's).

    Statuses (``status`` column): ``ok``; ``degenerate`` (constant output or input relative to
    its own magnitude — scale-free); ``too_few_samples`` (n < 10); ``under_determined``
    (n ≤ d); ``shape_mismatch``; ``non_finite``; ``not_data_dependent`` (the activation's input does not
    depend on the data batch: applied to parameters or constants, not scored); ``error``. ``attrs["summary"]`` statistics use
    ``ok`` rows only and say how many rows were left out and why (``left_out``, ``note``); with no
    ``ok`` row, ``no_result`` says why and what would give a result (the ``error`` column of an
    under-determined row computes it: more inputs, a larger ``n_samples``).

    Returns a DataFrame with ``attrs["meta"]`` (netxray version, seed, n_samples, data source,
    model hash, options) and ``attrs["summary"]`` (signature statistics, status counts).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh())
        >>> df = nonlinearity_signature(model, torch.randn(500, 4), seed=0)
        >>> df[["site", "op", "n", "d", "status"]].values.tolist()
        [['1', 'ReLU', 500, 16, 'ok'], ['3', 'Tanh', 500, 16, 'ok']]
    """
    from netxray._meta import metadata, model_hash
    from netxray.capture import collect

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if tokens not in ("mean", "reference", "samples"):
        raise ValueError(f"tokens must be 'mean', 'reference' or 'samples', got {tokens!r}")
    if samples not in ESTIMATORS:
        raise ValueError(f"samples must be 'positions' or 'pooled', got {samples!r}")
    data, source = _resolve_data(data, seed)
    score_device = resolve_device(device, model)  # where the model runs is where sites are scored
    cap = collect(
        model, data, activations=True, layers=None, n_samples=n_samples, seed=seed,
        batch_size=batch_size, reducer="positions" if samples == "positions" else "pool",
        tokens=tokens, channel_axis=channel_axis, device=device,
    )  # fmt: skip
    context = {
        "samples": samples, "n_samples": n_samples, "n_inputs": cap.n_inputs, "n_total": cap.n_total,
        "nonfinite_inputs": cap.nonfinite_inputs,
        "nonfinite_params": [name for name, p in model.named_parameters()
                             if p.is_floating_point() and not bool(torch.isfinite(p).all())],
    }  # fmt: skip
    rows = []
    for position, rec in enumerate(cap.activation_sites().values()):
        rows.append(_site_row(rec, position, eps=eps, companions=companions, bins=entropy_bins,
                              sparsity_tol=sparsity_tol, null_baseline=null_baseline, seed=seed,
                              ridge=ridge, context=context, device=score_device))  # fmt: skip
    cols = COLUMNS + (["null_affinity"] if null_baseline else [])
    df = pd.DataFrame(rows, columns=cols)
    df.insert(df.columns.get_loc("n") + 1, "n_inputs", int(cap.n_inputs or 0))
    df["estimator"] = samples
    n_rows = int(df["n"].max()) if len(df) else 0
    df.attrs["meta"] = metadata(
        lens="nonlinearity", seed=seed, n_samples=n_samples, n=int(cap.n_inputs or 0),
        n_total=int(cap.n_total or 0), n_rows=n_rows, data=source,
        model_hash=model_hash(model), model=type(model).__name__, samples=samples,
        estimator=ESTIMATORS[samples],
        tokens=tokens if samples == "pooled" else None,
        channel_axis=channel_axis, eps=eps, ridge=ridge, null_baseline=null_baseline,
    )  # fmt: skip
    df.attrs["summary"] = _summary(df)
    df.attrs["summary"]["not_observed"] = _fused_nonlinearities(model, df)
    if df.attrs["summary"]["n_ok"] == 0:
        df.attrs["summary"]["no_result"] = no_result_reason(df)
    return df


# modules whose non-linearities run inside one fused kernel, out of reach of any hook
_FUSED = (nn.RNNBase, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _fused_nonlinearities(model: nn.Module, df: pd.DataFrame) -> list[str]:
    """Modules with internal non-linearities that no site observed, with the reason.

    LSTM/GRU/RNN gates (sigmoid, tanh) run inside ATen's fused recurrent kernels; torch's
    transformer layers take a fused fast path in eval mode. Said, never silently dropped.
    """
    observed = [str(p) for p in df["module_path"]] if "module_path" in df else []
    out = []
    for path, module in model.named_modules():
        if isinstance(module, _FUSED) and not any(
            p == path or p.startswith(f"{path}.") or p.startswith(f"{path}:") for p in observed
        ):
            why = ("its gate non-linearities run inside a fused recurrent kernel"
                   if isinstance(module, nn.RNNBase)
                   else "it ran torch's fused transformer fast path")  # fmt: skip
            out.append(f"{path or '(root)'} ({type(module).__name__}): not observed, {why}")
    return out


def _summary(df: pd.DataFrame) -> dict[str, Any]:
    """Signature statistics over the ``ok`` rows only, with what was left out and why."""
    counts = {str(k): int(v) for k, v in df["status"].value_counts().items()}
    ok = df["status"] == "ok"
    left = {k: v for k, v in counts.items() if k != "ok"}
    out: dict[str, Any] = {"n_sites": int(len(df)), "status_counts": counts,
                           "n_ok": int(ok.sum()), "left_out": left}  # fmt: skip
    sig = df.loc[ok, "affinity"].to_numpy(dtype=float)
    if len(sig):
        out.update(signature_summary(sig))
    if left:
        why = "; ".join(f"{v} {k} ({LEFT_OUT_WHY.get(k, 'see the status column')})" for k, v in left.items())
        out["note"] = f"statistics over {int(ok.sum())} of {len(df)} sites (status ok); left out: {why}"
    if "null_affinity" in df:
        null = df.loc[ok, "null_affinity"].to_numpy(dtype=float)
        if np.isfinite(null).any():
            out["null_mean"] = float(np.nanmean(null))
    return out


def no_result_reason(df: pd.DataFrame) -> str:
    """Why a signature has no ``ok`` site, in words, with what would give it one: the reason of
    its most common status (each row's ``error`` carries the computed remedy)."""
    if len(df) == 0:
        return ("no activation call was observed: the model has no activation modules or functional "
                "activations (a linear model), so there is nothing to score")  # fmt: skip
    counts = df["status"].value_counts()
    status = str(counts.index[0])
    first = df[df["status"] == status].iloc[0]
    why = str(first.get("error") or LEFT_OUT_WHY.get(status, status))
    if status == "under_determined":
        widest = df[df["status"] == status].sort_values("d").iloc[-1]
        why = str(widest.get("error") or why)
    return f"no site has a meaningful score ({', '.join(f'{v} {k}' for k, v in counts.items())}): {why}"


def signature_vector(df: pd.DataFrame | Sequence[float], statuses: Sequence[str] = SCORED) -> np.ndarray:
    """The scores of a signature table in execution order, keeping rows whose status is listed.

    By default every row with a score — ``ok``, ``degenerate`` (a dead ReLU scores 1.0 as in the
    reference code), ``under_determined`` and ``too_few_samples`` — so that signatures keep their
    length and order; rows without a score (shape_mismatch, non_finite, error) are dropped — call
    ``df["status"].value_counts()`` to see what was dropped. A plain sequence is returned as is.
    """
    if isinstance(df, pd.DataFrame):
        if "affinity" not in df or "status" not in df:
            raise ValueError("expected a signature table with 'affinity' and 'status' columns")
        keep = df["status"].isin(list(statuses)).to_numpy()
        return df["affinity"].to_numpy(dtype=float)[keep]
    return np.asarray(df, dtype=float)


@dataclass
class SignatureComparison:
    """Distances between the signatures of several models and their hierarchical clustering."""

    names: list[str]
    distances: pd.DataFrame  # names × names
    linkage: np.ndarray  # scipy linkage matrix
    order: list[int]  # dendrogram leaf order
    labels: list[int] | None  # cluster labels when n_clusters/threshold was given
    summary: pd.DataFrame  # one row per model: length, mean, std, quantiles, dropped sites
    method: str


def compare_signatures(
    signatures: Mapping[str, pd.DataFrame | Sequence[float]],
    method: str = "dtw",
    *,
    length: int = 100,
    linkage: str = "average",
    n_clusters: int | None = None,
    threshold: float | None = None,
    statuses: Sequence[str] = SCORED,
) -> SignatureComparison:
    """Pairwise signature distances (``dtw`` or ``resampled``), clustering and summaries.

    Example:
        >>> cmp = compare_signatures({"a": [0.2, 0.5], "b": [0.2, 0.5, 0.5], "c": [0.9, 0.1]})
        >>> float(cmp.distances.loc["a", "b"])
        0.0
    """
    if len(signatures) < 1:
        raise ValueError("compare_signatures needs at least one signature")
    vecs: dict[str, np.ndarray] = {}
    rows = []
    for name, sig in signatures.items():
        v = signature_vector(sig, statuses)
        if v.size == 0:
            raise ValueError(f"signature {name!r} has no scored sites (statuses {list(statuses)})")
        vecs[str(name)] = v
        total = len(sig) if isinstance(sig, pd.DataFrame) else v.size
        rows.append({"model": str(name), **signature_summary(v), "dropped_sites": int(total - v.size)})
    names, dist = distance_matrix(vecs, method, length=length)
    clus = cluster_signatures(dist, names, method=linkage, n_clusters=n_clusters, threshold=threshold)
    return SignatureComparison(
        names=names,
        distances=pd.DataFrame(dist, index=names, columns=names),
        linkage=clus["linkage"],
        order=clus["order"],
        labels=clus["labels"],
        summary=pd.DataFrame(rows),
        method=method,
    )


def _save_figure(fig: Any, path: str | Path) -> Path:
    from netxray._meta import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def plot_signatures(
    signatures: pd.DataFrame | Mapping[str, pd.DataFrame | Sequence[float]],
    path: str | Path | None = None,
    *,
    x: str = "auto",
    title: str | None = None,
    show_null: bool = True,
    per_row: int = 160,
) -> Any:
    """Plot signatures against depth; returns the matplotlib Figure and saves it when ``path`` is given.

    One table: scores against execution order, the x axis labelled by site (or, when the names
    do not fit, by stage: consecutive sites grouped by module-path prefix, see
    :func:`netxray._plotting.label_positions`); more than ``per_row`` sites are split over
    stacked rows. Only ``ok`` scores are filled dots; under-determined and too-few-samples scores
    are hollow circles, degenerate sites hollow squares (none of them a measurement), sites
    without a score a cross at the bottom, the null baseline dashed. Several: overlaid, against relative depth when their lengths
    differ (``x="relative"``/``"index"`` forces it).
    """
    from matplotlib.figure import Figure

    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions, row_slices

    single = isinstance(signatures, pd.DataFrame) or not isinstance(signatures, Mapping)
    items = {"signature": signatures} if single else dict(signatures)
    if not items:
        raise ValueError("plot_signatures needs at least one signature")
    lengths = {len(s) for s in items.values()}
    if x == "auto":
        x = "index" if len(lengths) == 1 else "relative"
    if x not in ("index", "relative"):
        raise ValueError(f"x must be 'auto', 'index' or 'relative', got {x!r}")

    table = next(iter(items.values())) if single else None
    named = isinstance(table, pd.DataFrame) and "site" in table and x == "index"
    rows = row_slices(table["site"].astype(str).tolist(), per_row) if named else [slice(0, max(lengths))]
    width = PAGE_WIDTH if max(lengths) > 12 else max(6.0, min(PAGE_WIDTH, 0.3 * max(lengths) + 4))
    fig = Figure(figsize=(width, 1.4 + 3.0 * len(rows) if named else 4.2), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for r, (ax, rows_slice) in enumerate(zip(axes, rows, strict=True)):
        first = r == 0
        for name, sig in items.items():
            if isinstance(sig, pd.DataFrame):
                y = sig["affinity"].to_numpy(dtype=float)
                status = sig["status"].astype(str).to_numpy()
            else:
                y = np.asarray(sig, dtype=float)
                status = np.where(np.isfinite(y), "ok", "missing")
            k = len(y)
            pos = np.arange(k) / max(k - 1, 1) if x == "relative" else np.arange(k, dtype=float)
            sel = np.zeros(k, bool)
            sel[rows_slice] = True
            pos, y, status = pos[sel], y[sel], status[sel]
            label = ("affinity score (status ok)" if single else str(name)) if first else None
            ms = 4 if k <= 200 else 2.5
            ok = status == "ok"
            line = ax.plot(pos, y, "-", lw=1.2, alpha=0.8)[0]
            color = line.get_color()
            # only ok points are filled: a score that is not a measurement never looks like one
            ax.plot(pos[ok], y[ok], "o", ms=ms, color=color, label=label)  # the label even when empty
            vague = np.isin(status, ["under_determined", "too_few_samples"])
            if vague.any():
                ax.plot(pos[vague], y[vague], "o", ms=ms + 1, mfc="white", mec=color,
                        label="hollow: not determined (n ≤ d or n < 10), not a measurement"
                        if single and first else None)  # fmt: skip
            deg = status == "degenerate"
            if deg.any():
                ax.plot(pos[deg], y[deg], "s", ms=ms + 2, mfc="white", mec=color,
                        label="hollow square: degenerate (constant output), set to 1" if single and first else None)  # fmt: skip
            missing = ~np.isin(status, list(SCORED))
            if missing.any():
                ax.plot(pos[missing], np.zeros(missing.sum()), "x", color=color, ms=ms + 3,
                        label="no score (see status)" if single and first else None)  # fmt: skip
            if show_null and isinstance(sig, pd.DataFrame) and "null_affinity" in sig:
                ax.plot(pos, sig["null_affinity"].to_numpy(dtype=float)[sel], "--", color=color, alpha=0.6,
                        label="null: rotated input (same n, d)" if single and first else None)  # fmt: skip
            if named and isinstance(sig, pd.DataFrame):
                part = sig.iloc[rows_slice]
                label_positions(ax, part["site"].astype(str).tolist(), pos, tips=_signature_tips(part))
        ax.set_ylim(-0.03, 1.03)
        if named and len(pos):
            ax.set_xlim(pos[0] - 0.6, pos[-1] + 0.6)
        ax.set_ylabel("ρ_aff (1 = affine)")
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xlabel("relative depth" if x == "relative" else "activation call (execution order)")
    if title is None and single and isinstance(signatures, pd.DataFrame):
        meta = signatures.attrs.get("meta", {})
        title = (f"non-linearity signature — {meta.get('estimator', 'pooled per input')}\n"
                 f"{meta.get('n', '?')} inputs of {meta.get('data', '?')}")
    axes[0].set_title(title or "non-linearity signatures")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="best", ncol=2 if single else 1)
    finish_figure(fig)
    if path is not None:
        _save_figure(fig, path)
    return fig


def _signature_tips(sig: pd.DataFrame) -> list[str]:
    """One line per site for the report's tooltips: name, op, score and status."""
    op = sig["op"].astype(str) if "op" in sig else pd.Series([""] * len(sig), index=sig.index)
    out = []
    for site, o, a, st in zip(sig["site"].astype(str), op, sig["affinity"], sig["status"].astype(str),
                              strict=True):  # fmt: skip
        score = "no score" if not np.isfinite(float(a)) else f"ρ_aff {float(a):.3f}"
        out.append(f"{site}" + (f" ({o})" if o and o != "nan" else "") + f" — {score}, {st}")
    return out
