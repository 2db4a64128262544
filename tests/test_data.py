"""Tests for netxray.data: built-in sets, seeded splits, and loaders for published formats.

Fixture files are written here byte by byte in the real formats (IDX headers packed with
``struct``, CIFAR-10 batches as pickled dicts, npz archives), independently of the readers.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from netxray.data import (
    DataError,
    Dataset,
    DataSplits,
    blobs,
    digits,
    load_cifar10,
    load_data,
    load_idx_dir,
    load_npz,
    mnist1d,
    read_idx,
    split_dataset,
    stratified_split_indices,
)


# ------------------------------------------------------------------------------------ fixtures
def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``arr`` as an IDX file: 0x00 0x00 type ndim, big-endian uint32 dims, big-endian data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}
    header = struct.pack(">BBBB", 0, 0, codes[arr.dtype], arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_mnist_dir(root: Path, *, gz: bool, naming: str = "dash", n_train: int = 30, n_test: int = 10,
                   seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        idx = "idx3" if "images" in stem else "idx1"
        fname = f"{stem}-{idx}-ubyte" if naming == "dash" else f"{stem}.{idx}-ubyte"
        write_idx(root / fname, arr, gz=gz)
    return root, arrays


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` in a pickle: SHORT_BINSTRING (or BINSTRING when long)."""
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])  # BININT1
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)  # BININT2
    return b"J" + struct.pack("<i", v)  # BININT


