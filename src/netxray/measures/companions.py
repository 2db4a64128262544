"""Companion metrics of an activation, the ones the affinity-score paper compares against.

All take (n, d) arrays or tensors (1-D means d = 1) and compute in float64. None of them knows
about models: the non-linearity lens feeds them the pooled input and output of each site.

Each works in the smaller of the sample and feature spaces: a d×d product or eigendecomposition
when d < n, the n×n Gram matrix otherwise (the non-zero spectra of XᵀX and XXᵀ are the same),
so a site with d ≫ n (a ViT token site pooled to 64 samples of 768 or 3072 features) costs
O(n²d + n³), not O(nd² + d³).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netxray.measures.affinity import as_float64_2d

__all__ = ["linear_cka", "linear_r2", "sparsity", "histogram_entropy"]


def _centred_pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """x and y as float64 (n, d) arrays with the same n, each centred on its column means."""
    x = as_float64_2d(x, "x")
    y = as_float64_2d(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same samples, got {len(x)} and {len(y)} rows")
    return x - x.mean(axis=0), y - y.mean(axis=0)


def linear_cka(x: Any, y: Any) -> float:
    """Linear centred kernel alignment between two representations of the same n samples.

    CKA(X, Y) = ‖Ỹᵀ X̃‖_F² / (‖X̃ᵀ X̃‖_F · ‖Ỹᵀ Ỹ‖_F), X̃, Ỹ column-centred (Kornblith et al.,
    2019). In [0, 1]; 1 when Y = aXQ + b (Q orthogonal, a ≠ 0); invariant to isotropic scaling
    and rotations of either side; NaN when either side is constant. The feature-space form is
    used when the features are fewer than the samples, the Gram (sample-space) form otherwise.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 4))
    >>> round(linear_cka(x, 3 * x + 1), 12)
    1.0
    """
    xc, yc = _centred_pair(x, y)
    n = len(xc)

    def gram_side(a: np.ndarray) -> tuple[float, np.ndarray | None]:
        # ‖AᵀA‖_F = ‖AAᵀ‖_F: whichever of the d×d and n×n products is smaller
        if a.shape[1] < n:
            return float(np.linalg.norm(a.T @ a)), None
        k = a @ a.T
        return float(np.linalg.norm(k)), k

    nx, kx = gram_side(xc)
    ny, ky = gram_side(yc)
    if kx is not None and ky is not None:  # both n×n Grams exist: ⟨Kx, Ky⟩ = ‖YᵀX‖²
        cross = float(np.einsum("ij,ij->", kx, ky))
    else:
        cross = float(np.linalg.norm(yc.T @ xc) ** 2)  # dy×dx, one side narrower than n
    if nx == 0.0 or ny == 0.0:
        return float("nan")
    return float(cross / (nx * ny))


def linear_r2(x: Any, y: Any, rcond: float = 1e-10) -> float:
    """In-sample R² of the least-squares affine fit y ≈ x B + c, pooled over output features.

    R² = 1 − Σ_ij (y_ij − ŷ_ij)² / Σ_ij (y_ij − ȳ_j)²  (total variance explained) = the share of
    ‖Ỹ‖² inside the column space of X̃ (both centred). In-sample, so compare at equal (n, d).
    NaN when y is constant.

    When n ≤ d + 1 the statistic is not informative: the centred X̃ (n × d) generically has
    rank n − 1, so its column space is every centred vector of R^n, Ỹ lies in it, and R² = 1
    for any output whatever the activation (an interpolating fit). Below 1 there only when
    x's samples are affinely dependent (rank < n − 1: duplicated samples, dead features).
    Computed in the smaller space: eigh of X̃ᵀX̃ (d×d) when d < n, else of X̃X̃ᵀ (n×n).

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 2))
    >>> round(linear_r2(x, x @ np.array([[1.0], [2.0]]) - 3), 12)
    1.0
    """
    xc, yc = _centred_pair(x, y)
    ss_tot = float(np.einsum("ij,ij->", yc, yc))
    if ss_tot == 0.0:
        return float("nan")
    # Centring both sides absorbs the intercept. The explained sum of squares is the squared
    # norm of Yc projected on col(Xc): with Xcᵀ Xc = V diag(λ) Vᵀ it is Σ_k ‖v_kᵀ Xcᵀ Yc‖² / λ_k.
    # One d×d eigendecomposition (BLAS-3) instead of the SVD of lstsq or a pivoted QR, both
    # several times slower; directions of x with variance below rcond·max are treated as absent,
    # as a pseudo-inverse does, so duplicated or dead units change nothing.
    # With more features than samples (wide conv sites on a few samples), the same projection
    # from the n×n Gram matrix: Xc Xcᵀ = U diag(λ) Uᵀ has the same non-zero λ, col(Xc) = span U,
    # and the explained sum is ‖U_keepᵀ Yc‖² — an n×n instead of a d×d eigendecomposition.
    gram_form = xc.shape[1] > len(xc)
    lam, v = np.linalg.eigh(xc @ xc.T if gram_form else xc.T @ xc)
    if lam.size == 0 or lam[-1] <= 0.0:
        return 0.0  # x is constant: only the intercept, which explains nothing
    keep = lam > lam[-1] * rcond
    if gram_form:
        w = v[:, keep].T @ yc
        explained = float(np.sum(w * w))
    else:
        w = v[:, keep].T @ (xc.T @ yc)
        explained = float(np.sum(w * w / lam[keep][:, None]))
    return float(min(1.0, max(0.0, explained / ss_tot)))


def sparsity(x: Any, tol: float = 1e-3) -> float:
    """Fraction of entries with |x| ≤ tol (default 1e-3).

    >>> sparsity([0.0, 0.0005, 1.0, -2.0])
    0.5
    """
    a = as_float64_2d(x, "x")
    if a.size == 0:
        return float("nan")
    return float(np.mean(np.abs(a) <= tol))


def histogram_entropy(x: Any, bins: int = 64) -> float:
    """Shannon entropy (nats) of the histogram of all entries of x.

    Definition: ``bins`` equal-width bins spanning [min x, max x]; p_k = count_k / N;
    H = −Σ_k p_k log p_k. Range [0, log bins]: 0 when every entry falls in one bin (e.g. a
    constant or a dead ReLU), log bins when the entries are spread evenly over the range.
    It is the entropy of the discretised values, not a differential entropy (the reference
    mixed the two and was off by log bins). NaN for non-finite input.

    >>> round(histogram_entropy([0.0, 1.0, 2.0, 3.0], bins=4), 6) == round(float(np.log(4)), 6)
    True
    """
    a = as_float64_2d(x, "x").ravel()
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if a.size == 0 or not np.isfinite(a).all():
        return float("nan")
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return 0.0
    counts, _ = np.histogram(a, bins=bins, range=(lo, hi))
    p = counts[counts > 0] / a.size
    return float(-(p * np.log(p)).sum())
