"""Spectral view of weights: known spectra (Marchenko–Pastur, power law) and exact identities."""

from __future__ import annotations

import numpy as np
import pytest

from netxray.measures.spectral import (
    as_weight_matrix,
    esd_histogram,
    fit_power_law,
    singular_values,
    spectral_stats,
)


def _matrix_with_spectrum(evals: np.ndarray, n_rows: int, rng) -> np.ndarray:
    """W = U diag(sqrt(λ)) Vᵀ with random orthonormal U, V: WᵀW has exactly the eigenvalues λ."""
    m = len(evals)
    u, _ = np.linalg.qr(rng.normal(size=(n_rows, m)))
    v, _ = np.linalg.qr(rng.normal(size=(m, m)))
    return (u * np.sqrt(evals)) @ v.T


def test_singular_values_norms_and_stable_rank_are_exact():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(30, 70))
    np.testing.assert_allclose(singular_values(w), np.linalg.svd(w, compute_uv=False), rtol=1e-10)
    np.testing.assert_allclose(singular_values(w.T), singular_values(w), rtol=1e-10)
    s = spectral_stats(w)
    assert s["spectral_norm"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    assert s["frobenius_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-12)
    assert s["stable_rank"] == pytest.approx(np.linalg.norm(w) ** 2 / np.linalg.norm(w, 2) ** 2)
    assert 1.0 <= s["stable_rank"] <= 30
    # rank one: stable rank 1; identity: stable rank = dimension
    assert spectral_stats(np.outer(np.arange(1.0, 6), np.ones(4)))["stable_rank"] == pytest.approx(1.0)
    assert spectral_stats(np.eye(7))["stable_rank"] == pytest.approx(7.0)


def test_conv_kernel_is_read_as_out_by_in_k_k():
    k = np.random.default_rng(1).normal(size=(8, 3, 3, 3))
    assert as_weight_matrix(k).shape == (8, 27)
    np.testing.assert_allclose(
        singular_values(k), np.linalg.svd(k.reshape(8, 27), compute_uv=False), rtol=1e-10
    )
    with pytest.raises(ValueError, match="2 axes"):
        as_weight_matrix(np.zeros(5))


def test_marchenko_pastur_random_matrix_has_no_heavy_tail():
    """A Gaussian N × M matrix: the ESD of WᵀW/N is Marchenko–Pastur, supported on
    [(1 − sqrt(q))², (1 + sqrt(q))²], q = M/N — bounded. Whatever 'tail' the fit picks spans
    less than a factor 3 in λ (a heavy tail spans decades), and it is either steep (α > 6,
    beyond the 2–6 range of trained layers) or a poor fit (KS distance > 0.1)."""
    rng = np.random.default_rng(2)
    for n, m in ((1000, 500), (600, 600), (1200, 600)):
        w = rng.normal(size=(n, m)) / np.sqrt(n)
        s = spectral_stats(w)
        q = m / n
        assert s["xmax"] <= (1 + np.sqrt(q)) ** 2 * 1.1  # the MP edge, finite-size slack
        assert s["xmax"] / s["xmin"] < 3.0
        assert s["alpha"] > 6.0 or s["ks_distance"] > 0.1, (s["alpha"], s["ks_distance"])


@pytest.mark.parametrize("alpha", [2.0, 2.5, 3.5])
def test_power_law_spectrum_returns_its_exponent(alpha):
    """Eigenvalues of WᵀW drawn from a Pareto law with density ∝ λ^{−α} (λ ≥ 1), M = 600.
    Stated tolerance: |α̂ − α| ≤ max(3·σ̂, 0.15) with σ̂ = (α̂ − 1)/sqrt(n_tail)."""
    rng = np.random.default_rng(int(alpha * 10))
    lam = (1 - rng.random(600)) ** (-1 / (alpha - 1))
    s = spectral_stats(_matrix_with_spectrum(lam, 800, rng))
    assert s["fit_status"] == "ok"
    assert abs(s["alpha"] - alpha) <= max(3 * s["alpha_sigma"], 0.15), (s["alpha"], alpha)
    assert s["ks_distance"] < 0.05  # a good fit
    assert s["xmax"] / s["xmin"] > 5  # far wider than any Marchenko–Pastur tail (< 3)
    assert s["xmin"] >= lam.min() * (1 - 1e-9) and s["xmax"] == pytest.approx(lam.max(), rel=1e-9)


def test_fit_matches_the_candidate_by_candidate_definition():
    """The vectorised fit against the definition written out one x_min at a time."""
    rng = np.random.default_rng(3)
    x = np.sort(np.exp(rng.normal(size=300)) + (1 - rng.random(300)) ** -0.7)
    fit = fit_power_law(x, min_tail=10)
    best = (np.inf, None, None)
    for i in range(len(x) - 10 + 1):
        tail = x[i:]
        n = len(tail)
        a = 1 + n / np.sum(np.log(tail / x[i]))
        d = np.max(np.abs(1 - (tail / x[i]) ** (1 - a) - np.arange(n) / n))
        if a > 1 and d < best[0]:
            best = (d, a, i)
    assert fit.ks_distance == pytest.approx(best[0], rel=1e-9)
    assert fit.alpha == pytest.approx(best[1], rel=1e-9)
    assert fit.xmin == x[best[2]] and fit.n_tail == len(x) - best[2]


def test_small_or_degenerate_spectra_report_a_status():
    assert fit_power_law([1.0, 2.0, 3.0]).status == "too_few"
    assert spectral_stats(np.zeros((4, 4)))["fit_status"] == "too_few"
    assert np.isnan(spectral_stats(np.zeros((4, 4)))["stable_rank"])
    dens, edges = esd_histogram(np.r_[np.logspace(-2, 2, 100), 0.0, np.nan], bins=8)
    assert len(edges) == 9 and float((dens * np.diff(edges)).sum()) == pytest.approx(1.0)


def test_device_path_gives_the_same_spectrum(monkeypatch):
    """The accelerator path (Gram + eigvalsh in torch where the weight lives), run on a CPU
    tensor: the singular values and every spectral column agree with the numpy path to float64
    rounding (another eigensolver: not bit-identical)."""
    import torch

    from netxray.measures import spectral as S

    rng = np.random.default_rng(9)
    lam = (1 - rng.random(300)) ** (-1 / 1.5)
    for w in (_matrix_with_spectrum(lam, 400, rng), rng.normal(size=(16, 3, 3, 3))):
        t = torch.from_numpy(np.ascontiguousarray(w))
        np.testing.assert_allclose(S._singular_values_torch(t), singular_values(w), rtol=1e-9, atol=1e-12)
        monkeypatch.setattr(S, "_on_accelerator", lambda x: isinstance(x, torch.Tensor))
        a, b = spectral_stats(t), spectral_stats(w)
        monkeypatch.undo()
        assert (a["n_rows"], a["n_cols"], a["fit_status"]) == (b["n_rows"], b["n_cols"], b["fit_status"])
        for c in ("spectral_norm", "frobenius_norm", "stable_rank", "alpha", "xmin"):
            assert a[c] == pytest.approx(b[c], rel=1e-8, nan_ok=True), c


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_weight_spectrum_matches_cpu():
    import torch

    w = np.random.default_rng(10).normal(size=(200, 120))
    a, b = spectral_stats(torch.from_numpy(w).cuda()), spectral_stats(w)
    for c in ("spectral_norm", "frobenius_norm", "stable_rank", "alpha"):
        assert a[c] == pytest.approx(b[c], rel=1e-8, nan_ok=True), c


def _ww_rule_reference(evals: np.ndarray) -> tuple[float, float, int]:
    """WeightWatcher's default x_min rule written out from its definition, one candidate at a
    time (not imported): eigenvalues > 1e-5, sorted; N ≥ 20: every value but the largest is a
    candidate x_min, α = 1 + n / Σ ln(λ/x_min), D = max |1 − (λ/x_min)^(1−α) − k/n| (1 where
    α ≤ 1), the first smallest D wins; N < 20: only tails of ≥ 8 values are fitted, with
    α = 1 + (n − 1)/Σ ln(λ/x_min), the rest count D = 1, and again the first smallest D wins
    (their J = D − 0.868/√n is computed, then overridden by argmin D). Returns (α, x_min, n)."""
    data = np.sort(evals[evals > 1e-5])
    n_all = len(data)
    best, best_key, best_alpha = None, None, None
    for i in range(n_all - 1):
        tail = data[i:]
        n = len(tail)
        s = float(np.sum(np.log(tail)) - n * np.log(data[i]))
        if n_all >= 20:
            alpha = 1 + n / s
        elif n >= 8 and s > 1e-12:
            alpha = 1 + (n - 1) / s
        else:
            alpha, key = 0.0, 1.0
        if alpha > 1:
            key = np.max(np.abs(1 - (tail / data[i]) ** (1 - alpha) - np.arange(n) / n))
        elif n_all >= 20:
            key = 1.0
        if best_key is None or key < best_key:
            best, best_key, best_alpha = i, key, alpha
    return float(best_alpha), float(data[best]), n_all - best


def _fixed_matrices() -> list[np.ndarray]:
    """Fixed weights: Gaussian (Marchenko–Pastur), power-law spectra, a bulk with a few outliers
    (a short best tail), a small matrix (WeightWatcher's small-N fit) and a rank-deficient one
    (zero eigenvalues under the 1e-5 threshold)."""
    rng = np.random.default_rng(7)
    mats = [rng.normal(size=(300, 150)), rng.normal(size=(200, 200)) / 10]
    for a in (2.0, 3.0, 4.5):
        mats.append(_matrix_with_spectrum((1 - rng.random(120)) ** (-1 / (a - 1)), 240, rng))
    spikes = np.concatenate([rng.uniform(0.5, 1.5, 250), [9.0, 14.0, 20.0, 31.0, 55.0, 80.0, 150.0]])
    mats.append(_matrix_with_spectrum(spikes, 300, rng))
    mats.append(rng.normal(size=(40, 15)))  # 15 eigenvalues: the small-N fit
    mats.append(rng.normal(size=(60, 12)) @ rng.normal(size=(12, 50)))  # rank 12 of 50
    return mats


def test_weightwatcher_rule_picks_their_tail_and_alpha():
    """rule="weightwatcher" picks the same x_min, tail and α as WeightWatcher's rule
    (re-implemented above from its definition), on every fixed matrix."""
    for w in _fixed_matrices():
        evals = singular_values(w) ** 2
        ref_alpha, ref_xmin, ref_n = _ww_rule_reference(evals)
        fit = fit_power_law(evals, rule="weightwatcher")
        assert fit.status == "ok"
        assert fit.n_tail == ref_n
        assert fit.xmin == ref_xmin
        assert fit.alpha == pytest.approx(ref_alpha, rel=1e-12)
        st = spectral_stats(w, rule="weightwatcher")
        assert (st["n_tail"], st["alpha"]) == (fit.n_tail, fit.alpha)


def test_weightwatcher_rule_differs_where_the_best_tail_is_short():
    """The bulk + 7 outliers matrix: WeightWatcher's best tail is under 10 eigenvalues, which
    netxray's default (min_tail=10) cannot pick; with min_tail=2 and no small eigenvalues the two
    rules coincide (the same candidates, the same D)."""
    w = _fixed_matrices()[5]
    evals = singular_values(w) ** 2
    ww = fit_power_law(evals, rule="weightwatcher")
    assert ww.n_tail < 10
    assert fit_power_law(evals).n_tail >= 10
    loose = fit_power_law(evals, min_tail=2)
    assert (loose.n_tail, loose.alpha) == (ww.n_tail, ww.alpha)


def test_weightwatcher_rule_too_few_and_bad_rule():
    assert fit_power_law(np.arange(1.0, 8.0), rule="weightwatcher").status == "too_few"  # 7 < 8
    assert fit_power_law(np.r_[np.zeros(10), 1.0], rule="weightwatcher").status == "too_few"
    with pytest.raises(ValueError, match="rule"):
        fit_power_law(np.arange(1.0, 30.0), rule="powerlaw")


def test_float32_eigenvalues_are_within_float32_rounding_of_float64():
    """precision="float32": a float32 Gram and ssytrd, then dsterf on the tridiagonal form in
    float64: |Δλ| ≤ 5e-7·λ_max against float64 (measured ~7e-8; an all-float32 eigensolver,
    ssyevr/ssyevd, is ~2e-6 here and fails this bound). Descending, float64, the same length."""
    from netxray.measures.spectral import gram_eigenvalues

    rng = np.random.default_rng(11)
    for n, m in ((400, 300), (300, 400), (600, 600)):
        w = rng.normal(size=(n, m)).astype(np.float32)
        l64 = gram_eigenvalues(w)
        l32 = gram_eigenvalues(w, precision="float32")
        assert l32.dtype == np.float64 and l32.shape == (min(n, m),)
        assert np.all(np.diff(l32) <= 0)
        assert np.max(np.abs(l32 - l64)) <= 5e-7 * l64[0]
    assert gram_eigenvalues(np.array([[3.0, 4.0]]), precision="float32").tolist() == [25.0]
    with pytest.raises(ValueError, match="precision"):
        gram_eigenvalues(np.eye(3), precision="float16")


def test_float32_fit_keeps_the_tail_and_alpha_to_float32_rounding():
    """On the fixed matrices (float32 weights) the float32 spectral row picks the same tail as
    float64, with α within 1e-4 relative and the norms within 1e-6."""
    for w in _fixed_matrices()[:7]:
        w = w.astype(np.float32)
        for rule in ("netxray", "weightwatcher"):
            a = spectral_stats(w, rule=rule)
            b = spectral_stats(w, rule=rule, precision="float32")
            assert (b["n_rows"], b["n_cols"], b["fit_status"], b["n_tail"]) == (
                a["n_rows"], a["n_cols"], a["fit_status"], a["n_tail"]
            )  # fmt: skip
            assert b["alpha"] == pytest.approx(a["alpha"], rel=1e-4)
            for c in ("spectral_norm", "frobenius_norm", "stable_rank"):
                assert b[c] == pytest.approx(a[c], rel=1e-6), c


def test_float32_on_the_device_path_and_in_weight_spectra(monkeypatch):
    import torch

    from netxray.lenses.parameters import weight_spectra
    from netxray.measures import spectral as S

    w = np.random.default_rng(12).normal(size=(120, 80)).astype(np.float32)
    t = torch.from_numpy(w)
    lam = S.gram_eigenvalues(w)  # torch's all-float32 eigensolver: ~1e-6·λ_max
    np.testing.assert_allclose(S._gram_eigenvalues_torch(t, "float32"), lam, rtol=0, atol=5e-6 * lam[0])
    monkeypatch.setattr(S, "_on_accelerator", lambda x: isinstance(x, torch.Tensor))
    assert spectral_stats(t, precision="float32")["n_cols"] == 80
    monkeypatch.undo()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.Linear(48, 32))
    a, b = weight_spectra(model), weight_spectra(model, precision="float32")
    assert b.attrs["meta"]["precision"] == "float32" and (b["status"] == "ok").all()
    np.testing.assert_allclose(b["spectral_norm"], a["spectral_norm"], rtol=1e-6)


def test_pruned_ks_scan_equals_the_full_scan(monkeypatch):
    """fit_power_law computes D exactly only for candidates whose lower bound (64 positions of
    their tail) does not exceed a known D: on 1000-value spectra (power law, log-normal, bulk +
    outliers) it prunes most candidates and still returns the candidate, α and D of the full
    scan, to the bit (the same floating-point operations), under both rules."""
    from netxray.measures import spectral as S

    rng = np.random.default_rng(13)
    spectra = [(1 - rng.random(1000)) ** -0.6, np.exp(rng.normal(size=1000)),
               np.r_[rng.uniform(0.5, 1.5, 995), [9.0, 20.0, 31.0, 80.0, 150.0]]]  # fmt: skip
    sizes: list[int] = []
    real = S._ks_gaps
    monkeypatch.setattr(S, "_ks_gaps", lambda *a: sizes.append(a[3].size) or real(*a))
    for x in spectra:
        for rule, min_tail in (("netxray", 10), ("weightwatcher", 2)):
            sizes.clear()
            fit = S.fit_power_law(x, rule=rule)
            assert sizes[-1] < sizes[0] / 3  # most candidates never got their full D
            lam = np.sort(x)
            best = (np.inf, None, None)
            for i in range(len(lam) - min_tail + 1):
                tail = lam[i:]
                n = len(tail)
                a = 1 + n / np.sum(np.log(tail / lam[i]))
                d = np.max(np.abs(1 - (tail / lam[i]) ** (1 - a) - np.arange(n) / n)) if a > 1 else 1.0
                if d < best[0]:
                    best = (d, a, i)
            assert fit.xmin == lam[best[2]] and fit.n_tail == len(lam) - best[2]
            assert fit.ks_distance == pytest.approx(best[0], rel=1e-12)
            assert fit.alpha == pytest.approx(best[1], rel=1e-12)
            monkeypatch.setattr(S, "_PRUNE_SAMPLES", 10**9)  # no pruning: the full scan
            full = S.fit_power_law(x, rule=rule)
            monkeypatch.setattr(S, "_PRUNE_SAMPLES", 64)
            assert full == fit