def cifar_batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR-10 python batch exactly as published: a protocol-2 pickle written by Python 2.

    Opcode by opcode: a dict of Python 2 strings (read back as bytes keys), ``b"data"`` a uint8
    numpy array built through ``numpy.core.multiarray._reconstruct`` with its raw bytes as a str,
    ``b"labels"`` a list of ints.
    """
    assert data.dtype == np.uint8 and data.ndim == 2
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + b"J" + struct.pack("<i", -1)
        + b"J" + struct.pack("<i", -1) + _py2_int(0) + b"tb"
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85"
        + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + _py2_int(data.shape[0])
        + _py2_int(data.shape[1]) + b"\x86" + dtype + b"\x89" + _py2_str(data.tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(_py2_int(int(v)) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"training batch 1 of 5")
        + _py2_str(b"labels") + label_list + _py2_str(b"data") + array + b"u."
    )


def make_cifar_dir(root: Path, *, per_batch: int = 6, with_test: bool = True) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_data = []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(per_batch) + i) % 10]
        (folder / f"data_batch_{i}").write_bytes(cifar_batch_bytes(data, labels))
        all_data.append(data)
    if with_test:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        (folder / "test_batch").write_bytes(cifar_batch_bytes(data, [0, 1, 2, 3]))
    return folder, np.concatenate(all_data)


# ---------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("naming", ["dash", "dot"])
def test_idx_round_trip(tmp_path: Path, gz: bool, naming: str) -> None:
    root, arrays = make_mnist_dir(tmp_path / "mnist", gz=gz, naming=naming)
    splits = load_data(f"idx:{root}")
    assert isinstance(splits, DataSplits)
    assert splits.train.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert len(splits.train) == 30 and len(splits.test) == 10  # the published split is kept
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64
    np.testing.assert_array_equal(
        splits.train.x.numpy()[:, 0], arrays["train-images"].astype(np.float32) / 255.0
    )
    np.testing.assert_array_equal(splits.test.y.numpy(), arrays["t10k-labels"])


def test_read_idx_generic_dtypes_and_raw_subfolder(tmp_path: Path) -> None:
    a = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", a)), a)
    f = np.linspace(-1, 1, 10, dtype=np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.idx", f, gz=True)), f)
    # torchvision's layout keeps the files in DIR/raw; no t10k files -> a seeded stratified split
    raw = tmp_path / "fashion" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((20, 4, 4), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", (np.arange(20) % 2).astype(np.uint8))
    s = load_idx_dir(tmp_path / "fashion", test_fraction=0.25, seed=3)
    assert (len(s.train), len(s.test), s.num_classes) == (15, 5, 2)


def test_idx_malformed(tmp_path: Path) -> None:
    good = np.zeros((5, 4, 4), np.uint8)
    # bad magic number
    p = tmp_path / "bad_magic"
    p.write_bytes(struct.pack(">I", 0x12345678) + b"\x00" * 100)
    with pytest.raises(DataError, match=r"bad_magic.*magic number 0x12345678"):
        read_idx(p)
    # unknown type code
    p.write_bytes(struct.pack(">BBBB", 0, 0, 0x07, 1) + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataError, match="magic number"):
        read_idx(p)
    # truncated data
    full = write_idx(tmp_path / "full", good).read_bytes()
    (tmp_path / "trunc").write_bytes(full[:-7])
    with pytest.raises(DataError, match=r"trunc.*truncated IDX data.*\(5, 4, 4\)"):
        read_idx(tmp_path / "trunc")
    (tmp_path / "hdr").write_bytes(full[:9])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(tmp_path / "hdr")
    # trailing garbage
    (tmp_path / "long").write_bytes(full + b"xx")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(tmp_path / "long")
    # corrupt gzip
    (tmp_path / "bad.gz").write_bytes(gzip.compress(full)[:-10])
    with pytest.raises(DataError, match=r"bad\.gz.*gzip"):
        read_idx(tmp_path / "bad.gz")
    # missing file
    with pytest.raises(DataError, match=r"nothere.*not found"):
        read_idx(tmp_path / "nothere")


def test_idx_dir_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        load_data(f"idx:{tmp_path / 'missing'}")
    root, _ = make_mnist_dir(tmp_path / "a", gz=False)
    os.remove(root / "train-labels-idx1-ubyte")
    with pytest.raises(DataError, match="missing file train-labels-idx1-ubyte"):
        load_idx_dir(root)
    # labels count not matching samples
    root, _ = make_mnist_dir(tmp_path / "b", gz=True)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8), gz=True)
    with pytest.raises(DataError, match="9 labels do not match the 10 images"):
        load_idx_dir(root)
    # labels out of a declared range
    root, _ = make_mnist_dir(tmp_path / "c", gz=False)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 5\)"):
        load_idx_dir(root, num_classes=5)
    # images with the wrong number of dimensions
    root, _ = make_mnist_dir(tmp_path / "d", gz=False)
    write_idx(root / "train-images-idx3-ubyte", np.zeros((30, 784), np.uint8))
    with pytest.raises(DataError, match=r"expected IDX images of shape \(N, H, W\)"):
        load_idx_dir(root)


# -------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("parent", [False, True])
def test_cifar10_round_trip(tmp_path: Path, parent: bool) -> None:
    folder, data = make_cifar_dir(tmp_path)
    splits = load_data(f"cifar10:{tmp_path if parent else folder}")
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert len(splits.train) == 30 and len(splits.test) == 4
    # channel-major rows: the first 1024 values are the red plane of a 32x32 image
    np.testing.assert_array_equal(
        splits.train.x[0, 0].numpy(), data[0, :1024].reshape(32, 32).astype(np.float32) / 255.0
    )
    np.testing.assert_array_equal(
        splits.train.x[7, 2].numpy(), data[7, 2048:].reshape(32, 32).astype(np.float32) / 255.0
    )
    assert splits.train.y[:6].tolist() == [1, 2, 3, 4, 5, 6]
    assert splits.test.y.tolist() == [0, 1, 2, 3]


def test_cifar_fixture_is_a_real_pickle() -> None:
    data = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    obj = pickle.loads(cifar_batch_bytes(data, [3, 7]), encoding="bytes")  # the documented way
    np.testing.assert_array_equal(obj[b"data"], data)
    assert obj[b"labels"] == [3, 7]


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_python3_pickles_and_no_test_batch(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    data = np.zeros((20, 3072), np.uint8)
    raw = pickle.dumps({b"data": data, b"labels": [i % 2 for i in range(20)]}, protocol=protocol)
    (folder / "data_batch_1").write_bytes(raw)
    s = load_cifar10(folder, test_fraction=0.2, seed=0)
    assert (len(s.train), len(s.test)) == (16, 4)


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.mkdir, (str(self.target),))


def test_cifar10_unpickling_cannot_execute_code(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    target = tmp_path / "pwned"
    payload = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Exploit(target)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: refusing to unpickle (posix|os)\.mkdir"):
        load_cifar10(folder)
    assert not target.exists()


def test_cifar10_malformed(tmp_path: Path) -> None:
    folder, _ = make_cifar_dir(tmp_path / "gap")
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match="missing file data_batch_3"):
        load_cifar10(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="missing file data_batch_1"):
        load_cifar10(empty)

    def one(name: str, raw: bytes) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "data_batch_1").write_bytes(raw)
        return d

    d = one("shape", cifar_batch_bytes(np.zeros((2, 1024), np.uint8), [0, 1]))
    with pytest.raises(DataError, match=r"uint8 of shape \(N, 3072\)"):
        load_cifar10(d)
    d = one("count", cifar_batch_bytes(np.zeros((3, 3072), np.uint8), [0, 1]))
    with pytest.raises(DataError, match="2 labels do not match 3 images"):
        load_cifar10(d)
    d = one("range", cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0, 10]))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_cifar10(d)
    d = one("keys", pickle.dumps({b"pixels": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataError, match="expected keys b'data' and b'labels'"):
        load_cifar10(d)
    d = one("junk", b"this is not a pickle at all")
    with pytest.raises(DataError, match="not a readable CIFAR-10 python batch"):
        load_cifar10(d)


# ---------------------------------------------------------------------------------------- npz
def test_npz_round_trip_with_and_without_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3, 2))
    y = np.arange(50) % 5
    p = tmp_path / "a.npz"
    np.savez(p, x=x, y=y)
    s = load_data(f"npz:{p}", seed=2, test_fraction=0.2)
    assert (len(s.train), len(s.test), s.num_classes, s.input_shape) == (40, 10, 5, (3, 2))
    assert np.bincount(s.test.y.numpy()).tolist() == [2] * 5  # stratified
    # every sample lands in exactly one split, unchanged
    got = np.concatenate([s.train.x.numpy(), s.test.x.numpy()]).reshape(50, -1)
    assert sorted(map(tuple, got)) == sorted(map(tuple, x.astype(np.float32).reshape(50, -1)))

    q = tmp_path / "b.npz"
    np.savez(q, x=np.full((6, 4), 255, np.uint8), y=np.array([0, 1, 2, 0, 1, 2.0]),
             x_test=np.zeros((3, 4), np.uint8), y_test=np.array([2, 1, 0]), num_classes=np.int64(4))
    s = load_npz(q)
    assert (len(s.train), len(s.test), s.num_classes) == (6, 3, 4)
    assert float(s.train.x.max()) == 1.0  # uint8 images scaled by 1/255
    assert s.train.y.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_malformed(tmp_path: Path) -> None:
    def save(name: str, **arrays: object) -> str:
        p = tmp_path / name
        np.savez(p, **arrays)
        return f"npz:{p}"

    cases = [
        (save("noy.npz", x=np.zeros((4, 2))), r"noy\.npz: missing array 'y'"),
        (save("count.npz", x=np.zeros((4, 2)), y=np.zeros(3, int)), "3 labels in 'y' do not match 4 samples"),
        (save("frac.npz", x=np.zeros((2, 2)), y=np.array([0.0, 0.5])), "must be integers"),
        (save("str.npz", x=np.zeros((2, 2)), y=np.array(["a", "b"])), "must be integers"),
        (save("neg.npz", x=np.zeros((2, 2)), y=np.array([0, -1])), r"labels must lie in \[0, "),
        (save("y2d.npz", x=np.zeros((2, 2)), y=np.zeros((2, 1), int)), r"'y' must have shape \(N,\)"),
        (save("x1d.npz", x=np.zeros(4), y=np.zeros(4, int)), r"'x' must have shape \(N, \.\.\.\)"),
        (save("half.npz", x=np.zeros((2, 2)), y=np.zeros(2, int), x_test=np.zeros((1, 2))),
         "must be given together"),
        (save("shape.npz", x=np.zeros((2, 2)), y=np.zeros(2, int), x_test=np.zeros((1, 3)),
              y_test=np.zeros(1, int)), "'x_test' samples have shape"),
        (save("nan.npz", x=np.array([[0.0], [np.nan]]), y=np.zeros(2, int)), "non-finite"),
        (save("obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2, int)), "without pickles"),
        (f"npz:{tmp_path / 'absent.npz'}", r"absent\.npz: file not found"),
    ]
    for spec, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            load_data(spec)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        load_npz(tmp_path / "neg.npz", num_classes=2)


# --------------------------------------------------------------------------------- load_data
def test_load_data_specs_and_errors(tmp_path: Path) -> None:
    s = load_data("blobs:classes=5,dim=16,separation=4,n=1000", seed=1)
    assert (s.num_classes, s.input_shape, len(s.train), len(s.test)) == (5, (16,), 800, 200)
    assert load_data(s) is s
    assert len(load_data(s.train, test_fraction=0.5).test) == 400
    with pytest.raises(DataError, match=r"unknown data spec 'cifar100'.*digits.*mnist1d.*blobs.*npz:PATH"):
        load_data("cifar100")
    with pytest.raises(DataError, match=r"unknown option 'colour=3'.*classes"):
        load_data("blobs:colour=3")
    with pytest.raises(DataError, match="option n must be an integer"):
        load_data("mnist1d:n=1.5")
    with pytest.raises(DataError, match="needs a path"):
        load_data("npz:")
    with pytest.raises(DataError, match="did you mean 'npz:"):
        load_data(str(tmp_path / "x.npz"))
    with pytest.raises(DataError, match=r"test_fraction must be in \(0, 1\)"):
        load_data("digits", test_fraction=1.0)
    with pytest.raises(DataError, match="takes no options"):
        load_data("digits:n=3")
    assert issubclass(DataError, ValueError)


# ----------------------------------------------------------------------------- Dataset basics
def test_dataset_validation_batches_subset() -> None:
    x = torch.arange(20, dtype=torch.float64).reshape(10, 2)
    ds = Dataset(x, torch.arange(10) % 3, "toy", 3)
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64 and ds.input_shape == (2,)
    plain = list(ds.batches(4))
    assert [len(b[0]) for b in plain] == [4, 4, 2]
    torch.testing.assert_close(torch.cat([b[0] for b in plain]), ds.x)
    a = [b[1].tolist() for b in ds.batches(3, shuffle=True, seed=5)]
    assert a == [b[1].tolist() for b in ds.batches(3, shuffle=True, seed=5)]  # deterministic
    assert a != [b[1].tolist() for b in ds.batches(3, shuffle=True, seed=6)]
    assert sorted(v for b in ds.batches(3, shuffle=True, seed=5) for v in b[0][:, 0].tolist()) == \
        ds.x[:, 0].tolist()  # a permutation: nothing dropped or repeated
    sub = ds.subset([9, 0, 4])
    assert sub.y.tolist() == [0, 0, 1] and len(ds) == 10
    sub.x += 100  # a subset is a copy; the original stays untouched
    assert float(ds.x.max()) == 19.0
    assert len(ds.subset(np.arange(10) % 2 == 0)) == 5
    with pytest.raises(DataError, match=r"subset indices must lie in \[0, 10\)"):
        ds.subset([10])
    with pytest.raises(DataError, match="5 labels do not match 10 samples"):
        Dataset(x, torch.zeros(5, dtype=torch.long), "toy", 3)
    with pytest.raises(DataError, match=r"'toy'.*labels must lie in \[0, 3\)"):
        Dataset(x, torch.arange(10), "toy", 3)
    with pytest.raises(DataError, match="non-integer values"):
        Dataset(x, torch.full((10,), 0.5), "toy", 3)
    with pytest.raises(DataError, match="batch_size must be a positive integer"):
        next(ds.batches(0))
    assert "n=10" in repr(ds)


def test_stratified_split_is_seeded_disjoint_and_balanced() -> None:
    y = np.repeat(np.arange(4), [10, 20, 30, 41])
    tr1, te1 = stratified_split_indices(y, 0.2, seed=7)
    tr2, te2 = stratified_split_indices(y, 0.2, seed=7)
    np.testing.assert_array_equal(te1, te2)
    np.testing.assert_array_equal(tr1, tr2)
    _, te3 = stratified_split_indices(y, 0.2, seed=8)
    assert not np.array_equal(te1, te3)
    assert np.intersect1d(tr1, te1).size == 0 and len(tr1) + len(te1) == len(y)
    assert np.bincount(y[te1]).tolist() == [2, 4, 6, 8]  # round(0.2 * n_c) per class
    # a singleton class stays in train, a pair gives one to each side
    tr, te = stratified_split_indices(np.array([0, 1, 1]), 0.2, seed=0)
    assert y_of(te, [0, 1, 1]) == [1] and len(tr) == 2


def y_of(idx: np.ndarray, y: list[int]) -> list[int]:
    return [y[i] for i in idx]


# ------------------------------------------------------------------------------------ built-in
def test_digits() -> None:
    s = digits(seed=0)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert len(s.train) + len(s.test) == 1797
    allx = torch.cat([s.train.x, s.test.x])
    assert float(allx.min()) == 0.0 and float(allx.max()) == 1.0
    s2 = digits(seed=0)
    torch.testing.assert_close(s.test.x, s2.test.x)
    assert not torch.equal(s.test.y, digits(seed=1).test.y)
    assert np.all(np.abs(s.test.class_counts() - 36) <= 1)  # ~20% of ~180 per class


def test_mnist1d_shape_determinism_and_balance() -> None:
    a = mnist1d(1000, seed=0)
    b = mnist1d(1000, seed=0)
    assert a.input_shape == (1, 40) and a.num_classes == 10
    assert (len(a.train), len(a.test)) == (800, 200)
    torch.testing.assert_close(a.train.x, b.train.x, rtol=0, atol=0)
    assert torch.equal(a.train.y, b.train.y)
    # the data seed changes the data; the split seed only regroups the same samples
    c = mnist1d(1000, data_seed=7)
    assert not torch.equal(a.train.x, c.train.x)
    d = mnist1d(1000, seed=3)
    pool = lambda s: sorted(map(tuple, torch.cat([s.train.x, s.test.x])[:, 0].tolist()))  # noqa: E731
    assert pool(a) == pool(d) and not torch.equal(a.test.x, d.test.x)
    counts = np.bincount(torch.cat([a.train.y, a.test.y]).numpy(), minlength=10)
    assert counts.tolist() == [100] * 10
    assert a.test.class_counts().tolist() == [20] * 10
    odd = mnist1d(1003)
    assert np.ptp(np.bincount(torch.cat([odd.train.y, odd.test.y]).numpy())) == 1
    allx = torch.cat([a.train.x, a.test.x]).double()
    assert abs(float(allx.mean())) < 1e-6 and abs(float(allx.std(unbiased=False)) - 1) < 1e-5
    with pytest.raises(DataError, match="n must be an integer >= 10"):
        mnist1d(5)


def test_mnist1d_is_learnable_like_the_paper() -> None:
    """Greydanus (2020) reports ~32% test accuracy for logistic regression (chance: 10%)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    s = mnist1d()  # the default 5000 samples, 4000/1000 split
    flat = lambda d: d.x.reshape(len(d), -1).numpy()  # noqa: E731
    # one BLAS thread: on a shared 2-core machine a multi-threaded BLAS runs ~100x slower here
    with threadpool_limits(1):
        clf = LogisticRegression(max_iter=500).fit(flat(s.train), s.train.y.numpy())
        acc = clf.score(flat(s.test), s.test.y.numpy())
        assert 0.24 < acc < 0.45  # far above chance, far from solved: a linear model is not enough
        # the structure is in the signal, not the labels: shuffled labels fall back to chance
        rng = np.random.default_rng(0)
        y_shuffled = rng.permutation(s.train.y.numpy())
        clf = LogisticRegression(max_iter=500).fit(flat(s.train), y_shuffled)
        assert clf.score(flat(s.test), s.test.y.numpy()) < 0.16


