"""What a lens feeds a model: one resolver from any data container to (inputs, labels) samples.

Every data lens (signature, modularity, adversarial, pruning, scan, compare) reads its data
through :func:`resolve_samples`, so the same samples give the same batches — and the same
numbers — whatever the container they came in:

- a ``load_data`` spec string (``"digits"``, ``"imagefolder:DIR"``…: its test split),
  ``DataSplits`` (its test split), a netxray ``Dataset``;
- a tensor or numpy array (inputs only), an ``(x, y)`` tuple, ``((x1, x2), y)`` for a model
  with several positional inputs, a dict of tensors (the model's keyword arguments; a label
  key — ``labels``, ``label``, ``y``, ``targets``, ``target`` — is taken as the labels);
- a map-style ``torch.utils.data.Dataset`` yielding ``(x, y)``, ``(x1, …, xk, y)``, ``(x,)``
  or dicts (read lazily: only the chosen samples are loaded);
- a ``DataLoader`` over such a dataset (its dataset and ``collate_fn`` are used, its batching
  and shuffling are not: the lens draws its own seeded subset);
- a stream: an ``IterableDataset`` (samples), or any other iterable of batches — tensors,
  tuples, dicts — such as a list, a generator or a ``DataLoader`` over an iterable dataset.

Sampling is one rule for all: sample i gets the key u_i, the i-th draw of
``numpy.random.default_rng(seed).random()``; the ``n`` samples with the smallest keys are kept,
in data order (:func:`select_indices`). A stream is read once and only its kept samples are
held (the same keys decide), so a stream and an in-memory copy of it give the same samples and,
batched alike, bit-identical results. A lens that needs every label first (the modularity
curve's class-stratified subsets) reads a stream whole into memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netxray._device import model_device, resolve_device  # noqa: F401  (re-exported: they lived here)

LABEL_KEYS = ("labels", "label", "y", "targets", "target")

# a batch's model inputs: one tensor, keyword tensors, or positional tensors
Inputs = torch.Tensor | dict[str, torch.Tensor] | tuple[torch.Tensor, ...]

_ACCEPTED = (
    "a load_data spec string, a netxray Dataset or DataSplits, a tensor or numpy array, an "
    "(x, y) tuple, ((x1, x2, ...), y) for a model with several inputs, a dict of tensors, a "
    "torch Dataset (map-style or iterable) yielding (x, y), (x1, ..., y) or dicts, a DataLoader, "
    "or an iterable of batches"
)


# --------------------------------------------------------------------------- conversions


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "USO":  # strings (or objects): no tensor; say how to fix it
            kind = "strings" if value.dtype.kind in "US" else "Python objects"
            raise TypeError(
                f"{what} must be a numeric array, got {kind} (numpy dtype {value.dtype}); map string "
                "labels to integer classes first, e.g. classes, y = np.unique(y, return_inverse=True)"
            )
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (int, float, np.integer, np.floating, bool)):
        return torch.as_tensor(value)
    raise TypeError(f"{what} must be a tensor or numpy array, got {type(value).__name__}")


def _as_inputs(value: Any, what: str) -> Inputs:
    """One tensor, a dict of tensors or a tuple of tensors (nested containers converted)."""
    if isinstance(value, Mapping):
        return {str(k): _as_tensor(v, f"{what}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple(_as_tensor(v, f"{what}[{i}]") for i, v in enumerate(value))
    return _as_tensor(value, what)


def _split_dict(batch: Mapping) -> tuple[dict, torch.Tensor | None]:
    inputs = dict(batch)
    labels = None
    for key in LABEL_KEYS:
        if key in inputs:
            labels = _as_tensor(inputs.pop(key), f"batch[{key!r}]")
            break
    if not inputs:
        raise ValueError(
            f"a dict batch has no model inputs besides its labels (keys: {sorted(map(str, batch))}); "
            "expected the model's keyword arguments, e.g. input_ids and attention_mask"
        )
    return {str(k): _as_tensor(v, f"batch[{k!r}]") for k, v in inputs.items()}, labels


def _split_batch(batch: Any) -> tuple[Inputs, torch.Tensor | None]:
    """A batch (or one sample) as (inputs, labels).

    A tensor is inputs only; a dict gives its label key as the labels and the rest as keyword
    inputs; a tuple ``(x, y)`` is inputs and labels, ``(x1, ..., xk, y)`` or ``((x1, ..., xk),
    y)`` positional inputs and labels, ``(x,)`` inputs only.
    """
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return _as_tensor(batch, "batch"), None
    if isinstance(batch, Mapping):
        return _split_dict(batch)
    if isinstance(batch, (tuple, list)) and batch:
        if len(batch) == 1:
            return _as_inputs(batch[0], "batch[0]"), None
        labels = _as_tensor(batch[-1], f"batch[{len(batch) - 1}] (the labels)")
        if len(batch) == 2:
            return _as_inputs(batch[0], "batch[0]"), labels
        return tuple(_as_tensor(v, f"batch[{i}]") for i, v in enumerate(batch[:-1])), labels
    raise TypeError(
        "a batch must be a tensor, an (x, y) or (x1, ..., y) tuple or a dict of tensors, got "
        f"{type(batch).__name__}"
    )


def _batch_size_of(inputs: Any) -> int:
    if isinstance(inputs, dict):
        return int(next(iter(inputs.values())).shape[0])
    if isinstance(inputs, tuple):
        return int(inputs[0].shape[0])
    return int(inputs.shape[0])


def _index(inputs: Inputs, idx: torch.Tensor) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v[idx] for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(v[idx] for v in inputs)
    return inputs[idx]


def _concat(parts: list[Inputs]) -> Inputs:
    first = parts[0]
    try:
        if isinstance(first, dict):
            return {k: torch.cat([p[k] for p in parts]) for k in first}  # type: ignore[index]
        if isinstance(first, tuple):
            return tuple(torch.cat([p[i] for p in parts]) for i in range(len(first)))  # type: ignore[index]
        return torch.cat(parts)  # type: ignore[arg-type]
    except (RuntimeError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(
            "the batches do not fit together (every batch must have the same keys or number of "
            f"inputs, and samples of one shape; pad token ids to one length): {exc}"
        ) from exc


def _shape_of(inputs: Inputs) -> Any:
    if isinstance(inputs, dict):
        return {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(tuple(v.shape[1:]) for v in inputs)
    return tuple(inputs.shape[1:])


# --------------------------------------------------------------------------- sample sets


class Samples:
    """Numbered samples with optional labels, read lazily or held in memory.

    ``len(s)`` samples; ``s.take(idx)`` the inputs and labels of samples ``idx`` as one batch;
    ``s.labels`` every label (None when the data has none); ``s.name`` where they came from;
    ``s.unit`` what one sample is, for a reader (images, texts, samples).
    """

    name: str = "data"
    unit: str = "samples"

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def labels(self) -> torch.Tensor | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def take(self, idx: torch.Tensor | np.ndarray) -> tuple[Inputs, torch.Tensor | None]:  # pragma: no cover
        raise NotImplementedError


@dataclass
class _Indexable(Samples):
    """Samples held in memory: inputs (tensor, dict or tuple of tensors) with one row per sample."""

    inputs: Inputs
    labels_: torch.Tensor | None
    name: str = "data"
    positions: np.ndarray | None = field(default=None, repr=False)  # stream positions kept

    def __len__(self) -> int:
        return _batch_size_of(self.inputs)

    @property
    def labels(self) -> torch.Tensor | None:
        return self.labels_

    def take(self, idx: torch.Tensor | np.ndarray) -> tuple[Inputs, torch.Tensor | None]:
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return _index(self.inputs, idx), (self.labels_[idx] if self.labels_ is not None else None)


class _MapStyle(Samples):
    """A map-style dataset (``len`` and ``ds[i]``), read lazily: only the samples taken are loaded.

    Items are split into inputs and labels after ``collate_fn`` (a DataLoader's own, or torch's
    default) has made a batch of them, exactly as the DataLoader would.
    """

    def __init__(self, dataset: Any, collate_fn: Any = None, name: str | None = None) -> None:
        from torch.utils.data import default_collate

        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate
        self.name = name or str(getattr(dataset, "name", type(dataset).__name__))
        self._labels: torch.Tensor | None | bool = False  # False: not read yet

    def __len__(self) -> int:
        return len(self.dataset)

    def take(self, idx: torch.Tensor | np.ndarray) -> tuple[Inputs, torch.Tensor | None]:
        items = [self.dataset[int(i)] for i in np.asarray(idx, dtype=np.int64)]
        if not items:
            raise ValueError(f"{self.name}: no samples to take")
        return _split_batch(self.collate_fn(items))

    @property
    def labels(self) -> torch.Tensor | None:
        """Every label: from the dataset's ``targets``/``labels`` when it has them (no sample is
        loaded), otherwise read item by item once."""
        if self._labels is False:
            self._labels = self._read_labels()
        return self._labels  # type: ignore[return-value]

    def _read_labels(self) -> torch.Tensor | None:
        n = len(self)
        for attr in ("targets", "labels", "y"):
            value = getattr(self.dataset, attr, None)
            if isinstance(value, (torch.Tensor, np.ndarray, list, tuple)) and len(value) == n:
                return torch.as_tensor(np.asarray(value))
        out = []
        for start in range(0, n, 256):
            _, y = self.take(np.arange(start, min(n, start + 256)))
            if y is None:
                return None
            out.append(y)
        return torch.cat(out) if out else None


def class_labels(labels: torch.Tensor, what: str = "labels") -> torch.Tensor:
    """Labels as int64 class ids: integers as they are, integral floats (``1.0``) cast; non-integer
    or non-finite floats (a regression target is not a class label) and booleans are a
    ``ValueError`` naming ``what``.

    Example:
        >>> class_labels(torch.tensor([0.0, 1.0, 1.0])).tolist()
        [0, 1, 1]
    """
    if labels.dtype == torch.bool:
        raise ValueError(f"{what} must be integer class ids, got booleans")
    if labels.is_floating_point() or labels.is_complex():
        t = labels.detach()
        bad = ~torch.isfinite(t) | (t != torch.round(t)) if not t.is_complex() else torch.ones_like(t, dtype=torch.bool)
        if bool(bad.any()):
            examples = ", ".join(f"{float(v):g}" for v in t[bad][:3].real)
            raise ValueError(
                f"{what} must be integer class ids; got non-integer values such as {examples} "
                f"({int(bad.sum())} of {t.numel()}): a regression target is not a class label"
            )
        return t.long()
    return labels


def _relabelled(samples: _Indexable, labels: torch.Tensor) -> _Indexable:
    """The same inputs with integer ``labels`` (a copy of the record, the inputs shared)."""
    import dataclasses

    return dataclasses.replace(samples, labels_=labels)


def _checked(data: _Indexable) -> _Indexable:
    if isinstance(data.inputs, (dict, tuple)) and not data.inputs:
        raise ValueError("the data has no model inputs (an empty dict or tuple)")
    if data.labels_ is not None:
        if data.labels_.ndim != 1:
            raise ValueError(f"labels must be a 1-D vector, got shape {tuple(data.labels_.shape)}")
        if data.labels_.shape[0] != len(data):
            raise ValueError(
                f"labels do not match the samples: {data.labels_.shape[0]} labels for "
                f"{len(data)} samples"
            )
    if isinstance(data.inputs, (dict, tuple)):
        lengths = (
            {k: int(v.shape[0]) for k, v in data.inputs.items()}
            if isinstance(data.inputs, dict)
            else {i: int(v.shape[0]) for i, v in enumerate(data.inputs)}
        )
        if len(set(lengths.values())) != 1:
            raise ValueError(f"the inputs must share their first (sample) dimension, got {lengths}")
    return data


# --------------------------------------------------------------------------- the resolver


def _is_map_style(data: Any) -> bool:
    from torch.utils.data import IterableDataset

    if isinstance(data, IterableDataset):
        return False
    return hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(
        data, (str, bytes, Mapping, list, tuple, torch.Tensor, np.ndarray)
    )


def _stream_batches(data: Any, batch_size: int) -> Iterable[Any] | None:
    """Batches of a stream, or None when ``data`` is not one."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(data, IterableDataset):  # yields samples: batch them as a DataLoader would
        return DataLoader(data, batch_size=batch_size)
    if isinstance(data, (str, bytes, Mapping, torch.Tensor, np.ndarray)):
        return None
    if isinstance(data, Iterable):
        return data
    return None


