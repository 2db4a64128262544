"""Data people already have on disk: image folders, text files with labels, ``datasets`` directories.

- ``imagefolder:DIR`` — one sub-folder per class (``DIR/cat/*.png``, ``DIR/dog/*.jpg``; or
  ``DIR/train/<class>/`` with ``DIR/test/<class>/`` or ``DIR/val/<class>/``). Images are decoded
  with Pillow only when a lens takes them (:class:`ImageFolder` is a map-style torch
  Dataset), converted to RGB, resized to ``image_size`` × ``image_size`` and normalized.
- ``text:FILE`` — a CSV (header row) or JSON Lines file with a text column and a label column
  (``text`` and ``label`` by default), tokenized once by a Hugging Face tokenizer (the model's
  own with ``hf:DIR``, or ``tokenizer="hf:DIR"``) into ``input_ids``/``attention_mask``…
- ``hfdataset:DIR`` — a Hugging Face ``datasets`` directory written by ``save_to_disk``: its
  ``test`` (or ``validation``) split when it is a DatasetDict; a text column is tokenized, an
  image column goes through the image pipeline, numeric columns become tensors.

Labels that are strings are mapped to 0..C−1 in sorted order (``classes`` keeps the names).
Every problem is a :class:`~netxray.data.DataError` naming the file and what was expected.
Nothing is downloaded: tokenizers are read with ``local_files_only=True``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netxray.data.dataset import (
    DataError,
    DataSplits,
    check_test_fraction,
    stratified_split_indices,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "NORMALIZE_PRESETS",
    "ImageFolder",
    "LabelledInputs",
    "load_hfdataset",
    "load_imagefolder",
    "load_text",
    "load_tokenizer",
    "normalization",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# the largest default image side: without --image-size and a size the model declares, images
# keep the first image's side up to this cap (one 8000x8000 photo must not make every image
# 8000x8000: 3.8 GB for 2048 samples)
DEFAULT_MAX_IMAGE_SIZE = 224


def default_image_size(first_side: int, source: str) -> int:
    """The image side used when neither ``--image-size`` nor the model declares one: the first
    image's side, capped at :data:`DEFAULT_MAX_IMAGE_SIZE` (with a warning saying so)."""
    if first_side <= DEFAULT_MAX_IMAGE_SIZE:
        return int(first_side)
    import warnings

    warnings.warn(
        f"{source}: images resized to {DEFAULT_MAX_IMAGE_SIZE}x{DEFAULT_MAX_IMAGE_SIZE} (the default cap; "
        f"the first image is {first_side} wide and the model declares no input size); pass "
        "--image-size (image_size=) to choose", stacklevel=3,
    )
    return DEFAULT_MAX_IMAGE_SIZE

NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # to [-1, 1], as many ViTs expect
    "none": None,
}


def _require(module: str, what: str) -> Any:
    from netxray._errors import require

    return require(module, what, DataError)


def normalization(
    normalize: str | None, preprocessing: Mapping[str, Any] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) per channel, or None for no normalization.

    ``normalize``: a preset (``imagenet``, ``cifar10``, ``half``, ``none``), ``"M1,M2,M3/S1,S2,S3"``,
    or None / ``"model"``: what the model declares (``preprocessing``: a timm or Hugging Face
    model's mean and std), else none.

    Example:
        >>> normalization("imagenet")[0]
        (0.485, 0.456, 0.406)
        >>> normalization("0.5,0.5,0.5/0.25,0.25,0.25")
        ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    if normalize is None or normalize == "model":
        if preprocessing and preprocessing.get("mean") and preprocessing.get("std"):
            return tuple(map(float, preprocessing["mean"])), tuple(map(float, preprocessing["std"]))
        return None
    key = normalize.strip().lower()
    if key in NORMALIZE_PRESETS:
        return NORMALIZE_PRESETS[key]
    mean_text, sep, std_text = key.partition("/")
    try:
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        mean, std = (), ()
    if not sep or len(mean) != len(std) or not mean or any(s <= 0 for s in std):
        raise DataError(
            f"--normalize {normalize!r}: expected one of {', '.join(NORMALIZE_PRESETS)}, model, or "
            "MEAN,MEAN,MEAN/STD,STD,STD (per channel, std > 0)"
        )
    return mean, std


def _label_codes(raw: Sequence[Any], source: str, column: str = "label") -> tuple[torch.Tensor, list[str]]:
    """Integer labels 0..C−1 and the class names. Integer labels (or integral numbers such as
    ``1.0``) are kept as they are (classes "0".."max"); class names (strings) are mapped in sorted
    order. Blank cells and non-integer numbers (a regression target is not a class label) are a
    :class:`DataError` naming ``source``, ``column`` and the first offending rows."""
    values = list(raw)
    if not values:
        raise DataError(f"{source}: no samples")
    blank = [i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())
             or (isinstance(v, float) and np.isnan(v))]  # fmt: skip
    if blank:
        rows = ", ".join(str(i + 1) for i in blank[:5]) + (" …" if len(blank) > 5 else "")
        raise DataError(f"{source}: column {column!r} is blank in {len(blank)} of {len(values)} rows "
                        f"(data rows {rows}); every sample needs a class label")  # fmt: skip
    numbers = [_as_number(v) for v in values]
    if all(x is not None for x in numbers):
        arr = np.array(numbers, dtype=np.float64)
        frac = arr[arr != np.round(arr)]
        if frac.size:
            raise DataError(
                f"{source}: column {column!r} holds non-integer numbers such as "
                f"{', '.join(f'{v:g}' for v in frac[:3])}: class labels must be integers or names "
                "(a regression target is not a class label)"
            )
        ints = arr.astype(np.int64)
        if ints.min() < 0:
            raise DataError(f"{source}: integer labels must be >= 0, found {int(ints.min())}")
        return torch.from_numpy(ints), [str(i) for i in range(int(ints.max()) + 1)]
    names = sorted({str(v).strip() for v in values})
    code = {n: i for i, n in enumerate(names)}
    return torch.tensor([code[str(v).strip()] for v in values], dtype=torch.int64), names


