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


# ---- the float32-product path: one float32 GEMM, LAPJV with duals, a dual certificate ----------

needs_duals = pytest.mark.skipif(
    assignment._lapjv_with_duals is None, reason="needs the optional 'lapjv' package (fast extra)"
)


def _gelu_clouds(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic inputs and a random-init linear layer + GELU: the case the path is for."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    z = x @ (rng.standard_normal((d, d)) / np.sqrt(d))
    return x, 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


def _costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float64 matrix of direct differences (row blocks: no n×n×d temporary)."""
    c = np.empty((len(a), len(b)))
    for i in range(0, len(a), 32):
        c[i : i + 32] = ((a[i : i + 32, None, :] - b[None, :, :]) ** 2).sum(-1)
    return c


def _w2_direct(a: np.ndarray, b: np.ndarray) -> float:
    return _optimum(_costs(a, b)) / len(a)


@needs_duals
def test_float32_product_path_is_taken_and_exact_on_high_dimensional_clouds():
    a, b = _gelu_clouds(300, 300, seed=0)
    m = exact_matching(a, b)
    exact = _w2_direct(a, b)
    assert m.solver == "lapjv_duals" and m.precision == "float32"
    assert 0.0 < m.gap_bound <= 1e-6 * m.w2_sq
    assert -1e-12 * exact <= m.w2_sq - exact <= m.gap_bound + 1e-12 * exact
    assert m.w2_sq == pytest.approx(np.mean(((a - b[m.perm]) ** 2).sum(1)), rel=1e-13)
    # an explicit solver, or d below the threshold, keeps the float64-block path
    assert exact_matching(a, b, solver="lapjvr").solver == "lapjvr"
    assert exact_matching(a[:, :64], b[:, :64]).solver != "lapjv_duals"


@needs_duals
def test_float32_product_stays_within_its_rigorous_bound():
    """|K − (C − m)| ≤ B_i on every entry: far from the origin, heavy tails, mixed scales."""
    rng = np.random.default_rng(4)
    n, d = 120, 300
    scales = 10.0 ** rng.uniform(-3, 3, d)  # features on six orders of magnitude
    cases = {
        "isotropic": (rng.standard_normal((n, d)), rng.standard_normal((n, d))),
        "offset 1e3": (rng.standard_normal((n, d)) + 1e3, rng.standard_normal((n, d)) + 1e3),
        "heavy tails": (rng.standard_t(2, (n, d)), rng.standard_t(2, (n, d))),
        "mixed scales": (rng.standard_normal((n, d)) * scales, rng.standard_normal((n, d)) * scales),
    }
    for name, (a, b) in cases.items():
        sq_a, sq_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
        k32, bound, k_max, shift = assignment._float32_cost_product(a, b, sq_a, sq_b)
        # the exact costs in extended precision, direct differences: no cancellation
        al, bl = a.astype(np.longdouble), b.astype(np.longdouble)
        exact = ((al[:, None, :] - bl[None, :, :]) ** 2).sum(-1) - shift[:, None]
        err = np.abs(k32.astype(np.longdouble) - exact).max(axis=1)
        assert (err <= bound).all(), name
        assert (np.abs(k32) <= k_max[:, None]).all(), name
        assert (bound <= 1e-3 * (np.sqrt(sq_a) + np.sqrt(sq_b.max())) ** 2).all(), name  # not vacuous


def _solve_with_duals(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real solver's plan and column duals on the matrix exact_matching builds."""
    centre = (a.mean(0) + b.mean(0)) / 2
    a0, b0 = a - centre, b - centre
    k32 = assignment._float32_cost_product(
        a0, b0, np.einsum("ij,ij->i", a0, a0), np.einsum("ij,ij->i", b0, b0)
    )[0]
    cols, _, (_, _, v) = assignment._lapjv_with_duals(k32)
    return np.asarray(cols, dtype=np.int64), np.asarray(v, dtype=np.float32)


@needs_duals
def test_dual_certificate_rejects_wrong_plans_and_survives_bad_duals(monkeypatch):
    """The certificate never trusts the solver: a suboptimal plan (with any duals) fails it and
    the float64-block path gives the optimum; wrong duals only loosen the bound."""
    a, b = _gelu_clouds(260, 256, seed=3)
    n = len(a)
    cols_opt, v_opt = _solve_with_duals(a, b)
    swapped = cols_opt.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # one transposition away from the optimum
    rng = np.random.default_rng(0)
    cases = {
        "identity plan": (a, np.arange(n), v_opt),
        "one swap": (a, swapped, v_opt),
        "optimal plan, noisy duals": (a, cols_opt, v_opt + rng.normal(0, 1e-3, n).astype(np.float32)),
        "optimal plan, zero duals": (a, cols_opt, np.zeros(n, np.float32)),
    }
    # A plan only just beyond tolerance, each of whose entries is within the float32 product's
    # error bound of the optimal one: 60 near-duplicate points of a, their partners cycled. Its
    # excess must exceed 2·rtol·W2² (so it has to be rejected) while the mean extra cost per row
    # stays below the per-entry bound B (so a certificate trusting the float32 entries, rather
    # than re-checking the near-tight ones exactly, would accept it).
    k = 60
    a_near = a.copy()
    a_near[:k] = a[0] + 1.2e-4 * rng.normal(size=(k, a.shape[1]))
    c = _costs(a_near, b)
    sigma = linear_sum_assignment(c)[1]
    cycled = sigma.copy()
    cycled[:k] = sigma[np.roll(np.arange(k), -1)]
    excess = _cost(c, cycled) - _cost(c, sigma)
    centre = (a_near.mean(0) + b.mean(0)) / 2
    a0, b0 = a_near - centre, b - centre
    bound = assignment._float32_cost_product(
        a0, b0, np.einsum("ij,ij->i", a0, a0), np.einsum("ij,ij->i", b0, b0)
    )[1]
    assert 2e-6 * _cost(c, sigma) < excess < 0.75 * k * bound[:k].min()
    cases["near-duplicates cycled"] = (a_near, cycled, _solve_with_duals(a_near, b)[1])
    true_solver = assignment._lapjv_with_duals
    for name, (aa, cols, v) in cases.items():
        monkeypatch.setattr(assignment, "_lapjv_with_duals", lambda k32, c=cols, v=v: (c, c, (0.0, v, v)))
        m = exact_matching(aa, b)
        exact = _w2_direct(aa, b)
        assert m.w2_sq - exact <= m.gap_bound + 1e-12 * exact, name  # rigorous, whichever path
        assert m.w2_sq == pytest.approx(exact, rel=1e-6), name
        if name not in ("optimal plan, noisy duals", "optimal plan, zero duals"):
            assert m.solver != "lapjv_duals", name  # rejected: the float64-block path solved it
    monkeypatch.setattr(assignment, "_lapjv_with_duals", true_solver)


@needs_duals
def test_float32_product_path_skips_or_rejects_near_identical_clouds():
    """W2² tiny against the distances (ρ → 1, ties): the estimate skips the path or the
    certificate rejects it; the answer is the exact optimum either way."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((200, 256))
    a[100:] = a[:100]  # duplicated points: exact ties
    perm = rng.permutation(200)
    b = a[perm] + 1e-6 * rng.standard_normal((200, 256))
    m = exact_matching(a, b)
    assert m.solver != "lapjv_duals"
    assert m.w2_sq == pytest.approx(_w2_direct(a, b), rel=1e-9)


@needs_duals
def test_lapjv_leaves_its_cost_matrix_unmodified():
    """The certificate reads the same matrix after the solve (the bound is on that matrix)."""
    k = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    before = k.copy()
    assignment._lapjv_with_duals(k)
    assert np.array_equal(k, before)


def test_dual_potentials_are_optimal_duals_of_an_optimal_plan():
    """LP duality: for an optimal plan σ, the repaired v with u_i = C_iσ(i) − v_σ(i) is dual
    feasible (u_i + v_j ≤ C_ij) and Σu + Σv equals the optimum — exactly, on integer costs."""
    from scipy.optimize import linear_sum_assignment

    from netxray.measures.assignment import dual_potentials

    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 60, 300):
        c = rng.integers(0, 1000, size=(n, n)).astype(np.float32)
        _, cols = linear_sum_assignment(c)
        v = dual_potentials(c, cols, block_rows=17)
        u = c[np.arange(n), cols] - v[cols]
        assert (u[:, None] + v[None, :] <= c).all()
        assert float(u.sum() + v.sum()) == float(c[np.arange(n), cols].sum())


def test_plain_install_certifies_with_repaired_duals(monkeypatch):
    """Without src-d's lapjv (a plain install) the float32-product path takes lapx's plan and
    the repaired duals: the certified gap is within rtol and W2² is the float64 optimum's."""
    import netxray.measures.assignment as A

    if A._lapjvr is None:
        pytest.skip("lapx's lapjvr is not installed")
    monkeypatch.setattr(A, "_lapjv_with_duals", None)
    rng = np.random.default_rng(6)
    a = rng.normal(size=(400, 300))
    b = np.tanh(a @ (rng.normal(size=(300, 300)) / np.sqrt(300))) + 0.1 * rng.normal(size=(400, 300))
    a -= a.mean(0)
    b -= b.mean(0)
    m = A.exact_matching(a, b)
    exact = A.exact_matching(a, b, precision="float64")
    assert m.solver == "lapjvr_duals"
    assert m.gap_bound <= 1e-6 * m.w2_sq
    assert m.w2_sq == pytest.approx(exact.w2_sq, rel=1e-6)