def test_blobs_geometry() -> None:
    s = blobs(num_classes=4, dim=8, separation=6.0, n=4000, data_seed=3)
    x = torch.cat([s.train.x, s.test.x]).double().numpy()
    y = torch.cat([s.train.y, s.test.y]).numpy()
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    dists = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(4, 1)]
    # each class mean is estimated from 1000 unit-variance samples: error ~ sqrt(8/1000) ≈ 0.09
    np.testing.assert_allclose(dists, 6.0, atol=0.3)
    within = np.mean([x[y == c].var(0, ddof=1).mean() for c in range(4)])
    assert abs(within - 1.0) < 0.05
    assert torch.equal(s.train.x, blobs(4, 8, 6.0, 4000, data_seed=3).train.x)
    assert not torch.equal(s.train.x, blobs(4, 8, 6.0, 4000, data_seed=4).train.x)
    assert np.bincount(y).tolist() == [1000] * 4
    with pytest.raises(DataError, match="blobs: dim must be an integer >= 1"):
        blobs(dim=0)


# ------------------------------------------------------------------- empty splits, names, npz
def test_empty_split_is_an_error_naming_data_and_sizes(tmp_path: Path) -> None:
    # ten samples, one per class: every singleton stays in train, so the test split is empty
    with pytest.raises(DataError, match=r"'mnist1d:n=10'.*test split is empty.*train=10, test=0"):
        load_data("mnist1d:n=10")
    p = tmp_path / "three.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"three\.npz.*test split is empty.*train=3, test=0"):
        load_data(f"npz:{p}")
    q = tmp_path / "notest.npz"
    np.savez(q, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), x_test=np.zeros((0, 2)),
             y_test=np.zeros(0, int))
    with pytest.raises(DataError, match=r"test split is empty.*train=4, test=0"):
        load_npz(q)
    ds = Dataset(torch.zeros(3, 2), torch.tensor([0, 1, 1]), "toy", 2)
    with pytest.raises(DataError, match=r"'toy'.*train split is empty.*train=0, test=3"):
        load_data(DataSplits(ds.subset([]), ds))
    with pytest.raises(DataError, match="test split is empty"):
        split_dataset(Dataset(torch.zeros(2, 2), torch.tensor([0, 1]), "pair", 2))
    assert len(load_data("mnist1d:n=20").test) == 10  # two per class: one on each side


