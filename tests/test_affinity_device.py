"""The affinity score's device path (``affinity_score(..., device=...)``): float64 torch for the
statistics, the map and the cost matrix, the exact assignment on the CPU.

No GPU here: the same torch code runs on CPU tensors (``torch_path`` makes a CPU device take it,
as ``benchmarks/bench_gpu.py --dry-run-on-cpu`` does); the CUDA tests skip without CUDA.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import netxray.measures.affinity as affinity_mod
from netxray.measures.affinity import affinity_score
from test_affinity import _reference_stream  # the SPEC §1.1 draws, written once

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def torch_path(monkeypatch):
    """CPU devices take the torch path; the numpy map and W2 are made to fail so a silent fall
    back to them cannot pass for the torch path."""
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)

    def forbidden(*args, **kwargs):
        raise AssertionError("the numpy path ran on the device path")

    monkeypatch.setattr(affinity_mod, "_map_cholesky", forbidden)
    monkeypatch.setattr(affinity_mod, "_map_eigh", forbidden)
    monkeypatch.setattr(affinity_mod, "_sample_space_coordinates", forbidden)


def _gelu_data(n, d, seed=0):
    """Isotropic X, Y = GELU(X W), W Gaussian / sqrt(d)."""
    rng = np.random.default_rng(seed + 7 * d)
    x = rng.standard_normal((n, d))
    z = torch.from_numpy(x @ rng.standard_normal((d, d)) / np.sqrt(d))
    return x, torch.nn.functional.gelu(z).numpy()


def _same(a, b, tol=1e-10):
    assert a.status == b.status
    assert (a.n, a.d, a.n_y, a.eps, a.ridge) == (b.n, b.d, b.n_y, b.eps, b.ridge)
    assert a.score == pytest.approx(b.score, abs=tol)
    assert a.two_tr_cov_y == pytest.approx(b.two_tr_cov_y, rel=1e-12)
    if np.isfinite(a.w2_sq):
        assert a.w2_sq == pytest.approx(b.w2_sq, rel=1e-9)
        assert a.moment_residual == pytest.approx(b.moment_residual, abs=1e-9)
    else:
        assert np.isnan(b.w2_sq)


@pytest.mark.parametrize(("n", "d"), [(400, 8), (400, 64), (600, 300)])
def test_torch_path_equals_numpy_path_isotropic(n, d, monkeypatch):
    x, y = _gelu_data(n, d)
    cpu = affinity_score(x, y)
    for method in ("auto", "eigh"):
        ref = affinity_score(x, y, method=method)
        with monkeypatch.context() as m:
            m.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
            dev = affinity_score(x, y, method=method, device="cpu")
        assert dev.status == "ok"
        _same(ref, dev)
        _same(cpu, dev)


@pytest.mark.parametrize(("n", "d", "reduce_rank"), [(40, 160, None), (25, 300, None), (8, 64, None),
                                                     (60, 100, False), (60, 100, True)])  # fmt: skip
def test_torch_path_equals_numpy_path_when_n_is_at_most_d(n, d, reduce_rank, monkeypatch):
    """n ≤ d: under-determined (or too few samples); d > 2n − 2 takes the sample-space path
    (Gram product on the device, pivoted Cholesky on the CPU)."""
    x, y = _gelu_data(n, d, seed=3)
    ref = affinity_score(x, y, reduce_rank=reduce_rank)
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    monkeypatch.setattr(affinity_mod, "_sample_space_coordinates", None)  # must not be called
    dev = affinity_score(x, y, reduce_rank=reduce_rank, device="cpu")
    assert dev.status == ("too_few_samples" if n < 10 else "under_determined")
    _same(ref, dev, tol=1e-9)


def test_singular_input_falls_back_to_the_eigh_route(monkeypatch):
    """ε = 0 and a rank-deficient X: the Cholesky fails and the pseudo-inverse route scores it,
    as on the CPU path."""
    x, y = _gelu_data(300, 6)
    xd, yd = np.hstack([x, x[:, :1]]), np.hstack([y, y[:, :1]])
    ref = affinity_score(xd, yd, eps=0.0)
    calls = []
    real = affinity_mod._map_eigh_torch
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    monkeypatch.setattr(affinity_mod, "_map_eigh_torch", lambda *a: calls.append(1) or real(*a))
    dev = affinity_score(xd, yd, eps=0.0, device="cpu")
    assert calls == [1]
    assert dev.status == "ok" and 0 < dev.score < 1
    _same(ref, dev, tol=1e-8)


def test_known_answers_on_the_torch_path(torch_path):
    scores, sweep = _reference_stream(device="cpu")
    for name, want in (("relu", 0.487422), ("tanh", 0.669752), ("sigmoid", 0.774861)):
        assert scores[name].status == "ok"
        assert float(scores[name]) == pytest.approx(want, abs=1e-4)
    expected = [1, 1, 1, 1, 1, 0.131587, 0.319877, 0.435423, 0.526278, 0.627161, 0.716275,
                0.792085, 0.870309, 0.940124, 0.993314, 1, 1, 1, 1, 1]  # fmt: skip
    np.testing.assert_allclose([r.score for r in sweep], expected, atol=1e-4)
    assert sweep[5].score == pytest.approx(0.131587, abs=2e-6)
    assert [r.status for r in sweep[:5]] == ["degenerate"] * 5
    assert all(r.status == "ok" for r in sweep[5:])
    np.testing.assert_allclose([r.score for r in sweep[15:]], 1.0, atol=1e-12)
    absolute, sweep_abs = _reference_stream(device="cpu", ridge="absolute")
    assert float(absolute["relu"]) == pytest.approx(0.487422, abs=1e-4)
    assert sweep_abs[5].score == pytest.approx(0.133877, abs=2e-6)


@pytest.mark.parametrize(("k", "expected"), [(1, 1.0), (3, 0.7112), (11, 0.3995), (41, 0.2048)])
def test_polynomials_on_the_torch_path(k, expected, torch_path):
    x = np.linspace(-1, 1, 1000)
    assert float(affinity_score(x, x**k, device="cpu")) == pytest.approx(expected, abs=1e-4)


def test_known_answers_match_the_numpy_path_closely(monkeypatch):
    ref, ref_sweep = _reference_stream()
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    dev, dev_sweep = _reference_stream(device="cpu")
    for name in ref:
        _same(ref[name], dev[name], tol=1e-12)
    for a, b in zip(ref_sweep, dev_sweep, strict=True):
        _same(a, b, tol=1e-12)


def test_statuses_are_the_same_on_the_torch_path(monkeypatch):
    x, y = _gelu_data(200, 5)
    bad = x.copy()
    bad[3, 1] = np.nan
    cases = {
        "dead output": (x, np.zeros_like(y)),
        "constant input": (np.full_like(x, 3.0), y),
        "nearly constant output": (x, 5.0 + 1e-9 * y),
        "tiny scale": (1e-6 * x, 1e-6 * y),
        "shape mismatch": (x, y[:, :3]),
        "non-finite": (bad, y),
        "too few samples": (x[:6], y[:6]),
        "unequal sizes": (x, y[:150]),
    }
    ref = {k: affinity_score(a, b) for k, (a, b) in cases.items()}
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    dev = {k: affinity_score(a, b, device="cpu") for k, (a, b) in cases.items()}
    assert [r.status for r in dev.values()] == [
        "degenerate", "degenerate", "degenerate", "ok", "shape_mismatch", "non_finite",
        "too_few_samples", "ok",
    ]  # fmt: skip
    for k in cases:
        assert ref[k].status == dev[k].status, k
        assert ref[k].message == dev[k].message, k
        if np.isfinite(ref[k].score):
            assert dev[k].score == pytest.approx(ref[k].score, abs=1e-10), k
        else:
            assert np.isnan(dev[k].score), k
    with pytest.raises(ValueError, match="2-D"):
        affinity_score(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), device="cpu")
    with pytest.raises(ValueError, match="at least 2 samples"):
        affinity_score(np.ones((1, 3)), np.ones((1, 3)), device="cpu")


def test_tensor_inputs_are_not_modified(monkeypatch):
    x, y = _gelu_data(300, 7)
    xt, yt = torch.from_numpy(x.copy()).float(), torch.from_numpy(y.copy()).float()
    ref = affinity_score(xt, yt)
    before = xt.clone(), yt.clone()
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    res = affinity_score(xt, yt, device="cpu")
    assert torch.equal(xt, before[0]) and torch.equal(yt, before[1])
    _same(ref, res)


def test_a_cpu_device_keeps_the_numpy_path_bit_for_bit():
    x, y = _gelu_data(300, 12)
    a = affinity_score(x, y)
    b = affinity_score(x, y, device="cpu")
    c = affinity_score(x, y, device=torch.device("cpu"))
    assert a == b == c  # every field equal: the same computation


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        affinity_score(np.eye(3), np.eye(3), device="cuda")


@CUDA
@pytest.mark.parametrize(("n", "d"), [(512, 8), (512, 64), (600, 300), (40, 160)])
def test_cuda_path_equals_numpy_path(n, d):
    x, y = _gelu_data(n, d)
    ref = affinity_score(x, y)
    dev = affinity_score(x, y, device="cuda")
    _same(ref, dev, tol=1e-9)
    on_gpu = affinity_score(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), device="cuda")
    _same(ref, on_gpu, tol=1e-9)


@CUDA
def test_cuda_known_answers_and_statuses():
    scores, sweep = _reference_stream(device="cuda")
    assert float(scores["relu"]) == pytest.approx(0.487422, abs=1e-4)
    assert float(scores["tanh"]) == pytest.approx(0.669752, abs=1e-4)
    assert float(scores["sigmoid"]) == pytest.approx(0.774861, abs=1e-4)
    assert [r.status for r in sweep[:5]] == ["degenerate"] * 5


# --- the lens ---------------------------------------------------------------------------------


def _small_model():
    """A built-in CNN (conv sites: positions as samples) on 8×8 single-channel inputs."""
    from netxray.models import build_model, default_config

    torch.manual_seed(0)
    return build_model(default_config("cnn", [1, 8, 8], 4, channels=[8, 16])).eval()


def _compare(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> None:
    assert list(a["site"]) == list(b["site"]) and list(a["status"]) == list(b["status"])
    for col in ("affinity", "null_affinity", "w2_sq", "two_tr_cov_y", "cka", "r2"):
        np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=0, atol=tol)


def test_signature_device_cpu_equals_the_default(monkeypatch):
    from netxray.lenses.nonlinearity import nonlinearity_signature

    model = _small_model()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {"seed": 0, "null_baseline": True, "n_samples": 600}
    default = nonlinearity_signature(model, x, **kw)
    on_cpu = nonlinearity_signature(model, x, **kw, device="cpu")
    assert len(default) >= 2 and (default["status"] == "ok").all()
    pd.testing.assert_frame_equal(default, on_cpu)  # the numpy path: identical
    calls = []
    real = affinity_mod._wasserstein2_squared_torch
    monkeypatch.setattr(affinity_mod, "_on_accelerator", lambda dev: True)
    monkeypatch.setattr(affinity_mod, "_wasserstein2_squared_torch",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    torch_cpu = nonlinearity_signature(model, x, **kw, device="cpu")
    assert len(calls) == 2 * len(default)  # every site and its null baseline on the torch path
    _compare(default, torch_cpu, tol=1e-10)


@CUDA
def test_signature_on_cuda_equals_the_default():
    from netxray.lenses.nonlinearity import nonlinearity_signature

    model = _small_model()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {"seed": 0, "null_baseline": True, "n_samples": 600}
    default = nonlinearity_signature(model, x, **kw)
    cuda = nonlinearity_signature(model, x, **kw, device="cuda")
    _compare(default, cuda, tol=1e-6)  # the model's forward runs on the GPU too (float32)
