"""Reducers run inside the hooks: they turn a batch of raw tensors into rows of an (n, d) matrix.

Pooling rules (SPEC §1.2):

- ``(B, d)``: kept as is; ``(B,)`` becomes ``(B, 1)``.
- conv maps ``(B, C, *spatial)`` with ``channel_axis=1``: mean over the spatial axes → ``(B, C)``.
  Channel-last maps ``(B, *spatial, C)`` (ConvNeXt, Swin) need ``channel_axis=-1``: the mean is
  then over the spatial axes, never over the channels.
- token tensors ``(B, T, D)``: ``tokens="mean"`` averages over tokens → ``(B, D)`` (default);
  ``tokens="reference"`` averages over D → ``(B, T)`` (the reference code's rule);
  ``tokens="samples"`` makes every position a sample → ``(B·T, D)``.
- a 3-D tensor is read as tokens unless ``seq_layout="channels"`` (Conv1d maps ``(B, C, L)``).

Positions as samples (SPEC §1.2, the signature's default, :class:`PositionDraw`): an element-wise
activation acts on every position by itself, so each position (pixel, token) of each input is a
sample of d = channels features. A conv map ``(B, C, *spatial)`` gives B·H·W candidate rows, a
token tensor ``(B, T, D)`` its real tokens (positions the attention mask marks as padding are never
candidates). At most ``cap`` positions are drawn per input (so one input cannot dominate), each
input's draw seeded by (seed, the input's index in the data, its number of real positions): the
same input gives the same positions at every site and on both sides of a call, whatever the
padding, and the same seed gives the same rows.

Every reducer computes on a detached copy and never writes into the tensor it is given.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import torch

TokenRule = Literal["mean", "reference", "samples"]
SeqLayout = Literal["tokens", "channels"]
SampleRule = Literal["positions", "pooled"]


class Reducer(Protocol):
    """Streaming state for one site (torchmetrics-style ``update`` / ``compute``)."""

    def update(self, batch: torch.Tensor) -> None: ...

    def compute(self) -> Any: ...


def pool_features(
    x: torch.Tensor,
    *,
    channel_axis: int = 1,
    tokens: TokenRule = "mean",
    seq_layout: SeqLayout = "tokens",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool a batch ``x`` of shape ``(B, ...)`` to a feature matrix ``(rows, d)``.

    ``mask`` (B, T): the attention mask of a token batch; ``tokens="mean"`` then averages the
    real tokens only (padding never enters a sample).

    Example:
        >>> pool_features(torch.ones(4, 3, 5, 5)).shape
        torch.Size([4, 3])
        >>> pool_features(torch.ones(4, 7, 16)).shape  # tokens: mean over the 7 tokens
        torch.Size([4, 16])
    """
    if x.ndim == 0:
        raise ValueError("cannot pool a scalar: expected a batch tensor of shape (B, ...)")
    x = x.detach()
    if x.ndim == 1:
        return x.reshape(-1, 1)
    if x.ndim == 2:
        return x
    if x.ndim == 3 and seq_layout == "tokens":
        if tokens == "mean":
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
                keep = mask.to(device=x.device, dtype=x.dtype)[:, :, None]
                return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
            return x.mean(dim=1)
        if tokens == "reference":
            return x.mean(dim=2)
        if tokens == "samples":
            return x.reshape(-1, x.shape[-1])
        raise ValueError(f"tokens must be 'mean', 'reference' or 'samples', got {tokens!r}")
    axis = channel_axis % x.ndim
    if axis == 0:
        raise ValueError("channel_axis points at the batch axis; expected 1 or -1")
    spatial = tuple(a for a in range(1, x.ndim) if a != axis)
    return x.mean(dim=spatial)


