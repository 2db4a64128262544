"""The float32 kNN graph with its exact float64 re-check is the float64 graph (SPEC §2.1)."""

from __future__ import annotations

import numpy as np
import pytest

from netxray.measures.modularity import _float32_error_bound, faiss_available, knn_graph, modularity

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (extra netxray[fast])")


def _cases():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    x = 0.3 * rng.normal(size=(5, 32))[y] + rng.normal(size=(400, 32))
    yield "gaussian", x
    yield "rounded (many exact ties)", np.round(x, 0)
    yield "duplicated rows", np.repeat(x[:100], 4, axis=0)
    yield "near-ties below float32 resolution", x[:1] + 1e-9 * rng.normal(size=(400, 32))
    zero = x.copy()
    zero[::37] = 0.0  # all-zero rows: cosine 0 with everything
    yield "zero rows", zero
    yield "negative similarities", np.concatenate([x[:200], -x[:200]]) + 0.01 * x[:400]
    yield "one feature", x[:, :1]
    yield "wide", rng.normal(size=(150, 3000))


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
@pytest.mark.parametrize("k", [1, 3, 12])  # 12 takes the partition path
def test_float32_graph_is_the_float64_graph(k, backend):
    """Both float32 candidate sources (numpy blocks, faiss's exact IndexFlatIP) give the
    float64 graph, ties included: the rounded, duplicated and near-tie cases put many rows
    through the near-tie re-check, where faiss's own tie order must not leak through."""
    for name, x in _cases():
        # several blocks, a ragged last one
        a32, clipped32 = knn_graph(x, k=k, block_size=97, backend=backend)
        a64, clipped64 = knn_graph(x, k=k, precision="float64", block_size=97)
        assert clipped32 == clipped64, name
        # same edges, and weights are float64 similarities (to the last bits of a dot product)
        assert (a32 != 0).toarray().tolist() == (a64 != 0).toarray().tolist(), name
        assert abs(a32 - a64).max() <= 1e-14, name


def test_same_q_as_the_float64_graph():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 1200)
    x = 0.2 * rng.normal(size=(10, 64))[y] + rng.normal(size=(1200, 64))
    q32 = modularity(x, y, k=3).q
    from netxray.measures.modularity import _normalize_rows, _topk_graph, newman_modularity

    xn, _ = _normalize_rows(x)
    # every similarity from one float64 product, the top k straight from it
    adj64, _ = _topk_graph(lambda b0, b1: xn[b0:b1] @ xn.T, len(xn), 3, 256)
    assert q32 == pytest.approx(newman_modularity(adj64, y)[0], abs=1e-12)


def test_error_bound_is_rigorous_and_grows_with_width():
    rng = np.random.default_rng(2)
    for m in (1, 16, 1024):
        x = rng.normal(size=(200, m))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x32 = x.astype(np.float32)
        err = np.abs((x32 @ x32.T).astype(np.float64) - x @ x.T).max()
        assert err <= _float32_error_bound(m)
    assert _float32_error_bound(16) < _float32_error_bound(1024) < 1e-4
    with pytest.raises(ValueError, match="precision"):
        knn_graph(np.eye(4), k=1, precision="float16")


@needs_faiss
def test_faiss_backend_same_graph_and_q_at_larger_n_and_clear_errors():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 10, 3000)
    x = (0.2 * rng.normal(size=(10, 48))[y] + rng.normal(size=(3000, 48))).astype(np.float32)
    x[100:110] = x[100]  # a block of duplicates: exact ties at every place
    a_np, _ = knn_graph(x, k=3, backend="numpy")
    a_fa, _ = knn_graph(x, k=3, backend="faiss")
    assert (a_np != a_fa).nnz == 0
    assert modularity(x, y, backend="faiss").q == modularity(x, y, backend="numpy").q
    # k + 2 > N: too few rows for the search; the numpy path answers
    small = rng.normal(size=(4, 3))
    assert (knn_graph(small, k=3, backend="faiss")[0] != knn_graph(small, k=3, backend="numpy")[0]).nnz == 0
    with pytest.raises(ValueError, match="backend"):
        knn_graph(x, k=3, backend="annoy")
    with pytest.raises(ValueError, match="float32"):
        knn_graph(x, k=3, backend="faiss", precision="float64")