def _as_number(value: Any) -> float | None:
    """``value`` as a float when it is a number or a string holding one, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
        return out if np.isfinite(out) else None
    return None


# --------------------------------------------------------------------------- images


class ImageFolder(torch.utils.data.Dataset):
    """Images in one sub-folder per class, decoded on demand: item i is ``(x, y)`` with x a float
    tensor (3, size, size) — RGB in [0, 1], resized (bilinear), then ``(x − mean) / std``.

    ``targets`` (all labels) and ``classes`` are known without decoding any image.
    """

    unit = "images"  # what one sample is, for a reader ("n = 120 of 120 images")

    def __init__(
        self,
        files: Sequence[Path],
        targets: Sequence[int],
        classes: Sequence[str],
        *,
        size: int,
        norm: tuple[tuple[float, ...], tuple[float, ...]] | None,
        name: str,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        self.classes = list(classes)
        self.size = int(size)
        self.norm = norm
        self.name = name
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = _require("PIL.Image", "imagefolder:")
        path = self.files[i]
        try:
            with image.open(path) as im:
                rgb = im.convert("RGB").resize((self.size, self.size), image.Resampling.BILINEAR)
                arr = np.asarray(rgb, dtype=np.float32) / 255.0
        except OSError as exc:
            raise DataError(f"{path}: cannot be read as an image ({exc})") from None
        return _normalized(arr, self.norm), self.targets[i]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageFolder:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageFolder([self.files[i] for i in idx], self.targets[idx].tolist(), self.classes,
                           size=self.size, norm=self.norm, name=self.name)  # fmt: skip

    def __repr__(self) -> str:
        return f"ImageFolder(name={self.name!r}, n={len(self)}, size={self.size}, classes={self.num_classes})"


def _normalized(hwc: np.ndarray, norm: tuple[tuple[float, ...], tuple[float, ...]] | None) -> torch.Tensor:
    """An (H, W, 3) array in [0, 1] as a (3, H, W) tensor, (x − mean) / std per channel."""
    x = torch.from_numpy(hwc.transpose(2, 0, 1).copy())
    if norm is None:
        return x
    mean = torch.tensor(norm[0], dtype=torch.float32)[:, None, None]
    return (x - mean) / torch.tensor(norm[1], dtype=torch.float32)[:, None, None]


def _scan_classes(root: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    files, targets = [], []
    for c, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                targets.append(c)
    return files, targets, classes


def load_imagefolder(
    directory: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    normalize: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """An image folder as train/test splits of lazily decoded :class:`ImageFolder` sets.

    ``DIR/<class>/*.png|jpg|…``: split with the seeded class-stratified rule; ``DIR/train`` with
    ``DIR/test`` (or ``DIR/val``): used as given. ``image_size``: the side images are resized
    to (default: the model's declared size, else the first image's width up to
    :data:`DEFAULT_MAX_IMAGE_SIZE`, with a warning when capped). ``normalize``: see
    :func:`normalization`.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder:{directory}: no such directory")
    check_test_fraction(test_fraction)
    test_dir = next((root / s for s in ("test", "val", "validation") if (root / s).is_dir()), None)
    presplit = (root / "train").is_dir() and test_dir is not None
    if presplit:
        files, targets, classes = _scan_classes(root / "train")
        test_files, test_targets, _ = _scan_classes(test_dir, classes)
    else:
        files, targets, classes = _scan_classes(root)
    if not classes or not files:
        raise DataError(
            f"imagefolder:{directory}: expected one sub-folder per class holding images "
            f"({', '.join(IMAGE_SUFFIXES)}), e.g. {root}/cat/1.png; found "
            f"{len(classes)} sub-folder(s) and no image"
        )
    size = image_size or (preprocessing or {}).get("size")
    if size is None:
        image = _require("PIL.Image", f"imagefolder:{directory}")
        with image.open(files[0]) as im:
            size = default_image_size(im.size[0], f"imagefolder:{directory}")
    if int(size) < 1:
        raise DataError(f"--image-size must be >= 1, got {size}")
    norm = normalization(normalize, preprocessing)
    name = f"imagefolder:{root.name}"
    full = ImageFolder(files, targets, classes, size=int(size), norm=norm, name=name)
    if presplit:
        test = ImageFolder(test_files, test_targets, classes, size=int(size), norm=norm, name=name)
        return _splits(full, test, str(directory))
    tr, te = stratified_split_indices(full.targets.numpy(), test_fraction, seed)
    return _splits(full.subset(tr), full.subset(te), str(directory), whole=full)


def _splits(train: Any, test: Any, source: str, whole: Any = None) -> DataSplits:
    """Train and test sets as :class:`DataSplits`; ``whole``: the data set netxray split itself
    (no split of its own), which the lenses then measure in full."""
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"{source}: the {'train' if len(train) == 0 else 'test'} split is empty "
            f"(train={len(train)}, test={len(test)}); give more samples per class"
        )
    return DataSplits(train, test, whole)


# --------------------------------------------------------------------------- token inputs


class LabelledInputs(torch.utils.data.Dataset):
    """Samples whose inputs are several tensors passed to the model by keyword (token ids and
    attention masks), held in memory: ``inputs`` maps argument names to (N, …) tensors, ``y``
    the labels. Item i is ``{name: inputs[name][i], ..., "labels": y[i]}``.
    """

    def __init__(
        self, inputs: Mapping[str, torch.Tensor], y: torch.Tensor, classes: Sequence[str], name: str
    ) -> None:
        self.inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
        self.y = torch.as_tensor(y, dtype=torch.int64)
        lengths = {k: int(v.shape[0]) for k, v in self.inputs.items()}
        if not lengths or set(lengths.values()) != {len(self.y)}:
            raise DataError(f"{name}: inputs {lengths} do not match {len(self.y)} labels")
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.name = name

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def targets(self) -> torch.Tensor:
        return self.y

    @property
    def input_shape(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape[1:]) for k, v in self.inputs.items()}

    @property
    def unit(self) -> str:
        """What one sample is, for a reader: texts when the inputs are token ids."""
        return "texts" if "input_ids" in self.inputs else "samples"

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i] for k, v in self.inputs.items()}, "labels": self.y[i]}

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledInputs:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return LabelledInputs({k: v[idx] for k, v in self.inputs.items()}, self.y[idx],
                              self.classes, self.name)  # fmt: skip

    def __repr__(self) -> str:
        return f"LabelledInputs(name={self.name!r}, n={len(self)}, inputs={self.input_shape})"


def load_tokenizer(tokenizer: Any) -> Any:
    """A Hugging Face tokenizer: given as an object (returned as is), ``hf:DIR`` or a directory,
    read with ``local_files_only=True``."""
    if tokenizer is None:
        raise DataError(
            "text data needs a tokenizer: scan an hf:DIR model (its tokenizer is used) or give "
            "--tokenizer hf:DIR (a local directory with the tokenizer files)"
        )
    if not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    text = os.fspath(tokenizer)
    directory = text[3:] if text.startswith("hf:") else text
    if not Path(directory).expanduser().is_dir():
        raise DataError(f"--tokenizer {text!r}: no such directory {directory} (nothing is downloaded)")
    transformers = _require("transformers", f"--tokenizer {text}")
    try:
        return transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"--tokenizer {text!r}: no tokenizer could be read from {directory} ({exc}); expected a "
            "directory written by tokenizer.save_pretrained(DIR)"
        ) from None


def _tokenize(texts: list[str], tokenizer: Any, max_length: int, source: str) -> dict[str, torch.Tensor]:
    tok = load_tokenizer(tokenizer)
    if getattr(tok, "pad_token", "") is None:
        raise DataError(f"{source}: the tokenizer has no padding token; set one before tokenizing")
    enc = tok(texts, padding=True, truncation=True, max_length=int(max_length), return_tensors="pt")
    return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"text:{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            records = []
            with path.open(encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{path}:{line_no}: not a JSON object ({exc.msg})") from None
                        if not isinstance(rec, dict):
                            raise DataError(f"{path}:{line_no}: expected a JSON object per line")
                        records.append(rec)
            return records
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    raise DataError(f"text:{path}: unknown format {suffix!r}; expected .csv, .tsv or .jsonl")


def load_text(
    path: str | os.PathLike[str],
    *,
    tokenizer: Any,
    text_column: str | None = None,
    label_column: str | None = None,
    max_length: int = 128,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """A CSV / JSON Lines file of labelled texts, tokenized, as seeded stratified splits of
    :class:`LabelledInputs` (padded to the longest text, truncated at ``max_length`` tokens)."""
    p = Path(path).expanduser()
    records = _read_records(p)
    text_column = text_column or "text"
    label_column = label_column or "label"
    if not records:
        raise DataError(f"text:{path}: no rows")
    missing = [c for c in (text_column, label_column) if c not in records[0]]
    if missing:
        raise DataError(
            f"text:{path}: no column(s) {missing}; the file has {sorted(records[0])} (choose them "
            "with --text-column / --label-column)"
        )
    texts = [str(r.get(text_column) or "") for r in records]
    y, classes = _label_codes([r.get(label_column) for r in records], f"text:{path}", label_column)
    inputs = _tokenize(texts, tokenizer, max_length, f"text:{path}")
    full = LabelledInputs(inputs, y, classes, f"text:{p.name}")
    tr, te = stratified_split_indices(y.numpy(), check_test_fraction(test_fraction), seed)
    return _splits(full.subset(tr), full.subset(te), f"text:{path}", whole=full)


# --------------------------------------------------------------------------- datasets


def load_hfdataset(
    directory: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    text_column: str | None = None,
    label_column: str | None = None,
    input_columns: Sequence[str] | None = None,
    image_size: int | None = None,
    normalize: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    max_length: int = 128,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """A ``datasets`` directory (``save_to_disk``) as train/test splits.

    A DatasetDict gives its ``train`` and ``test`` (or ``validation``) splits; a single Dataset
    is split with the seeded stratified rule. Inputs: the ``text_column`` (default ``text`` when
    present) tokenized; else an image column (``image``/``img``) through the image pipeline; else
    ``input_columns`` (default: every other numeric column) as tensors — one column is the
    model's input, several are passed by keyword.
    """
    ds_mod = _require("datasets", f"hfdataset:{directory}")
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"hfdataset:{directory}: no such directory")
    try:
        loaded = ds_mod.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(
            f"hfdataset:{directory}: not a directory written by datasets' save_to_disk ({exc})"
        ) from None
    if isinstance(loaded, ds_mod.DatasetDict):
        test_key = next((k for k in ("test", "validation", "val") if k in loaded), None)
        if "train" in loaded and test_key is not None:
            parts = {"train": loaded["train"], "test": loaded[test_key]}
        else:
            only = next(iter(loaded.values()))
            parts = {"all": only}
    else:
        parts = {"all": loaded}
    columns = list(next(iter(parts.values())).column_names)
    label_column = label_column or next((c for c in ("label", "labels", "y", "target") if c in columns), None)
    if label_column is None or label_column not in columns:
        raise DataError(
            f"hfdataset:{directory}: no label column {label_column!r}; columns are {columns} "
            "(choose one with --label-column)"
        )
    name = f"hfdataset:{root.name}"
    options = dict(tokenizer=tokenizer, text_column=text_column, label_column=label_column,
                   input_columns=input_columns, image_size=image_size, normalize=normalize,
                   preprocessing=preprocessing, max_length=max_length, name=name)  # fmt: skip
    built = {k: _from_hf(v, **options) for k, v in parts.items()}
    if "all" in built:
        full = built["all"]
        tr, te = stratified_split_indices(full.targets.numpy(), check_test_fraction(test_fraction), seed)
        return _splits(full.subset(tr), full.subset(te), f"hfdataset:{directory}", whole=full)
    return _splits(built["train"], built["test"], f"hfdataset:{directory}")


def _from_hf(ds: Any, *, tokenizer, text_column, label_column, input_columns, image_size,
             normalize, preprocessing, max_length, name) -> Any:  # fmt: skip
    columns = list(ds.column_names)
    labels_raw = ds[label_column]
    feature = ds.features.get(label_column)
    names = getattr(feature, "names", None)
    y, classes = _label_codes(labels_raw, name, label_column)
    if names:
        classes = list(names)
    if text_column is None and input_columns is None and "text" in columns:
        text_column = "text"
    if text_column is not None:
        if text_column not in columns:
            raise DataError(f"{name}: no text column {text_column!r}; columns are {columns}")
        inputs = _tokenize([str(t) for t in ds[text_column]], tokenizer, max_length, name)
        return LabelledInputs(inputs, y, classes, name)
    image_col = next((c for c in ("image", "img") if c in columns), None)
    if input_columns is None and image_col is not None:
        return _hf_images(ds, image_col, y, classes, image_size, normalize, preprocessing, name)
    cols = list(input_columns) if input_columns else [c for c in columns if c != label_column]
    bad = [c for c in cols if c not in columns]
    if bad or not cols:
        raise DataError(f"{name}: input column(s) {bad or cols} not in {columns}")
    tensors = {}
    for c in cols:
        try:
            tensors[c] = torch.as_tensor(np.asarray(ds.with_format("numpy")[c]))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{name}: column {c!r} is not numeric with one shape per row ({exc})") from None
    if len(tensors) == 1:
        x = next(iter(tensors.values()))
        x = x.float() if x.is_floating_point() else x
        return _Tensors(x, y, classes, name)
    return LabelledInputs(tensors, y, classes, name)


class _Tensors(torch.utils.data.TensorDataset):
    """One input tensor and labels (a TensorDataset with a name, classes and ``subset``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[str], name: str) -> None:
        super().__init__(x, y)
        self.x, self.y, self.targets = x, y, y
        self.classes, self.num_classes, self.name = list(classes), len(classes), name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, indices: Sequence[int] | np.ndarray) -> _Tensors:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return _Tensors(self.x[idx], self.y[idx], self.classes, self.name)


def _hf_images(ds, column, y, classes, image_size, normalize, preprocessing, name) -> ImageFolder:
    """The images of a ``datasets`` column, decoded per item like an image folder's files."""
    first = ds[0][column]
    size = image_size or (preprocessing or {}).get("size") or default_image_size(first.size[0], name)
    norm = normalization(normalize, preprocessing)
    return _HFImages(ds, column, np.arange(len(ds)), y, classes, size=int(size), norm=norm, name=name)


class _HFImages(ImageFolder):
    """Rows ``rows`` of a ``datasets`` image column, decoded per item like :class:`ImageFolder`."""

    def __init__(self, ds, column, rows, targets, classes, *, size, norm, name) -> None:
        super().__init__([], targets, classes, size=size, norm=norm, name=name)
        self.ds, self.column, self.rows = ds, column, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = _require("PIL.Image", self.name)
        im = self.ds[int(self.rows[i])][self.column]
        rgb = im.convert("RGB").resize((self.size, self.size), image.Resampling.BILINEAR)
        return _normalized(np.asarray(rgb, dtype=np.float32) / 255.0, self.norm), self.targets[i]

    def subset(self, indices: Sequence[int] | np.ndarray) -> _HFImages:
        idx = np.asarray(indices, dtype=np.int64)
        return _HFImages(self.ds, self.column, self.rows[idx], self.targets[torch.as_tensor(idx)],
                         self.classes, size=self.size, norm=self.norm, name=self.name)  # fmt: skip


def in_memory(splits: Any, what: str) -> Any:
    """``splits`` with every split a float-tensor :class:`~netxray.data.Dataset`, for code that
    iterates ``x`` itself (training, fine-tuning). Image sets are decoded once into memory;
    token inputs cannot be: a :class:`DataError` naming ``what`` says so.

    Example:
        >>> from netxray.data import load_data
        >>> in_memory(load_data("digits"), "train").train.x.dtype
        torch.float32
    """
    from netxray.data.dataset import Dataset

    if isinstance(splits.train, Dataset) and isinstance(splits.test, Dataset):
        return splits
    parts = []
    for part in (splits.train, splits.test):
        if isinstance(part, Dataset):
            parts.append(part)
        elif isinstance(part, ImageFolder) or isinstance(getattr(part, "x", None), torch.Tensor):
            if isinstance(part, ImageFolder):
                xs = [part[i][0] for i in range(len(part))]
                x = torch.stack(xs) if xs else torch.empty(0, *part.input_shape)
            else:
                x = part.x
            parts.append(Dataset(x, part.targets, part.name, part.num_classes))
        else:
            raise DataError(
                f"{what} needs samples held as one float tensor; {getattr(part, 'name', 'the data')} "
                "has token inputs (text), which netxray's training loop does not take"
            )
    return DataSplits(parts[0], parts[1], measure=splits.measure)
