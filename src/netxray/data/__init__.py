"""Data for netxray: built-in offline sets and loaders for published formats.

``load_data(spec)`` returns a :class:`DataSplits` (train and test :class:`Dataset`); see
:mod:`netxray.data.builtin` (digits, mnist1d, blobs) and :mod:`netxray.data.formats` (IDX,
CIFAR-10 python batches, npz). Problems raise :class:`DataError`, a ``ValueError``.
"""

from netxray.data.builtin import blobs, digits, mnist1d
from netxray.data.dataset import (
    DataError,
    Dataset,
    DataSplits,
    split_dataset,
    stratified_split_indices,
)
from netxray.data.formats import load_cifar10, load_idx_dir, load_npz, read_idx
from netxray.data.registry import VALID_SPECS, load_data

__all__ = [
    "VALID_SPECS",
    "DataError",
    "DataSplits",
    "Dataset",
    "blobs",
    "digits",
    "load_cifar10",
    "load_data",
    "load_idx_dir",
    "load_npz",
    "mnist1d",
    "read_idx",
    "split_dataset",
    "stratified_split_indices",
]
