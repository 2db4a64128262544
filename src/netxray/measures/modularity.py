"""Modularity of a layer's representation: kNN cosine graph + Newman Q with the classes as communities.

SPEC §2.1 (Lu et al., ECCV 2022). For features F (N × M) and labels c (N):

1. S = F̂ F̂ᵀ, the cosine similarity of row-normalized features; the diagonal is masked with −∞
   so a node never picks itself (the reference code used 0, which lets it).
2. Directed kNN graph: node i links to its k most similar nodes with weight S_ij.
3. A = (A_dir + A_dirᵀ)/2: a mutual pair keeps weight s, a one-way edge gets s/2. Negative
   weights are clipped to 0 and counted (modularity is ill-defined with them).
4. Q = (1/2W) Σ_ij (A_ij − s_i s_j / 2W) δ(c_i, c_j), s_i = Σ_j A_ij, 2W = Σ_i s_i, computed as
   Q = [tr(Eᵀ A E) − ‖Eᵀ s‖² / 2W] / 2W with the one-hot class matrix E (N × C).
5. f_in = tr(Eᵀ A E) / 2W (weighted within-class edge fraction), Q_max = 1 − Σ_c (S_c/2W)²
   (S_c the strength of class c), so Q = f_in − (Q ceiling gap) and Q = Q_max ⇔ f_in = 1.

Everything returned is float64 and sparse. The similarities are computed in float32 tiles, each
pair of tiles once (S is symmetric), and a node's top k + 1 is kept as the tiles stream by, so
memory is two tiles plus O(N·k) rather than O(N²); every neighbour within the float32 error
bound of the k-th is re-ranked by float64 dot products, so the edge set and the weights are the
float64 graph's (:func:`_topk_graph_symmetric`). The graph has at most N·k directed edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ModularityResult",
    "knn_graph",
    "faiss_available",
    "knn_graph_from_gram",
    "modularity",
    "modularity_from_gram",
    "newman_modularity",
]

# Rows of the similarity matrix computed at once: block × N float64 ≈ 64 MiB at most.
_BLOCK_BYTES = 64 * 2**20
# up to this k the top-k of a row is found by k argmax scans, beyond by a partition
_ARGMAX_K = 8
# rows whose cosine similarity with each other is at least 1 − this share one direction
_SAME_DIRECTION = 1e-10


@dataclass
class ModularityResult:
    """Modularity of one layer's kNN graph with the true classes as communities.

    Attributes: ``q`` (Newman Q), ``f_in`` (within-class edge weight fraction), ``q_max``
    (ceiling of Q for these class strengths), ``q_rel`` (Q / Q_max), ``n_clipped`` (directed kNN
    edges whose cosine similarity was negative, clipped to 0), ``n_zero_rows`` (all-zero feature
    rows: cosine undefined, treated as similarity 0 to everything), ``n``, ``k``, ``d``,
    ``n_classes``, ``n_edges`` (undirected edges with positive weight), ``status`` and
    ``graph`` (the symmetric sparse adjacency when requested, else None).

    Status (Q is NaN unless ``ok``): ``ok``; ``identical_rows`` — every feature row has the
    same direction (cosine similarity ≥ 1 − 1e-10 between all pairs, e.g. a constant input
    through a network with biases, or constant rows): every kNN choice is a tie broken by the
    sample order, so Q would measure the order, not the representation; ``zero_rows`` — every
    row is zero (no direction at all); ``no_edges`` — every kNN weight was ≤ 0.
    """

    q: float
    f_in: float
    q_max: float
    q_rel: float
    n_clipped: int
    n_zero_rows: int
    n: int
    k: int
    d: int
    n_classes: int
    n_edges: int
    status: str = "ok"
    graph: sp.csr_matrix | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The scalar fields as a plain dict (the graph left out)."""
        out = asdict(self)
        out.pop("graph")
        return out


# --------------------------------------------------------------------------- validation


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer number of neighbours, got {type(k).__name__}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k >= n:
        raise ValueError(
            f"k must be smaller than the number of samples (each node needs k other nodes): "
            f"got k={k} with N={n} samples"
        )
    return k


def _as_features(features: Any) -> np.ndarray:
    x = features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    if x.ndim < 2:
        raise ValueError(
            f"features must be a 2-D array (N samples × M features), got shape {x.shape}"
        )
    if x.ndim > 2:  # SPEC §2.1: features are flattened, never pooled
        x = x.reshape(x.shape[0], -1)
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"features must be real numbers, got dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"features contain NaN or infinite values in {bad} of {x.shape[0]} rows")
    return x


