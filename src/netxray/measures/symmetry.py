"""Symmetry math on plain numbers and arrays (SPEC §4): group orders, covering bounds, canonical
orderings, Burnside counts and weight matching.

Everything that can overflow lives in log space: ``log n! = lgamma(n + 1)`` and the covering
bound's Lipschitz constant Λ (which exceeds float64 for any realistic width) is only ever handled
as ``log Λ``. No ``nn.Module`` knowledge here; the model-level code is ``netxray.lenses.symmetry``.

Example
-------
>>> round(log10_factorial(10), 6)
6.559763
>>> b = covering_log_bounds([10, 10, 1], eps=0.01)
>>> round(b["classical_log10"], 1), round(b["reduced_log10"], 1)
(530.4, 523.9)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

LN10 = math.log(10.0)

__all__ = [
    "format_power_of_ten",
    "log_factorial",
    "log10_factorial",
    "log_multiset_coefficient",
    "covering_log_bounds",
    "effective_volume_table",
    "stirling_first_kind",
    "burnside_orbit_count",
    "canonical_form_count_formula",
    "enumerate_canonical_forms",
    "unit_sort_order",
    "duplicate_groups",
    "match_units",
]


# ---------------------------------------------------------------------------------------------
# factorials and binomials in log space
# ---------------------------------------------------------------------------------------------


def _check_count(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def log_factorial(n: int) -> float:
    """Natural log of ``n!`` as ``lgamma(n + 1)``: exact to float64 rounding, never overflows.

    >>> round(log_factorial(1000) / math.log(10), 6)
    2567.604644
    """
    return math.lgamma(_check_count("n", n) + 1)


def log10_factorial(n: int) -> float:
    """``log10(n!) = lgamma(n + 1) / ln 10``.

    >>> round(log10_factorial(100), 6)
    157.970004
    """
    return log_factorial(n) / LN10


def format_power_of_ten(log10_value: float) -> str:
    """A count known by its log10 written for a reader: ``10^6.56`` below 10^100, else the
    exponent rounded to an integer with thousands separated by a space (``10^27 050``).

    Example:
        >>> format_power_of_ten(6.559763), format_power_of_ten(27050.4), format_power_of_ten(0.0)
        ('10^6.56', '10^27 050', '1')
    """
    v = float(log10_value)
    if not np.isfinite(v):
        return "?"
    if v == 0.0:
        return "1"
    if abs(v) < 100:
        return f"10^{v:.3g}"
    return "10^" + f"{round(v):,}".replace(",", " ")


def log_multiset_coefficient(log_m: float, d: int) -> float:
    """Natural log of the multiset coefficient ``C(m + d − 1, d)`` given ``log m``.

    Formula (SPEC §4.2): ``log C(m+d−1, d) = d·log m + Σ_{j=1}^{d−1} log1p(j/m) − lgamma(d+1)``.
    A difference of lgammas would cancel catastrophically when m is astronomically large; here
    ``j/m = j·exp(−log m)`` underflows harmlessly to 0 instead.

    >>> round(math.exp(log_multiset_coefficient(math.log(27), 2)))  # C(28, 2)
    378
    """
    d = _check_count("d", d)
    if d == 0:
        return 0.0
    if not math.isfinite(log_m) or log_m < 0:
        raise ValueError(f"log_m must be a finite number >= 0 (m >= 1), got {log_m!r}")
    inv_m = math.exp(-log_m)
    j = np.arange(1, d, dtype=np.float64)
    return float(d * log_m + np.sum(np.log1p(j * inv_m)) - math.lgamma(d + 1))


# ---------------------------------------------------------------------------------------------
# covering numbers (SPEC §4.2)
# ---------------------------------------------------------------------------------------------


def _check_widths(widths: Sequence[int]) -> list[int]:
    try:
        ws = [int(w) for w in widths]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"widths must be a list of positive integers, got {widths!r}") from exc
    if len(ws) < 2 or any(w < 1 for w in ws) or any(float(a) != float(b) for a, b in zip(ws, widths, strict=True)):
        raise ValueError(
            f"widths must list at least input and output width as positive integers "
            f"(d_0, ..., d_(L+1)), got {list(widths)!r}"
        )
    return ws


def covering_log_bounds(
    widths: Sequence[int], eps: float, B: float = 1.0, rho: float = 1.0
) -> dict[str, float]:
    """Classical and permutation-reduced covering-number bounds of a fully connected network.

    Setting (SPEC §4.2, Shen 2024): widths ``d_0..d_{L+1}``, parameters in ``[−B, B]``, σ
    ρ-Lipschitz with σ(0) = 0, inputs in the unit cube.

    - ``S = Σ_{i=0}^{L} d_{i+1}(d_i + 1)`` parameters,
    - ``log Λ = log(L+1) + L log ρ + L log(B∨1) + Σ_{i=0}^{L} log(d_i + 1)``,
    - ``m = ⌈BΛ/ε⌉`` (kept as ``log m``; the ceiling only matters when BΛ/ε is small),
    - classical ``log N ≤ S log m``,
    - reduced ``log N ≤ (S − Σ_l d_l) log m + Σ_l log C(m + d_l − 1, d_l)`` over hidden layers.

    Returns natural-log and log10 values, the difference (≈ Σ log d_l!) and the relative
    reduction ``difference / classical``.

    >>> b = covering_log_bounds([784, 512, 512, 10], eps=0.01)
    >>> b["S"], round(b["relative_reduction"] * 100, 2)
    (669706, 0.03)
    """
    ws = _check_widths(widths)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if not (math.isfinite(B) and B > 0):
        raise ValueError(f"B (parameter bound) must be a positive finite number, got {B!r}")
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho (Lipschitz constant of the activation) must be > 0, got {rho!r}")
    L = len(ws) - 2  # number of hidden layers
    hidden = ws[1:-1]
    S = sum(ws[i + 1] * (ws[i] + 1) for i in range(L + 1))
    log_lambda = (
        math.log(L + 1)
        + L * math.log(rho)
        + L * math.log(max(B, 1.0))
        + sum(math.log(d + 1) for d in ws[:-1])
    )
    log_ratio = math.log(B) + log_lambda - math.log(eps)
    if log_ratio < 700:  # m representable: take the ceiling exactly
        m = max(1, math.ceil(math.exp(log_ratio)))
        log_m = math.log(m)
    else:  # ⌈x⌉/x − 1 < 1e-300: the ceiling is invisible in float64
        m = math.inf
        log_m = log_ratio
    classical = S * log_m
    reduced = (S - sum(hidden)) * log_m + sum(log_multiset_coefficient(log_m, d) for d in hidden)
    sum_log_fact = sum(log_factorial(d) for d in hidden)
    diff = classical - reduced
    return {
        "L": L,
        "S": S,
        "log_Lambda": log_lambda,
        "log10_Lambda": log_lambda / LN10,
        "log_m": log_m,
        "log10_m": log_m / LN10,
        "m": float(m),
        "classical_log": classical,
        "reduced_log": reduced,
        "difference_log": diff,
        "sum_log_factorials": sum_log_fact,
        "classical_log10": classical / LN10,
        "reduced_log10": reduced / LN10,
        "difference_log10": diff / LN10,
        "sum_log10_factorials": sum_log_fact / LN10,
        "relative_reduction": diff / classical if classical > 0 else 0.0,
    }


def effective_volume_table(
    widths: Sequence[int], depth: int = 2, d_in: int = 784, d_out: int = 10
) -> list[dict[str, float]]:
    """How the permutation-reduced parameter volume shrinks with width.

    For hidden widths ``w`` repeated ``depth`` times, the representative set (units sorted by
    bias) has volume ``Vol(Θ) / (w!)^depth``. Reported per width: S, ``log10`` of the volume
    ratio ``−depth·log10 w!`` (vanishes as w grows) and the same ratio per parameter
    ``−depth·log10 w! / S`` (the linear shrink factor per dimension, which tends to 0 in log,
    i.e. to 1: the reduction is astronomically large in total but small per dimension).

    >>> rows = effective_volume_table([10, 100], depth=1, d_in=10, d_out=1)
    >>> round(rows[0]["log10_volume_ratio"], 5)
    -6.55976
    """
    depth = _check_count("depth", depth)
    rows = []
    for w in widths:
        w = _check_count("width", w)
        ws = [d_in] + [w] * depth + [d_out]
        S = sum(ws[i + 1] * (ws[i] + 1) for i in range(len(ws) - 1))
        lr = -depth * log10_factorial(w)
        rows.append(
            {
                "width": w,
                "depth": depth,
                "S": S,
                "log10_group_order": -lr,
                "log10_volume_ratio": lr,
                "log10_ratio_per_parameter": lr / S,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Burnside counting (SPEC §4.3)
# ---------------------------------------------------------------------------------------------


def stirling_first_kind(n: int) -> list[int]:
    """Unsigned Stirling numbers of the first kind ``c(n, k)``, k = 0..n: permutations of n
    elements with exactly k cycles (``c(n+1, k) = n·c(n, k) + c(n, k−1)``), exact integers."""
    n = _check_count("n", n)
    row = [1]
    for i in range(n):
        new = [0] * (len(row) + 1)
        for k, c in enumerate(row):
            new[k] += i * c
            new[k + 1] += c
        row = new
    return row


def burnside_orbit_count(M: int, d: int) -> int:
    """Orbits of S_d acting on d-tuples over M symbols, by Burnside's lemma (exact integer).

    ``|orbits| = (1/d!) Σ_{g ∈ S_d} |Fix(g)| = (1/d!) Σ_k c(d, k) M^k`` — a permutation with k
    cycles fixes the M^k tuples constant on its cycles. Equals ``C(M + d − 1, d)``.

    >>> burnside_orbit_count(27, 2)
    378
    """
    M = _check_count("M", M)
    d = _check_count("d", d)
    total = sum(c * M**k for k, c in enumerate(stirling_first_kind(d)))
    q, r = divmod(total, math.factorial(d))
    assert r == 0, "Burnside sum not divisible by |G|"  # mathematically impossible
    return q


def canonical_form_count_formula(widths: Sequence[int], m: int) -> int:
    """Distinct permutation-canonical forms of a one-hidden-layer net ``(d_0, d_1, d_2)`` with
    every parameter on an m-point grid: ``m^{d_2} · C(M + d_1 − 1, d_1)``, ``M = m^{d_0+1+d_2}``
    (a hidden unit is its incoming row, bias and outgoing column; the output bias is free).

    >>> canonical_form_count_formula((1, 2, 1), 3), canonical_form_count_formula((1, 2, 1), 5)
    (1134, 39375)
    """
    d0, d1, d2 = (_check_count("width", w) for w in widths)
    m = _check_count("m", m)
    return m**d2 * burnside_orbit_count(m ** (d0 + 1 + d2), d1)


def unit_sort_order(
    bias: np.ndarray, incoming: np.ndarray, outgoing: np.ndarray | None = None
) -> np.ndarray:
    """Canonical order of units: bias descending, ties by the incoming row, then by the
    outgoing column (lexicographic, ascending). Works on a batch: ``bias`` (..., d),
    ``incoming`` (..., d, k_in), ``outgoing`` (..., d, k_out); returns indices (..., d).

    >>> unit_sort_order(np.array([0.0, 1.0, 0.0]), np.array([[2.0], [0.0], [1.0]])).tolist()
    [1, 2, 0]
    """
    bias = np.asarray(bias, dtype=np.float64)
    incoming = np.asarray(incoming, dtype=np.float64)
    if incoming.shape[:-1] != bias.shape:
        raise ValueError(
            f"incoming must have shape bias.shape + (k,), got {incoming.shape} for bias {bias.shape}"
        )
    if outgoing is not None:
        outgoing = np.asarray(outgoing, dtype=np.float64)
        if outgoing.shape[:-1] != bias.shape:
            raise ValueError(
                f"outgoing must have shape bias.shape + (k,), got {outgoing.shape} for bias {bias.shape}"
            )
        rows = np.concatenate([incoming, outgoing], axis=-1)
    else:
        rows = incoming
    if bias.ndim == 1:
        # fast path: sort by bias, then lexsort only the (rare) groups of tied biases — a full
        # lexsort over k keys costs k passes, which dominates for wide layers
        order = np.argsort(-bias, kind="stable")
        b = -bias[order]
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ends = np.r_[starts[1:], len(b)]
        for s0, e0 in zip(starts, ends, strict=True):
            if e0 - s0 > 1:
                idx = order[s0:e0]
                sub = rows[idx]
                order[s0:e0] = idx[np.lexsort(sub.T[::-1])]
        return order
    keys = [rows[..., j] for j in range(rows.shape[-1] - 1, -1, -1)]
    keys.append(-bias)  # np.lexsort: the last key is the primary one
    return np.lexsort(keys, axis=-1)


def enumerate_canonical_forms(widths: Sequence[int], grid: Sequence[float]) -> int:
    """Count distinct permutation-canonical forms of a one-hidden-layer network by brute force:
    every parameter vector on the grid, hidden units put in canonical order with
    :func:`unit_sort_order`, distinct results counted. Checks Burnside's count
    (:func:`canonical_form_count_formula`) against the actual canonicalization.

    >>> enumerate_canonical_forms((1, 2, 1), [-1.0, 0.0, 1.0])
    1134
    """
    d0, d1, d2 = (_check_count("width", w) for w in widths)
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or len(np.unique(g)) != len(g):
        raise ValueError(f"grid must be a 1-D list of distinct values, got {grid!r}")
    n_params = d1 * d0 + d1 + d2 * d1 + d2
    total = len(g) ** n_params
    if total > 5_000_000:
        raise ValueError(f"grid enumeration of {total} parameter vectors is too large (max 5e6)")
    idx = np.array(list(itertools.product(range(len(g)), repeat=n_params)), dtype=np.int64)
    P = g[idx]  # (total, n_params)
    o = 0
    W0 = P[:, o : o + d1 * d0].reshape(-1, d1, d0)
    o += d1 * d0
    b0 = P[:, o : o + d1]
    o += d1
    W1 = P[:, o : o + d2 * d1].reshape(-1, d2, d1)
    o += d2 * d1
    b1 = P[:, o : o + d2]
    out_cols = np.swapaxes(W1, 1, 2)  # (total, d1, d2): unit i's outgoing column
    order = unit_sort_order(b0, W0, out_cols)
    W0s = np.take_along_axis(W0, order[:, :, None], axis=1)
    b0s = np.take_along_axis(b0, order, axis=1)
    outs = np.take_along_axis(out_cols, order[:, :, None], axis=1)
    canon = np.concatenate(
        [W0s.reshape(total, -1), b0s, outs.reshape(total, -1), b1], axis=1
    )
    return int(len(np.unique(canon, axis=0)))


# ---------------------------------------------------------------------------------------------
# reduce and match
# ---------------------------------------------------------------------------------------------


def duplicate_groups(signatures: np.ndarray, tol: float = 1e-12) -> list[list[int]]:
    """Groups of rows of ``signatures`` (d × k) equal within ``tol·max(1, max|row|)`` (max-norm),
    in order of first appearance; each group lists the unit indices it merges. A row holding NaN
    or inf is a group of its own.

    Rows are sorted by a fixed random projection and only neighbours within the projection's
    tolerance window are compared: O(d·k + d log d) for distinct rows, exact (no false
    negatives) since ``|r·(x − y)| ≤ ‖r‖₁·max|x − y|``.

    >>> duplicate_groups(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0]]))
    [[0, 2], [1]]
    """
    s = np.asarray(signatures, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"signatures must be a 2-D array (units × features), got shape {s.shape}")
    d = s.shape[0]
    if d == 0:
        return []
    finite = np.isfinite(s).all(axis=1)
    if not finite.all():
        # a row with NaN/inf is nobody's duplicate (equality is undefined for it); grouping the
        # finite rows alone keeps inf − inf (numpy RuntimeWarnings, NaN projections) out
        idx = np.flatnonzero(finite)
        inner = [[int(idx[i]) for i in g] for g in duplicate_groups(s[finite], tol)] if idx.size else []
        return sorted(inner + [[int(i)] for i in np.flatnonzero(~finite)], key=lambda g: g[0])
    scale = max(1.0, float(np.max(np.abs(s)))) if s.size else 1.0
    thr = tol * scale
    # rows within thr (max-norm) of each other have projections within thr·‖r‖₁ on any r:
    # sort by one fixed random projection and compare only neighbours inside that window
    r = np.random.default_rng(0).standard_normal(s.shape[1])
    proj = s @ r
    # plus the rounding of the projections themselves (≤ k·2⁻⁵³·Σ|row||r| each, whatever the
    # summation order): identical rows can project to values a few ulps apart
    rounding = 2 * s.shape[1] * 2.0**-53 * float(np.max(np.abs(s) @ np.abs(r)))
    window = thr * float(np.sum(np.abs(r))) * (1 + 1e-9) + 2 * rounding + 1e-300
    order = np.argsort(proj, kind="stable")
    parent = list(range(d))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(d):
        i = order[a]
        for b in range(a + 1, d):
            j = order[b]
            if proj[j] - proj[i] > window:
                break
            if np.max(np.abs(s[i] - s[j])) <= thr:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(d):
        groups.setdefault(find(i), []).append(i)
    return [groups[r] for r in sorted(groups)]


def match_units(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Weight matching of one layer: the permutation ``perm`` minimising
    ``Σ_i ‖a_i − b_perm[i]‖²`` (rows are units' feature vectors), by linear assignment
    (``scipy.optimize.linear_sum_assignment``, exact, O(d³)).

    Returns ``(perm, cost_before, cost_after)`` with the summed squared distances for the
    identity and for ``perm``; ``b[perm]`` is b aligned to a.

    >>> perm, before, after = match_units(np.eye(3), np.eye(3)[[2, 0, 1]])
    >>> perm.tolist(), before, after
    ([1, 2, 0], 6.0, 0.0)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be 2-D arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("match_units: the units' parameters hold NaN or inf values; matching needs finite weights")
    # ‖a_i − b_j‖² = ‖a_i‖² + ‖b_j‖² − 2 a_i·b_j; clamp the float cancellation at 0
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    np.maximum(cost, 0.0, out=cost)
    _, perm = linear_sum_assignment(cost)
    before = float(np.sum((a - b) ** 2))
    after = float(np.sum((a - b[perm]) ** 2))
    return perm.astype(np.int64), before, after