def _data_name(data: Any) -> str:
    if isinstance(data, str):
        return f"{data}:test"
    if hasattr(data, "test") and hasattr(data, "train"):
        split = data.measured_split() if hasattr(data, "measured_split") else "test"
        return f"{getattr(data, 'name', 'data')}:{split}"
    name = getattr(data, "name", None)
    if isinstance(name, str) and name:
        return name
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        inner = getattr(data.dataset, "name", None)
        return f"DataLoader({inner or type(data.dataset).__name__})"
    return type(data).__name__


def select_indices(n_total: int, n_samples: int | None, seed: int) -> np.ndarray:
    """The seeded subset of ``range(n_total)`` a lens measures: all when ``n_samples`` ≥ n_total,
    otherwise the ``n_samples`` indices with the smallest keys u_i, u = default_rng(seed).random(n_total),
    sorted. Drawing the keys batch by batch gives the same u, so a stream keeps the same samples.

    Example:
        >>> select_indices(10, 3, seed=0).tolist()
        [1, 2, 3]
        >>> select_indices(4, 10, seed=0).tolist()
        [0, 1, 2, 3]
    """
    if n_samples is None or n_samples >= n_total:
        return np.arange(n_total)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    keys = np.random.default_rng(seed).random(n_total)
    return np.sort(np.argsort(keys, kind="stable")[:n_samples])


