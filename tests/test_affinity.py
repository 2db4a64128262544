"""Affinity score: SPEC §1.1 known answers and mathematical properties; companion metrics."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy.stats import ortho_group

from netxray.measures.affinity import AffinityResult, affinity_score, wasserstein2_squared
from netxray.measures.companions import histogram_entropy, linear_cka, linear_r2, sparsity

RELU = lambda x: np.maximum(x, np.float32(0))  # noqa: E731
SIGMOID = lambda x: (1 / (1 + np.exp(-x))).astype(np.float32)  # noqa: E731


def _reference_stream(**kw):
    """SPEC §1.1: seed 987, three normal draws (float32), then the uniform ReLU sweep."""
    rs = np.random.RandomState(987)  # the legacy stream the reference notebooks used
    scores = {}
    for name, f in (("relu", RELU), ("tanh", np.tanh), ("sigmoid", SIGMOID)):
        x = rs.normal(-1, 2, (1000, 1)).astype(np.float32)
        scores[name] = affinity_score(x, f(x), **kw)
    sweep = []
    for m in np.linspace(-4, 4, 20):
        x = rs.uniform(m - 2, m + 2, (1000, 1))
        sweep.append(affinity_score(x, np.maximum(x, 0), **kw))
    return scores, sweep


def test_known_answers_relu_tanh_sigmoid():
    scores, _ = _reference_stream()
    absolute, _ = _reference_stream(ridge="absolute")  # the reference's ε·I reproduces them too
    for name, want in (("relu", 0.487422), ("tanh", 0.669752), ("sigmoid", 0.774861)):
        assert float(absolute[name]) == pytest.approx(want, abs=1e-4)
    assert float(scores["relu"]) == pytest.approx(0.487422, abs=1e-4)
    assert float(scores["tanh"]) == pytest.approx(0.669752, abs=1e-4)
    assert float(scores["sigmoid"]) == pytest.approx(0.774861, abs=1e-4)
    assert all(r.status == "ok" for r in scores.values())


def test_known_answers_uniform_relu_sweep():
    _, sweep = _reference_stream()
    expected = [1, 1, 1, 1, 1, 0.133877, 0.319877, 0.435423, 0.526278, 0.627161, 0.716275,
                0.792085, 0.870309, 0.940124, 0.993314, 1, 1, 1, 1, 1]  # fmt: skip
    got = [r.score for r in sweep]
    # SPEC §1.1: the relative ridge changes the m = −1.89 case (28 positive outputs, var 9.4e-5)
    # from the absolute ridge's biased 0.133877 to 0.131587 (ridge-free: 0.131586)
    assert got[5] == pytest.approx(0.131587, abs=2e-6)
    np.testing.assert_allclose(got[:5] + got[6:], expected[:5] + expected[6:], atol=1e-4)
    _, absolute = _reference_stream(ridge="absolute")
    np.testing.assert_allclose([r.score for r in absolute], expected, atol=1e-4)
    assert absolute[5].score == pytest.approx(0.133877, abs=2e-6)
    assert [r.status for r in sweep[:5]] == ["degenerate"] * 5  # constant output, flagged
    assert all(r.status == "ok" for r in sweep[5:])
    # all inputs positive: exactly affine, so 1 in float64 (the reference printed 0.9998-0.99999)
    np.testing.assert_allclose(got[15:], 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "k, expected", [(1, 1.0), (3, 0.7112), (5, 0.5767), (11, 0.3995), (21, 0.2889), (41, 0.2048)]
)
def test_known_answers_polynomials(k, expected):
    x = np.linspace(-1, 1, 1000)
    assert float(affinity_score(x, x**k)) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("k", [3, 5, 11])
def test_polynomial_population_value(k):
    # ρ = 1 − sqrt(1 − Corr), Corr = sqrt(3(2k+1))/(k+2) for x uniform on [−1, 1]
    x = np.linspace(-1, 1, 400_000)
    corr = np.sqrt(3 * (2 * k + 1)) / (k + 2)
    assert float(affinity_score(x, x**k)) == pytest.approx(1 - np.sqrt(1 - corr), abs=2e-4)


def test_population_values_gaussian_input():
    x = np.random.default_rng(0).normal(-1, 2, (1_000_000, 1))
    got = [float(affinity_score(x, f(x))) for f in (RELU, np.tanh, lambda v: 1 / (1 + np.exp(-v)))]
    np.testing.assert_allclose(got, [0.4972, 0.6645, 0.7741], atol=2e-3)


@pytest.mark.parametrize("f", [np.exp, np.tanh, lambda v: v**3, lambda v: np.log1p(np.exp(v))])
def test_one_d_closed_form(f):
    # 1-D monotone f: ρ = 1 − sqrt((n−1)/n · (1 − r)), r = Pearson(x, f(x))
    x = np.random.default_rng(1).normal(0, 1, 777)
    y = f(x)
    n, r = len(x), np.corrcoef(x, y)[0, 1]
    closed = 1 - np.sqrt((n - 1) / n * (1 - r))
    assert float(affinity_score(x, y)) == pytest.approx(closed, abs=1e-6)
    assert float(affinity_score(x, y, eps=0.0)) == pytest.approx(closed, abs=1e-10)


def _data(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return x, np.tanh(x) + 0.3 * np.maximum(x, 0)


def test_identity_and_psd_affine_give_one():
    x, _ = _data()
    assert float(affinity_score(x, x)) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(5)
    g = rng.normal(size=(5, 5))
    a = g @ g.T + 0.1 * np.eye(5)  # symmetric positive definite
    y = x @ a + rng.normal(size=5)
    assert affinity_score(x, y, eps=0.0).score == pytest.approx(1.0, abs=1e-9)  # exact without ridge
    assert affinity_score(x, y, ridge="absolute").score == pytest.approx(1.0, abs=1e-6)
    # The relative ridge ε·(tr Σ/d) is not the image of X's ridge under A: it shifts Σ_Y's smallest
    # eigenvalue (0.065 here, mean 219) by ε·219/0.065 ≈ 3.4e-3 relatively, so 1 − ρ is of order 1e-5
    res = affinity_score(x, y)
    assert res.score == pytest.approx(1.0, abs=1e-4)
    assert res.moment_residual < 1e-8


def test_a_non_psd_linear_map_is_not_scored_affine():
    # a reflection is linear but not PSD: the Brenier map cannot reproduce the pairing, ρ < 1
    x, _ = _data(n=400, d=2)
    assert float(affinity_score(x, x @ np.diag([1.0, -1.0]))) < 0.99


def test_invariances():
    x, y = _data()
    base = float(affinity_score(x, y, eps=0.0))
    assert base < 0.99  # a real non-linearity, so the checks below mean something
    q = ortho_group.rvs(5, random_state=3)
    for xx, yy in [(x, 3.0 * y - 7.0), (0.25 * x + 2.0, y), (x @ q, y @ q)]:
        assert float(affinity_score(xx, yy, eps=0.0)) == pytest.approx(base, abs=1e-9)
        # with the default ridge the invariances hold to the size of the ridge
        assert float(affinity_score(xx, yy)) == pytest.approx(base, abs=1e-5)


def test_score_in_unit_interval_and_deterministic():
    x, y = _data(seed=4)
    r1, r2 = affinity_score(x, y), affinity_score(x, y)
    assert 0.0 <= r1.score <= 1.0
    assert r1 == r2
    assert r1.score == pytest.approx(1 - np.sqrt(r1.w2_sq / r1.two_tr_cov_y), abs=1e-15)


def test_torch_input_matches_numpy_and_is_not_modified():
    x, y = _data()
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    x_copy, xt_copy = x.copy(), xt.clone()
    assert affinity_score(xt, yt).score == affinity_score(x, y).score
    np.testing.assert_array_equal(x, x_copy)
    assert torch.equal(xt, xt_copy)


@pytest.mark.parametrize("d", [4, 16, 64])
def test_finite_sample_bias_of_a_rotation(d):
    # SPEC §1.1: population score 1, estimate about 0.82 / 0.46 / 0.23 at n = 2048
    x = np.random.default_rng(d).standard_normal((2048, d))
    q = ortho_group.rvs(d, random_state=d)
    assert float(affinity_score(x, x @ q)) == pytest.approx({4: 0.82, 16: 0.46, 64: 0.23}[d], abs=0.02)


def test_rank_reduction_is_exact():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 80))
    y = np.maximum(x @ rng.normal(size=(80, 80)) / 9, 0)
    full = affinity_score(x, y, reduce_rank=False)
    reduced = affinity_score(x, y, reduce_rank=True)
    assert affinity_score(x, y).score == reduced.score  # the default takes the reduction here
    assert reduced.score == pytest.approx(full.score, abs=1e-8)
    assert reduced.w2_sq == pytest.approx(full.w2_sq, rel=1e-8)
    assert reduced.moment_residual == pytest.approx(full.moment_residual, abs=1e-8)


@pytest.mark.parametrize(
    ("n", "d", "k", "offset"),
    [(40, 160, 160, 0.0), (40, 160, 5, 5.0), (25, 300, 2, 0.0), (50, 120, 120, 100.0), (8, 64, 64, 0.0)],
)
def test_sample_space_path_matches_the_feature_space_path(n, d, k, offset):
    """d > 2n − 2: the Gram-matrix (sample-space) path gives the d-space score to 1e-6.

    k < d gives data of rank k (the Gram matrix is then rank-deficient beyond centring); the
    offset checks the centring. Both routes solve the same problem, so they agree to rounding.
    """
    rng = np.random.default_rng(n + d + k)
    x = rng.normal(size=(n, k)) @ rng.normal(size=(k, d)) + offset
    y = np.maximum(x @ rng.normal(size=(d, d)) / np.sqrt(d), 0)
    sample = affinity_score(x, y)  # the default takes the sample-space path here
    assert sample.score == affinity_score(x, y, reduce_rank=True).score
    feature = affinity_score(x, y, reduce_rank=False)
    assert sample.score == pytest.approx(feature.score, abs=1e-6)
    assert sample.w2_sq == pytest.approx(feature.w2_sq, rel=1e-6)
    assert sample.status == feature.status == ("too_few_samples" if n < 10 else "under_determined")
    assert sample.moment_residual < 1e-6 and feature.moment_residual < 1e-6


def test_sample_space_coordinates_keep_every_inner_product():
    from netxray.measures.affinity import _sample_space_coordinates

    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 500))  # rank 3
    y = rng.normal(size=(30, 500))
    x -= x.mean(0)
    y -= y.mean(0)
    fx, fy = _sample_space_coordinates(x, y)
    assert fx.shape == fy.shape and fx.shape[0] == 30
    assert fx.shape[1] <= 3 + 29  # rank(X) + rank(Y) after centring
    z, f = np.vstack([x, y]), np.vstack([fx, fy])
    np.testing.assert_allclose(f @ f.T, z @ z.T, atol=1e-9 * np.abs(z @ z.T).max())


def test_cholesky_and_eigendecomposition_routes_agree():
    x, y = _data(n=300, d=6)
    auto, eig = affinity_score(x, y), affinity_score(x, y, method="eigh")
    assert auto.score == pytest.approx(eig.score, abs=1e-10)
    assert auto.w2_sq == pytest.approx(eig.w2_sq, rel=1e-9)
    assert auto.moment_residual < 1e-10 and eig.moment_residual < 1e-10
    # ε = 0 with a rank-deficient X: Σ_X is singular, the pseudo-inverse route takes over
    xd = np.hstack([x, x[:, :1]])
    yd = np.hstack([y, y[:, :1]])
    res = affinity_score(xd, yd, eps=0.0)
    assert res.status == "ok" and 0 < res.score < 1
    with pytest.raises(ValueError, match="method"):
        affinity_score(x, y, method="schur")


def test_high_dimensional_score_is_the_same_on_the_float32_product_path(monkeypatch):
    """d ≥ 256: W2 comes from one float32 product certified by LAPJV's duals (when the optional
    lapjv is installed); without it, the float64-block path. Same score to the certificate."""
    from netxray.measures import assignment

    if assignment._lapjv_with_duals is None:
        pytest.skip("needs the optional 'lapjv' package (fast extra)")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((400, 300))
    y = np.tanh(x @ rng.standard_normal((300, 300)) / np.sqrt(300))
    fast = affinity_score(x, y)
    monkeypatch.setattr(assignment, "_lapjv_with_duals", None)
    blocks = affinity_score(x, y)
    assert fast.status == blocks.status == "ok"
    assert abs(fast.score - blocks.score) <= 1e-6 * (1 - blocks.score) + 1e-12  # rtol each
    assert fast.w2_sq == pytest.approx(blocks.w2_sq, rel=1e-6)


def test_statuses():
    x, y = _data()
    mism = affinity_score(x, y[:, :3])
    assert mism.status == "shape_mismatch" and np.isnan(mism.score) and "3" in mism.message
    bad = x.copy()
    bad[3, 1] = np.nan
    nf = affinity_score(bad, y)
    assert nf.status == "non_finite" and np.isnan(float(nf))
    yinf = y.copy()
    yinf[0, 0] = np.inf
    assert affinity_score(x, yinf).status == "non_finite"
    dead = affinity_score(x, np.zeros_like(y))
    assert dead.status == "degenerate" and dead.score == 1.0
    assert isinstance(dead, AffinityResult)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        affinity_score(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        affinity_score(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="eps"):
        affinity_score(np.ones((5, 1)), np.ones((5, 1)), eps=-1)


def test_wasserstein_exact_against_pot():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 0.5
    m = ot.dist(a, b)
    assert wasserstein2_squared(a, b) == pytest.approx(ot.emd2([], [], m), rel=1e-10)
    c = rng.normal(size=(45, 3))  # unequal sizes go through POT
    w = np.full(60, 1 / 60), np.full(45, 1 / 45)
    assert wasserstein2_squared(a, c) == pytest.approx(ot.emd2(*w, ot.dist(a, c)), rel=1e-10)
    u, v = rng.normal(size=70), rng.normal(size=70)
    assert wasserstein2_squared(u, v) == pytest.approx(
        ot.emd2([], [], ot.dist(u[:, None], v[:, None])), rel=1e-10
    )
    assert wasserstein2_squared(u, v[:50]) == pytest.approx(
        ot.emd2(np.full(70, 1 / 70), np.full(50, 1 / 50), ot.dist(u[:, None], v[:50, None])),
        rel=1e-9,
    )


def test_too_many_points_for_an_exact_plan_is_a_clear_error():
    a = np.zeros((300, 2))
    with pytest.raises(ValueError, match="cost matrix"):
        wasserstein2_squared(a, a, max_pairs=10_000)
    assert wasserstein2_squared(np.zeros((300, 1)), np.ones((300, 1)), max_pairs=10) == 1.0  # 1-D sorts


def test_unequal_sample_sizes_give_a_score():
    x, y = _data(n=300)
    r = affinity_score(x, y[:250])
    assert r.status == "ok" and r.n == 300 and r.n_y == 250 and 0 < r.score < 1


# ---- companion metrics --------------------------------------------------------------------


def test_linear_cka_properties():
    x, y = _data(n=200)
    q = ortho_group.rvs(5, random_state=1)
    assert linear_cka(x, 2 * x @ q + 1) == pytest.approx(1.0, abs=1e-12)
    c = linear_cka(x, y)
    assert 0 < c < 1
    assert linear_cka(y, x) == pytest.approx(c, abs=1e-12)
    # the Gram form (features >= samples) equals the feature form
    wide_x, wide_y = x[:4], y[:4]
    xc, yc = wide_x - wide_x.mean(0), wide_y - wide_y.mean(0)
    feat = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(wide_x, wide_y) == pytest.approx(feat, abs=1e-12)
    assert np.isnan(linear_cka(x, np.ones_like(x)))
    rng = np.random.default_rng(0)
    assert linear_cka(rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))) < 0.01


def test_linear_r2():
    x, y = _data(n=200)
    assert linear_r2(x, x @ np.arange(10.0).reshape(5, 2) - 4) == pytest.approx(1.0, abs=1e-12)
    r2 = linear_r2(x, y)
    assert 0 < r2 < 1
    # against a direct least-squares fit with an intercept column
    design = np.hstack([x, np.ones((200, 1))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    res = y - design @ coef
    assert r2 == pytest.approx(1 - (res**2).sum() / ((y - y.mean(0)) ** 2).sum(), abs=1e-10)
    assert np.isnan(linear_r2(x, np.ones((200, 1))))
    # rank-deficient inputs (a duplicated unit, a dead unit) span the same space: same R²
    dup = np.hstack([x, x[:, :1], np.zeros((200, 1))])
    assert linear_r2(dup, y) == pytest.approx(r2, abs=1e-10)
    assert linear_r2(np.ones((200, 3)), y) == 0.0
    # in-sample: with d >= n - 1 features any output is fitted exactly
    wide = np.random.default_rng(3).normal(size=(20, 30))
    assert linear_r2(wide, np.random.default_rng(4).normal(size=(20, 2))) == pytest.approx(1.0, abs=1e-8)


def test_companions_in_sample_space_match_the_feature_space_forms():
    """d ≥ n takes the n×n route; it must give what the d×d formulas give."""
    rng = np.random.default_rng(8)
    n, d = 40, 120
    x = rng.normal(size=(n, d))
    y = np.maximum(x @ rng.normal(size=(d, d)) / np.sqrt(d), 0)
    xc, yc = x - x.mean(0), y - y.mean(0)
    feat = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(feat, rel=1e-12)
    assert linear_cka(x, y[:, :10]) == pytest.approx(  # mixed: one side narrower than n
        np.linalg.norm(yc[:, :10].T @ xc) ** 2
        / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc[:, :10].T @ yc[:, :10])),
        rel=1e-12,
    )
    # n ≤ d + 1: the centred X spans every centred vector, so R² = 1 for any output ...
    assert linear_r2(x, y) == pytest.approx(1.0, abs=1e-10)
    assert linear_r2(x, rng.normal(size=(n, 3))) == pytest.approx(1.0, abs=1e-10)
    # ... unless x's samples are affinely dependent: then the n×n route must agree with lstsq
    low = rng.normal(size=(n, 5)) @ rng.normal(size=(5, d))  # rank 5 < n − 1, d > n
    design = np.hstack([low, np.ones((n, 1))])
    res = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    assert linear_r2(low, y) == pytest.approx(1 - (res**2).sum() / (yc**2).sum(), abs=1e-9)
    assert linear_r2(low, y) < 0.9


def test_sparsity_and_entropy():
    assert sparsity(np.array([[0.0, 1e-3], [-2e-3, 5.0]])) == 0.5
    assert histogram_entropy(np.zeros((10, 3))) == 0.0
    assert histogram_entropy(np.arange(64.0), bins=64) == pytest.approx(np.log(64), abs=1e-12)
    two = np.r_[np.zeros(50), np.ones(50)]
    assert histogram_entropy(two, bins=10) == pytest.approx(np.log(2), abs=1e-12)
    assert np.isnan(histogram_entropy([0.0, np.nan]))


# ---- the exact assignment behind W2 (measures/assignment.py) ----------------------------------


def _adversarial_costs():
    """Cost matrices that stress an assignment solver: ties, structure, scale, sign."""
    rng = np.random.default_rng(7)
    n = 40
    pts = rng.normal(size=(n // 4, 3))
    dup = np.repeat(pts, 4, axis=0)  # every point four times: exact ties in the Euclidean cost
    yield "random", rng.random((n, n))
    yield "integers 0..2 (massive ties)", rng.integers(0, 3, (n, n)).astype(float)
    yield "all equal", np.full((n, n), 3.0)
    yield "rank one a_i*b_j", np.outer(rng.random(n), rng.random(n))
    yield "negative, wide range", -np.exp(rng.normal(scale=8.0, size=(n, n)))
    yield "huge offset", 1e12 + rng.random((n, n))
    yield "identity is optimal", 1.0 - np.eye(n)
    yield "duplicate points", ot.dist(dup, dup[rng.permutation(n)])
    yield "one by one", np.array([[2.5]])
    yield "anti-diagonal Monge", np.add.outer(np.arange(n), -np.arange(n)) ** 2.0


@pytest.mark.parametrize("solver", ["auto", "lapjv", "scipy"])
def test_assignment_has_the_exact_optimal_objective(solver):
    from scipy.optimize import linear_sum_assignment

    from netxray.measures.assignment import solve_assignment

    for name, c in _adversarial_costs():
        rows, best = linear_sum_assignment(c)  # the exact reference
        cols = solve_assignment(c, solver=solver)
        assert sorted(cols.tolist()) == list(range(len(c))), name  # a permutation
        got = c[np.arange(len(c)), cols].sum()
        assert got == pytest.approx(c[rows, best].sum(), rel=1e-12, abs=1e-12), name


def test_assignment_matches_scipy_on_many_random_problems():
    """Many sizes and distributions; small integer costs make most optima non-unique."""
    from scipy.optimize import linear_sum_assignment

    from netxray.measures.assignment import solve_assignment

    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(2, 70))
        c = rng.integers(0, 1 + trial % 5, (n, n)).astype(float) if trial % 2 else rng.normal(size=(n, n))
        r, k = linear_sum_assignment(c)
        cols = solve_assignment(c)
        assert c[np.arange(n), cols].sum() == pytest.approx(c[r, k].sum(), abs=1e-9)


def test_exact_matching_is_w2_and_agrees_with_pot_and_scipy():
    from netxray.measures.assignment import exact_matching, squared_distances

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(150, 8)), 0.5 * rng.normal(size=(150, 8)) ** 3
    c = squared_distances(a, b, block_rows=7)  # several blocks and a ragged last one
    np.testing.assert_allclose(c, ot.dist(a, b), rtol=1e-12, atol=1e-12)
    assert (c >= 0).all()
    exact = ot.emd2([], [], ot.dist(a, b))
    for solver in ("auto", "scipy"):
        for precision in ("float32", "float64"):
            m = exact_matching(a, b, solver=solver, precision=precision)
            assert m.w2_sq == pytest.approx(exact, rel=1e-12), (solver, precision)
            assert m.w2_sq == pytest.approx(np.mean(np.sum((a - b[m.perm]) ** 2, axis=1)), rel=1e-15)
            assert 0 <= m.gap_bound <= 1e-6 * m.w2_sq
            if precision == "float64" or solver == "scipy":
                assert m.precision == "float64" and m.gap_bound == 0.0
            else:  # well-separated random costs: the float32 plan certifies
                assert m.precision == "float32" and m.gap_bound > 0
    assert wasserstein2_squared(a, b, precision="float64") == pytest.approx(exact, rel=1e-12)


def test_float32_plan_is_certified_or_resolved_in_float64():
    """The float32 plan's bound is rigorous: where it is too loose, the float64 matrix is solved."""
    from scipy.optimize import linear_sum_assignment

    from netxray.measures.assignment import exact_matching

    rng = np.random.default_rng(5)
    for d in (1, 2, 8, 64):
        # near-ties: points on a coarse grid plus 1e-9 jitter, and a large common offset
        a = np.round(rng.normal(size=(120, d)), 1) + 1e3 + 1e-9 * rng.normal(size=(120, d))
        b = np.round(rng.normal(size=(120, d)), 1) + 1e3
        c = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # direct differences: no cancellation
        r, k = linear_sum_assignment(c)
        exact = c[r, k].sum() / len(a)
        m = exact_matching(a, b)  # default: float32 with certificate
        assert m.w2_sq == pytest.approx(exact, rel=1e-6)  # within its certified bound
        assert m.w2_sq - exact <= m.gap_bound + 1e-12 * exact
        strict = exact_matching(a, b, rtol=0.0)  # no tolerance: always re-solved in float64
        assert strict.precision == "float64" and strict.w2_sq == pytest.approx(exact, rel=1e-12)


def test_assignment_bad_input_is_a_clear_error():
    from netxray.measures.assignment import exact_matching, solve_assignment

    with pytest.raises(ValueError, match="square"):
        solve_assignment(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        solve_assignment(np.array([[0.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="solver"):
        solve_assignment(np.zeros((2, 2)), solver="hungarian")
    with pytest.raises(ValueError, match="same shape"):
        exact_matching(np.zeros((3, 2)), np.zeros((4, 2)))
