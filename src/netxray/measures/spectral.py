"""The spectral view of a weight matrix: singular values, norms, stable rank, ESD, power-law tail.

Pure math on arrays. For a weight W (N × M; a convolution kernel (out, in, k, k) read as the
usual out × in·k·k matrix) with singular values σ_1 ≥ … ≥ σ_r (r = min(N, M)):

- eigenvalues of the correlation matrix: λ_i = σ_i² (the empirical spectral density, ESD, is
  their distribution; histogram on log10 bins);
- spectral norm ‖W‖_2 = σ_1; Frobenius norm ‖W‖_F = sqrt(Σ σ_i²);
  stable rank ‖W‖_F² / ‖W‖_2² (in [1, r]);
- heavy-tail exponent α of the ESD's upper tail, p(λ) ∝ λ^{−α} for λ ≥ λ_min.

Estimator of α (Clauset, Shalizi & Newman 2009, the one WeightWatcher and ``powerlaw`` use):
for each candidate x_min among the eigenvalues, the continuous maximum-likelihood exponent of
the n ≥ x_min values α̂ = 1 + n / Σ_{λ_i ≥ x_min} ln(λ_i / x_min); x_min is the candidate with
the smallest Kolmogorov–Smirnov distance D = max |F_emp − F_fit| between the tail's empirical
CDF and the fitted CDF 1 − (λ/x_min)^{1−α̂} (candidates: tails of ≥ 10 values by default;
``rule="weightwatcher"`` takes WeightWatcher's defaults instead, see :func:`fit_power_law`). Reported with the fit range [x_min, x_max], the
tail size n, D (goodness of fit: small is good) and the standard error (α̂ − 1)/sqrt(n). Every
candidate is evaluated at once, vectorised (O(r²) in blocks), where the reference
implementations loop in Python.

Singular values come from the eigenvalues of the smaller Gram matrix (WWᵀ or WᵀW, float64):
several times faster than an SVD, and exact to float64 rounding relative to σ_1² — the tail
and the norms are what matter here.

Known answers (tests): a Gaussian random matrix follows Marchenko–Pastur — bounded support,
no heavy tail (the fit reports a large α or a poor/short tail); a matrix built with singular
values whose squares follow a Pareto law of exponent α returns α within a stated tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PowerLawFit",
    "as_weight_matrix",
    "singular_values",
    "gram_eigenvalues",
    "smaller_gram",
    "fit_power_law",
    "esd_histogram",
    "spectral_stats",
    "SPECTRAL_COLUMNS",
]

#: the scalar columns of :func:`spectral_stats`, in order
SPECTRAL_COLUMNS: tuple[str, ...] = (
    "n_rows", "n_cols", "spectral_norm", "frobenius_norm", "stable_rank", "alpha",
    "alpha_sigma", "xmin", "xmax", "n_tail", "ks_distance", "fit_status",
)  # fmt: skip

_MIN_TAIL = 10  # fewer tail eigenvalues than this: no fit (α of a handful of points is noise)


def as_weight_matrix(w: Any) -> np.ndarray:
    """A weight as the usual 2-D matrix (float64): Linear (out, in) as is, a ConvNd kernel
    (out, in, k1, …) as out × in·k1·…; anything with fewer than 2 axes is an error.

    >>> as_weight_matrix(np.zeros((8, 3, 3, 3))).shape
    (8, 27)
    """
    return _as_matrix(w, np.float64)


def singular_values(w: Any, *, precision: str = "float64") -> np.ndarray:
    """Singular values of the weight matrix, descending, from the smaller Gram's eigenvalues.
    ``precision``: ``"float64"`` (default: the Gram and its eigenvalues in float64, exact to
    float64 rounding relative to σ_1²) or ``"float32"`` (see :func:`gram_eigenvalues`).

    >>> singular_values(np.diag([3.0, 1.0, 2.0])).tolist()
    [3.0, 2.0, 1.0]
    """
    return np.sqrt(np.clip(gram_eigenvalues(w, precision=precision), 0.0, None))


_PRECISIONS = ("float64", "float32")


def gram_eigenvalues(w: Any, *, precision: str = "float64") -> np.ndarray:
    """Eigenvalues λ_i = σ_i² of the smaller Gram matrix (WWᵀ or WᵀW), descending, float64 array.

    - ``"float64"``: the Gram in float64 (numpy's ``a @ a.T``: BLAS ``dsyrk``) and LAPACK
      ``dsyevd`` (``np.linalg.eigvalsh``). |Δλ| ≲ a few ε_64·λ_max.
    - ``"float32"``: the Gram in float32 (``ssyrk``), its tridiagonal form in float32 (LAPACK
      ``ssytrd``: the O(r³) step, memory-bound, about twice as fast in float32) and the
      eigenvalues of that tridiagonal matrix in float64 (``dsterf``, O(r²)). About 1.7× faster
      than float64 on one CPU core (the bench); |Δλ| ≈ 1e-7·λ_max against float64 on the
      bench's layers (a float32 rounding of the Gram; float32 ``ssterf`` would add ~1e-5).
      That is larger than what rounding W itself to float32 changes (bench: α moves ≤ 5e-6 under
      such a perturbation, ≤ 1.6e-4 = 2e-6 relative in float32, same tails on its 10 layers).
      WeightWatcher's own GPU path computes its singular values in float32 (torch ``svdvals``;
      its CPU path: a float64 scipy SVD). A fit whose best x_min is a near tie
      may pick another tail than in float64: ``rule="weightwatcher"`` agrees with
      WeightWatcher to ~1e-9 only in float64.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: expected 'float64' or 'float32', got {precision!r}")
    if _on_accelerator(w):
        return _gram_eigenvalues_torch(w, precision)
    if precision == "float64":  # the Gram block by block: no float64 copy of W (smaller_gram)
        return np.linalg.eigvalsh(smaller_gram(w))[::-1]
    a = _as_matrix(w, np.float32)
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return _eigenvalues_float32(gram)