def _read_stream(
    batches: Iterable[Any], *, n_samples: int | None, seed: int, name: str
) -> _Indexable:
    """Read a stream once, keeping the samples :func:`select_indices` would keep (all when
    ``n_samples`` is None): at most ``n_samples`` samples are held at any time."""
    rng = np.random.default_rng(seed)
    kept_x: list[Inputs] = []
    kept_y: list[torch.Tensor] = []
    kept_keys = np.empty(0)
    kept_pos = np.empty(0, dtype=np.int64)
    seen = 0
    has_labels: bool | None = None
    for batch in batches:
        x, y = _split_batch(batch)
        b = _batch_size_of(x)
        if y is not None and (y.ndim != 1 or y.shape[0] != b):
            raise ValueError(
                f"labels do not match the samples in a batch: labels of shape {tuple(y.shape)} for "
                f"{b} samples (expected one label per sample)"
            )
        if has_labels is None:
            has_labels = y is not None
        elif has_labels != (y is not None):
            raise ValueError("some batches have labels and some do not; give labels for every batch")
        keys = rng.random(b)
        pos = np.arange(seen, seen + b)
        seen += b
        kept_x.append(_as_cpu(x))
        if y is not None:
            kept_y.append(y.detach().cpu())
        kept_keys = np.concatenate([kept_keys, keys])
        kept_pos = np.concatenate([kept_pos, pos])
        if n_samples is not None and len(kept_keys) > n_samples:
            keep = np.sort(np.argsort(kept_keys, kind="stable")[:n_samples])
            t = torch.from_numpy(keep)
            kept_x = [_index(_concat(kept_x), t)]
            if kept_y:
                kept_y = [torch.cat(kept_y)[t]]
            kept_keys, kept_pos = kept_keys[keep], kept_pos[keep]
    if seen == 0:
        raise ValueError(f"{name}: the data yielded no samples")
    inputs = _concat(kept_x)
    labels = torch.cat(kept_y) if kept_y else None
    return _checked(_Indexable(inputs, labels, name=name, positions=kept_pos))


