"""``load_data``: one entry point from a short spec string to a :class:`DataSplits`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netxray.data.builtin import blobs, digits, mnist1d
from netxray.data.dataset import (
    DataError,
    Dataset,
    DataSplits,
    check_nonempty_splits,
    check_test_fraction,
    split_dataset,
)
from netxray.data.formats import load_cifar10, load_idx_dir, load_npz

VALID_SPECS = (
    "digits",
    "mnist1d[:n=5000,data_seed=42,...]",
    "blobs[:classes=3,dim=2,separation=4,n=600,data_seed=0]",
    "npz:PATH",
    "idx:DIR",
    "cifar10:DIR",
    "imagefolder:DIR",
    "text:FILE.csv|FILE.jsonl",
    "hfdataset:DIR",
)

# options of the on-disk sources (netxray.data.sources), and the specs that use each
_SOURCE_OPTIONS = {
    "image_size": ("imagefolder", "hfdataset"),
    "normalize": ("imagefolder", "hfdataset"),
    "preprocessing": ("imagefolder", "hfdataset"),
    "tokenizer": ("text", "hfdataset"),
    "text_column": ("text", "hfdataset"),
    "label_column": ("text", "hfdataset"),
    "input_columns": ("hfdataset",),
    "max_length": ("text", "hfdataset"),
}

# spec key -> keyword argument of the generator
_MNIST1D_KEYS = {
    k: k
    for k in (
        "n", "data_seed", "length", "scale_coeff", "max_translation",
        "corr_noise_scale", "iid_noise_scale", "shear_scale",
    )
}
_BLOBS_KEYS = {
    "classes": "num_classes", "num_classes": "num_classes", "dim": "dim",
    "separation": "separation", "n": "n", "data_seed": "data_seed",
}
_INT_KEYS = {"n", "data_seed", "length", "max_translation", "num_classes", "dim"}


def _parse_options(name: str, text: str, keys: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in keys:
            raise DataError(
                f"data spec {name!r}: unknown option {item!r}; valid options are "
                f"{', '.join(sorted(keys))} (as key=value, comma-separated)"
            )
        target = keys[key]
        value = value.strip()
        try:
            if target in _INT_KEYS:
                if not re.fullmatch(r"[+-]?\d+", value):
                    raise ValueError
                options[target] = int(value)
            else:
                options[target] = float(value)
        except ValueError:
            kind = "an integer" if target in _INT_KEYS else "a number"
            raise DataError(f"data spec {name!r}: option {key} must be {kind}, got {value!r}") from None
    return options


def load_data(
    spec: str | DataSplits | Dataset,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    normalize: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    tokenizer: Any = None,
    text_column: str | None = None,
    label_column: str | None = None,
    input_columns: list[str] | None = None,
    max_length: int | None = None,
) -> DataSplits:
    """Load a data set by spec and return its train/test :class:`DataSplits`.

    Specs: ``"digits"``, ``"mnist1d"`` (options ``n``, ``data_seed``, noise knobs),
    ``"blobs:classes=5,dim=16,separation=4,n=1000"`` (also ``data_seed``), ``"npz:PATH"``,
    ``"idx:DIR"`` (MNIST / Fashion-MNIST IDX files), ``"cifar10:DIR"``, and what people keep
    on disk (:mod:`netxray.data.sources`): ``"imagefolder:DIR"`` (one sub-folder per class;
    ``image_size``, ``normalize`` = imagenet | cifar10 | half | none | model, ``preprocessing``:
    the model's declared size/mean/std), ``"text:FILE"`` (CSV or JSON Lines with ``text`` and
    ``label`` columns, tokenized by ``tokenizer`` = a tokenizer or ``"hf:DIR"``; ``text_column``,
    ``label_column``, ``max_length``) and ``"hfdataset:DIR"`` (``datasets.save_to_disk``;
    ``label_column``, ``text_column`` or ``input_columns``). Their splits hold lazily decoded
    images or token tensors rather than a float ``x``; every lens reads them. ``seed`` and
    ``test_fraction`` drive the seeded, class-stratified split wherever the source has no published
    test set (IDX ``t10k`` files, CIFAR ``test_batch`` and npz ``x_test`` are used as given). A
    ``DataSplits`` is returned unchanged; a single ``Dataset`` is split. Nothing is downloaded.
    An empty train or test split is a :class:`DataError` naming the data and both sizes.

    Example:
        >>> s = load_data("blobs:classes=5,dim=16,separation=4,n=1000", seed=1)
        >>> s.num_classes, s.input_shape, len(s.train), len(s.test)
        (5, (16,), 800, 200)
    """
    if isinstance(spec, DataSplits):
        return check_nonempty_splits(spec)
    if isinstance(spec, Dataset):
        return split_dataset(spec, test_fraction, seed)
    if not isinstance(spec, str):
        raise DataError(
            f"data must be a spec string, a DataSplits or a Dataset, got {type(spec).__name__}"
        )
    check_test_fraction(test_fraction)
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    rest = rest.strip()
    given = {k: v for k, v in {
        "image_size": image_size, "normalize": normalize, "preprocessing": preprocessing,
        "tokenizer": tokenizer, "text_column": text_column, "label_column": label_column,
        "input_columns": input_columns, "max_length": max_length,
    }.items() if v is not None}  # fmt: skip
    unused = [k for k in given if name not in _SOURCE_OPTIONS[k] and k != "preprocessing"]
    if unused:
        raise DataError(
            f"data spec {spec!r}: option(s) {', '.join(unused)} do not apply to {name!r} "
            f"(they are for {', '.join(sorted({s for k in unused for s in _SOURCE_OPTIONS[k]}))})"
        )
    if name in ("imagefolder", "text", "hfdataset"):
        from netxray.data import sources

        if not rest:
            raise DataError(f"data spec {name!r} needs a path: '{name}:PATH'")
        keep = {k: v for k, v in given.items() if name in _SOURCE_OPTIONS[k]}
        loader = {"imagefolder": sources.load_imagefolder, "text": sources.load_text,
                  "hfdataset": sources.load_hfdataset}[name]  # fmt: skip
        if name == "text":
            keep.setdefault("tokenizer", None)
        return loader(rest, seed=seed, test_fraction=test_fraction, **keep)
    path_loaders: dict[str, Callable[..., DataSplits]] = {
        "npz": load_npz, "idx": load_idx_dir, "cifar10": load_cifar10,
    }
    if name == "digits":
        if rest:
            raise DataError(f"data spec 'digits' takes no options, got {rest!r}")
        return digits(seed=seed, test_fraction=test_fraction)
    if name == "mnist1d":
        opts = _parse_options("mnist1d", rest, _MNIST1D_KEYS)
        return mnist1d(seed=seed, test_fraction=test_fraction, **opts)
    if name == "blobs":
        opts = _parse_options("blobs", rest, _BLOBS_KEYS)
        return blobs(seed=seed, test_fraction=test_fraction, **opts)
    if name in path_loaders:
        if not rest:
            raise DataError(f"data spec {name!r} needs a path: '{name}:PATH'")
        return path_loaders[name](Path(rest).expanduser(), seed=seed, test_fraction=test_fraction)
    hint = ""
    candidate = Path(spec.strip()).expanduser()
    if candidate.suffix == ".npz":
        hint = f" (did you mean 'npz:{spec.strip()}'?)"
    elif candidate.is_dir():
        hint = f" (for a folder, say 'idx:{spec.strip()}' or 'cifar10:{spec.strip()}')"
    raise DataError(f"unknown data spec {spec!r}{hint}; valid specs: {', '.join(VALID_SPECS)}")
