"""What a lens feeds a model: reading data containers as (inputs, labels) batches.

Every lens takes its data through this module, so the same samples give the same batches
whatever the container they came in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

LABEL_KEYS = ("labels", "label", "y", "targets", "target")


@dataclass
class _Indexable:
    inputs: torch.Tensor | dict[str, torch.Tensor]
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return _batch_size_of(self.inputs)

    def take(self, idx: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        if isinstance(self.inputs, dict):
            x = {k: v[idx] for k, v in self.inputs.items()}
        else:
            x = self.inputs[idx]
        return x, (self.labels[idx] if self.labels is not None else None)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"{what} must be a tensor or numpy array, got {type(value).__name__}")


def _split_dict(batch: Mapping) -> tuple[dict, torch.Tensor | None]:
    inputs = dict(batch)
    labels = None
    for key in LABEL_KEYS:
        if key in inputs:
            labels = _as_tensor(inputs.pop(key), f"batch[{key!r}]")
            break
    return inputs, labels


def as_indexable(data: Any) -> _Indexable | None:
    """Read ``data`` as an indexable (inputs, labels) pair, or None for a stream of batches.

    Accepted: a ``load_data`` spec string (``"digits"``, ``"npz:PATH"``…: its test split), a
    netxray ``Dataset`` (``.x``, ``.y``), ``DataSplits`` (its test split), a tensor or array, an
    ``(x, y)`` tuple, or a dict of equal-length tensors (model keyword arguments; a ``labels`` key
    is taken as the labels).
    """
    if isinstance(data, str):
        from netxray.data import load_data

        data = load_data(data)
    if hasattr(data, "test") and hasattr(data, "train"):
        data = data.test
    if hasattr(data, "x") and hasattr(data, "y"):
        return _checked(_Indexable(_as_tensor(data.x, "data.x"), _as_tensor(data.y, "data.y")))
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return _Indexable(_as_tensor(data, "data"), None)
    if isinstance(data, tuple) and len(data) == 2 and all(
        isinstance(v, (torch.Tensor, np.ndarray)) for v in data
    ):
        return _checked(_Indexable(_as_tensor(data[0], "x"), _as_tensor(data[1], "y")))
    if isinstance(data, Mapping):
        odd = {k: type(v).__name__ for k, v in data.items()
               if not isinstance(v, (torch.Tensor, np.ndarray))}  # fmt: skip
        if odd or not data:
            raise TypeError(
                "dict data must map the model's keyword arguments to tensors with one row per "
                f"sample (a 'labels' key is taken as the labels); got {odd or 'an empty dict'}"
            )
        inputs, labels = _split_dict({k: _as_tensor(v, f"data[{k!r}]") for k, v in data.items()})
        lengths = {k: int(v.shape[0]) for k, v in inputs.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"dict inputs must share their first (sample) dimension, got {lengths}")
        return _checked(_Indexable(inputs, labels))
    return None


def _checked(data: _Indexable) -> _Indexable:
    if data.labels is not None:
        if data.labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D vector, got shape {tuple(data.labels.shape)}")
        if data.labels.shape[0] != len(data):
            raise ValueError(
                f"labels do not match the samples: {data.labels.shape[0]} labels for {len(data)} samples"
            )
    return data


def _split_batch(batch: Any) -> tuple[Any, torch.Tensor | None]:
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return _as_tensor(batch, "batch"), None
    if isinstance(batch, Mapping):
        return _split_dict(batch)
    if isinstance(batch, (tuple, list)) and batch:
        labels = batch[1] if len(batch) > 1 else None
        return _as_tensor(batch[0], "batch[0]"), (
            _as_tensor(labels, "batch[1]") if labels is not None else None
        )
    raise TypeError(
        f"a batch must be a tensor, an (x, y) tuple or a dict of tensors, got {type(batch).__name__}"
    )


def _batch_size_of(inputs: Any) -> int:
    if isinstance(inputs, dict):
        return int(next(iter(inputs.values())).shape[0])
    return int(inputs.shape[0])


def _to_model(inputs: Any, device: torch.device | None, dtype: torch.dtype | None) -> Any:
    """Move a batch to the model's device, and floating inputs to its floating dtype (a float64
    model, e.g. a canonical form, is fed float64; integer token ids stay integers)."""

    def move(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        return t.to(device) if device is not None else t

    if isinstance(inputs, dict):
        return {k: move(v) for k, v in inputs.items()}
    return move(inputs)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (None when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def forward_batch(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on one batch: ``model(x)``, or ``model(**inputs)`` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a stateless model)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return None


def select_indices(n_total: int, n_samples: int | None, seed: int) -> np.ndarray:
    """A seeded random subset of ``range(n_total)`` of size ``n_samples`` (all if fewer), sorted."""
    if n_samples is None or n_samples >= n_total:
        return np.arange(n_total)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n_samples, replace=False))


def iter_selected_batches(
    data: Any, *, n_samples: int | None, seed: int, batch_size: int
) -> Iterator[tuple[Any, torch.Tensor | None, np.ndarray | None]]:
    """Yield ``(inputs, labels, indices)`` for a seeded random subset of ``data``.

    Indexable data is subsampled up front; a stream of batches is passed through whole and the
    caller keeps a reservoir (``indices`` is None then).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    indexable = as_indexable(data)
    if indexable is not None:
        chosen = select_indices(len(indexable), n_samples, seed)
        for start in range(0, len(chosen), batch_size):
            idx = chosen[start : start + batch_size]
            x, y = indexable.take(torch.from_numpy(idx))
            yield x, y, idx
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            "data must be a Dataset, DataSplits, tensor, (x, y) tuple, dict of tensors or an "
            f"iterable of batches, got {type(data).__name__}"
        )
    for batch in data:
        x, y = _split_batch(batch)
        yield x, y, None
