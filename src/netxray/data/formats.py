"""Loaders for data sets kept on a local disk in their published formats.

- MNIST / Fashion-MNIST IDX files (raw or gzip): :func:`read_idx`, :func:`load_idx_dir`.
- CIFAR-10 "python version" batches (pickled dicts): :func:`load_cifar10`, unpickled by a
  restricted unpickler that can build numpy arrays and nothing else, so a file cannot run code.
- ``.npz`` archives with ``x`` and ``y`` (optionally ``x_test``/``y_test``): :func:`load_npz`.

Every problem is a :class:`DataError` naming the file and what was expected. Files are only read.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from netxray.data.dataset import (
    DataError,
    Dataset,
    DataSplits,
    check_nonempty_splits,
    check_test_fraction,
    split_dataset,
)

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped (detected by the gzip magic bytes, not the name)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed, into a numpy array.

    Layout: magic number = two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64) and the number of dimensions D; then D big-endian
    uint32 sizes; then prod(sizes) big-endian values in C order. MNIST images are magic 2051
    (0x00000803, uint8, 3-D), labels 2049 (0x00000801, uint8, 1-D).

    Example:
        >>> read_idx("mnist/train-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (60000,)
    """
    path = Path(path).expanduser()
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX file ({len(data)} bytes; expected a 4-byte magic number)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{magic:08X}; expected 0x0000TTDD with type code TT in "
            f"{{08, 09, 0B, 0C, 0D, 0E}} and DD >= 1 dimensions (MNIST images 0x00000803 = 2051, "
            f"labels 0x00000801 = 2049)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header (expected {ndim} dimension sizes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX data: header says shape {shape} ({expected} bytes) "
            f"but only {got} bytes follow"
        )
    if got > expected:
        raise DataError(
            f"{path}: {got - expected} unexpected trailing bytes after the IDX data of shape {shape}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, split: str, kind: str, idx_kind: str) -> Path | None:
    """The file for (train|t10k, images|labels) under any of the common namings, or None."""
    names = [f"{split}-{kind}-{idx_kind}-ubyte", f"{split}-{kind}.{idx_kind}-ubyte"]
    for folder in (directory, directory / "raw"):
        for name in names:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def _idx_images(path: Path) -> np.ndarray:
    arr = read_idx(path)
    if arr.ndim == 3:
        arr = arr[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif arr.ndim != 4:
        raise DataError(f"{path}: expected IDX images of shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


def _idx_labels(path: Path, n_images: int, images_path: Path) -> np.ndarray:
    arr = read_idx(path)
    if arr.ndim != 1:
        raise DataError(f"{path}: expected IDX labels of shape (N,), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise DataError(f"{path}: expected integer labels, got IDX dtype {arr.dtype}")
    if len(arr) != n_images:
        raise DataError(
            f"{path}: {len(arr)} labels do not match the {n_images} images in {images_path.name}"
        )
    if len(arr) and arr.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {int(arr.min())}")
    return arr.astype(np.int64)


def _check_labels(y: np.ndarray, num_classes: int, source: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"{source}: labels must lie in [0, {num_classes}), found values in [{int(y.min())}, {int(y.max())}]"
        )


def _num_classes(num_classes: int | None, y: np.ndarray, source: str) -> int:
    """The given class count (validated against the labels) or 1 + the largest label."""
    if num_classes is None:
        return int(y.max()) + 1 if len(y) else 1
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise DataError(f"{source}: num_classes must be a positive integer, got {num_classes!r}")
    _check_labels(y, int(num_classes), source)
    return int(num_classes)


def load_idx_dir(
    directory: str | Path,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """MNIST or Fashion-MNIST from a folder of IDX files (raw or ``.gz``).

    Looks in ``directory`` (and ``directory/raw``) for ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, also
    named ``train-images.idx3-ubyte`` etc., each optionally gzipped. Images become ``(N, 1, H, W)``
    float32 in [0, 1] (uint8 / 255). The published train/test split is kept; without ``t10k`` files
    the train files are split (seeded, stratified, ``test_fraction``). ``num_classes`` defaults to
    1 + the largest label (10 for MNIST); when given, labels outside it are an error.

    Example:
        >>> s = load_idx_dir("~/data/fashion-mnist")  # doctest: +SKIP
        >>> s.train.input_shape, len(s.train), len(s.test)  # doctest: +SKIP
        ((1, 28, 28), 60000, 10000)
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory}: IDX data folder not found (expected a folder with train-images-idx3-ubyte[.gz] ...)")
    name = f"idx:{directory}"
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "t10k"):
        img = _find_idx(directory, split, "images", "idx3")
        lab = _find_idx(directory, split, "labels", "idx1")
        if img is None and lab is None and split == "t10k":
            continue
        if img is None or lab is None:
            missing = f"{split}-images-idx3-ubyte" if img is None else f"{split}-labels-idx1-ubyte"
            raise DataError(
                f"{directory}: missing file {missing} (or {missing}.gz, or the '.idx' naming); "
                f"an MNIST folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte and "
                f"optionally t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
            )
        x = _idx_images(img)
        parts[split] = (x, _idx_labels(lab, len(x), img))
    if "t10k" in parts and parts["t10k"][0].shape[1:] != parts["train"][0].shape[1:]:
        raise DataError(
            f"{directory}: test images have shape {parts['t10k'][0].shape[1:]} but train images "
            f"have {parts['train'][0].shape[1:]}"
        )
    all_y = np.concatenate([p[1] for p in parts.values()])
    k = _num_classes(num_classes, all_y, str(directory))
    train = Dataset(*parts["train"], name, k)
    if "t10k" in parts:
        return check_nonempty_splits(DataSplits(train, Dataset(*parts["t10k"], name, k)))
    return split_dataset(train, test_fraction, seed)


# ---------------------------------------------------------------------------------------- CIFAR
class _SafeUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR batch needs: containers, bytes/str, numbers and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")  # the published batches are Python 2 pickles
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise DataError(
                f"{self._source}: refusing to unpickle {module}.{name}; a CIFAR-10 batch may only "
                f"contain dicts, lists, bytes, numbers and numpy arrays"
            )
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"  # numpy >= 2 moved it; avoids the deprecated alias
        return super().find_class(module, name)


def _key(d: dict, name: str) -> object:
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    return None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(path)
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except Exception as exc:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with b'data' and b'labels', got {type(obj).__name__}")
    data, labels = _key(obj, "data"), _key(obj, "labels")
    if data is None or labels is None:
        raise DataError(f"{path}: expected keys b'data' and b'labels', found {sorted(map(repr, obj))}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{path}: expected b'data' as uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: expected b'labels' as a list of N integers, got {y.dtype} {y.shape}")
    if len(y) != len(data):
        raise DataError(f"{path}: {len(y)} labels do not match {len(data)} images")
    _check_labels(y, 10, str(path))
    # rows are 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, y.astype(np.int64)


def load_cifar10(directory: str | Path, *, seed: int = 0, test_fraction: float = 0.2) -> DataSplits:
    """CIFAR-10 from its python-version batches: ``data_batch_1`` … ``data_batch_5``, ``test_batch``.

    ``directory`` is the ``cifar-10-batches-py`` folder or a folder containing it. Each batch is
    a pickled dict with ``b"data"`` (uint8, (N, 3072): 1024 R, 1024 G, 1024 B values of a 32×32
    image) and ``b"labels"`` (N ints in 0..9). Images become ``(N, 3, 32, 32)`` float32 in [0, 1].
    Unpickling is restricted to numpy arrays and plain containers: a file cannot execute code.
    The train batches present must be numbered 1..k without gaps; without ``test_batch`` the
    train set is split (seeded, stratified).

    Example:
        >>> s = load_cifar10("~/data/cifar-10-batches-py")  # doctest: +SKIP
        >>> s.train.input_shape, len(s.train), len(s.test)  # doctest: +SKIP
        ((3, 32, 32), 50000, 10000)
    """
    directory = Path(directory).expanduser()
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    if not directory.is_dir():
        raise DataError(f"{directory}: CIFAR-10 folder not found (expected data_batch_1..5 and test_batch)")
    numbers = sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := re.fullmatch(r"data_batch_(\d+)", p.name))
    )
    if not numbers:
        raise DataError(
            f"{directory}: missing file data_batch_1; a CIFAR-10 folder holds data_batch_1 … "
            f"data_batch_5 and test_batch (the python version)"
        )
    gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if gaps:
        raise DataError(f"{directory}: missing file data_batch_{gaps[0]} (train batches must be numbered 1..k)")
    batches = [_read_cifar_batch(directory / f"data_batch_{i}") for i in numbers]
    name = f"cifar10:{directory}"
    train = Dataset(
        np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), name, 10
    )
    test_path = directory / "test_batch"
    if test_path.exists():
        return check_nonempty_splits(DataSplits(train, Dataset(*_read_cifar_batch(test_path), name, 10)))
    return split_dataset(train, test_fraction, seed)


# ------------------------------------------------------------------------------------------ npz
def load_npz(
    path: str | Path,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """A ``.npz`` archive with ``x`` (N, ...) and ``y`` (N,) and optionally ``x_test``, ``y_test``.

    ``x`` may be any real dtype; uint8 arrays are taken as images and scaled by 1/255, others are
    cast to float32 as they are. ``y`` must be integers (integral floats are accepted). Without
    ``x_test``/``y_test`` the set is split (seeded, stratified, ``test_fraction``).
    ``num_classes`` defaults to ``num_classes`` stored in the archive, else 1 + the largest label.
    Loaded with ``allow_pickle=False``: object arrays are refused.

    Example:
        >>> np.savez("toy.npz", x=np.random.rand(100, 5), y=np.arange(100) % 3)  # doctest: +SKIP
        >>> load_npz("toy.npz").train.input_shape  # doctest: +SKIP
        (5,)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a .npz archive with arrays 'x' and 'y')")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from None
    if not is_zip:
        raise DataError(
            f"{path}: not a .npz (zip) archive; expected one written by numpy.savez with arrays 'x' and 'y'"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as exc:
        raise DataError(f"{path}: cannot read a .npz archive without pickles ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r}; expected 'x' and 'y', found {sorted(arrays)}")
    has_test = ("x_test" in arrays, "y_test" in arrays)
    if has_test[0] != has_test[1]:
        raise DataError(f"{path}: 'x_test' and 'y_test' must be given together, found {sorted(arrays)}")

    def pair(xk: str, yk: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = arrays[xk], arrays[yk]
        if x.ndim < 2:
            raise DataError(f"{path}: array {xk!r} must have shape (N, ...) with N samples, got {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{path}: array {yk!r} must have shape (N,), got {y.shape}")
        if len(y) != len(x):
            raise DataError(f"{path}: {len(y)} labels in {yk!r} do not match {len(x)} samples in {xk!r}")
        if y.dtype.kind not in "iuf" or (
            y.dtype.kind == "f" and not (np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        ):
            raise DataError(f"{path}: labels {yk!r} must be integers, got dtype {y.dtype}"
                            + (" with non-integer values" if y.dtype.kind == "f" else ""))
        if x.dtype.kind not in "iuf":
            raise DataError(f"{path}: array {xk!r} must be real numbers, got dtype {x.dtype}")
        xf = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        return xf, y.astype(np.int64)

    train_x, train_y = pair("x", "y")
    test = pair("x_test", "y_test") if has_test[0] else None
    if test is not None and test[0].shape[1:] != train_x.shape[1:]:
        raise DataError(
            f"{path}: 'x_test' samples have shape {test[0].shape[1:]} but 'x' samples have {train_x.shape[1:]}"
        )
    all_y = np.concatenate([train_y] + ([test[1]] if test is not None else []))
    if num_classes is None and "num_classes" in arrays:
        stored = arrays["num_classes"]
        if stored.shape != () or stored.dtype.kind not in "iu":
            raise DataError(f"{path}: 'num_classes' must be an integer scalar, got {stored.dtype} {stored.shape}")
        num_classes = int(stored)
    k = _num_classes(num_classes, all_y, str(path))
    name = f"npz:{path}"
    train = Dataset(train_x, train_y, name, k)
    if test is not None:
        return check_nonempty_splits(DataSplits(train, Dataset(*test, name, k)))
    check_test_fraction(test_fraction)
    return split_dataset(train, test_fraction, seed)
