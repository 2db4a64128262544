"""Known answers for the exact assignment solvers behind W2 (measures/assignment.py).

The reference is ``scipy.optimize.linear_sum_assignment`` in float64: every solver must reach
the same optimal objective on the matrix it is given (ties may be broken differently, so plans
are compared by their cost, never index by index). The float32 route is exact on the matrix
rounded to float32, and ``exact_matching`` certifies or re-solves it in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from netxray.measures import assignment
from netxray.measures.assignment import (
    SOLVERS,
    available_solver,
    exact_matching,
    solve_assignment,
)


def _installed() -> list[str]:
    out = []
    for s in SOLVERS:
        try:
            available_solver(s)
        except ImportError:
            continue
        out.append(s)
    return out


def _optimum(c: np.ndarray) -> float:
    r, k = linear_sum_assignment(c)
    return float(c[r, k].sum())


def _cost(c: np.ndarray, cols: np.ndarray) -> float:
    assert sorted(cols.tolist()) == list(range(len(c)))  # a permutation
    return float(c[np.arange(len(c)), cols].sum())


def _adversarial():
    """Ties, duplicated rows/columns, integer costs, huge dynamic range, sign, structure."""
    rng = np.random.default_rng(12)
    n = 48
    yield "all equal", np.full((n, n), 7.0)
    yield "zeros", np.zeros((n, n))
    rows = rng.random((n // 6, n))
    yield "duplicated rows (6 copies each)", np.repeat(rows, 6, axis=0)
    cols = rng.random((n, n // 8))
    yield "duplicated columns (8 copies each)", np.repeat(cols, 8, axis=1)
    yield "integers 0..1", rng.integers(0, 2, (n, n)).astype(float)
    yield "integers 0..4", rng.integers(0, 5, (n, n)).astype(float)
    yield "integers 0..1000", rng.integers(0, 1001, (n, n)).astype(float)
    yield "dynamic range 1e-8..1e8", 10.0 ** rng.uniform(-8, 8, (n, n))
    yield "negative", -rng.random((n, n))
    yield "permutation matrix ties", 1.0 - np.eye(n)[rng.permutation(n)]
    yield "rank one", np.outer(rng.random(n), rng.random(n))
    yield "Monge (x_i - y_j)^2", np.subtract.outer(np.sort(rng.random(n)), rng.random(n)) ** 2
    yield "one by one", np.array([[3.25]])
    yield "two by two tie", np.array([[1.0, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize("solver", _installed())
def test_every_solver_reaches_the_exact_optimum_in_float64(solver):
    for name, c in _adversarial():
        cols = solve_assignment(c, solver=solver, precision="float64")
        best = _optimum(c)
        assert _cost(c, cols) == pytest.approx(best, rel=1e-12, abs=1e-12), (solver, name)


@pytest.mark.parametrize("solver", _installed())
def test_every_solver_is_exact_on_the_float32_matrix(solver):
    """precision='float32' solves fl32(C) exactly: same optimum as scipy on fl32(C) in float64."""
    for name, c in _adversarial():
        c32 = c.astype(np.float32).astype(np.float64)  # the matrix the float32 kernel sees
        cols = solve_assignment(c, solver=solver, precision="float32")
        assert _cost(c32, cols) == pytest.approx(_optimum(c32), rel=1e-7, abs=1e-12), (solver, name)


@pytest.mark.parametrize("solver", _installed())
def test_random_problems_of_many_sizes(solver):
    rng = np.random.default_rng(99)
    for trial in range(40):
        n = int(rng.integers(1, 90))
        kind = trial % 4
        if kind == 0:
            c = rng.normal(size=(n, n))
        elif kind == 1:
            c = rng.integers(0, 3, (n, n)).astype(float)  # most optima are not unique
        elif kind == 2:
            a, b = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
            c = ((a[:, None] - b[None]) ** 2).sum(-1)  # a squared-distance matrix
        else:
            c = np.exp(rng.normal(scale=6.0, size=(n, n)))  # heavy tailed
        cols = solve_assignment(c, solver=solver)
        assert _cost(c, cols) == pytest.approx(_optimum(c), rel=1e-12, abs=1e-12), (trial, n)


def test_auto_prefers_lapjvr_when_lapx_has_it():
    if assignment._lapjvr is not None:
        assert available_solver("auto") == "lapjvr"
    elif assignment._lapjvs is not None:
        assert available_solver("auto") == "lapjv"
    else:
        assert available_solver("auto") == "scipy"


def test_empty_and_bad_input():
    assert solve_assignment(np.zeros((0, 0))).shape == (0,)
    with pytest.raises(ValueError, match="square"):
        solve_assignment(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        solve_assignment(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="precision"):
        solve_assignment(np.zeros((2, 2)), precision="float16")


# ---- exact_matching: the float32 certificate and its float64 fallback -------------------------


def _w2_reference(a: np.ndarray, b: np.ndarray) -> float:
    c = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # direct differences: no cancellation
    return _optimum(c) / len(a)


def test_float32_plan_certified_on_well_separated_clouds():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16)) + 0.5
    m = exact_matching(a, b)
    exact = _w2_reference(a, b)
    assert m.precision == "float32" and 0 < m.gap_bound <= 1e-6 * m.w2_sq
    assert m.w2_sq == pytest.approx(exact, rel=1e-12)  # the same optimum to the last digits
    assert m.w2_sq == pytest.approx(np.mean(((a - b[m.perm]) ** 2).sum(1)), rel=1e-15)


def test_float32_certificate_fails_and_float64_is_solved():
    """Clouds far apart relative to their near-ties: float32 cannot separate the plans.

    b is a permutation of a moved by 1e-3: the optimal plan undoes the permutation (W2² ≈ 1e-6)
    while the costs reach 1e9, so one float32 rounding step (~60) dwarfs rtol·W2² and the
    certificate must fail; the float64 re-solve then finds the exact optimum.
    """
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 3)) * 1e4
    perm = rng.permutation(60)
    b = a[perm] + 1e-3 * rng.normal(size=(60, 3))
    m = exact_matching(a, b)
    assert m.precision == "float64" and m.gap_bound == 0.0  # the fallback was taken
    exact = _w2_reference(a, b)
    assert m.w2_sq == pytest.approx(exact, rel=1e-9)
    assert np.array_equal(perm[m.perm], np.arange(60))  # the unique optimum: undo the shuffle


def test_float32_overflow_falls_back_to_float64():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 2)) * 1e20  # squared distances ~1e40: beyond float32's range
    b = rng.normal(size=(30, 2)) * 1e20
    m = exact_matching(a, b)
    assert m.precision == "float64"
    assert m.w2_sq == pytest.approx(_w2_reference(a, b), rel=1e-12)


def test_certified_bound_is_rigorous_on_near_ties():
    """Where float32 is kept, the float64 cost of its plan is within gap_bound of the optimum."""
    rng = np.random.default_rng(5)
    kept = 0
    for trial in range(12):
        d = (1, 2, 8, 32)[trial % 4]
        # a coarse grid (many equal distances) plus tiny jitter and a common offset
        a = np.round(rng.normal(size=(80, d)), 1) + 1e3 + 1e-7 * rng.normal(size=(80, d))
        b = np.round(rng.normal(size=(80, d)), 1) + 1e3
        m = exact_matching(a, b)
        exact = _w2_reference(a, b)
        assert m.w2_sq - exact <= m.gap_bound + 1e-12 * exact, trial
        assert m.w2_sq == pytest.approx(exact, rel=1e-6), trial
        kept += m.precision == "float32"
        strict = exact_matching(a, b, rtol=0.0)  # no tolerance: always the float64 matrix
        assert strict.precision == "float64" and strict.w2_sq == pytest.approx(exact, rel=1e-12)
    assert kept > 0  # the certificate is not vacuous: some plans are certified


@pytest.mark.parametrize("solver", _installed())
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_exact_matching_agrees_across_solvers(solver, precision):
    rng = np.random.default_rng(8)
    a = rng.standard_t(3, size=(120, 6))  # heavy tails: wide cost range
    b = 0.7 * rng.standard_t(3, size=(120, 6)) + 0.2
    m = exact_matching(a, b, solver=solver, precision=precision, block_rows=17)  # ragged blocks
    assert m.w2_sq == pytest.approx(_w2_reference(a, b), rel=1e-12)
    assert m.solver == available_solver(solver)


def test_affinity_cost_follows_the_computation():
    from netxray.measures.cost import FLOPS, affinity_cost

    # n = 8192, d = 512: the float32 cost matrix (4n² bytes) dominates the memory
    b, _ = affinity_cost(8192, 512)
    assert 4 * 8192**2 <= b <= 4 * 8192**2 + 300 * 2**20
    # d > 2n − 2: the sample-space path, far below the d × d eigendecomposition alone
    _, s = affinity_cost(512, 4096)
    assert s < 10.0 * 4096**3 / FLOPS / 10
    assert affinity_cost(100, 1) == (1600.0, 0.0)  # d = 1: sorting


def test_plan_through_a_clipped_entry_falls_back_to_float64():
    """Mass must travel far: two a's near one b, two b's near one a (SPEC-free geometry).

    Every row and column minimum is ≤ 1e-6, so the clip τ = 3e-6 sits far below the ~1e4 cost
    the optimal plan must pay; the plan's cost through a clipped entry fails the certificate
    and the float64 matrix gives the exact optimum.
    """
    a = np.array([[0.0], [0.001], [100.0]])
    b = np.array([[0.0], [100.0], [100.001]])
    a2, b2 = np.hstack([a, np.zeros((3, 1))]), np.hstack([b, np.zeros((3, 1))])  # d = 2: no sort
    m = exact_matching(a2, b2)
    assert m.precision == "float64"
    assert m.w2_sq == pytest.approx(_w2_reference(a2, b2), rel=1e-12)


def test_high_affinity_sites_certify_in_float32():
    """T(X) close to Y (small W2² against large distances, as at ρ ≈ 0.75): the clipped float32
    matrix certifies the plan, which is exact (same objective as the float64 matrix)."""
    rng = np.random.default_rng(21)
    n, d = 600, 32
    spectrum = np.exp(-3.0 * np.arange(d) / d)
    y = rng.standard_normal((n, d)) * spectrum
    t = y[rng.permutation(n)] * 0.9 + 0.05 * rng.standard_normal((n, d)) * spectrum
    m = exact_matching(t, y)
    full = exact_matching(t, y, precision="float64")
    assert m.precision == "float32" and m.gap_bound <= 1e-6 * m.w2_sq
    assert m.w2_sq == pytest.approx(full.w2_sq, rel=1e-12)