def test_mnist1d_name_records_non_default_options() -> None:
    assert mnist1d(1000).name == "mnist1d:n=1000"
    assert mnist1d(1000, data_seed=7, shear_scale=0.5).name == "mnist1d:n=1000,data_seed=7,shear_scale=0.5"
    assert load_data("mnist1d:n=500,length=20").name == "mnist1d:n=500,length=20"
    assert mnist1d(1000, padding=(10, 20)).name == "mnist1d:n=1000,padding=10-20"
    # the name is a spec that regenerates the same data
    a = mnist1d(300, data_seed=3)
    torch.testing.assert_close(load_data(a.name).train.x, a.train.x, rtol=0, atol=0)


def test_npz_that_is_not_a_zip_archive(tmp_path: Path) -> None:
    p = tmp_path / "passwd"
    p.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(DataError, match=r"passwd: not a \.npz \(zip\) archive") as info:
        load_data(f"npz:{p}")
    assert "pickle" not in str(info.value)
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DataError, match=r"not a \.npz \(zip\) archive"):
        load_npz(npy)


# ------------------------------------------------------------ sources people keep on disk
# image folders (PNG/JPEG by Pillow), CSV / JSON Lines text, datasets.save_to_disk, a tiny BERT
# tokenizer: all written at test time in the real formats (tests/_real_formats.py)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    import _real_formats as rf

    root = tmp_path_factory.mktemp("sources")
    return {
        "images": rf.image_folder(root / "images"),
        "csv": rf.text_csv(root / "reviews.csv"),
        "jsonl": rf.text_jsonl(root / "reviews.jsonl"),
        "hfds": rf.hf_text_dataset(root / "hfds"),
        "hfnum": rf.hf_numeric_dataset(root / "hfnum"),
        "bert": rf.tiny_bert(root / "bert"),
    }