def flatten_features(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Flatten every sample: ``(B, ...)`` → ``(B, prod(...))`` (modularity uses raw features).

    ``mask`` (B, T), the attention mask of the batch: a token tensor ``(B, T, D)`` has its padded
    positions set to 0 first, so padding adds nothing to dot products or norms — the cosine
    similarities, and the kNN graph, are those of the real tokens, whatever the padded length.

    Example:
        >>> x = torch.ones(2, 3, 4)
        >>> flatten_features(x, torch.tensor([[1, 1, 0], [1, 0, 0]])).sum(dim=1).tolist()
        [8.0, 4.0]
    """
    x = x.detach()
    if x.ndim <= 1:
        return x.reshape(-1, 1)
    if mask is not None and x.ndim == 3 and tuple(mask.shape) == tuple(x.shape[:2]):
        keep = mask.to(device=x.device, dtype=torch.bool)[:, :, None]
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.reshape(x.shape[0], -1)


class PositionDraw:
    """Which positions of each input become samples (the positions estimator, SPEC §1.2).

    :meth:`set_batch` is called before each forward with the dataset indices of the batch's
    inputs and its attention mask (None when there is none). :meth:`rows` turns an activation's
    tensor into candidate rows: input b, with P_b real positions (padding excluded), draws the
    keys ``default_rng((seed, index_b, P_b)).random(P_b)``, ranks its positions by them and offers
    its ``keep`` best; :class:`PositionStore` then keeps R rows by rank level — every input's first
    choice, then every input's second, … (ties within a level: the smaller key) — so each input
    gives min(P_b, t) or t + 1 positions for one level t: no input dominates, and R is reached
    whenever the inputs offer R positions. Ranks and keys are the same for the input and output
    of a call, for every site with P_b positions, and for a text padded to any length (only real
    positions are ranked), so the same rows are kept on both sides whatever the batching.

    Example:
        >>> draw = PositionDraw(keep=3, seed=0)
        >>> draw.set_batch(np.array([0, 1]), None)
        >>> rows, ranks, keys, owners = draw.rows(torch.randn(2, 5, 4, 4), channel_axis=1)
        >>> tuple(rows.shape), sorted(ranks.tolist()), owners.tolist()
        ((6, 5), [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1])
    """

    def __init__(self, keep: int, seed: int) -> None:
        if keep <= 0:
            raise ValueError(f"keep must be positive, got {keep}")
        self.keep, self.seed = int(keep), int(seed)
        self.indices: np.ndarray | None = None
        self.mask: torch.Tensor | None = None
        self._chosen: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def set_batch(self, indices: np.ndarray, mask: torch.Tensor | None) -> None:
        """The dataset indices of the next forward's inputs, and its attention mask (B, T)."""
        self.indices = np.asarray(indices, dtype=np.int64)
        self.mask = None if mask is None else mask.detach().to("cpu").bool()

    def _choose(self, index: int, n_real: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offered positions in order, their ranks, their keys) of one input with ``n_real``
        real positions."""
        key = (index, n_real)
        chosen = self._chosen.get(key)
        if chosen is None:
            keys = np.random.default_rng((self.seed, index, n_real)).random(n_real)
            order = np.argsort(keys, kind="stable")[: self.keep]  # best first
            pos = np.sort(order)
            rank = np.empty(n_real, dtype=np.int64)
            rank[order] = np.arange(len(order))
            chosen = (pos, rank[pos], keys[pos])
            self._chosen[key] = chosen
        return chosen

    def rows(
        self, x: torch.Tensor, *, channel_axis: int = 1, seq_layout: SeqLayout = "tokens"
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, ranks, keys, owners)`` of a batch ``x`` (B, ...): the offered positions as
        rows (features = channels), each one's rank and key within its input, and its input's
        index."""
        x = x.detach()
        if x.ndim == 0:
            raise ValueError("cannot draw positions from a scalar: expected a batch tensor (B, ...)")
        b = x.shape[0]
        indices = self.indices if self.indices is not None and len(self.indices) == b else np.arange(b)
        if x.ndim <= 2:  # one position per input: the input itself
            zeros = np.zeros(b, dtype=np.int64)
            return x.reshape(b, -1), zeros, zeros.astype(np.float64), indices.copy()
        if x.ndim == 3 and seq_layout == "tokens":
            grid = x  # (B, T, D)
        else:
            axis = channel_axis % x.ndim
            if axis == 0:
                raise ValueError("channel_axis points at the batch axis; expected 1 or -1")
            grid = x.movedim(axis, -1).reshape(b, -1, x.shape[axis])
        p = grid.shape[1]
        mask = self.mask
        masked = mask is not None and grid is x and tuple(mask.shape) == (b, p)
        flat, ranks, keys, owners = [], [], [], []
        for i in range(b):
            real = np.flatnonzero(mask[i].numpy()) if masked else None
            pos, rank, key = self._choose(int(indices[i]), len(real) if real is not None else p)
            flat.append((real[pos] if real is not None else pos) + i * p)
            ranks.append(rank)
            keys.append(key)
            owners.append(np.full(len(pos), indices[i], dtype=np.int64))
        sel = torch.from_numpy(np.concatenate(flat)).to(grid.device)
        rows = grid.reshape(b * p, -1).index_select(0, sel)
        return rows, np.concatenate(ranks), np.concatenate(keys), np.concatenate(owners)


class PositionStore:
    """Streaming state of the positions estimator at one site: the offered rows of every batch
    (:meth:`PositionDraw.rows`), trimmed as they come to the ``max_rows`` best by (rank, key) —
    lowest rank level first — in arrival (data) order. The kept set does not depend on the
    batching, it is the same for the input and output of a call, and memory stays at
    ``max_rows`` plus one batch. ``per_input``: after :meth:`compute`, the most positions any
    one input gave.

    Rows are kept in the activation's own floating dtype (a bf16 model's rows in bf16: 2 bytes
    a value, exact; the scorer upcasts one site at a time), so a 1.1 B-parameter model's 22 SiLU
    sites at 6144 × 5632 hold 3 GB, not the 6 GB of float32. Batches are kept as a list and
    joined only when the rows must be trimmed or are asked for (no copy of the whole store per
    batch)."""

    def __init__(self, draw: PositionDraw, *, channel_axis: int, seq_layout: SeqLayout,
                 max_rows: int | None) -> None:  # fmt: skip
        self.draw, self.channel_axis, self.seq_layout = draw, channel_axis, seq_layout
        self.max_rows = max_rows
        self.chunks: list[torch.Tensor] = []
        self.ranks = np.empty(0, dtype=np.int64)
        self.keys = np.empty(0)
        self.owners = np.empty(0, dtype=np.int64)
        self.per_input = 0

    @property
    def rows(self) -> torch.Tensor | None:
        """The kept rows as one tensor (None before any batch)."""
        if not self.chunks:
            return None
        if len(self.chunks) > 1:
            self.chunks = [torch.cat(self.chunks)]
        return self.chunks[0]

    def update(self, batch: torch.Tensor) -> None:
        rows, ranks, keys, owners = self.draw.rows(batch, channel_axis=self.channel_axis,
                                                   seq_layout=self.seq_layout)  # fmt: skip
        # a copy in the activation's own dtype (bf16 values stay exact; integer or boolean
        # activations, which no element-wise non-linearity gives, become float32)
        dtype = rows.dtype if rows.is_floating_point() else torch.float32
        self.chunks.append(rows.to(device="cpu", dtype=dtype, copy=True))
        self.ranks = np.concatenate([self.ranks, ranks])
        self.keys = np.concatenate([self.keys, keys])
        self.owners = np.concatenate([self.owners, owners])
        if self.max_rows is not None and len(self.ranks) > self.max_rows:
            keep = np.sort(np.lexsort((self.keys, self.ranks))[: self.max_rows])
            # chunk by chunk: the kept rows of each, then one join (no copy of all the rows)
            kept, start = [], 0
            for c in self.chunks:
                sel = keep[(keep >= start) & (keep < start + len(c))] - start
                if len(sel) == len(c):
                    kept.append(c)
                elif len(sel):
                    kept.append(c.index_select(0, torch.from_numpy(sel)))
                start += len(c)
            self.chunks = kept
            self.ranks, self.keys, self.owners = self.ranks[keep], self.keys[keep], self.owners[keep]

    def compute(self) -> torch.Tensor:
        rows = self.rows
        if rows is None:
            return torch.empty(0, 0)
        owners = self.owners
        self.per_input = int(np.unique(owners, return_counts=True)[1].max()) if len(owners) else 0
        return rows


class RowStore:
    """Keeps reduced rows (CPU; float64 stays float64, other dtypes become float32).

    ``transform`` maps a raw batch to rows; ``rows_per_sample`` > 1 happens with
    ``tokens="samples"`` (every position is a row).
    """

    def __init__(self, transform) -> None:
        self.transform = transform
        self.chunks: list[torch.Tensor] = []
        self.rows_per_sample = 1

    def update(self, batch: torch.Tensor) -> None:
        rows = self.transform(batch)
        if batch.ndim > 0 and batch.shape[0] > 0:
            self.rows_per_sample = max(1, rows.shape[0] // batch.shape[0])
        # copy: a view of a tensor modified in place later must not change what we kept
        dtype = torch.float64 if rows.dtype == torch.float64 else torch.float32
        self.chunks.append(rows.to(device="cpu", dtype=dtype, copy=True))

    def compute(self) -> torch.Tensor:
        if not self.chunks:
            return torch.empty(0, 0)
        if len(self.chunks) > 1:
            self.chunks = [torch.cat(self.chunks)]
        return self.chunks[0]


def make_row_store(
    reducer: str,
    *,
    channel_axis: int = 1,
    tokens: TokenRule = "mean",
    seq_layout: SeqLayout = "tokens",
    draw: PositionDraw | None = None,
    max_rows: int | None = None,
) -> RowStore | PositionStore:
    """The store of the named reducer: ``"pool"``, ``"positions"`` (a :class:`PositionStore`
    over ``draw``, at most ``max_rows`` rows) or ``"flatten"`` (padding masked by ``draw.mask``)."""
    if reducer == "pool":
        return RowStore(
            lambda x: pool_features(x, channel_axis=channel_axis, tokens=tokens, seq_layout=seq_layout,
                                    mask=draw.mask if draw is not None else None)
        )
    if reducer == "positions":
        if draw is None:
            raise ValueError("the positions reducer needs a PositionDraw")
        return PositionStore(draw, channel_axis=channel_axis, seq_layout=seq_layout, max_rows=max_rows)
    if reducer == "flatten":
        return RowStore(lambda x: flatten_features(x, draw.mask if draw is not None else None))
    raise ValueError(f"reducer must be 'pool', 'positions', 'flatten' or a callable, got {reducer!r}")