def _as_matrix(w: Any, dtype: Any) -> np.ndarray:
    """:func:`as_weight_matrix` in ``dtype`` (one cast, no float64 copy on the way)."""
    if hasattr(w, "detach"):
        w = w.detach()
        if str(w.dtype) in ("torch.bfloat16", "torch.float16"):
            w = w.float()
        w = w.cpu().numpy()
    a = np.asarray(w)
    if a.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 axes, got shape {a.shape}")
    return a.reshape(a.shape[0], -1).astype(dtype, copy=False)


def _eigenvalues_float32(gram: np.ndarray) -> np.ndarray:
    """Descending eigenvalues of a symmetric float32 matrix: ``ssytrd`` then ``dsterf`` on its
    tridiagonal form cast to float64."""
    from scipy.linalg import eigvalsh_tridiagonal
    from scipy.linalg.lapack import ssytrd, ssytrd_lwork

    n = gram.shape[0]
    if n < 2:
        return np.diagonal(gram).astype(np.float64)
    lwork, info = ssytrd_lwork(n)
    # gram is symmetric: its transpose is the Fortran-ordered array LAPACK wants (no copy)
    _, d, e, _, info = ssytrd(gram.T, lwork=max(int(lwork), n), overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"ssytrd failed (info={info})")
    lam = eigvalsh_tridiagonal(d.astype(np.float64), e.astype(np.float64), lapack_driver="sterf")
    return lam[::-1]


_GRAM_BLOCK = 1 << 22  # values per float64 block of the Gram product (32 MB)