def _as_cpu(x: Inputs) -> Inputs:
    if isinstance(x, dict):
        return {k: v.detach().cpu() for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v.detach().cpu() for v in x)
    return x.detach().cpu()


def resolve_samples(
    data: Any,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    need_labels: str | None = None,
) -> Samples:
    """Read ``data`` — any of the containers in this module's docstring — as :class:`Samples`.

    ``n_samples`` and ``seed`` matter only for a stream: it is read once, keeping the samples
    that :func:`select_indices` (n_total, n_samples, seed) would keep (``None``: all of them).
    ``need_labels``: the name of a lens that needs class labels; data without labels is then a
    ``ValueError`` naming that lens. Spec strings are loaded with ``load_data``; a ``DataSplits``
    is read by :meth:`~netxray.data.DataSplits.measured` (the whole data set when the source has
    no split of its own, else its test split).

    Example:
        >>> s = resolve_samples((torch.zeros(5, 2), torch.tensor([0, 1, 0, 1, 1])))
        >>> len(s), s.labels.tolist()
        (5, [0, 1, 0, 1, 1])
    """
    if isinstance(data, str):
        from netxray.data import load_data

        data = load_data(data, seed=seed)
    samples = _resolve(data, n_samples=n_samples, seed=seed, batch_size=batch_size)
    source = data.test if hasattr(data, "measured") else data  # the same kind of sample, no copy
    if isinstance(getattr(source, "unit", None), str) and samples is not data:
        samples.unit = source.unit  # "images", "texts": what the card's "n = 60 of 60 …" counts
    if need_labels is not None and samples.labels is None:
        raise ValueError(
            f"{need_labels} needs class labels and the data has none: give (x, y) pairs, a "
            f"dataset yielding (x, y), or dict batches with a {'/'.join(LABEL_KEYS[:2])} key"
        )
    if need_labels is not None:  # classes are what this lens reads: integers, or a clear error
        labels = class_labels(samples.labels, f"{need_labels}: the labels")
        if labels is not samples.labels and isinstance(samples, _Indexable):
            samples = _relabelled(samples, labels)  # integral floats (1.0) as int64 class ids
    return samples