def _encode_labels(labels: Any, n: int) -> tuple[np.ndarray, int]:
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of N class labels, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(
            f"labels do not match the samples: {y.shape[0]} labels for {n} feature rows"
        )
    _, codes = np.unique(y, return_inverse=True)
    n_classes = int(codes.max()) + 1 if codes.size else 0
    if n_classes < 2:
        raise ValueError(
            f"modularity with the classes as communities needs at least 2 classes, "
            f"got {n_classes} distinct label(s)"
        )
    return codes.astype(np.int64), n_classes


# --------------------------------------------------------------------------- graph


def _block_rows(n: int, block_size: int | None) -> int:
    if block_size is None:
        return max(1, min(n, _BLOCK_BYTES // (8 * max(n, 1))))
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return int(block_size)


def _topk_graph(sim_block, n: int, k: int, block: int) -> tuple[sp.csr_matrix, int]:
    """Build the symmetric kNN graph from a function giving rows [b0, b1) of the similarity."""
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float64)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        s = sim_block(b0, b1)  # (b1 - b0, n), float64, may be modified
        rows = np.arange(b1 - b0)
        s[rows, b0 + rows] = -np.inf  # self excluded
        if k <= _ARGMAX_K:
            # small k: k linear argmax scans beat a partition (introselect) of every row by
            # ~10×; ties go to the lowest index, deterministically
            for j in range(k):
                best = np.argmax(s, axis=1)
                idx[b0:b1, j] = best
                val[b0:b1, j] = s[rows, best]
                s[rows, best] = -np.inf
        else:
            # the k largest similarities sit in the last k columns after a partition at n − k
            part = np.argpartition(s, n - k, axis=1)[:, n - k :]
            idx[b0:b1] = part
            val[b0:b1] = np.take_along_axis(s, part, axis=1)
    return _graph_from_topk(idx, val, n, k)


def _float32_error_bound(m: int, u: float = 2.0**-24) -> float:
    """Rigorous bound on |fl(x̂·ŷ) − x̂·ŷ| for unit vectors of length m rounded to a float type.

    Any summation order (BLAS blocking, FMA) gives |fl(xᵀy) − xᵀy| ≤ γ_m |x|ᵀ|y| with
    γ_m = m·u/(1 − m·u), u the unit roundoff (2⁻²⁴ float32, 2⁻⁵³ float64; Higham, Accuracy and
    Stability, §3.1), and |x|ᵀ|y| ≤ 1 for unit vectors; rounding each unit vector to the type
    adds ≤ (2u + u²)·|x|ᵀ|y|.
    """
    gamma = (m * u) / (1.0 - m * u) if m * u < 0.5 else np.inf
    return float(gamma * (1.0 + 2.0 * u + u * u) + 2.0 * u + u * u)


def _topk_graph_rechecked(
    xn: np.ndarray, k: int, block: int, dtype: type = np.float32
) -> tuple[sp.csr_matrix, int]:
    """kNN graph from blockwise products in ``dtype`` + a float64 re-check of the candidates.

    Each block of the similarity is one product in ``dtype`` (float32: half the bytes and
    about half the time of float64). Every j whose similarity is within 4δ of row i's k-th
    largest (δ: :func:`_float32_error_bound` for ``dtype``, rigorous) may be a top-k neighbour;
    those candidates, usually exactly k, are recomputed as float64 dot products and the top k
    taken from them (largest first, ties to the lowest index). A node left out is more than 4δ
    below a value within δ of the truth, so its float64 value is below the k-th candidate's:
    whatever ``dtype`` found the candidates, the chosen neighbours and their float64 weights
    are the same — float32 and float64 give the same graph (exact ties included, as both
    break them on the same float64 dot products).
    """
    n, m = xn.shape
    x32 = xn.astype(dtype)
    delta = 2.0 * _float32_error_bound(m, 2.0**-24 if dtype == np.float32 else 2.0**-53)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float64)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        rows = np.arange(b1 - b0)
        s = x32[b0:b1] @ x32.T
        s[rows, b0 + rows] = -np.inf  # self excluded
        if k <= _ARGMAX_K:
            # k + 1 argmax scans (cheaper than a partition for small k): the top k in float32
            # and the next value; a row whose next value is more than 2δ below its k-th has
            # exactly its top k as candidates, which covers almost every row
            taken = np.empty((b1 - b0, k + 1), dtype=np.int64)
            saved = np.empty((b1 - b0, k + 1), dtype=s.dtype)  # float64 path: never rounded
            for j in range(k + 1):
                best = np.argmax(s, axis=1)
                taken[:, j] = best
                saved[:, j] = s[rows, best]
                s[rows, best] = -np.inf
            for j in range(k + 1):  # restore the block for the rows re-checked below
                s[rows, taken[:, j]] = saved[:, j]
            clear = saved[:, k].astype(np.float64) < saved[:, k - 1].astype(np.float64) - 2.0 * delta
            cand_r = np.repeat(rows[clear], k)
            cand_c = taken[clear, :k].ravel()
            hard = rows[~clear]
        else:
            cand_r = cand_c = np.zeros(0, dtype=np.int64)
            hard = rows
        if len(hard):  # near-ties at the k-th place: every entry within 4δ is a candidate
            hr, hc = _near_ties(s[hard], n, k, delta)
            cand_r = np.concatenate([cand_r, hard[hr]])
            cand_c = np.concatenate([cand_c, hc])
        idx[b0:b1], val[b0:b1] = _pick_exact(xn, b0, b1 - b0, cand_r, cand_c, k)
    return _graph_from_topk(idx, val, n, k)