def smaller_gram(w: Any) -> np.ndarray:
    """The smaller Gram matrix of the weight matrix W (rows × cols, :func:`as_weight_matrix`),
    in float64: W Wᵀ when rows ≤ cols, else WᵀW, accumulated over blocks,
    WᵀW = Σ_b W_bᵀ W_b over row blocks W_b (W Wᵀ likewise over column blocks), each block
    converted to float64 on its own — memory the Gram and one block, never a float64 copy of W
    (a 32000 × 2048 bf16 embedding is 131 MB; in float64, 524 MB). Equal to the Gram of the
    whole float64 matrix to float64 rounding (the sums are grouped by block).

    >>> smaller_gram(np.array([[1.0, 2.0, 3.0]])).tolist()
    [[14.0]]
    """
    from netxray.measures.weights import float64_row_blocks

    torch_like = hasattr(w, "detach")
    src = w.detach() if torch_like else np.asarray(w)
    if src.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 axes, got shape {tuple(src.shape)}")
    rows, cols = int(src.shape[0]), int(np.prod(src.shape[1:], dtype=np.int64))
    src = src.reshape(rows, cols)
    # one product buffer, reused (a fresh Gram-sized temporary per block fragments the heap)
    n = min(rows, cols)
    gram, prod = np.zeros((n, n)), np.empty((n, n))
    if rows > cols:
        for _, blk in float64_row_blocks(src, _GRAM_BLOCK):
            gram += np.matmul(blk.T, blk, out=prod)  # one symmetric rank-k update (numpy spots the transpose)
        return gram
    # W Wᵀ over column blocks: the transposed matrix's row blocks
    for _, blk in float64_row_blocks(src.T, _GRAM_BLOCK):
        gram += np.matmul(blk.T, blk, out=prod)
    return gram


def _on_accelerator(w: Any) -> bool:
    return hasattr(w, "detach") and hasattr(w, "device") and w.device.type != "cpu"


def _singular_values_torch(w: Any, precision: str = "float64") -> np.ndarray:
    """:func:`singular_values` where the tensor lives (see :func:`_gram_eigenvalues_torch`)."""
    return np.sqrt(np.clip(_gram_eigenvalues_torch(w, precision), 0.0, None))


def _gram_eigenvalues_torch(w: Any, precision: str = "float64") -> np.ndarray:
    """:func:`gram_eigenvalues` where the tensor lives (a CUDA weight stays on the GPU): the
    smaller Gram in ``precision`` and ``torch.linalg.eigvalsh`` there; only the r eigenvalues
    come back (float64). The same eigenvalues to float64 rounding in float64 (another
    eigensolver, not bit-identical); in float32 torch's eigensolver is all float32 (|Δλ| ~
    1e-6·λ_max on CPU, where the numpy path's float64 ``dsterf`` gives ~1e-7). Untested on real GPU hardware (the tests run it on CPU
    tensors)."""
    import torch

    t = w.detach()
    if t.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 axes, got shape {tuple(t.shape)}")
    a = t.reshape(t.shape[0], -1).to(torch.float64 if precision == "float64" else torch.float32)
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return torch.linalg.eigvalsh(gram).flip(0).double().cpu().numpy()


@dataclass(frozen=True)
class PowerLawFit:
    """Power-law fit of an ESD's tail (see the module docstring for the estimator)."""

    alpha: float
    alpha_sigma: float
    xmin: float
    xmax: float
    n_tail: int
    ks_distance: float
    status: str  # "ok", or "too_few" (under the minimum tail size: no fit)


