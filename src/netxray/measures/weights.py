"""Statistics of learnable parameters (SPEC §3): moments, histograms, node strengths, spread tests.

Pure math on arrays: everything is computed in float64 on the *finite* values of a tensor, and
the number of NaN/inf values is reported separately, so one diverged weight never poisons a
statistic. No nn.Module knowledge lives here; :mod:`netxray.lenses.parameters` maps modules to
these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _stats

__all__ = [
    "STAT_COLUMNS",
    "PERCENTILES",
    "exact_percentiles_float32",
    "stats_from_chunks",
    "GlobalStats",
    "tensor_stats",
    "shared_bin_edges",
    "histogram_density",
    "histogram_counts",
    "ks_distance",
    "binned_ks",
    "jeffreys_divergence",
    "brown_forsythe",
    "mad",
    "float64_chunks",
    "float64_row_blocks",
    "linear_strengths",
    "conv_channel_matrix",
    "attention_head_strengths",
]

PERCENTILES: tuple[int, ...] = (0, 25, 50, 75, 100)

#: Column order of :func:`tensor_stats` (also the columns of ``weight_stats``).
STAT_COLUMNS: tuple[str, ...] = (
    "count",
    "n_finite",
    "n_nonfinite",
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "p0",
    "p25",
    "p50",
    "p75",
    "p100",
    "l1",
    "l2",
    "rms",
    "near_zero_frac",
)


def _as_float64(values: Any) -> np.ndarray:
    """Flatten anything array-like (numpy, torch tensor, list) into a float64 1-D array."""
    if hasattr(values, "detach"):  # a torch tensor; avoid importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"values: expected a numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "c":
        raise TypeError("values: complex tensors are not supported")
    return arr.astype(np.float64, copy=False).ravel()


_CHUNK = 1 << 20  # elements per chunk: bounds the temporaries of a 25M-parameter model


def _sortable_keys(a: np.ndarray) -> np.ndarray:
    """float32 values → uint32 keys with the same order (IEEE-754 sign-magnitude flipped):
    negatives get every bit inverted, positives their sign bit set."""
    sign = a.view(np.int32) >> 31  # arithmetic shift: 0 for +, −1 (all ones) for −
    mask = sign.view(np.uint32)
    mask |= np.uint32(0x80000000)
    return np.bitwise_xor(a.view(np.uint32), mask, out=mask)


def _keys_to_float(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32).astype(np.float64)


def top_key_counts(chunks: Any, counts: np.ndarray | None = None) -> np.ndarray:
    """First radix pass of :func:`exact_percentiles_float32`: counts of the top 16 key bits
    (65 536 bins) of float32 chunks, added to ``counts`` (so passes over many tensors add up)."""
    top = np.zeros(1 << 16, dtype=np.int64) if counts is None else counts
    for c in chunks:
        top += np.bincount(_sortable_keys(c) >> 16, minlength=1 << 16)
    return top


class _RadixSelect:
    """Exact order statistics of float32 values by their 32-bit keys, in two passes.

    Pass 1 counts the top 16 bits (:func:`top_key_counts`); :meth:`plan` finds the bins holding
    the wanted ranks; pass 2 (:meth:`add`) counts the low 16 bits inside those bins only.
    """

    def __init__(self, top: np.ndarray, qs: Sequence[float], n: int) -> None:
        q = np.asarray(qs, dtype=np.float64) / 100.0
        virtual = q * (n - 1)  # numpy's 'linear' method: (n − 1)·q
        self.lo = np.floor(virtual).astype(np.int64)
        self.hi = np.minimum(self.lo + 1, n - 1)
        self.frac = virtual - self.lo
        self.ranks = np.unique(np.concatenate([self.lo, self.hi]))
        cum = np.cumsum(top)
        self.bins = np.searchsorted(cum, self.ranks, side="right")  # bin of each rank
        self.below = np.where(self.bins > 0, cum[self.bins - 1], 0)
        self.low = {int(b): np.zeros(1 << 16, dtype=np.int64) for b in np.unique(self.bins)}

    def add(self, keys: np.ndarray) -> None:
        hi16 = keys >> 16
        for b, counts in self.low.items():
            sel = keys[hi16 == b]
            if sel.size:
                counts += np.bincount(sel & np.uint32(0xFFFF), minlength=1 << 16)

    def result(self) -> np.ndarray:
        values = {}
        for r, b, off in zip(self.ranks, self.bins, self.below, strict=True):
            lo16 = int(np.searchsorted(np.cumsum(self.low[int(b)]), r - off, side="right"))
            values[int(r)] = _keys_to_float(np.uint32((int(b) << 16) | lo16))[()]
        a = np.array([values[int(i)] for i in self.lo])
        b = np.array([values[int(i)] for i in self.hi])
        diff = b - a
        # numpy's _lerp: a + diff·t, from the upper end when t ≥ 0.5 (monotone, exact ends)
        return np.where(self.frac >= 0.5, b - diff * (1.0 - self.frac), a + diff * self.frac)


def exact_percentiles_float32(
    chunks: Any, qs: Sequence[float], n: int, *, top: np.ndarray | None = None
) -> np.ndarray:
    """Percentiles (numpy's 'linear' rule) of n finite float32 values given as chunks, exactly.

    Exact order statistics without sorting or copying the whole tensor: a radix selection on
    the values' order-preserving 32-bit keys — one pass counts the top 16 bits (65 536 bins),
    a second pass the low 16 bits inside the few bins that hold the wanted ranks — then the
    interpolation between neighbouring order statistics in float64, as ``np.percentile`` does.
    ``chunks`` is a callable returning a fresh iterator of float32 arrays (read twice, once
    when ``top`` — the first pass's :func:`top_key_counts` — is given). Memory: one chunk and
    the counts; bit-for-bit equal to ``np.percentile`` of the float64 values.

    >>> v = np.array([3.0, -1.0, 2.0, 10.0], dtype=np.float32)
    >>> exact_percentiles_float32(lambda: iter([v[:2], v[2:]]), [0, 50, 100], 4).tolist()
    [-1.0, 2.5, 10.0]
    """
    if top is None:
        top = top_key_counts(chunks())
    sel = _RadixSelect(top, qs, n)
    for c in chunks():
        sel.add(_sortable_keys(c))
    return sel.result()



def _counts_row(count: int, n_finite: int) -> dict[str, float]:
    """The count columns of a statistics row; every other column NaN when nothing is finite."""
    out: dict[str, float] = {"count": int(count), "n_finite": n_finite,
                             "n_nonfinite": int(count - n_finite)}  # fmt: skip
    if n_finite == 0:
        out.update(dict.fromkeys(STAT_COLUMNS[3:], float("nan")))
    return out

def tensor_stats(values: Any, *, near_zero: float = 1e-3, overwrite: bool = False) -> dict[str, float]:
    """Statistics of one tensor (SPEC §3.1), on its finite values, in float64.

    With x the N finite values: mean μ = Σx/N; population std σ = sqrt(m2), m_k = Σ(x−μ)^k/N;
    skewness m3/m2^{3/2}; excess kurtosis m4/m2² − 3 (both NaN when σ = 0); percentiles
    0/25/50/75/100 (linear interpolation); L1 = Σ|x|; L2 = sqrt(Σx²); RMS = L2/sqrt(N);
    near-zero fraction = #{|x| ≤ near_zero}/N. ``count`` is the number of elements,
    ``n_nonfinite`` the number of NaN/±inf among them (excluded from everything else).
    Moments are accumulated in chunks so memory stays bounded for large tensors;
    ``overwrite=True`` lets the percentile step reorder a float64 input in place (only for
    arrays the caller owns — never a user's weights). float32, float16 and bfloat16 tensors are
    never copied whole: moments chunk by chunk in float64, percentiles by an exact radix
    selection (:func:`exact_percentiles_float32`): percentiles bit for bit those of the float64
    route, moments equal to float64 rounding (chunk sums instead of one pairwise sum).

    Example:
        >>> s = tensor_stats([1.0, 2.0, 3.0, float("nan")])
        >>> s["mean"], s["n_nonfinite"], round(s["std"], 6)
        (2.0, 1, 0.816497)
    """
    raw = values.detach() if hasattr(values, "detach") else values
    if hasattr(raw, "cpu") and str(raw.dtype) in _TORCH_FLOATS:
        # float32 holds every bf16/fp16 value exactly; converted one chunk at a time, so a
        # checkpoint's largest tensor is never copied whole (numpy has no bfloat16)
        return _public(stats_from_chunks(lambda: torch_float32_chunks(raw), raw.numel(), near_zero))
    raw = raw.cpu().numpy() if hasattr(raw, "cpu") else np.asarray(raw)
    if raw.dtype.kind not in "biufc":
        raise TypeError(f"values: expected a numeric array, got dtype {raw.dtype}")
    if raw.dtype.kind == "c":
        raise TypeError("values: complex tensors are not supported")
    if raw.dtype in (np.float32, np.float16):
        flat = raw.ravel()
        return _public(stats_from_chunks(
            lambda: (flat[i:i + _CHUNK].astype(np.float32, copy=False) for i in range(0, flat.size, _CHUNK)),
            flat.size, near_zero,
        ))  # fmt: skip
    x = _as_float64(raw)
    count = x.size
    finite = np.isfinite(x)
    n_finite = int(np.count_nonzero(finite))
    # reorder in place only a buffer we own: a float64 input would otherwise be the user's memory
    owned = overwrite or not np.may_share_memory(x, raw)
    if n_finite != count:
        x = x[finite]
        owned = True
    del finite
    out = _counts_row(count, n_finite)
    if n_finite == 0:
        return out
    mean = float(x.mean())
    m2 = m3 = m4 = l1 = sq = 0.0
    nz = 0
    for start in range(0, n_finite, _CHUNK):
        xc = x[start:start + _CHUNK]
        c = xc - mean
        c2 = c * c
        m2 += float(c2.sum())
        m3 += float((c2 * c).sum())
        m4 += float((c2 * c2).sum())
        a = np.abs(xc)
        l1 += float(a.sum())
        nz += int(np.count_nonzero(a <= near_zero))
        sq += float(np.dot(xc, xc))
    pct = np.percentile(x, PERCENTILES, overwrite_input=owned)
    return _finish(out, n_finite, mean, m2, m3, m4, l1, sq, nz, pct)


_TORCH_FLOATS = ("torch.float32", "torch.bfloat16", "torch.float16")


def torch_float32_chunks(t: Any, chunk: int = _CHUNK) -> Any:
    """A torch float tensor (float32, bfloat16, float16) as float32 numpy chunks, exactly.

    bfloat16 is the top half of a float32: its bits shifted left by 16 are that float32, which
    numpy does ~10× faster than torch's ``.float()`` on small chunks; float16 converts in
    numpy. No copy of the whole tensor is made (the flat view is shared).
    """
    flat = t.detach().reshape(-1).cpu()
    kind = str(flat.dtype)
    if kind == "torch.bfloat16":
        import torch  # only reached with a torch tensor in hand

        bits = flat.view(torch.int16).numpy().view(np.uint16)
        for i in range(0, bits.size, chunk):
            yield (bits[i:i + chunk].astype(np.uint32) << np.uint32(16)).view(np.float32)
        return
    arr = flat.numpy()
    for i in range(0, arr.size, chunk):
        yield arr[i:i + chunk].astype(np.float32, copy=False)


def float64_chunks(t: Any, chunk: int = _CHUNK) -> Any:
    """The values of a tensor or array, flattened, as float64 numpy chunks of ``chunk`` values:
    one chunk in float64 at a time, never the whole tensor. float32/bf16/fp16 tensors go
    through :func:`torch_float32_chunks` (exact), others through torch's own conversion.
    Every chunk is a view of one buffer, overwritten by the next (no allocation per chunk:
    freed and re-made 8 MB temporaries fragment the heap): use it before asking for the next.

    >>> [c.tolist() for c in float64_chunks(np.arange(5), chunk=2)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """
    if hasattr(t, "detach") and str(t.dtype) in _TORCH_FLOATS:
        buf = np.empty(min(chunk, t.numel()))
        for c in torch_float32_chunks(t, chunk):
            out = buf[:c.size]
            out[:] = c
            yield out
        return
    for _, blk in float64_row_blocks(t.reshape(-1) if hasattr(t, "detach") else np.asarray(t).ravel(), chunk):
        yield blk.reshape(-1)


def float64_row_blocks(a: Any, max_elements: int = _CHUNK) -> Any:
    """A matrix (numpy array or torch tensor of any float dtype, on any device) as ``(first
    row, float64 block of whole rows)``, one block of at most ``max_elements`` values (at least
    one row) at a time: memory one block, never a float64 copy of the whole matrix.
    bfloat16/float16 → float64 is exact. Every block is a view of one buffer, overwritten by
    the next (see :func:`float64_chunks`).

    >>> [(i, b.shape) for i, b in float64_row_blocks(np.ones((5, 2)), max_elements=4)]
    [(0, (2, 2)), (2, (2, 2)), (4, (1, 2))]
    """
    n_rows = int(a.shape[0])
    width = int(np.prod(a.shape[1:], dtype=np.int64)) if len(a.shape) > 1 else 1
    step = max(1, max_elements // max(width, 1))
    torch_like = hasattr(a, "detach")
    src = a.detach().reshape(n_rows, width) if torch_like else np.asarray(a).reshape(n_rows, width)
    buf = np.empty(min(step, n_rows) * width)
    if torch_like:
        import torch  # only reached with a torch tensor in hand

        tbuf = torch.from_numpy(buf)  # shares the buffer: copy_ converts (bf16 → f64 exact)
    for i in range(0, n_rows, step):
        k = min(step, n_rows - i)
        blk = buf[:k * width].reshape(k, width)
        if torch_like:
            tbuf[:k * width].view(k, width).copy_(src[i:i + k])
        else:
            np.copyto(blk, src[i:i + k], casting="unsafe")
        yield i, blk


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def stats_from_chunks(chunks: Any, count: int, near_zero: float = 1e-3) -> dict[str, float]:
    """:func:`tensor_stats` of ``count`` values given as float32 chunks (``chunks()`` returns a
    fresh iterator; read twice), never holding more than one chunk in float64.

    Moments: each chunk converted to float64 on its own; percentiles: exact radix selection.
    Also returns ``_m2``/``_m3``/``_m4`` (central moment sums) and ``_top`` (the radix counts),
    which :class:`GlobalStats` combines across tensors; callers drop the underscored keys.
    """

    def finite_chunks():
        for c in chunks():
            ok = np.isfinite(c)
            yield c if ok.all() else c[ok]

    # pass 1: count, sum (for the mean) and the radix selection's top-bit counts
    n_finite = 0
    total = 0.0
    top = np.zeros(1 << 16, dtype=np.int64)
    for c in finite_chunks():
        n_finite += c.size
        total += float(c.sum(dtype=np.float64))
        top += np.bincount(_sortable_keys(c) >> 16, minlength=1 << 16)
    out = _counts_row(count, n_finite)
    if n_finite == 0:
        return out
    mean = total / n_finite
    # pass 2: central moments, norms, near-zeros, and the low bits of the wanted ranks' bins
    select = _RadixSelect(top, PERCENTILES, n_finite)
    m2 = m3 = m4 = l1 = sq = 0.0
    nz = 0
    for c32 in finite_chunks():
        select.add(_sortable_keys(c32))
        xc = c32.astype(np.float64)
        c = xc - mean
        c2 = c * c
        m2 += float(c2.sum())
        m3 += float((c2 * c).sum())
        m4 += float((c2 * c2).sum())
        a = np.abs(xc)
        l1 += float(a.sum())
        nz += int(np.count_nonzero(a <= near_zero))
        sq += float(np.dot(xc, xc))
    pct = select.result()
    res = _finish(out, n_finite, mean, m2, m3, m4, l1, sq, nz, pct)
    res.update(_m2=m2, _m3=m3, _m4=m4, _top=top, _sq=sq, _nz=nz)
    return res


class GlobalStats:
    """Statistics of many tensors concatenated, accumulated tensor by tensor (streaming).

    Moments combine exactly with the pairwise update of central moment sums (Pébay 2008:
    with δ = μ_B − μ_A, M2 = M2_A + M2_B + δ² n_A n_B / n, and likewise M3, M4); percentiles
    by the radix selection, its first pass summed over tensors, its second pass a re-read of
    the tensors (``finish(chunks)``). Memory: the 65 536 counts, whatever the total size.
    """

    def __init__(self, near_zero: float = 1e-3) -> None:
        self.near_zero = near_zero
        self.count = self.n = 0
        self.mean = self.m2 = self.m3 = self.m4 = self.l1 = self.sq = 0.0
        self.nz = 0
        self.top = np.zeros(1 << 16, dtype=np.int64)

    def add(self, row: dict[str, Any]) -> None:
        """Fold in one tensor's :func:`stats_from_chunks` result."""
        self.count += int(row["count"])
        nb = int(row["n_finite"])
        if nb == 0:
            return
        na, n = self.n, self.n + nb
        d = float(row["mean"]) - self.mean
        b2, b3, b4 = row["_m2"], row["_m3"], row["_m4"]
        a2, a3, a4 = self.m2, self.m3, self.m4
        self.m4 = (a4 + b4 + d**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
                   + 6 * d * d * (na * na * b2 + nb * nb * a2) / n**2 + 4 * d * (na * b3 - nb * a3) / n)
        self.m3 = a3 + b3 + d**3 * na * nb * (na - nb) / n**2 + 3 * d * (na * b2 - nb * a2) / n
        self.m2 = a2 + b2 + d * d * na * nb / n
        self.mean += d * nb / n
        self.n = n
        self.l1 += float(row["l1"])
        self.sq += row["_sq"]
        self.nz += row["_nz"]
        self.top += row["_top"]

    def finish(self, chunks: Any) -> dict[str, float]:
        """The global row; ``chunks()`` re-reads every tensor added (float32 chunks)."""
        out: dict[str, float] = {
            "count": self.count, "n_finite": self.n, "n_nonfinite": self.count - self.n,
        }  # fmt: skip
        if self.n == 0:
            out.update({key: float("nan") for key in STAT_COLUMNS[3:]})
            return out

        def finite_chunks():
            for c in chunks():
                ok = np.isfinite(c)
                yield c if ok.all() else c[ok]

        pct = exact_percentiles_float32(finite_chunks, PERCENTILES, self.n, top=self.top)
        return _finish(out, self.n, self.mean, self.m2, self.m3, self.m4, self.l1, self.sq,
                       self.nz, pct)  # fmt: skip


def _finish(out, n_finite, mean, m2, m3, m4, l1, sq, nz, pct) -> dict[str, float]:
    m2, m3, m4 = m2 / n_finite, m3 / n_finite, m4 / n_finite
    if m2 > 0.0:
        skew = m3 / m2**1.5
        kurt = m4 / (m2 * m2) - 3.0
    else:  # a constant tensor has no shape to its distribution
        skew = kurt = float("nan")
    out.update(
        mean=mean,
        std=float(np.sqrt(m2)),
        skewness=float(skew),
        kurtosis=float(kurt),
        **{f"p{q}": float(v) for q, v in zip(PERCENTILES, pct, strict=True)},
        l1=l1,
        l2=float(np.sqrt(sq)),
        rms=float(np.sqrt(sq / n_finite)),
        near_zero_frac=float(nz / n_finite),
    )
    return out


def shared_bin_edges(
    arrays: Sequence[Any] | None = None,
    *,
    bins: int = 64,
    range: tuple[float, float] | None = None,  # noqa: A002 - numpy's name
) -> np.ndarray:
    """Bin edges shared by every array being compared: ``bins`` equal bins over the finite range.

    The range is ``range`` if given, else [min, max] of the finite values of all arrays (a
    degenerate range is widened by ±0.5 so the edges are strictly increasing).

    Example:
        >>> shared_bin_edges([[0.0, 1.0], [3.0]], bins=3).tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    if bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins}")
    if range is None:
        if not arrays:
            raise ValueError("shared_bin_edges: give arrays or an explicit range")
        lo, hi = np.inf, -np.inf
        for a in arrays:
            x = _as_float64(a)
            x = x[np.isfinite(x)]
            if x.size:
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        if not np.isfinite(lo):
            raise ValueError("shared_bin_edges: the arrays hold no finite value")
    else:
        lo, hi = float(range[0]), float(range[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
            raise ValueError(f"range: expected finite (low, high) with low <= high, got {range}")
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def histogram_density(values: Any, edges: Any) -> tuple[np.ndarray, int]:
    """Normalized histogram on given edges: densities p_i with Σ p_i·Δ_i = 1.

    Only finite values inside [edges[0], edges[-1]] are binned; the number left outside is
    returned so nothing is dropped silently. If no value falls inside, the densities are all 0.

    Returns ``(density, n_outside)``.

    Example:
        >>> d, n_out = histogram_density([0.1, 0.2, 0.9, 5.0], [0.0, 0.5, 1.0])
        >>> d.tolist(), n_out
        ([1.3333333333333333, 0.6666666666666666], 1)
    """
    e = np.asarray(edges, dtype=np.float64)
    counts, n_outside = histogram_counts(values, e)
    inside = int(counts.sum())
    if inside == 0:
        return np.zeros(e.size - 1), n_outside
    return counts / (inside * np.diff(e)), n_outside


def histogram_counts(values: Any, edges: Any) -> tuple[np.ndarray, int]:
    """Counts of the finite ``values`` in the bins of ``edges`` (right edge closed on the last
    bin, as ``np.histogram``) and how many finite values fell outside.

    Counts add up: the counts of a concatenation are the sum of its parts' counts, so a global
    histogram never needs the concatenated values. Equal-width edges (``np.linspace``, as
    :func:`shared_bin_edges` makes) take numpy's O(N) equal-bin path, which corrects every index
    against the same edges — the same counts as the sorted-search path used for other edges.

    >>> histogram_counts([0.1, 0.2, 0.9, 5.0, float("nan")], [0.0, 0.5, 1.0])[0].tolist()
    [2, 1]
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError("edges: expected a strictly increasing 1-D array of at least 2 values")
    x = _as_float64(values)
    x = x[np.isfinite(x)]
    if np.array_equal(e, np.linspace(e[0], e[-1], e.size)):
        counts, _ = np.histogram(x, bins=e.size - 1, range=(e[0], e[-1]))
    else:
        counts, _ = np.histogram(x, bins=e)
    return counts, int(x.size - int(counts.sum()))


def ks_distance(a: Any, b: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov: D = sup_x |F_a(x) − F_b(x)| and its p-value (finite values).

    Example:
        >>> ks_distance([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])[0]
        0.0
    """
    x, y = _as_float64(a), _as_float64(b)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        raise ValueError("ks_distance: both samples need at least one finite value")
    res = _stats.ks_2samp(x, y)
    return float(res.statistic), float(res.pvalue)


def binned_ks(p: Any, q: Any, edges: Any) -> float:
    """KS distance between two histograms on the same edges: max_k |P_k − Q_k| of their CDFs.

    Exact up to the bin resolution (the true D lies within one bin's mass of it); used to
    compare many models without keeping their weights.

    Example:
        >>> binned_ks([1.0, 0.0], [0.0, 1.0], [0.0, 1.0, 2.0])
        1.0
    """
    w = np.diff(np.asarray(edges, dtype=np.float64))
    cp = np.cumsum(np.asarray(p, dtype=np.float64) * w)
    cq = np.cumsum(np.asarray(q, dtype=np.float64) * w)
    return float(np.max(np.abs(cp - cq)))


def jeffreys_divergence(p: Any, q: Any, edges: Any | None = None, *, alpha: float = 1e-6) -> float:
    """Jeffreys divergence J(P, Q) = KL(P‖Q) + KL(Q‖P) = Σ_i (P_i − Q_i) log(P_i / Q_i).

    ``p`` and ``q`` are densities on shared ``edges`` (converted to bin probabilities) or,
    without edges, bin masses. An empty bin makes J infinite, so both are smoothed by a pseudo
    probability ``alpha`` per bin and renormalized *(choice)*; J ≥ 0, = 0 iff P = Q.

    Example:
        >>> jeffreys_divergence([0.5, 0.5], [0.5, 0.5])
        0.0
    """
    pp, qq = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if pp.shape != qq.shape or pp.ndim != 1:
        raise ValueError(f"p, q: expected two 1-D histograms of the same length, got {pp.shape}, {qq.shape}")
    if edges is not None:
        w = np.diff(np.asarray(edges, dtype=np.float64))
        if w.shape != pp.shape:
            raise ValueError(f"edges: expected {pp.size + 1} edges, got {w.size + 1}")
        pp, qq = pp * w, qq * w
    if np.any(pp < 0) or np.any(qq < 0):
        raise ValueError("p, q: histograms must be non-negative")
    pp = pp + alpha
    qq = qq + alpha
    pp, qq = pp / pp.sum(), qq / qq.sum()
    return float(np.sum((pp - qq) * np.log(pp / qq)))


def brown_forsythe(*groups: Any) -> tuple[float, float]:
    """Brown–Forsythe test of equal spread: Levene's test centred on group medians.

    F statistic of a one-way ANOVA on z_ij = |x_ij − median_j|; returns ``(F, p_value)``.
    Groups with fewer than 2 finite values are an error.

    Example:
        >>> round(brown_forsythe([1, 2, 3, 4], [1, 2, 3, 4])[1], 3)
        1.0
    """
    clean = []
    for i, g in enumerate(groups):
        x = _as_float64(g)
        x = x[np.isfinite(x)]
        if x.size < 2:
            raise ValueError(f"brown_forsythe: group {i} has {x.size} finite values, need >= 2")
        clean.append(x)
    if len(clean) < 2:
        raise ValueError("brown_forsythe: need at least two groups")
    res = _stats.levene(*clean, center="median")
    return float(res.statistic), float(res.pvalue)


def mad(values: Any, *, scale: str | float = 1.0) -> float:
    """Median absolute deviation median_i |x_i − median(x)| of the finite values.

    ``scale="normal"`` multiplies by 1.4826 (consistent with σ for Gaussian data).

    Example:
        >>> mad([1.0, 2.0, 3.0, 4.0, 100.0])
        1.0
    """
    x = _as_float64(values)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    k = 1.482602218505602 if scale == "normal" else float(scale)
    return float(k * np.median(np.abs(x - np.median(x))))


# --------------------------------------------------------------------------- node strengths


def linear_strengths(weight: Any, bias: Any | None = None) -> dict[str, np.ndarray]:
    """Node strengths of a weighted bipartite layer W (out × in), SPEC §3.2.

    in-strength of output unit j: s_in_j = Σ_i W_ji (+ b_j); out-strength of input unit i:
    s_out_i = Σ_j W_ji. Absolute versions use |W| (and |b|): signed sums cancel. Non-finite
    weights count as 0 in the sums; the caller reports them (see :func:`tensor_stats`).

    Returns ``in_signed, in_abs`` (length out) and ``out_signed, out_abs`` (length in).

    Example:
        >>> s = linear_strengths([[1.0, -2.0], [3.0, 4.0]], bias=[0.5, 0.0])
        >>> s["in_signed"].tolist(), s["out_abs"].tolist()
        ([-0.5, 7.0], [4.0, 6.0])
    """
    if not hasattr(weight, "detach"):
        weight = np.asarray(weight)
    shape = tuple(weight.shape)
    if len(shape) != 2:
        raise ValueError(f"weight: expected a 2-D (out × in) matrix, got shape {shape}")
    # row blocks in float64, one at a time (never the whole matrix: a 32000 × 2048 bf16 head
    # would be 0.5 GB twice); the column sums added row after row, the order of numpy's own
    # axis-0 sum, so the sums are bit for bit those of the whole float64 matrix
    in_s, in_a = np.empty(shape[0]), np.empty(shape[0])
    out_s, out_a = np.zeros(shape[1]), np.zeros(shape[1])
    aw_buf = ok_buf = None
    for start, w in float64_row_blocks(weight):  # w: our own buffer, free to overwrite
        if aw_buf is None:
            aw_buf, ok_buf = np.empty_like(w), np.empty(w.shape, dtype=bool)
        ok = np.isfinite(w, out=ok_buf[:len(w)])
        if not ok.all():
            np.copyto(w, 0.0, where=~ok)
        aw = np.abs(w, out=aw_buf[:len(w)])
        w.sum(axis=1, out=in_s[start:start + len(w)])
        aw.sum(axis=1, out=in_a[start:start + len(w)])
        for r, ra in zip(w, aw, strict=True):
            out_s += r
            out_a += ra
    out = {"in_signed": in_s, "in_abs": in_a, "out_signed": out_s, "out_abs": out_a}
    if bias is not None:
        b = _as_float64(bias.detach().cpu().double() if hasattr(bias, "detach") else bias)
        if b.shape != (shape[0],):
            raise ValueError(f"bias: expected shape ({shape[0]},), got {b.shape}")
        b = np.where(np.isfinite(b), b, 0.0)
        out["in_signed"] = out["in_signed"] + b
        out["in_abs"] = out["in_abs"] + np.abs(b)
    return out


def conv_channel_matrix(kernel: Any, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Channel graph of a convolution kernel K (out × in/groups × k1 × …), SPEC §3.2 *(choice)*.

    Signed edge A_oc = Σ_{u,v} K[o, c, u, v]; absolute edge |A|_oc = Σ_{u,v} |K[o, c, u, v]|
    (the total |w| between the two channels, not |A_oc|). A grouped convolution gives a
    block-diagonal (out × in) matrix: channels of different groups share no edge.

    Example:
        >>> a, aa = conv_channel_matrix(np.ones((2, 1, 3, 3)))
        >>> a.tolist()
        [[9.0], [9.0]]
    """
    # torch converts bf16/fp16 (numpy has none); one kernel in float64 at a time
    k = np.asarray(kernel.detach().cpu().double().numpy() if hasattr(kernel, "detach") else kernel)
    k = k.astype(np.float64, copy=False)
    if k.ndim < 2:
        raise ValueError(f"kernel: expected (out, in/groups, *spatial), got shape {k.shape}")
    if groups < 1 or k.shape[0] % groups:
        raise ValueError(f"groups: {groups} does not divide {k.shape[0]} output channels")
    if not np.isfinite(k).all():
        k = np.where(np.isfinite(k), k, 0.0)
    axes = tuple(range(2, k.ndim))
    a = k.sum(axis=axes) if axes else k.copy()
    aa = np.abs(k).sum(axis=axes) if axes else np.abs(k)
    if groups == 1:
        return a, aa
    out_c, in_g = a.shape
    og = out_c // groups
    full, full_abs = np.zeros((out_c, in_g * groups)), np.zeros((out_c, in_g * groups))
    for g in range(groups):
        rows, cols = slice(g * og, (g + 1) * og), slice(g * in_g, (g + 1) * in_g)
        full[rows, cols] = a[rows]
        full_abs[rows, cols] = aa[rows]
    return full, full_abs


def attention_head_strengths(
    w_q: Any, w_k: Any, w_v: Any, w_o: Any, num_heads: int
) -> dict[str, np.ndarray]:
    """Per-head strengths of multi-head attention (SPEC §3.2).

    With head size d_h = D/H and head h's rows R_h = [h·d_h, (h+1)·d_h): S_Q[h] = Σ_{i∈R_h, j} W_q[i, j]
    (same for K, V: the head's row block), S_O[h] = Σ_{i, j∈R_h} W_o[i, j] (the head's column
    block of the output projection). Signed and absolute versions; returns keys
    ``q_signed, q_abs, k_signed, …, o_abs``, each of length H.

    Example:
        >>> e = np.eye(4)
        >>> attention_head_strengths(e, e, e, e, 2)["q_signed"].tolist()
        [2.0, 2.0]
    """
    mats = {}
    for name, m in (("q", w_q), ("k", w_k), ("v", w_v), ("o", w_o)):
        a = np.asarray(m.detach().cpu().double().numpy() if hasattr(m, "detach") else m)
        a = a.astype(np.float64, copy=False)
        if a.ndim != 2:
            raise ValueError(f"w_{name}: expected a 2-D matrix, got shape {a.shape}")
        mats[name] = np.where(np.isfinite(a), a, 0.0)
    dim = mats["o"].shape[1]
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads: {num_heads} does not divide the attention width {dim}")
    for name in "qkv":
        if mats[name].shape[0] != dim:
            raise ValueError(f"w_{name}: expected {dim} rows (one per attention channel), got {mats[name].shape[0]}")
    dh = dim // num_heads
    out: dict[str, np.ndarray] = {}
    for name in "qkv":
        blocks = mats[name].reshape(num_heads, dh, -1)  # head-major rows
        out[f"{name}_signed"] = blocks.sum(axis=(1, 2))
        out[f"{name}_abs"] = np.abs(blocks).sum(axis=(1, 2))
    o = mats["o"].reshape(mats["o"].shape[0], num_heads, dh)
    out["o_signed"] = o.sum(axis=(0, 2))
    out["o_abs"] = np.abs(o).sum(axis=(0, 2))
    return out
