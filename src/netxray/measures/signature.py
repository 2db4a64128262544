"""Comparing non-linearity signatures: summaries, distances, distance matrices, clustering.

A signature is a 1-D sequence of affinity scores in execution order; two networks' signatures
generally have different lengths, hence the two distances here:

- ``dtw``: dynamic time warping with squared local cost and the square root of the accumulated
  cost, DTW(a, b) = sqrt( min_path Σ_{(i,j) ∈ path} (a_i − b_j)² ), over monotone, continuous
  paths from (0, 0) to (len a − 1, len b − 1). Equal to the Euclidean distance when the
  sequences are equal length and the diagonal is optimal; 0 iff one is a stretching of the other.
- ``resampled``: both signatures placed on a relative depth t ∈ [0, 1], linearly interpolated
  to ``length`` points and compared with the Euclidean distance sqrt(Σ_k (ã_k − b̃_k)²).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "signature_distance",
    "dtw_distance",
    "resampled_distance",
    "resample",
    "signature_summary",
    "distance_matrix",
    "cluster_signatures",
]


def _as_signature(s: Any, name: str) -> np.ndarray:
    if hasattr(s, "detach"):
        s = s.detach().cpu().numpy()
    if hasattr(s, "to_numpy"):  # pandas Series
        s = s.to_numpy()
    a = np.asarray(s, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of scores, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: a signature needs at least one score")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a)).tolist()
        raise ValueError(
            f"{name} has non-finite scores at positions {bad[:10]} (sites without a score, e.g. "
            "shape_mismatch or non_finite): drop them explicitly before comparing"
        )
    return a


def dtw_distance(a: Any, b: Any) -> float:
    """DTW distance with squared local cost: sqrt(min_path Σ (a_i − b_j)²).

    >>> dtw_distance([0.0, 1.0, 1.0], [0.0, 1.0])
    0.0
    >>> dtw_distance([0.0, 0.0], [1.0, 1.0])
    1.4142135623730951
    """
    a = _as_signature(a, "a")
    b = _as_signature(b, "b")
    cost = (a[:, None] - b[None, :]) ** 2
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row_prev = acc[i - 1]
        # the diagonal and vertical moves vectorise; the horizontal move is a running recurrence
        best_prev = np.minimum(row_prev[:-1], row_prev[1:]) + cost[i - 1]
        row = acc[i]
        for j in range(1, m + 1):
            v = best_prev[j - 1]
            h = row[j - 1] + cost[i - 1, j - 1]
            row[j] = v if v < h else h
    return float(np.sqrt(acc[n, m]))


def resample(s: Any, length: int = 100) -> np.ndarray:
    """Linear interpolation of a signature onto ``length`` equally spaced relative depths in [0, 1].

    >>> resample([0.0, 1.0], 3).tolist()
    [0.0, 0.5, 1.0]
    """
    a = _as_signature(s, "signature")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    if a.size == 1:
        return np.full(length, a[0])
    return np.interp(np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, a.size), a)


def resampled_distance(a: Any, b: Any, length: int = 100) -> float:
    """Euclidean distance between the two signatures resampled to ``length`` points.

    >>> resampled_distance([0.0, 1.0], [0.0, 0.5, 1.0], length=10)
    0.0
    """
    return float(np.linalg.norm(resample(a, length) - resample(b, length)))


def signature_distance(a: Any, b: Any, method: str = "dtw", *, length: int = 100) -> float:
    """Distance between two non-linearity signatures (1-D score sequences of any lengths).

    ``method="dtw"``: sqrt of the minimal accumulated squared difference along a warping path.
    ``method="resampled"``: Euclidean distance after interpolation to ``length`` relative depths.

    >>> signature_distance([0.2, 0.5, 0.9], [0.2, 0.5, 0.5, 0.9])
    0.0
    >>> round(signature_distance([0.0, 1.0], [1.0, 0.0], method="resampled", length=2), 6)
    1.414214
    """
    if method == "dtw":
        return dtw_distance(a, b)
    if method == "resampled":
        return resampled_distance(a, b, length)
    raise ValueError(f"method must be 'dtw' or 'resampled', got {method!r}")


def signature_summary(s: Any) -> dict[str, float]:
    """Summary statistics of a signature: length, mean, std (ddof 0), min, q25, median, q75, max.

    >>> signature_summary([0.0, 1.0])["mean"]
    0.5
    """
    a = _as_signature(s, "signature")
    q25, q50, q75 = np.quantile(a, [0.25, 0.5, 0.75])
    return {
        "length": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "q25": float(q25),
        "median": float(q50),
        "q75": float(q75),
        "max": float(a.max()),
    }


def distance_matrix(
    signatures: Mapping[str, Any] | Sequence[Any], method: str = "dtw", *, length: int = 100
) -> tuple[list[str], np.ndarray]:
    """Pairwise signature distances: (names, D) with D symmetric, zero diagonal.

    ``signatures`` is a mapping name -> scores, or a sequence (named "0", "1", ...).

    >>> names, d = distance_matrix({"a": [0.1, 0.2], "b": [0.1, 0.2, 0.2]})
    >>> d.tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """
    if isinstance(signatures, Mapping):
        names = [str(k) for k in signatures]
        sigs = list(signatures.values())
    else:
        sigs = list(signatures)
        names = [str(i) for i in range(len(sigs))]
    sigs = [_as_signature(s, f"signature {n!r}") for n, s in zip(names, sigs, strict=True)]
    k = len(sigs)
    d = np.zeros((k, k))
    if method == "resampled" and k > 1:  # resample each signature once, not once per pair
        curves = [resample(s, length) for s in sigs]
        for i in range(k):
            for j in range(i + 1, k):
                d[i, j] = d[j, i] = float(np.linalg.norm(curves[i] - curves[j]))
        return names, d
    for i in range(k):
        for j in range(i + 1, k):
            d[i, j] = d[j, i] = signature_distance(sigs[i], sigs[j], method, length=length)
    return names, d


def cluster_signatures(
    dist: np.ndarray, names: Sequence[str] | None = None, *, method: str = "average",
    n_clusters: int | None = None, threshold: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Agglomerative hierarchical clustering of models from a signature distance matrix.

    Returns ``{"linkage": Z (scipy linkage matrix), "order": leaf order, "labels": cluster
    label per model (when ``n_clusters`` or ``threshold`` is given, else None), "names"}``.
    ``method`` is a scipy linkage method valid for distances ("average", "single",
    "complete", "weighted").

    >>> import numpy as np
    >>> d = np.array([[0, 1, 9], [1, 0, 9], [9, 9, 0.0]])
    >>> cluster_signatures(d, ["a", "b", "c"], n_clusters=2)["labels"]
    [1, 1, 2]
    """
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square matrix, got shape {dist.shape}")
    k = dist.shape[0]
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} names for a {k}×{k} distance matrix")
    if method not in ("average", "single", "complete", "weighted"):
        raise ValueError(f"method must be average, single, complete or weighted, got {method!r}")
    if k < 2:
        return {"linkage": np.zeros((0, 4)), "order": list(range(k)),
                "labels": [1] * k if (n_clusters or threshold is not None) else None,
                "names": names}  # fmt: skip
    z = linkage(squareform(dist, checks=False), method=method)
    labels = None
    if n_clusters is not None:
        labels = fcluster(z, t=n_clusters, criterion="maxclust").tolist()
    elif threshold is not None:
        labels = fcluster(z, t=threshold, criterion="distance").tolist()
    return {"linkage": z, "order": leaves_list(z).tolist(), "labels": labels, "names": names}