def fit_power_law(
    evals: Any, *, min_tail: int = _MIN_TAIL, rule: str = "netxray", block: int = 256
) -> PowerLawFit:
    """Continuous power-law MLE of the upper tail, x_min by the minimal KS distance.

    α̂(x_min) = 1 + n / Σ_{λ ≥ x_min} ln(λ/x_min); D(x_min) = max_j |(1 − (λ_j/x_min)^{1−α̂}) −
    j/n| over the tail's sorted values (the empirical CDF as WeightWatcher and ``powerlaw``
    write it). Which candidates, and which eigenvalues, is the ``rule``:

    - ``"netxray"`` (default): the positive eigenvalues; candidates leave at least ``min_tail``
      values in the tail (default 10: the α of a handful of points is noise).
    - ``"weightwatcher"``: WeightWatcher's defaults (``analyze()`` 0.7, ``WW_powerlaw.WWFit``,
      CPU): eigenvalues > 1e-5 (``EVALS_THRESH``); fewer than 8 eigenvalues in all: no fit
      (``min_evals``; WeightWatcher leaves such a layer out); ``min_tail`` is ignored. With
      N ≥ 20 eigenvalues every x_min but the largest value is a candidate (tails down to 2
      values) and the smallest D wins (first on ties; a candidate with α̂ ≤ 1 counts D = 1).
      With N < 20 (their small-N fit): only tails of ≥ 8 values, the bias-corrected α̂ = 1 +
      (n − 1)/Σ ln(λ/x_min), again the smallest D (their J objective is overridden). On a
      layer whose best tail is short the two rules can pick different tails and very
      different α (one measured case: 9 eigenvalues, α 2.43 vs 8.44 with ``min_tail=10``).

    >>> rng = np.random.default_rng(0)
    >>> x = (1 - rng.random(5000)) ** (-1 / 1.5)  # Pareto, density exponent α = 2.5
    >>> round(fit_power_law(x).alpha, 1)
    2.5
    >>> round(fit_power_law(x, rule="weightwatcher").alpha, 1)
    2.5
    """
    if rule not in ("netxray", "weightwatcher"):
        raise ValueError(f"rule: expected 'netxray' or 'weightwatcher', got {rule!r}")
    raw = np.asarray(evals, dtype=np.float64).ravel()
    if rule == "weightwatcher":
        lam = np.sort(raw[np.isfinite(raw) & (raw > _WW_EVALS_THRESH)])
        if raw.size < _WW_MIN_EVALS or lam.size < 2:
            return PowerLawFit(np.nan, np.nan, np.nan, np.nan, 0, np.nan, "too_few")
        if lam.size < _WW_SMALL_N:
            return _fit_small_n_ww(lam)
        min_tail = 2
    else:
        lam = np.sort(raw[np.isfinite(raw) & (raw > 0)])
    n_all = lam.size
    if n_all < min_tail + 1:
        return PowerLawFit(np.nan, np.nan, np.nan, np.nan, 0, np.nan, "too_few")
    logs = np.log(lam)
    suffix = np.cumsum(logs[::-1])[::-1]  # Σ_{j ≥ i} ln λ_j
    n_cand = n_all - min_tail + 1  # candidate i keeps n_all − i ≥ min_tail values
    idx = np.arange(n_cand)
    tail_n = (n_all - idx).astype(np.float64)
    denom = suffix[:n_cand] - tail_n * logs[:n_cand]
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + tail_n / denom
    # their bookkeeping: D = 1 where α̂ ≤ 1 (or NaN), kept a candidate; ours: not a candidate
    valid = alphas > 1.0 if rule == "weightwatcher" else np.isfinite(alphas) & (alphas > 1.0)
    ds = _ks_distances(logs, alphas, tail_n, block, valid)  # inf: cannot be the smallest D
    ds = np.where(valid, ds, 1.0 if rule == "weightwatcher" else np.inf)
    if not np.isfinite(ds).any():
        return PowerLawFit(np.nan, np.nan, np.nan, float(lam[-1]), 0, np.nan, "too_few")
    best = int(np.argmin(ds))
    n_tail = int(n_all - best)
    alpha = float(alphas[best])
    return PowerLawFit(
        alpha, (alpha - 1.0) / np.sqrt(n_tail), float(lam[best]), float(lam[-1]), n_tail,
        float(ds[best]), "ok",
    )  # fmt: skip


_WW_EVALS_THRESH = 1e-5  # WeightWatcher's EVALS_THRESH (CPU): smaller eigenvalues are not fitted
_WW_MIN_EVALS = 8  # WeightWatcher's DEFAULT_MIN_EVALS: a layer with fewer eigenvalues is skipped
_WW_SMALL_N = 20  # WeightWatcher's SMALL_N_CUTOFF: under it, the small-N fit
_WW_SMALL_N_MIN_TAIL = 8  # the small-N fit's k_min


_PRUNE_SAMPLES = 64  # tail positions per candidate in the lower bounds of D


