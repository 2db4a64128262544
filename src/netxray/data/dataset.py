"""The in-memory dataset containers and the seeded stratified split.

A :class:`Dataset` is a pair of tensors — inputs ``x`` (float32, ``(N, *input_shape)``) and
labels ``y`` (int64, ``(N,)``, values in ``[0, num_classes)``) — with a name that records where
the data came from. Validation happens once, at construction, so every lens can trust it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class DataError(ValueError):
    """A data set or data file is missing or malformed; the message names it and what was expected."""


def _as_labels(y: Any, what: str) -> torch.Tensor:
    """Labels as an int64 tensor; integral floats are accepted, anything else is a DataError."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{what}: labels must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        raise DataError(f"{what}: labels must be integers, got booleans")
    if arr.ndim != 1:
        raise DataError(f"{what}: labels must be a 1-D array (N,), got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        # Float exports of integer labels (MATLAB, pandas) are common; fractional values are not labels.
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            bad = arr[~(np.isfinite(arr) & (arr == np.round(arr)))][:3]
            raise DataError(
                f"{what}: labels must be integers, got non-integer values such as {bad.tolist()}"
            )
    return torch.as_tensor(arr.astype(np.int64, copy=False))


def _as_inputs(x: Any, what: str) -> torch.Tensor:
    """Inputs as a float32 tensor with a sample axis; non-numeric or non-finite values are a DataError."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype.is_complex or t.dtype == torch.bool:
            raise DataError(f"{what}: inputs must be real numbers, got dtype {t.dtype}")
        t = t.to(torch.float32)
    else:
        arr = np.asarray(x)
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise DataError(f"{what}: inputs must be real numbers, got dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.float32, copy=False))
    if t.ndim < 2:
        raise DataError(
            f"{what}: inputs must have shape (N, *input_shape) with at least 2 dimensions, "
            f"got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise DataError(f"{what}: inputs contain {n_bad} non-finite values (NaN or inf)")
    return t


@dataclass(repr=False)
class Dataset:
    """Labelled samples: ``x`` float32 ``(N, *input_shape)``, ``y`` int64 ``(N,)`` in ``[0, num_classes)``.

    Construction validates and converts (numpy arrays or tensors are accepted; labels may be an
    integer or integral-float array); errors are :class:`DataError` naming ``name``.

    Example:
        >>> ds = Dataset(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0]), "toy", 2)
        >>> len(ds), ds.input_shape
        (4, (2,))
        >>> [xb.shape[0] for xb, _ in ds.batches(3)]
        [3, 1]
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        self.x = _as_inputs(self.x, f"data set {self.name!r}")
        self.y = _as_labels(self.y, f"data set {self.name!r}")
        if len(self.x) != len(self.y):
            raise DataError(
                f"data set {self.name!r}: {len(self.y)} labels do not match {len(self.x)} samples"
            )
        if isinstance(self.num_classes, bool) or int(self.num_classes) != self.num_classes:
            raise DataError(f"data set {self.name!r}: num_classes must be an integer")
        self.num_classes = int(self.num_classes)
        if self.num_classes < 1:
            raise DataError(f"data set {self.name!r}: num_classes must be >= 1, got {self.num_classes}")
        if len(self.y):
            lo, hi = int(self.y.min()), int(self.y.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"data set {self.name!r}: labels must lie in [0, {self.num_classes}), "
                    f"found values in [{lo}, {hi}]"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class, an int64 array of length ``num_classes``."""
        return np.bincount(self.y.numpy(), minlength=self.num_classes).astype(np.int64)

    def batches(
        self, batch_size: int = 256, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` mini-batches; the last one may be smaller.

        With ``shuffle=True`` the order is a permutation drawn from ``numpy.random.default_rng(seed)``,
        so the same seed gives the same batches on every machine.
        """
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
        n = len(self)
        if shuffle:
            order = torch.as_tensor(np.random.default_rng(seed).permutation(n))
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for start in range(0, n, batch_size):
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Dataset:
        """A new Dataset with the samples at ``indices`` (integer positions or a boolean mask).

        The data is copied; the original is never modified.
        """
        idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(
                    f"data set {self.name!r}: a boolean mask must have shape ({len(self)},), "
                    f"got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise DataError(
                f"data set {self.name!r}: subset indices must be a 1-D array of integers, "
                f"got dtype {idx.dtype} shape {idx.shape}"
            )
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(
                f"data set {self.name!r}: subset indices must lie in [0, {len(self)}), "
                f"found values in [{int(idx.min())}, {int(idx.max())}]"
            )
        t = torch.as_tensor(idx.astype(np.int64))
        return Dataset(self.x[t].clone(), self.y[t].clone(), self.name, self.num_classes)


SPLITS = ("auto", "test", "train", "all")


class ConcatSamples:
    """Two labelled sample sets read as one (map-style: ``len``, ``[i]``, ``targets``), lazily:
    the ``"all"`` split of a source whose train and test sets are separate."""

    def __init__(self, first: Any, second: Any) -> None:
        self.parts = (first, second)
        self.name = getattr(first, "name", "data")
        self.num_classes = getattr(first, "num_classes", None)
        self.input_shape = getattr(first, "input_shape", None)
        self.unit = getattr(first, "unit", "samples")

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def __getitem__(self, i: int) -> Any:
        n0 = len(self.parts[0])
        i = int(i) + len(self) if int(i) < 0 else int(i)
        return self.parts[0][i] if i < n0 else self.parts[1][i - n0]

    @property
    def targets(self) -> torch.Tensor:
        return torch.cat([torch.as_tensor(getattr(p, "targets", getattr(p, "y", None))) for p in self.parts])

    def __repr__(self) -> str:
        return f"ConcatSamples(name={self.name!r}, n={len(self)})"


@dataclass(repr=False)
class DataSplits:
    """A train and a test :class:`Dataset` of the same data source.

    ``whole``: the full data set when netxray made the split itself (an image folder without
    ``train/``/``test/``, a text file, an npz without ``x_test``): the source has no split of its
    own, so the lenses measure all of it by default. None when the source has its own split
    (IDX ``t10k``, CIFAR's ``test_batch``, ``DIR/train`` + ``DIR/test``) or netxray's training
    uses the split (the built-in sets): the lenses then measure the test split. ``measure``:
    which split the lenses read — ``"auto"`` (the rule above), ``"test"``, ``"train"``, ``"all"``
    (see :meth:`measured`).
    """

    train: Dataset
    test: Dataset
    whole: Any = None
    measure: str = "auto"

    def __post_init__(self) -> None:
        if self.measure not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {self.measure!r}")
        if self.train.input_shape != self.test.input_shape:
            raise DataError(
                f"data set {self.train.name!r}: train samples have shape {self.train.input_shape} "
                f"but test samples have shape {self.test.input_shape}"
            )
        if self.train.num_classes != self.test.num_classes:
            raise DataError(
                f"data set {self.train.name!r}: train has {self.train.num_classes} classes "
                f"but test has {self.test.num_classes}"
            )

    @property
    def name(self) -> str:
        return self.train.name

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    def measured_split(self, split: str | None = None) -> str:
        """The split :meth:`measured` reads: ``"test"``, ``"train"`` or ``"all"``."""
        split = split or self.measure
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if split == "auto":
            return "all" if self.whole is not None else "test"
        return split

    def measured(self, split: str | None = None) -> Any:
        """The samples the lenses measure (``split``, default ``self.measure``).

        ``"auto"``: the whole data set when the source has no split of its own, else its test
        split; ``"all"``: train and test together.

        Example:
            >>> from netxray.data import load_data
            >>> s = load_data("digits")
            >>> len(s.measured()), len(s.measured("all"))
            (359, 1797)
        """
        split = self.measured_split(split)
        if split == "test":
            return self.test
        if split == "train":
            return self.train
        if self.whole is not None:
            return self.whole
        if isinstance(self.train, Dataset) and isinstance(self.test, Dataset):
            return Dataset(torch.cat([self.train.x, self.test.x]), torch.cat([self.train.y, self.test.y]),
                           self.train.name, self.train.num_classes)  # fmt: skip
        return ConcatSamples(self.train, self.test)

    def with_split(self, split: str) -> DataSplits:
        """A copy whose lenses measure ``split`` (the data itself is shared, not copied)."""
        return DataSplits(self.train, self.test, self.whole, split)

    def __repr__(self) -> str:
        return (
            f"DataSplits(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def check_test_fraction(test_fraction: float) -> float:
    """Validate ``0 < test_fraction < 1`` and return it as a float."""
    try:
        tf = float(test_fraction)
    except (TypeError, ValueError):
        raise DataError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}") from None
    if not 0.0 < tf < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return tf


def stratified_split_indices(
    y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-stratified split: ``(train_idx, test_idx)``, both sorted.

    The test set gets ⌊test_fraction · N + ½⌋ samples, allotted to the classes in proportion to
    their sizes n_c (largest-remainder rounding; at least one and at most n_c − 1 per class when
    n_c ≥ 2, none when n_c = 1) and chosen within each class by a permutation from
    ``numpy.random.default_rng(seed)``. Classes are visited in increasing order, so the same
    labels and seed always give the same split.

    Example:
        >>> tr, te = stratified_split_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
        >>> len(tr), len(te)
        (6, 2)
    """
    tf = check_test_fraction(test_fraction)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    # Largest-remainder allocation: the test set has round(tf·N) samples in all (half up), shared
    # out in proportion to class size, so per-class rounding cannot drift the overall fraction.
    quota = tf * counts
    n_test = np.floor(quota).astype(np.int64)
    extra = int(np.floor(tf * len(y) + 0.5)) - int(n_test.sum())
    if extra > 0:
        order = np.argsort(-(quota - n_test), kind="stable")  # ties: smaller class label first
        n_test[order[:extra]] += 1
    # every class with at least two samples keeps one on each side; a singleton stays in train
    n_test = np.where(counts >= 2, np.clip(n_test, 1, counts - 1), 0)
    test_parts = []
    for c, k in zip(classes, n_test, strict=True):
        members = np.flatnonzero(y == c)
        test_parts.append(members[rng.permutation(len(members))[:k]])
    test_idx = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def check_nonempty_splits(splits: DataSplits) -> DataSplits:
    """Return ``splits`` if both train and test hold samples, else a :class:`DataError` with the sizes."""
    n_train, n_test = len(splits.train), len(splits.test)
    if n_train == 0 or n_test == 0:
        empty = " and ".join(p for p, n in (("train", n_train), ("test", n_test)) if n == 0)
        raise DataError(
            f"data set {splits.name!r}: the {empty} split is empty (train={n_train}, test={n_test} "
            f"samples); every split needs at least one sample (use more data, or a class with at "
            f"least two samples so the stratified split can put one in each)"
        )
    return splits


def split_dataset(
    dataset: Dataset, test_fraction: float = 0.2, seed: int = 0, *, keep_whole: bool = True
) -> DataSplits:
    """Split one Dataset into a seeded, class-stratified :class:`DataSplits`.

    Both sides must hold samples: a split that leaves train or test empty (e.g. one sample per
    class, where every singleton stays in train) is a :class:`DataError`. ``keep_whole``: the
    data set has no split of its own, so the lenses measure all of it (``DataSplits.whole``);
    False for the built-in sets, whose test split is the one netxray's training holds out.

    Example:
        >>> ds = Dataset(torch.randn(10, 3), torch.arange(10) % 2, "toy", 2)
        >>> s = split_dataset(ds, 0.2, seed=1)
        >>> len(s.train), len(s.test)
        (8, 2)
    """
    tr, te = stratified_split_indices(dataset.y.numpy(), test_fraction, seed)
    whole = dataset if keep_whole else None
    return check_nonempty_splits(DataSplits(dataset.subset(tr), dataset.subset(te), whole))