def _resolve(data: Any, *, n_samples: int | None, seed: int, batch_size: int) -> Samples:
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(data, Samples):
        return data
    if isinstance(data, str):
        from netxray.data import load_data

        data = load_data(data, seed=seed)
    name = _data_name(data)
    if hasattr(data, "test") and hasattr(data, "train"):
        # a DataSplits: the whole data set when the source has no split of its own, else its
        # test split, or what ``with_split`` chose
        data = data.measured() if hasattr(data, "measured") else data.test
    if hasattr(data, "x") and hasattr(data, "y") and isinstance(
        data.x, (torch.Tensor, np.ndarray)
    ):
        return _checked(
            _Indexable(_as_tensor(data.x, "data.x"), _as_tensor(data.y, "data.y"), name=name)
        )
    if isinstance(getattr(data, "inputs", None), Mapping) and hasattr(data, "y"):
        # in-memory keyword inputs with labels (netxray.data.sources.LabelledInputs)
        inputs, _ = _split_dict(data.inputs)
        return _checked(_Indexable(inputs, _as_tensor(data.y, "data.y"), name=name))
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return _Indexable(_as_tensor(data, "data"), None, name=name)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], (torch.Tensor, np.ndarray)):
        first = data[0]
        if isinstance(first, (torch.Tensor, np.ndarray)) or (
            isinstance(first, (tuple, list, Mapping))
            and first
            and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in _values(first))
        ):
            labels = _as_tensor(data[1], "y")
            return _checked(_Indexable(_as_inputs(first, "x"), labels, name=name))
    if isinstance(data, Mapping):
        odd = {k: type(v).__name__ for k, v in data.items()
               if not isinstance(v, (torch.Tensor, np.ndarray))}  # fmt: skip
        if odd or not data:
            raise TypeError(
                "dict data must map the model's keyword arguments to tensors with one row per "
                f"sample (a 'labels' key is taken as the labels); got {odd or 'an empty dict'}"
            )
        inputs, labels = _split_dict(data)
        return _checked(_Indexable(inputs, labels, name=name))
    if isinstance(data, DataLoader) and not isinstance(data.dataset, IterableDataset):
        view = _loader_view(data, name)
        if view is not None:
            return view
        # a custom sampler decides which samples the loader holds: read it as a stream
        return _read_stream(data, n_samples=n_samples, seed=seed, name=name)
    if _is_map_style(data):
        return _MapStyle(data, name=name)
    batches = _stream_batches(data, batch_size)
    if batches is None:
        raise TypeError(f"data must be {_ACCEPTED}; got {type(data).__name__}")
    return _read_stream(batches, n_samples=n_samples, seed=seed, name=name)


def _loader_view(loader: Any, name: str) -> Samples | None:
    """The samples a DataLoader over a map-style dataset holds, read lazily: the whole dataset
    (sequential or shuffled sampling — the order does not matter, the lens draws its own subset),
    or a ``SubsetRandomSampler``'s indices. None for any other sampler (read as a stream)."""
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler, SubsetRandomSampler

    if not isinstance(loader.batch_sampler, BatchSampler):
        return None
    sampler = loader.sampler
    n = len(loader.dataset)
    whole = isinstance(sampler, SequentialSampler) or (
        isinstance(sampler, RandomSampler) and not sampler.replacement and sampler.num_samples == n
    )
    if whole:
        return _MapStyle(loader.dataset, loader.collate_fn, name=name)
    if isinstance(sampler, SubsetRandomSampler):
        idx = np.sort(np.asarray(list(sampler.indices), dtype=np.int64))
        return _MapStyle(_Subset(loader.dataset, idx), loader.collate_fn, name=name)
    return None