def _ks_distances(
    logs: np.ndarray, alphas: np.ndarray, tail_n: np.ndarray, block: int, valid: np.ndarray
) -> np.ndarray:
    """D(i) = max_{j ≥ i} |1 − exp((1 − α̂_i)(ln λ_j − ln λ_i)) − (j − i)/n_i| for the
    candidates i with ``valid[i]`` (the first ``len(alphas)`` values) that can hold the smallest
    D; inf for the others. Every such D is the exact value (the same floating-point operations
    as one candidate at a time); candidates are pruned with lower bounds: D(i) ≥ the same max
    over 64 tail positions spread over the tail (O(64·r) work), and a candidate whose bound exceeds
    the exact D of the candidate with the smallest bound cannot be the (first) smallest. The
    rest in blocks of ``block`` candidates over the columns j ≥ the block's first: O(r²/2) work
    at worst, O(block·r) memory. ln(λ_j/λ_i) = 0 counts as a fitted CDF of 0 (also for an
    infinite α̂, as ``(λ_j/x_min)**(1 − α̂)`` = 1 does)."""
    ds = np.full(alphas.size, np.inf)
    rows = np.flatnonzero(valid)
    if rows.size > 4 * _PRUNE_SAMPLES:
        lb = _ks_gaps(logs, alphas, tail_n, rows, np.arange(_PRUNE_SAMPLES) / _PRUNE_SAMPLES, block)
        first = rows[np.argmin(lb)]
        ub = _ks_gaps(logs, alphas, tail_n, np.array([first]), None, block)[0]
        if np.isfinite(ub):  # keep NaN bounds; a relative margin against any rounding
            rows = rows[~(lb > ub * (1.0 + 1e-9))]
    ds[rows] = _ks_gaps(logs, alphas, tail_n, rows, None, block)
    return ds


def _ks_gaps(
    logs: np.ndarray, alphas: np.ndarray, tail_n: np.ndarray, rows: np.ndarray, ks: Any, block: int
) -> np.ndarray:
    """max_k |F_fit − F_emp| of each candidate in ``rows`` (ascending) over its tail positions k:
    all of them (``ks`` None), or k = ⌊q·n_i⌋ for q in ``ks`` ⊂ [0, 1) (a lower bound of D)."""
    n_all = logs.size
    out = np.empty(rows.size)
    for s0 in range(0, rows.size, block):
        r = rows[s0 : s0 + block, None]
        if ks is None:  # columns j ≥ the block's first candidate (the triangle, half the work)
            j = np.arange(int(r[0, 0]), n_all)[None, :]
            k = j - r  # position inside candidate i's tail
            inside = k >= 0
            ratio = np.where(inside, logs[j] - logs[r], 0.0)  # ln(λ_j / x_min)
        else:  # positions ⌊q·n_i⌋ spread over each tail (all of a tail shorter than len(q))
            k = (tail_n[r] * ks[None, :]).astype(np.int64)
            inside = k >= 0
            ratio = logs[r + k] - logs[r]
        a = alphas[r]
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = np.where(ratio == 0.0, 0.0, 1.0 - np.exp((1.0 - a) * ratio))
        emp = k / tail_n[r]
        gap = np.where(inside, np.abs(fitted - emp), 0.0)
        out[s0 : s0 + r.shape[0]] = gap.max(axis=1)
    return out