def _tile_top(t: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """The k1 largest entries of each row of the tile ``t`` (destroyed), largest first, by k1
    argmax scans: (columns, values), each (rows, k1). Where a row has fewer than k1 finite
    entries the rest are (−1, −inf)."""
    rows = np.arange(t.shape[0])
    cols = np.empty((t.shape[0], k1), dtype=np.int64)
    vals = np.empty((t.shape[0], k1), dtype=np.float64)
    for j in range(k1):
        best = np.argmax(t, axis=1)
        v = t[rows, best].astype(np.float64)
        cols[:, j] = np.where(np.isneginf(v), -1, best)
        vals[:, j] = v
        t[rows, best] = -np.inf
    return cols, vals


def _transposed(t: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of tᵀ (torch's blocked transpose: ~3× numpy's strided copy here)."""
    import torch

    return torch.from_numpy(t).t().contiguous().numpy()


def _merge_top(
    cols: np.ndarray, vals: np.ndarray, new_cols: np.ndarray, new_vals: np.ndarray, k1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top k1 of two (rows, k1) candidate lists with disjoint columns, largest first."""
    c = np.concatenate([cols, new_cols], axis=1)
    v = np.concatenate([vals, new_vals], axis=1)
    order = np.argsort(-v, axis=1, kind="stable")[:, :k1]
    return np.take_along_axis(c, order, axis=1), np.take_along_axis(v, order, axis=1)


def _topk_graph_symmetric(xn: np.ndarray, k: int, tile: int) -> tuple[sp.csr_matrix, int]:
    """The graph of :func:`_topk_graph_rechecked` (float32) computing each similarity once.

    S = X̂X̂ᵀ is symmetric, so only the tiles S[I, J] with J ≥ I are multiplied (N²d flops
    instead of 2N²d): each tile gives the top k + 1 of its rows (for the nodes of I) and of its
    columns (for the nodes of J, from the transposed tile), merged into a running top k + 1 per
    node. At the end each node has the k + 1 largest float32 similarities of its whole row —
    every entry of S is within δ of the true cosine whichever tile and summation order produced
    it (:func:`_float32_error_bound` bounds any order). As in :func:`_topk_graph_rechecked`, a
    node whose (k+1)-th value is more than 2δ below its k-th has exactly its top k as
    candidates; any other node (a near-tie at the k-th place, rare) gets its whole row
    recomputed in float32 and every entry within 2δ of its k-th taken. The candidates are then
    ranked by float64 dot products: the same neighbours and weights as the float64 search.
    Memory: two tiles (tile² float32 each) and O(N·k), whatever N.
    """
    n, m = xn.shape
    x32 = xn.astype(np.float32)
    delta = 2.0 * _float32_error_bound(m)
    k1 = k + 1
    top_c = np.full((n, k1), -1, dtype=np.int64)
    top_v = np.full((n, k1), -np.inf)
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            j1 = min(n, j0 + tile)
            t = x32[i0:i1] @ x32[j0:j1].T
            if j0 == i0:  # the diagonal tile: its rows are all the nodes of I need from it
                r = np.arange(i1 - i0)
                t[r, r] = -np.inf  # self excluded
                c, v = _tile_top(t, k1)
                top_c[i0:i1], top_v[i0:i1] = _merge_top(
                    top_c[i0:i1], top_v[i0:i1], np.where(c >= 0, c + i0, -1), v, k1
                )
                continue
            tt = _transposed(t)  # the columns' view, for the nodes of J
            c, v = _tile_top(t, k1)
            top_c[i0:i1], top_v[i0:i1] = _merge_top(
                top_c[i0:i1], top_v[i0:i1], np.where(c >= 0, c + j0, -1), v, k1
            )
            c, v = _tile_top(tt, k1)
            top_c[j0:j1], top_v[j0:j1] = _merge_top(
                top_c[j0:j1], top_v[j0:j1], np.where(c >= 0, c + i0, -1), v, k1
            )
    clear = top_v[:, k] < top_v[:, k - 1] - 2.0 * delta
    return _graph_from_topk(*_rerank_exact(xn, x32, top_c, clear, k, delta, tile), n, k)


def _rerank_exact(
    xn: np.ndarray, x32: np.ndarray, top: np.ndarray, clear: np.ndarray, k: int, delta: float, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each node's exact k nearest neighbours, ``block`` rows at a time: a row whose float32 top
    k is ``clear`` of its (k+1)-th by more than 2δ keeps those k as candidates; a row with a
    near-tie at the k-th place takes every entry within 2δ of it (the whole row recomputed);
    the candidates are then ranked in float64 (:func:`_pick_exact`). (columns, similarities)."""
    n = len(xn)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float64)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        rows = np.arange(b1 - b0)
        ok = clear[b0:b1]
        cand_r = np.repeat(rows[ok], k)
        cand_c = top[b0:b1][ok, :k].ravel()
        hard = rows[~ok]
        if len(hard):
            s = x32[b0 + hard] @ x32.T
            s[np.arange(len(hard)), b0 + hard] = -np.inf
            hr, hc = _near_ties(s, n, k, delta)
            cand_r = np.concatenate([cand_r, hard[hr]])
            cand_c = np.concatenate([cand_c, hc])
        idx[b0:b1], val[b0:b1] = _pick_exact(xn, b0, b1 - b0, cand_r, cand_c, k)
    return idx, val


def _near_ties(s: np.ndarray, n: int, k: int, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every entry of the rounded similarity rows ``s`` (self already −∞)
    within 2δ of its row's k-th largest: the candidates of rows with a near-tie at k."""
    kth = np.partition(s, n - k, axis=1)[:, n - k].astype(np.float64)
    return np.nonzero(s >= (kth - 2.0 * delta)[:, None])


def _pick_exact(
    xn: np.ndarray, b0: int, nrows: int, cand_r: np.ndarray, cand_c: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of each row b0 + r among its candidates, by float64 dot products (largest
    first, ties to the lowest column index): (columns, similarities), each (nrows, k)."""
    exact = np.einsum("ij,ij->i", xn[b0 + cand_r], xn[cand_c])
    order = np.lexsort((cand_c, -exact, cand_r))
    cand_r, cand_c, exact = cand_r[order], cand_c[order], exact[order]
    starts = np.searchsorted(cand_r, np.arange(nrows))
    pick = (starts[:, None] + np.arange(k)[None, :]).ravel()
    return cand_c[pick].reshape(-1, k), exact[pick].reshape(-1, k)


def faiss_available() -> bool:
    """Whether the optional exact-search backend (``faiss``, extra ``netxray[fast]``) imports."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _topk_graph_faiss(xn: np.ndarray, k: int, block: int) -> tuple[sp.csr_matrix, int]:
    """The graph of :func:`_topk_graph_rechecked` with the float32 candidates from faiss.

    An exact inner-product index (``IndexFlatIP``, no approximation) returns each row's k + 2
    largest float32 similarities; self is dropped (or, when k + 2 others tie above it, the
    last), leaving the top k + 1 others. The float32 products are rounded differently from
    numpy's but obey the same rigorous bound δ, so the same rule applies: a row whose
    (k+1)-th value is more than 2δ below its k-th has exactly its top k as candidates; any
    other row (a near-tie at the k-th place) is recomputed with numpy float32 products and
    every entry within 2δ of its k-th taken, as in the numpy path. The candidates are then
    re-checked in float64 by the same code, so the graph is identical to the numpy path's.
    """
    import faiss

    n, m = xn.shape
    x32 = np.ascontiguousarray(xn, dtype=np.float32)
    delta = 2.0 * _float32_error_bound(m)
    index = faiss.IndexFlatIP(m)
    index.add(x32)
    sims, ids = index.search(x32, k + 2)
    # self to the end (a stable sort keeps the descending order of the others), keep k + 1
    order = np.argsort(ids == np.arange(n)[:, None], axis=1, kind="stable")[:, : k + 1]
    ids = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    sims = np.take_along_axis(sims, order, axis=1).astype(np.float64)
    clear = (sims[:, k] < sims[:, k - 1] - 2.0 * delta) & (ids >= 0).all(axis=1)
    return _graph_from_topk(*_rerank_exact(xn, x32, ids, clear, k, delta, block), n, k)


def _graph_from_topk(idx: np.ndarray, val: np.ndarray, n: int, k: int) -> tuple[sp.csr_matrix, int]:
    """A = (A_dir + A_dirᵀ)/2 from each node's k neighbours and similarities; negatives → 0."""
    n_clipped = int((val < 0).sum())
    np.maximum(val, 0.0, out=val)
    a_dir = sp.csr_matrix(
        (val.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n), dtype=np.float64
    )
    adj = ((a_dir + a_dir.T) * 0.5).tocsr()
    adj.eliminate_zeros()
    return adj, n_clipped


def _normalize_rows(x: np.ndarray) -> tuple[np.ndarray, int]:
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0.0
    # an all-zero row has no direction: leave it at 0 so its cosine with anything is 0
    safe = np.where(zero, 1.0, norms)
    return x / safe[:, None], int(zero.sum())


def knn_graph(
    features: Any, k: int = 3, *, block_size: int | None = None, precision: str = "float32",
    backend: str = "numpy",
) -> tuple[sp.csr_matrix, int]:
    """Symmetric kNN cosine graph of SPEC §2.1 (steps 1–3).

    A = (A_dir + A_dirᵀ)/2 with A_dir[i, j] = max(S_ij, 0) for the k nodes j ≠ i most similar
    to i, S_ij = ⟨f_i, f_j⟩ / (‖f_i‖ ‖f_j‖).

    ``precision="float32"`` (default) finds candidates with float32 products, ``"float64"``
    with float64 products; either way every near-tie (a rigorous error bound decides which) is
    re-checked with float64 dot products, so both give the same neighbours and weights.
    ``backend``: where the float32 candidates come from — ``"numpy"`` (blockwise products, the
    default) or ``"faiss"`` (faiss's exact ``IndexFlatIP``; extra ``netxray[fast]``); both give
    the same graph. faiss is opt-in: measured side by side (``benchmarks/bench_modularity.py
    --part faiss``, d = 256, k = 3, equal threads) it was no faster here (0.96–1.02× at
    N = 10 000–20 000 on one thread), both being bound by the same float32 matrix product.

    Returns ``(A, n_clipped)``: A as a scipy CSR matrix (N × N, float64, symmetric, no
    diagonal) and the number of directed kNN edges whose similarity was negative.

    Example:
        >>> import numpy as np
        >>> a, n_neg = knn_graph(np.eye(4) + 0.1, k=1)
        >>> a.shape, n_neg
        ((4, 4), 0)
    """
    x = _as_features(features)
    n = x.shape[0]
    k = _check_k(k, n)
    xn, _ = _normalize_rows(x)
    return _feature_graph(xn, k, _block_rows(n, block_size), precision, backend)


_BACKENDS = ("numpy", "faiss")


def _feature_graph(xn: np.ndarray, k: int, block: int, precision: str = "float32", backend: str = "numpy"):
    """kNN graph of unit rows ``xn``: float32 candidates + float64 re-check, or all float64."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise ImportError("backend='faiss' needs faiss: pip install 'netxray[fast]' (or faiss-cpu)")
    if backend == "faiss" and precision != "float32":
        raise ValueError("backend='faiss' searches in float32; use precision='float32' with it")
    # faiss needs k + 2 rows to return (self + k + 1 others); tiny inputs take the numpy path
    if backend == "faiss" and xn.shape[0] >= k + 2:
        return _topk_graph_faiss(xn, k, block)
    if precision == "float32" and k <= _ARGMAX_K:  # each similarity computed once (symmetry)
        return _topk_graph_symmetric(xn, k, _tile_size(xn.shape[0], block))
    return _topk_graph_rechecked(xn, k, block, np.dtype(precision).type)


# side of the square float32 tiles of the symmetric path (two held at once: 2 × 8 MiB)
_TILE = 1024


def _tile_size(n: int, block: int) -> int:
    """The tile side: ``_TILE``, or the row block if smaller (``block_size``, else 64 MiB of
    float64 rows: 419 at N = 20 000 — measured as fast as 1024 there, 3.4–3.6 s both)."""
    return max(1, min(_TILE, block, n))


def knn_graph_from_gram(
    gram: Any, k: int = 3, *, block_size: int | None = None
) -> tuple[sp.csr_matrix, int]:
    """The kNN cosine graph from a Gram matrix G = F Fᵀ (N × N): S_ij = G_ij / sqrt(G_ii G_jj).

    Useful when the features are too wide to hold at once: G can be accumulated over column
    chunks, G = Σ_c F[:, c] F[:, c]ᵀ. Same output as :func:`knn_graph` on F.

    Example:
        >>> import numpy as np
        >>> f = np.random.default_rng(0).normal(size=(6, 3))
        >>> a, _ = knn_graph_from_gram(f @ f.T, k=2)
        >>> b, _ = knn_graph(f, k=2)
        >>> bool(abs(a - b).max() < 1e-12)
        True
    """
    if _on_accelerator(gram):  # a GPU Gram matrix: blocks and top-k where it lives
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"gram must be a square N × N matrix, got shape {tuple(gram.shape)}")
        if not bool(gram.isfinite().all()):
            raise ValueError("gram contains NaN or infinite values")
        n = int(gram.shape[0])
        return _topk_graph_gram_torch(gram, _check_k(k, n), _block_rows(n, block_size))
    g = np.asarray(gram.detach().cpu().numpy() if hasattr(gram, "detach") else gram, np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"gram must be a square N × N matrix, got shape {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError("gram contains NaN or infinite values")
    n = g.shape[0]
    k = _check_k(k, n)
    diag = np.diag(g).copy()
    if (diag < 0).any():
        raise ValueError("gram has negative diagonal entries: not a Gram matrix F Fᵀ")
    inv = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 0.0)
    return _topk_graph(
        lambda b0, b1: g[b0:b1] * inv[b0:b1, None] * inv[None, :], n, k, _block_rows(n, block_size)
    )


def _on_accelerator(x: Any) -> bool:
    """A torch tensor that lives off the CPU (a CUDA/MPS Gram matrix stays where it is)."""
    return hasattr(x, "device") and hasattr(x, "detach") and x.device.type != "cpu"


def _topk_graph_gram_torch(g: Any, k: int, block: int) -> tuple[sp.csr_matrix, int]:
    """:func:`knn_graph_from_gram` with the similarity blocks and the top-k on ``g``'s device.

    Same float64 arithmetic as the numpy path (S_ij = (G_ij · inv_i) · inv_j, inv = 1/sqrt(G_ii),
    each an IEEE-rounded operation), so the similarities are bit-identical. ``torch.topk`` gives
    each row's k + 1 largest: where the (k+1)-th is strictly below the k-th the k neighbours are
    unique whatever the tie order, and only their indices and values leave the device; a row
    with a tie at the k-th place is copied back and resolved by the numpy path's rule (ties to
    the lowest index). The graph is therefore identical to the CPU path's. Untested on real GPU
    hardware (the tests run this function on CPU tensors).
    """
    import torch

    g = g.detach().to(torch.float64)
    n = g.shape[0]
    diag = torch.diagonal(g).clone()
    if (diag < 0).any():
        raise ValueError("gram has negative diagonal entries: not a Gram matrix F Fᵀ")
    # 1/sqrt(G_ii) by numpy's formula on the N diagonal values (torch's vectorised sqrt can
    # differ by an ulp), then sent to the device: the blocks are then bit-identical
    d_np = diag.cpu().numpy()
    inv_np = np.where(d_np > 0, 1.0 / np.sqrt(np.where(d_np > 0, d_np, 1.0)), 0.0)
    inv = torch.from_numpy(inv_np).to(g.device)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float64)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        rows = torch.arange(b1 - b0, device=g.device)
        s = g[b0:b1] * inv[b0:b1, None] * inv[None, :]
        s[rows, b0 + rows] = -torch.inf  # self excluded
        v, i = torch.topk(s, k + 1, dim=1)  # sorted, largest first
        v_np, i_np = v.cpu().numpy(), i.cpu().numpy()
        idx[b0:b1], val[b0:b1] = i_np[:, :k], v_np[:, :k]
        hard = np.flatnonzero(v_np[:, k] == v_np[:, k - 1])
        if hard.size:  # a tie at the k-th place: the numpy rule decides which index wins
            sh = s[torch.from_numpy(hard).to(g.device)].cpu().numpy()
            r = np.arange(hard.size)
            for j in range(k):
                best = np.argmax(sh, axis=1)
                idx[b0 + hard, j] = best
                val[b0 + hard, j] = sh[r, best]
                sh[r, best] = -np.inf
    return _graph_from_topk(idx, val, n, k)


# --------------------------------------------------------------------------- Newman Q


def newman_modularity(adjacency: Any, labels: Any) -> tuple[float, float, float]:
    """Newman modularity of a symmetric weighted graph with ``labels`` as communities.

    Q = [tr(Eᵀ A E) − ‖Eᵀ s‖² / 2W] / 2W, E the one-hot class matrix, s = A·1, 2W = Σ_i s_i.
    Returns ``(Q, f_in, Q_max)`` with f_in = tr(Eᵀ A E)/2W and Q_max = 1 − Σ_c (S_c/2W)².
    Returns NaNs when the graph has no positive weight (2W = 0).

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> a = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0.]]))
        >>> newman_modularity(a, [0, 0, 1, 1])
        (0.5, 1.0, 0.5)
    """
    adj = sp.csr_matrix(adjacency, dtype=np.float64)
    n = adj.shape[0]
    if adj.shape != (n, n):
        raise ValueError(f"adjacency must be square, got shape {adj.shape}")
    codes, n_classes = _encode_labels(labels, n)
    if adj.nnz and adj.data.min() < 0:
        raise ValueError("adjacency has negative weights: modularity is undefined for them")
    one_hot = sp.csr_matrix(
        (np.ones(n), (np.arange(n), codes)), shape=(n, n_classes), dtype=np.float64
    )
    strength = np.asarray(adj.sum(axis=1)).ravel()
    two_w = float(strength.sum())
    if two_w <= 0.0:
        return float("nan"), float("nan"), float("nan")
    within = float((one_hot.T @ adj @ one_hot).diagonal().sum())
    class_strength = one_hot.T @ strength  # ‖Eᵀ s‖ per class
    frac = class_strength / two_w
    q = (within - float(class_strength @ class_strength) / two_w) / two_w
    return float(q), within / two_w, float(1.0 - frac @ frac)


def _degenerate_rows(min_cos: float, n_zero: int, n: int) -> str | None:
    """The status for rows without usable directions (see :class:`ModularityResult`), or None."""
    if n_zero == n:
        return "zero_rows"
    if n_zero == 0 and min_cos >= 1.0 - _SAME_DIRECTION:
        return "identical_rows"
    return None


def _undefined(status: str, labels: Any, n: int, k: int, d: int, n_zero: int) -> ModularityResult:
    _, n_classes = _encode_labels(labels, n)
    nan = float("nan")
    return ModularityResult(
        q=nan, f_in=nan, q_max=nan, q_rel=nan, n_clipped=0, n_zero_rows=n_zero, n=n, k=k, d=d,
        n_classes=n_classes, n_edges=0, status=status,
    )


def _result(
    adj: sp.csr_matrix, n_clipped: int, labels: Any, n: int, k: int, d: int, n_zero: int,
    return_graph: bool,
) -> ModularityResult:
    codes, n_classes = _encode_labels(labels, n)
    q, f_in, q_max = newman_modularity(adj, codes)
    status = "ok" if np.isfinite(q) else "no_edges"
    q_rel = q / q_max if status == "ok" and q_max > 0 else float("nan")
    return ModularityResult(
        q=q, f_in=f_in, q_max=q_max, q_rel=float(q_rel), n_clipped=n_clipped, n_zero_rows=n_zero,
        n=n, k=k, d=d, n_classes=n_classes, n_edges=int(sp.triu(adj, 1).nnz), status=status,
        graph=adj if return_graph else None,
    )


def modularity(
    features: Any,
    labels: Any,
    k: int = 3,
    *,
    block_size: int | None = None,
    return_graph: bool = False,
    backend: str = "numpy",
) -> ModularityResult:
    """Modularity Q of a layer's features with the true classes as communities (SPEC §2.1).

    Cosine kNN graph (self excluded, directed, symmetrized (A + Aᵀ)/2, negatives clipped to 0),
    then Q = [tr(Eᵀ A E) − ‖Eᵀ s‖²/2W] / 2W. Features with more than two axes are flattened
    (N, ...) → (N, M); labels can be any values (they are only compared for equality).

    Args:
        features: (N, M) array or tensor.
        labels: (N,) class labels; at least two distinct classes.
        k: neighbours per node, 1 <= k < N (default 3).
        block_size: rows of the similarity matrix computed at once (default: ≈ 64 MiB).
        return_graph: keep the sparse adjacency in ``result.graph``.
        backend: ``"numpy"`` (default) or ``"faiss"`` (exact search, extra ``netxray[fast]``):
            the kNN candidates' source; the same graph either way (:func:`knn_graph`).

    Returns:
        :class:`ModularityResult` with q, f_in, q_max, q_rel, n_clipped, n, k, d, ...

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1, 2], 50)
        >>> x = np.eye(3)[y] * 10 + rng.normal(size=(150, 3))
        >>> r = modularity(x, y, k=3)
        >>> round(r.f_in, 3), abs(r.q - r.q_max) < 1e-12
        (1.0, True)
    """
    x = _as_features(features)
    n, d = x.shape
    _encode_labels(labels, n)  # fail on bad labels before the expensive part
    k = _check_k(k, n)
    xn, n_zero = _normalize_rows(x)
    # all rows one direction ⇔ every row equals the first normalized row (‖u − v‖² = 2 − 2cos)
    spread = float(np.max(np.einsum("ij,ij->i", xn - xn[0], xn - xn[0]))) if n else 0.0
    bad = _degenerate_rows(1.0 - spread / 2.0, n_zero, n)
    if bad is not None:
        return _undefined(bad, labels, n, k, d, n_zero)
    adj, n_clipped = _feature_graph(xn, k, _block_rows(n, block_size), backend=backend)
    return _result(adj, n_clipped, labels, n, k, d, n_zero, return_graph)


def modularity_from_gram(
    gram: Any,
    labels: Any,
    k: int = 3,
    *,
    d: int = -1,
    block_size: int | None = None,
    return_graph: bool = False,
) -> ModularityResult:
    """Same as :func:`modularity` from the Gram matrix G = F Fᵀ (N × N) instead of F.

    ``d`` (the feature width, for the record) is stored in the result as given.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> f, y = rng.normal(size=(40, 5)), np.arange(40) % 2
        >>> abs(modularity_from_gram(f @ f.T, y).q - modularity(f, y).q) < 1e-12
        True
    """
    if _on_accelerator(gram):
        # stays on its device: only the diagonal's zero count, the smallest cosine and the k
        # neighbours of each row come back (knn_graph_from_gram's device path)
        import torch

        g = gram.detach().to(torch.float64)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            raise ValueError(f"gram must be a square N × N matrix, got shape {tuple(g.shape)}")
        diag = torch.diagonal(g)
        finite = bool(g.isfinite().all())
        # numpy's 1/sqrt on the N diagonal values (torch's sqrt can differ by an ulp)
        inv_of = lambda: torch.from_numpy(1.0 / np.sqrt(np.where(d_np > 0, d_np, 1.0))).to(g.device)  # noqa: E731
        d_np = diag.cpu().numpy()
    else:
        g = np.asarray(gram.detach().cpu().numpy() if hasattr(gram, "detach") else gram, np.float64)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            raise ValueError(f"gram must be a square N × N matrix, got shape {g.shape}")
        diag = np.diag(g)
        finite = bool(np.isfinite(g).all())
        inv_of = lambda: 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))  # noqa: E731
    n = g.shape[0]
    _encode_labels(labels, n)
    n_zero = int((diag <= 0).sum())
    if finite and n_zero in (0, n):
        inv = inv_of()
        bad = _degenerate_rows(float((g * inv[:, None] * inv[None, :]).min()), n_zero, n)
        if bad is not None:
            return _undefined(bad, labels, n, _check_k(k, n), d, n_zero)
    adj, n_clipped = knn_graph_from_gram(g, k, block_size=block_size)
    return _result(adj, n_clipped, labels, n, int(k), d, n_zero, return_graph)
