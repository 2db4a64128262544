"""Lens 2, SPEC §2.1: the kNN cosine graph and Newman modularity, plus the curve on a trained model."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from netxray.measures.modularity import (
    knn_graph,
    modularity,
    modularity_from_gram,
    newman_modularity,
)


def _blobs(n_per: int, n_classes: int, dim: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    centers = rng.normal(size=(n_classes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = sep * centers[y] + rng.normal(size=(len(y), dim))
    return x, y


def _nx_q(adj, labels) -> float:
    g = nx.from_scipy_sparse_array(adj)
    comms = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(g, comms, weight="weight")


# ------------------------------------------------------------------ known answers


def test_separable_classes_reach_the_ceiling():
    # classes along orthogonal axes, far from each other: every kNN edge stays in its class
    x, y = _blobs(60, 4, 4, 0.0, 0)
    x = 50.0 * np.eye(4)[y] + np.random.default_rng(1).normal(size=x.shape)
    r = modularity(x, y, k=3)
    assert r.f_in == pytest.approx(1.0, abs=1e-12)
    assert r.q == pytest.approx(r.q_max, abs=1e-12)
    assert r.q_rel == pytest.approx(1.0, abs=1e-12)
    # four balanced classes of equal strength: Q_max = 1 - 4 * (1/4)^2 up to strength imbalance
    assert 0.7 < r.q_max <= 0.75 + 1e-12
    assert r.status == "ok" and r.n_clipped == 0


def test_qmax_of_ten_balanced_classes_is_about_point_nine():
    x, y = _blobs(50, 10, 32, 6.0, 2)
    r = modularity(x, y)
    assert r.q_max == pytest.approx(0.9, abs=0.01)
    assert 0 < r.q <= r.q_max


def test_shuffled_labels_give_near_zero_q():
    # under random labels E[Q] ≈ 0 with std ≈ sqrt(0.9·0.1/1500) ≈ 0.008 for N=500, k=3
    x, y = _blobs(50, 10, 16, 4.0, 3)
    assert modularity(x, y).q > 0.3  # the structure is there with the true labels
    qs = []
    for seed in range(10):
        yp = np.random.default_rng(seed).permutation(y)
        qs.append(modularity(x, yp).q)
    assert max(abs(q) for q in qs) < 0.03
    assert abs(float(np.mean(qs))) < 0.01


# ------------------------------------------------------------------ invariances


def test_invariances():
    x, y = _blobs(40, 5, 12, 2.0, 4)
    base = modularity(x, y, k=4)
    # positive rescaling, global and per sample (cosine similarity ignores norms)
    assert modularity(7.5 * x, y, k=4).q == pytest.approx(base.q, abs=1e-12)
    scales = np.random.default_rng(5).uniform(0.1, 10, size=(len(x), 1))
    assert modularity(scales * x, y, k=4).q == pytest.approx(base.q, abs=1e-12)
    # permuting nodes together with their labels
    perm = np.random.default_rng(6).permutation(len(x))
    assert modularity(x[perm], y[perm], k=4).q == pytest.approx(base.q, abs=1e-12)
    # renaming classes (any hashable labels)
    names = np.array(["cat", "dog", "emu", "fox", "gnu"])[(y + 2) % 5]
    renamed = modularity(x, names, k=4)
    assert renamed.q == pytest.approx(base.q, abs=1e-12)
    assert renamed.f_in == pytest.approx(base.f_in, abs=1e-12)


# ------------------------------------------------------------------ graph construction


def _angles(*deg):
    t = np.deg2rad(np.array(deg, dtype=np.float64))
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def test_mutual_and_one_way_edge_weights_by_hand():
    # unit vectors at 0°, 10°, 30°, 100°; k = 1:
    # 0 -> 1 and 1 -> 0 (mutual, cos 10°), 2 -> 1 (one way, cos 20°), 3 -> 2 (one way, cos 70°)
    x = _angles(0, 10, 30, 100)
    a, n_neg = knn_graph(3.0 * x, k=1)  # scaled: cosine, not dot product
    a = a.toarray()
    c = lambda deg: math.cos(math.radians(deg))  # noqa: E731
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = c(10)  # mutual keeps the full weight
    expected[1, 2] = expected[2, 1] = c(20) / 2  # one-way edge: half
    expected[2, 3] = expected[3, 2] = c(70) / 2
    np.testing.assert_allclose(a, expected, atol=1e-12)
    assert n_neg == 0
    # Q by hand with communities {0, 1} and {2, 3}
    s = expected.sum(1)
    two_w = s.sum()
    within = 2 * (expected[0, 1] + expected[2, 3])
    sc = np.array([s[0] + s[1], s[2] + s[3]])
    q_hand = (within - (sc**2).sum() / two_w) / two_w
    r = modularity(x, [0, 0, 1, 1], k=1)
    assert r.q == pytest.approx(q_hand, abs=1e-12)
    assert r.f_in == pytest.approx(within / two_w, abs=1e-12)


def test_self_is_never_a_neighbour_even_for_duplicates():
    # duplicates have cosine 1 with each other; a node must still not pick itself
    x = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    a, _ = knn_graph(x, k=1)
    assert a.diagonal().sum() == 0
    np.testing.assert_allclose(a.toarray(), [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])


def test_negative_weights_are_clipped_and_counted():
    # three directions 120° apart: every neighbour has cosine -1/2
    x = _angles(0, 120, 240)
    r = modularity(x, [0, 1, 1], k=1)
    assert r.n_clipped == 3
    assert r.status == "no_edges" and math.isnan(r.q)
    # 170° reaches 175° and then 300° (130° away, cosine < 0): that edge is clipped and
    # counted; 175° likewise reaches 300° (125°) — exactly two negative directed edges
    x = _angles(0, 5, 170, 175, 300)
    a, n_neg = knn_graph(x, k=2)
    assert n_neg == 2
    assert a.data.min() > 0 and a[2, 4] == 0 and a[3, 4] == 0
    r = modularity(x, [0, 0, 1, 1, 0], k=2)
    assert r.n_clipped == 2 and r.status == "ok"


@pytest.mark.parametrize("k", [1, 3, 10])
def test_agrees_with_networkx(k):
    x, y = _blobs(40, 6, 8, 1.5, 7 + k)
    x[:5] -= 3 * x[:5].mean(0)  # a few nodes pointing the other way, to exercise clipping
    r = modularity(x, y, k=k, return_graph=True)
    assert abs(_nx_q(r.graph, y) - r.q) < 1e-9
    q, f_in, q_max = newman_modularity(r.graph, y)
    assert (q, f_in, q_max) == (r.q, r.f_in, r.q_max)


def test_block_size_and_gram_paths_agree():
    x, y = _blobs(30, 4, 20, 1.0, 11)
    full = modularity(x, y, k=5, return_graph=True)
    blocked = modularity(x, y, k=5, block_size=7, return_graph=True)
    # same edges; weights equal up to BLAS rounding of differently shaped products
    assert (full.graph != 0).nnz == (blocked.graph != 0).nnz
    assert abs(full.graph - blocked.graph).max() < 1e-14
    gram = modularity_from_gram(x @ x.T, y, k=5, d=x.shape[1])
    assert gram.q == pytest.approx(full.q, abs=1e-12)
    assert gram.d == full.d == 20


def test_torch_and_nd_inputs():
    torch = pytest.importorskip("torch")
    x, y = _blobs(20, 3, 12, 2.0, 12)
    base = modularity(x, y)
    r = modularity(torch.tensor(x.reshape(60, 3, 2, 2)), torch.tensor(y))
    assert r.q == pytest.approx(base.q, abs=1e-12) and r.d == 12


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors():
    x, y = _blobs(10, 2, 4, 1.0, 13)
    with pytest.raises(ValueError, match="labels do not match the samples"):
        modularity(x, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        modularity(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="k must be smaller than the number of samples"):
        modularity(x, y, k=len(x))
    with pytest.raises(ValueError, match="k must be >= 1"):
        modularity(x, y, k=0)
    with pytest.raises(ValueError, match="2-D array"):
        modularity(x[:, 0], y)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        modularity(bad, y)
    with pytest.raises(ValueError, match="1-D array"):
        modularity(x, y[:, None])