def test_imagefolder_decodes_png_and_jpeg_lazily_resized_and_normalized(on_disk) -> None:
    from PIL import Image

    from netxray.data.sources import ImageFolder

    s = load_data(f"imagefolder:{on_disk['images']}", image_size=16, seed=0)
    assert isinstance(s.test, ImageFolder) and s.num_classes == 3 and s.input_shape == (3, 16, 16)
    assert len(s.train) + len(s.test) == 30 and sorted(s.test.targets.tolist()) == [0, 0, 1, 1, 2, 2]
    assert {f.suffix for f in s.train.files} == {".png", ".jpg"}
    # item = the file decoded by Pillow, resized (bilinear), scaled to [0, 1]: checked directly
    x, y = s.test[0]
    f = s.test.files[0]
    with Image.open(f) as im:
        ref = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)) / 255.0
    assert torch.allclose(x, torch.from_numpy(ref.transpose(2, 0, 1)).float(), atol=1e-6)
    assert int(y) == int(f.parent.name[-1])  # class c lives in folder class{c}
    # ImageNet normalization: (x - mean) / std per channel
    n = load_data(f"imagefolder:{on_disk['images']}", image_size=16, normalize="imagenet")
    xn, _ = n.test[0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(xn, (x - mean[:, None, None]) / std[:, None, None], atol=1e-6)
    # the model's declared preprocessing is the default
    m = load_data(f"imagefolder:{on_disk['images']}", preprocessing={"size": 8, "mean": [0.5] * 3,
                                                                     "std": [0.5] * 3})  # fmt: skip
    assert m.input_shape == (3, 8, 8) and m.test[0][0].min() < 0
    # no size given: the first image's width
    assert load_data(f"imagefolder:{on_disk['images']}").input_shape == (3, 24, 24)


def test_imagefolder_with_train_and_test_folders_and_errors(on_disk, tmp_path) -> None:
    import shutil

    import _real_formats as rf

    rf.image_folder(tmp_path / "pre" / "train", per_class=4)
    rf.image_folder(tmp_path / "pre" / "val", per_class=2)
    s = load_data(f"imagefolder:{tmp_path / 'pre'}", image_size=8)
    assert (len(s.train), len(s.test)) == (12, 6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_data(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="no such directory"):
        load_data(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="--normalize 'sepia'"):
        load_data(f"imagefolder:{on_disk['images']}", normalize="sepia")
    with pytest.raises(DataError, match="do not apply to 'digits'"):
        load_data("digits", image_size=8)
    bad = tmp_path / "bad"
    shutil.copytree(on_disk["images"], bad)
    (bad / "class0" / "0.jpg").write_bytes(b"not an image")
    folder = load_data(f"imagefolder:{bad}", image_size=8, test_fraction=0.5)
    where = [d for d in (folder.train, folder.test) if bad / "class0" / "0.jpg" in d.files][0]
    with pytest.raises(DataError, match="cannot be read as an image"):
        where[where.files.index(bad / "class0" / "0.jpg")]


def test_text_csv_and_jsonl_are_tokenized_by_the_models_tokenizer(on_disk) -> None:
    from transformers import AutoTokenizer

    from netxray.data.sources import LabelledInputs

    tok = AutoTokenizer.from_pretrained(on_disk["bert"], local_files_only=True)
    s = load_data(f"text:{on_disk['csv']}", tokenizer=f"hf:{on_disk['bert']}")
    assert isinstance(s.test, LabelledInputs) and s.num_classes == 2
    assert s.test.classes == ["neg", "pos"] and len(s.train) + len(s.test) == 40
    # the ids are the tokenizer's own: [CLS] the movie was w1 w2 [SEP]
    item = s.test[0]
    text = tok.decode(item["input_ids"], skip_special_tokens=True)
    assert text.startswith("the movie was") and item["attention_mask"].sum() == 7
    assert int(item["labels"]) == int(any(w in text for w in ("good", "great", "fine")))
    j = load_data(f"text:{on_disk['jsonl']}", tokenizer=tok, text_column="sentence",
                  label_column="y")  # fmt: skip
    assert j.test.classes == ["0", "1"]
    assert torch.equal(j.test.inputs["input_ids"], s.test.inputs["input_ids"])  # same rows, same split
    with pytest.raises(DataError, match="needs a tokenizer"):
        load_data(f"text:{on_disk['csv']}")
    with pytest.raises(DataError, match=r"no column\(s\) \['sentence'\]"):
        load_data(f"text:{on_disk['csv']}", tokenizer=tok, text_column="sentence")
    with pytest.raises(DataError, match="expected .csv, .tsv or .jsonl"):
        load_data(f"text:{on_disk['bert'] / 'model.safetensors'}", tokenizer=tok)


def test_hfdataset_text_and_numeric_columns(on_disk) -> None:
    s = load_data(f"hfdataset:{on_disk['hfds']}", tokenizer=f"hf:{on_disk['bert']}")
    t = load_data(f"text:{on_disk['csv']}", tokenizer=f"hf:{on_disk['bert']}")
    # the same sentences and labels as the CSV give the same token tensors and the same split
    assert torch.equal(s.test.inputs["input_ids"], t.test.inputs["input_ids"])
    assert torch.equal(s.test.y, t.test.y)
    num = load_data(f"hfdataset:{on_disk['hfnum']}")
    assert (len(num.train), len(num.test)) == (30, 15) and num.input_shape == (5,)
    assert num.test.x.dtype == torch.float32
    with pytest.raises(DataError, match="no label column 'nope'"):
        load_data(f"hfdataset:{on_disk['hfnum']}", label_column="nope")
    with pytest.raises(DataError, match="save_to_disk"):
        load_data(f"hfdataset:{on_disk['images']}")


def test_training_reads_an_image_folder_into_memory_and_refuses_text(on_disk) -> None:
    from netxray.data.sources import in_memory
    from netxray.training import train

    folder = load_data(f"imagefolder:{on_disk['images']}", image_size=8)
    mem = in_memory(folder, "train")
    assert isinstance(mem.train, Dataset) and mem.train.x.shape == (len(folder.train), 3, 8, 8)
    assert torch.equal(mem.test.x[2], folder.test[2][0]) and torch.equal(mem.test.y, folder.test.targets)
    result = train("mlp", folder, epochs=1, width=8, depth=1, progress=False)
    assert result.config["input_shape"] == [3, 8, 8] and result.config["num_classes"] == 3
    text = load_data(f"text:{on_disk['csv']}", tokenizer=f"hf:{on_disk['bert']}")
    with pytest.raises(DataError, match="train needs samples held as one float tensor"):
        train("mlp", text, epochs=1, progress=False)


def test_hfdataset_image_column_goes_through_the_image_pipeline(on_disk, tmp_path) -> None:
    import datasets
    from PIL import Image

    files = sorted(on_disk["images"].rglob("*.png"))
    labels = [int(f.parent.name[-1]) for f in files]
    images = [Image.open(f).convert("RGB") for f in files]
    ds = datasets.Dataset.from_dict({"image": images, "label": labels})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "imgds"))
    s = load_data(f"hfdataset:{tmp_path / 'imgds'}", image_size=8, normalize="none", test_fraction=0.5)
    assert s.input_shape == (3, 8, 8) and len(s.train) + len(s.test) == len(files)
    x, y = s.test[1]
    row = s.test.rows[1]
    ref = np.asarray(images[row].resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    assert torch.allclose(x, torch.from_numpy(ref.transpose(2, 0, 1)), atol=1e-6)
    assert int(y) == labels[row]