def _fit_small_n_ww(lam: np.ndarray) -> PowerLawFit:
    """WeightWatcher's fit for 2 ≤ N < 20 eigenvalues (``WWFit.fit_powerlaw_smallN`` followed by
    ``WWFit.__init__``, sorted ``lam``): candidates x_min with tails of n ≥ 8 values and s = Σ
    ln(λ/x_min) > 1e-12 get the bias-corrected α̂ = 1 + (n − 1)/s and, where α̂ > 1, their D;
    every other candidate keeps D = 1. The first smallest D wins: ``__init__`` re-selects by
    ``argmin(Ds)`` after the small-N fit, so its J = D − 0.868/sqrt(n) objective never decides
    (0.7.7). No candidate at all: the whole sample is the tail (their fallback); a sample of
    equal values: no fit (WeightWatcher reports α = 0 there)."""
    n_all = lam.size
    logs = np.log(lam)
    alphas = np.zeros(n_all - 1)
    ds = np.ones(n_all - 1)
    for i in range(n_all - 1):
        n = n_all - i
        s = float(logs[i:].sum() - n * logs[i])
        if n < _WW_SMALL_N_MIN_TAIL or s <= 1e-12:
            continue
        alphas[i] = 1.0 + (n - 1.0) / s
        if alphas[i] > 1.0:
            fitted = 1.0 - (lam[i:] / lam[i]) ** (1.0 - alphas[i])
            ds[i] = float(np.max(np.abs(np.arange(n) / n - fitted)))
    if not (alphas > 1.0).any():  # their fallback: the whole sample as the tail
        s = float(logs.sum() - n_all * logs[0])
        if s <= 1e-12:
            return PowerLawFit(np.nan, np.nan, np.nan, float(lam[-1]), 0, np.nan, "too_few")
        alphas[0] = 1.0 + (n_all - 1.0) / s
        fitted = 1.0 - (lam / lam[0]) ** (1.0 - alphas[0])
        ds[0] = float(np.max(np.abs(np.arange(n_all) / n_all - fitted)))
    best = int(np.argmin(ds))
    a, n_tail = float(alphas[best]), n_all - best
    return PowerLawFit(
        a, (a - 1.0) / np.sqrt(n_tail), float(lam[best]), float(lam[-1]), n_tail, float(ds[best]), "ok"
    )


def esd_histogram(evals: Any, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Density histogram of log10 of the positive eigenvalues: (densities, log10 bin edges).

    >>> dens, edges = esd_histogram([1.0, 10.0, 100.0], bins=2)
    >>> edges.tolist(), float((dens * np.diff(edges)).sum())
    ([0.0, 1.0, 2.0], 1.0)
    """
    lam = np.asarray(evals, dtype=np.float64).ravel()
    lam = lam[np.isfinite(lam) & (lam > 0)]
    if lam.size == 0:
        return np.zeros(0), np.zeros(0)
    x = np.log10(lam)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.histogram(x, bins=bins, range=(lo, hi), density=True)


def spectral_stats(
    w: Any, *, min_tail: int = _MIN_TAIL, rule: str = "netxray", precision: str = "float64"
) -> dict[str, Any]:
    """The spectral row of one weight (columns :data:`SPECTRAL_COLUMNS`) plus ``evals``;
    ``min_tail`` and ``rule`` as in :func:`fit_power_law`, ``precision`` of the eigenvalues as in
    :func:`gram_eigenvalues` (``"float32"``: faster, |Δλ| ≈ 1e-7·λ_max).

    >>> s = spectral_stats(np.diag([2.0, 1.0]))
    >>> s["spectral_norm"], round(s["stable_rank"], 6), s["fit_status"]
    (2.0, 1.25, 'too_few')
    """
    if _on_accelerator(w):  # the Gram and its eigenvalues where the weight lives
        sv = _singular_values_torch(w, precision)
        shape = (int(w.shape[0]), int(np.prod(w.shape[1:])))
    else:  # float64: the Gram block by block, no float64 copy of the weight (smaller_gram)
        if not hasattr(w, "detach"):
            w = np.asarray(w)
        sv = singular_values(w, precision=precision)  # raises on fewer than 2 axes
        shape = (int(w.shape[0]), int(np.prod(w.shape[1:], dtype=np.int64)))
    evals = sv * sv
    fro2 = float(evals.sum())
    top = float(sv[0]) if sv.size else 0.0
    fit = fit_power_law(evals, min_tail=min_tail, rule=rule)
    return {
        "n_rows": int(shape[0]),
        "n_cols": int(shape[1]),
        "spectral_norm": top,
        "frobenius_norm": float(np.sqrt(fro2)),
        "stable_rank": fro2 / (top * top) if top > 0 else float("nan"),
        "alpha": fit.alpha,
        "alpha_sigma": fit.alpha_sigma,
        "xmin": fit.xmin,
        "xmax": fit.xmax,
        "n_tail": fit.n_tail,
        "ks_distance": fit.ks_distance,
        "fit_status": fit.status,
        "evals": evals,
    }