class _Subset:
    """Items ``indices`` of a map-style dataset (labels from its ``targets`` when it has them)."""

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices
        targets = getattr(dataset, "targets", None)
        if isinstance(targets, (torch.Tensor, np.ndarray, list, tuple)) and len(targets) == len(dataset):
            self.targets = np.asarray(targets)[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[int(self.indices[i])]


def _values(obj: Any) -> Iterable[Any]:
    return obj.values() if isinstance(obj, Mapping) else obj


def as_indexable(data: Any) -> Samples:
    """``data`` as :class:`Samples` (see :func:`resolve_samples`; a stream is read whole)."""
    return resolve_samples(data)


def describe(data: Any) -> str:
    """A short name of the data for metadata: a spec's test split, a data set's name, a type."""
    return _data_name(data)


# --------------------------------------------------------------------------- model side


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
    if isinstance(inputs, tuple):
        return tuple(move(v) for v in inputs)
    return move(inputs)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (None when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def forward_batch(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on one batch: ``model(x)``, ``model(*xs)`` for a tuple, ``model(**kw)`` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def place_model(model: nn.Module, device: Any) -> tuple[nn.Module, torch.device]:
    """``(model, device)`` to run a lens on: the model itself when it already lives on the
    resolved device, otherwise a copy moved there — the user's model is never moved.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> place_model(m, None)[0] is m
        True
    """
    dev = resolve_device(device, model)
    current = model_device(model)
    if current is None or _same_device(current, dev):
        return model, dev
    import copy

    return copy.deepcopy(model).to(dev), dev


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    ia = a.index if a.index is not None else torch.cuda.current_device()
    ib = b.index if b.index is not None else torch.cuda.current_device()
    return ia == ib


# --------------------------------------------------------------------------- batches


def selected_samples(
    data: Any, *, n_samples: int | None, seed: int, batch_size: int = 256
) -> tuple[Samples, np.ndarray, np.ndarray]:
    """``(samples, chosen, where)``: ``data`` read as :class:`Samples`, the positions in it of the
    seeded subset a lens measures (:func:`select_indices`), and their indices in the data (for a
    stream read once, positions in the stream)."""
    samples = resolve_samples(data, n_samples=n_samples, seed=seed, batch_size=batch_size)
    if samples is not data and isinstance(samples, _Indexable) and samples.positions is not None:
        chosen = np.arange(len(samples))  # a stream just read: only the chosen samples were kept
        return samples, chosen, samples.positions
    chosen = select_indices(len(samples), n_samples, seed)
    return samples, chosen, chosen


def iter_batches(
    samples: Samples, chosen: np.ndarray, where: np.ndarray, batch_size: int
) -> Iterator[tuple[Any, torch.Tensor | None, np.ndarray]]:
    """Yield ``(inputs, labels, indices)`` of ``samples`` at positions ``chosen``, ``batch_size`` at
    a time (``indices``: the matching entries of ``where``)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(chosen) == 0:
        raise ValueError("data yielded no samples")
    for start in range(0, len(chosen), batch_size):
        idx = chosen[start : start + batch_size]
        x, y = samples.take(idx)
        yield x, y, where[start : start + batch_size]


def iter_selected_batches(
    data: Any, *, n_samples: int | None, seed: int, batch_size: int
) -> Iterator[tuple[Any, torch.Tensor | None, np.ndarray]]:
    """Yield ``(inputs, labels, indices)`` for the seeded subset of ``data`` (:func:`select_indices`),
    ``batch_size`` samples at a time, in data order. A stream is read once first (only the
    kept samples are held); ``indices`` are then positions in the stream.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    samples, chosen, where = selected_samples(data, n_samples=n_samples, seed=seed, batch_size=batch_size)
    yield from iter_batches(samples, chosen, where, batch_size)


def example_batch(samples: Samples, k: int = 2) -> Inputs:
    """The inputs of the first ``k`` samples (a probe batch)."""
    x, _ = samples.take(np.arange(min(k, len(samples))))
    return x


__all__ = [
    "LABEL_KEYS",
    "Samples",
    "as_indexable",
    "describe",
    "example_batch",
    "forward_batch",
    "iter_batches",
    "iter_selected_batches",
    "model_device",
    "model_dtype",
    "place_model",
    "resolve_device",
    "resolve_samples",
    "select_indices",
    "selected_samples",
]
