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

Every reducer computes on a detached copy and never writes into the tensor it is given.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import torch

TokenRule = Literal["mean", "reference", "samples"]
SeqLayout = Literal["tokens", "channels"]


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
) -> torch.Tensor:
    """Pool a batch ``x`` of shape ``(B, ...)`` to a feature matrix ``(rows, d)``.

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


def flatten_features(x: torch.Tensor) -> torch.Tensor:
    """Flatten every sample: ``(B, ...)`` → ``(B, prod(...))`` (modularity uses raw features)."""
    x = x.detach()
    if x.ndim <= 1:
        return x.reshape(-1, 1)
    return x.reshape(x.shape[0], -1)


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
) -> RowStore:
    """A :class:`RowStore` for the named reducer: ``"pool"`` or ``"flatten"``."""
    if reducer == "pool":
        return RowStore(
            lambda x: pool_features(x, channel_axis=channel_axis, tokens=tokens, seq_layout=seq_layout)
        )
    if reducer == "flatten":
        return RowStore(flatten_features)
    raise ValueError(f"reducer must be 'pool', 'flatten' or a callable, got {reducer!r}")