@pytest.mark.parametrize("k", [1, 3])
def test_device_gram_path_gives_the_cpu_graph(k, monkeypatch):
    """The accelerator path of knn_graph_from_gram / modularity_from_gram (similarity blocks
    and top-k where the Gram lives, ties at the k-th place resolved by the numpy rule), run
    here on CPU tensors: the same graph and the same Q and status as the numpy path, on the
    tie-heavy cases. (On a GPU the same code runs on CUDA tensors: see the CUDA test below.)"""
    import torch

    from netxray.measures import modularity as M

    rng = np.random.default_rng(4)
    for name, x in _cases():
        g = x @ x.T
        a_np, c_np = M.knn_graph_from_gram(g, k=k, block_size=97)
        a_t, c_t = M._topk_graph_gram_torch(torch.from_numpy(g), k, 97)
        assert c_np == c_t and (a_np != a_t).nnz == 0, name
    monkeypatch.setattr(M, "_on_accelerator", lambda t: isinstance(t, torch.Tensor))
    y = rng.integers(0, 3, 400)
    for name, x in [*_cases(), ("identical rows", np.ones((400, 5)))]:
        g = x @ x.T
        r_np = M.modularity_from_gram(g, y[: len(g)], k=k)
        r_t = M.modularity_from_gram(torch.from_numpy(g), y[: len(g)], k=k)
        assert r_np.status == r_t.status and (r_np.q == r_t.q or np.isnan(r_np.q) and np.isnan(r_t.q)), name


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gram_gives_the_cpu_graph():
    import torch

    from netxray.measures.modularity import knn_graph_from_gram, modularity_from_gram

    for name, x in _cases():
        g = x @ x.T
        a_cpu, _ = knn_graph_from_gram(g, k=3)
        a_gpu, _ = knn_graph_from_gram(torch.from_numpy(g).cuda(), k=3)
        assert (a_cpu != a_gpu).nnz == 0, name
        y = np.arange(len(g)) % 4
        assert modularity_from_gram(g, y).q == modularity_from_gram(torch.from_numpy(g).cuda(), y).q


@pytest.mark.parametrize("tile", [2, 3, 61, None])  # tiles narrower than k + 1 included
def test_symmetric_tiles_give_the_brute_force_edge_set(tile):
    """The default float32 path multiplies each tile pair once (S[I, J], J ≥ I, read by rows and
    by columns): its kNN edge set is the one of a float64 brute force written out here (dense
    S, self excluded, each row's k largest), and Q matches networkx to 1e-9."""
    import networkx as nx

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    x = 0.4 * rng.normal(size=(4, 24))[y] + rng.normal(size=(300, 24))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, -np.inf)
    k = 3
    nbrs = np.argsort(-s, axis=1, kind="stable")[:, :k]
    brute = {(i, int(j)) for i in range(300) for j in nbrs[i]}
    brute_sym = brute | {(j, i) for i, j in brute}
    a, _ = knn_graph(x, k=k, block_size=tile)
    coo = a.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist(), strict=True)) == brute_sym
    g = nx.Graph()
    g.add_nodes_from(range(300))
    g.add_weighted_edges_from(
        (int(i), int(j), float(w))
        for i, j, w in zip(coo.row, coo.col, coo.data, strict=True)
        if i < j
    )
    q_nx = nx.community.modularity(
        g, [set(np.flatnonzero(y == c).tolist()) for c in range(4)], weight="weight"
    )
    assert modularity(x, y, k=k, block_size=tile).q == pytest.approx(q_nx, abs=1e-9)
