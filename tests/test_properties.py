"""Property-based and fuzzed tests (issue 13 item 6), with hypothesis.

1. The measures' invariances from the spec, on random shapes and scales: the affinity score
   (affine images score 1; rescaling and joint rotation change neither score nor status),
   modularity (relabelling classes, permuting nodes, rescaling rows) and the canonical form
   (a permuted and rescaled copy of a network has the same canonical form).
2. Random malformed inputs for every loader (npz, idx, cifar10): truncated, wrong dtype, wrong
   shapes, NaN/inf, empty — each gives either a correct result (the file's own values) or one
   ``DataError`` line naming the file; never another exception.

Bounded for the test budget: ``derandomize=True`` (the same examples every run, so a failure
reproduces), few examples, no deadline (the machine is shared).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import netxray
from netxray.data import DataError, load_data
from netxray.measures.affinity import affinity_score
from netxray.measures.modularity import modularity

FAST = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

# --------------------------------------------------------------------------- affinity


@st.composite
def clouds(draw):
    n = draw(st.integers(40, 200))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d))) + rng.normal(size=d)
    return x, rng


@FAST
@given(clouds())
def test_psd_affine_images_score_one(data):
    x, rng = data
    d = x.shape[1]
    g = rng.normal(size=(d, d))
    a = g @ g.T + 0.5 * np.eye(d)  # symmetric positive definite
    y = x @ a + rng.normal(size=d)
    assert affinity_score(x, y, eps=0.0).score == pytest.approx(1.0, abs=1e-7)
    res = affinity_score(x, y)  # the default relative ridge: ~ε·cond(Σ_Y), see test_affinity
    assert res.status == "ok" and res.score == pytest.approx(1.0, abs=1e-3)


@FAST
@given(clouds(), st.floats(-6, 6), st.floats(-6, 6))
def test_affinity_invariant_to_scale_and_joint_rotation(data, log_a, log_b):
    x, rng = data
    n, d = x.shape
    y = np.tanh(x) + 0.2 * x**2
    base = affinity_score(x, y)
    a, b = 10.0**log_a, 10.0**log_b
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    for xx, yy in ((a * x, a * y), (x, b * y + 3.0), (b * x - 1.0, y), (x @ q, y @ q)):
        got = affinity_score(xx, yy)
        assert got.status == base.status  # statuses are scale-free too (SPEC §1.1)
        assert got.score == pytest.approx(base.score, abs=1e-6)


@FAST
@given(st.integers(2, 60), st.integers(1, 80), st.floats(-6, 3))
def test_affinity_status_follows_the_stated_sample_rules(n, d, log_a):
    rng = np.random.default_rng(n * 1000 + d)
    x = 10.0**log_a * rng.normal(size=(n, d))
    res = affinity_score(x, np.maximum(x, 0))
    want = "too_few_samples" if n < 10 else ("under_determined" if n <= d else "ok")
    # a ReLU of a Gaussian is never constant at these n: only the sample rules apply
    assert res.status == want and 0.0 <= res.score <= 1.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.integers(2, 48), st.integers(256, 300), st.floats(-4, 4), st.floats(0, 1e3),
    st.sampled_from(["normal", "t2", "duplicates", "near copy", "mixed scales"]),
    st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_exact_w2_bound_is_rigorous_on_random_high_dimensional_clouds(n, d, log_s, offset, kind, seed):
    """Whichever path exact_matching takes at d ≥ 256 (the float32 product certified by LAPJV's
    duals, or the float64 blocks), the float64 cost of its plan is within gap_bound of the
    optimum of the direct-difference matrix (scipy), and within rtol·W2² of it."""
    from scipy.optimize import linear_sum_assignment

    from netxray.measures.assignment import exact_matching

    rng = np.random.default_rng(seed)
    scale = 10.0**log_s
    if kind == "t2":
        a, b = rng.standard_t(2, (n, d)), rng.standard_t(2, (n, d))
    elif kind == "mixed scales":
        cols = 10.0 ** rng.uniform(-3, 3, d)
        a, b = rng.normal(size=(n, d)) * cols, rng.normal(size=(n, d)) * cols
    else:
        a, b = rng.normal(size=(n, d)), np.tanh(rng.normal(size=(n, d)))
    if kind == "duplicates":
        a[n // 2 :] = a[: n - n // 2]
    if kind == "near copy":
        b = a[rng.permutation(n)] + 1e-3 * rng.normal(size=(n, d))
    a, b = scale * a + offset, scale * b + offset
    c = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    r, k = linear_sum_assignment(c)
    exact = c[r, k].sum() / n
    m = exact_matching(a, b)
    assert m.w2_sq - exact <= m.gap_bound + 1e-11 * exact
    assert m.w2_sq == pytest.approx(exact, rel=1e-6)
    assert 0.0 <= m.gap_bound <= 1e-6 * m.w2_sq


# --------------------------------------------------------------------------- modularity


@st.composite
def labelled_features(draw):
    n_classes = draw(st.integers(2, 5))
    per = draw(st.integers(6, 20))
    m = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per)
    x = rng.normal(size=(len(y), m)) + draw(st.floats(0, 4)) * rng.normal(size=(n_classes, m))[y]
    # continuous random features: no exact ties, so the kNN graph is well defined
    return x, y, rng


@FAST
@given(labelled_features(), st.integers(1, 5))
def test_modularity_invariant_to_relabelling_permutation_and_rescaling(data, k):
    x, y, rng = data
    base = modularity(x, y, k=k)
    renamed = modularity(x, (y * 7 + 3) % 101, k=k)  # class names change, the partition does not
    perm = rng.permutation(len(y))
    permuted = modularity(x[perm], y[perm], k=k)
    scaled = modularity(x * rng.uniform(0.01, 100.0, size=(len(y), 1)), y, k=k)  # rows, positive
    for other in (renamed, permuted, scaled):
        assert other.status == base.status == "ok"
        assert other.q == pytest.approx(base.q, abs=1e-9)
        assert other.q_max == pytest.approx(base.q_max, abs=1e-9)


# --------------------------------------------------------------------------- canonical form


@st.composite
def mlp_and_symmetry(draw):
    widths = draw(st.lists(st.integers(2, 6), min_size=1, max_size=3))
    act = draw(st.sampled_from(["relu", "tanh"]))
    seed = draw(st.integers(0, 2**31 - 1))
    return widths, act, seed


@FAST
@given(mlp_and_symmetry())
def test_canonical_form_is_invariant_to_permutation_and_rescaling(spec):
    from netxray.models import build_model

    widths, act, seed = spec
    torch.manual_seed(seed % 2**31)
    cfg = {"arch": "mlp", "input_shape": [3], "num_classes": 2, "widths": widths, "activation": act}
    a = build_model(cfg).double()
    b = build_model(cfg).double()
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(seed % 2**31)
    with torch.no_grad():
        layers = [blk.linear for blk in b.hidden] + [b.head]
        for i in range(len(widths)):
            w = widths[i]
            p = torch.randperm(w, generator=g)
            # ReLU: positive rescaling; tanh: sign flips — each pushed into the next layer
            s = (torch.rand(w, generator=g, dtype=torch.float64) * 3 + 0.2 if act == "relu"
                 else torch.where(torch.rand(w, generator=g) < 0.5, -1.0, 1.0).double())  # fmt: skip
            cur, nxt = layers[i], layers[i + 1]
            cur.weight.copy_((cur.weight * s[:, None])[p])
            cur.bias.copy_((cur.bias * s)[p])
            nxt.weight.copy_((nxt.weight / s[None, :])[:, p] if act == "relu" else (nxt.weight * s[None, :])[:, p])
    ca, cb = netxray.canonicalize(a), netxray.canonicalize(b)
    for (ka, va), (kb, vb) in zip(ca.state_dict().items(), cb.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb, atol=1e-9, rtol=1e-9)
    x = torch.randn(16, 3, dtype=torch.float64)
    torch.testing.assert_close(ca(x), a(x), atol=1e-9, rtol=1e-9)


# --------------------------------------------------------------------------- loaders, fuzzed


def _outcome(spec: str, path: Path):
    """'ok' with the splits, or the DataError — checked to be one line naming the file."""
    try:
        return "ok", load_data(spec, seed=0)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        assert str(path.name) in msg or str(path) in msg, msg
        return "error", msg


def _all_x_y(splits):
    x = torch.cat([splits.train.x, splits.test.x]).numpy()
    y = torch.cat([splits.train.y, splits.test.y]).numpy()
    return x, y


_ARRAYS = st.sampled_from(["good", "nan", "inf", "empty", "x1d", "y2d", "short_y", "float_y",
                           "str_x", "complex_x", "neg_y", "bool_x", "object"])  # fmt: skip


def _npz_arrays(kind: str, rng) -> dict:
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 3
    if kind == "nan":
        x[3, 1] = np.nan
    elif kind == "inf":
        x[0, 0] = np.inf
    elif kind == "empty":
        x, y = x[:0], y[:0]
    elif kind == "x1d":
        x = x[:, 0]
    elif kind == "y2d":
        y = y[:, None]
    elif kind == "short_y":
        y = y[:-1]
    elif kind == "float_y":
        y = y + 0.5
    elif kind == "str_x":
        x = np.array(["a"] * 30)
    elif kind == "complex_x":
        x = x.astype(np.complex64)
    elif kind == "neg_y":
        y = y - 1
    elif kind == "bool_x":
        x = x > 0
    elif kind == "object":
        x = np.array([None] * 30, dtype=object)
    return {"x": x, "y": y}


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(_ARRAYS, st.one_of(st.none(), st.integers(0, 2000)), st.integers(0, 2**31 - 1))
def test_npz_loader_fuzzed(tmp_path_factory, kind, cut, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    arrays = _npz_arrays(kind, rng)
    np.savez(path, **arrays, allow_pickle=True) if kind == "object" else np.savez(path, **arrays)
    if cut is not None:  # truncated or extended with garbage
        raw = path.read_bytes()
        path.write_bytes(raw[:cut] if cut < len(raw) else raw + rng.bytes(cut - len(raw) + 1))
    status, got = _outcome(f"npz:{path}", path)
    if status == "ok":
        x, y = _all_x_y(got)
        want_x = np.asarray(arrays["x"], dtype=np.float32).reshape(len(arrays["x"]), -1)
        # a correct result: the file's own samples (in some split order), NaN/inf kept as given
        order = np.lexsort(np.nan_to_num(x.reshape(len(x), -1), posinf=9e9).T[::-1])
        want_order = np.lexsort(np.nan_to_num(want_x, posinf=9e9).T[::-1])
        np.testing.assert_array_equal(x.reshape(len(x), -1)[order], want_x[want_order])
        assert sorted(y.tolist()) == sorted(np.asarray(arrays["y"]).tolist())


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.sampled_from(["good", "magic", "dtype", "ndim", "truncate", "labels_long", "labels_2d",
                        "gzip_corrupt", "empty_file", "extra", "huge_dim"]),
       st.integers(0, 2**31 - 1))  # fmt: skip
def test_idx_loader_fuzzed(tmp_path_factory, kind, seed):
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("idx")
    imgs = rng.integers(0, 256, size=(40, 5, 5), dtype=np.uint8)
    labels = (np.arange(40) % 4).astype(np.uint8)
    ib, lb = _idx_bytes(imgs), _idx_bytes(labels)
    target = "train-images-idx3-ubyte"
    if kind == "magic":
        ib = b"\x01\x02" + ib[2:]
    elif kind == "dtype":
        ib = ib[:2] + b"\x0e" + ib[3:]  # not an IDX type code
    elif kind == "ndim":
        ib = ib[:3] + b"\x07" + ib[4:]
    elif kind == "truncate":
        ib = ib[: int(rng.integers(1, len(ib)))]
    elif kind == "labels_long":
        lb = _idx_bytes(np.arange(41, dtype=np.uint8) % 4)
        target = "train-labels-idx1-ubyte"
    elif kind == "labels_2d":
        lb = _idx_bytes(labels.reshape(8, 5))
        target = "train-labels-idx1-ubyte"
    elif kind == "empty_file":
        ib = b""
    elif kind == "extra":
        ib = ib + b"\x00" * int(rng.integers(1, 50))
    elif kind == "huge_dim":
        ib = ib[:4] + struct.pack(">I", 2**31) + ib[8:]
    (d / "train-labels-idx1-ubyte").write_bytes(lb)
    if kind == "gzip_corrupt":
        blob = gzip.compress(ib)
        (d / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    else:
        (d / "train-images-idx3-ubyte").write_bytes(ib)
    status, got = _outcome(f"idx:{d}", d / target)
    if kind == "good":
        assert status == "ok"
    if status == "ok":
        x, y = _all_x_y(got)
        assert x.shape == (40, 1, 5, 5) and sorted(y.tolist()) == sorted(labels.tolist())
        assert np.isclose(np.sort(x.ravel()), np.sort(imgs.ravel() / 255.0)).all()


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.sampled_from(["good", "not_dict", "no_labels", "labels_str", "short_labels", "bad_width",
                        "float_data", "truncated", "evil", "nan_data", "empty"]),
       st.integers(0, 2**31 - 1))  # fmt: skip
def test_cifar10_loader_fuzzed(tmp_path_factory, kind, seed):
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("cifar")
    data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
    labels = [int(v) for v in np.arange(20) % 10]
    obj: object = {b"data": data, b"labels": labels}
    if kind == "not_dict":
        obj = [data, labels]
    elif kind == "no_labels":
        obj = {b"data": data}
    elif kind == "labels_str":
        obj = {b"data": data, b"labels": ["cat"] * 20}
    elif kind == "short_labels":
        obj = {b"data": data, b"labels": labels[:-3]}
    elif kind == "bad_width":
        obj = {b"data": data[:, :1000], b"labels": labels}
    elif kind == "float_data":
        obj = {b"data": data.astype(np.float64) / 255, b"labels": labels}
    elif kind == "nan_data":
        obj = {b"data": np.full((20, 3072), np.nan), b"labels": labels}
    elif kind == "evil":
        obj = {b"data": _Evil(), b"labels": labels}
    elif kind == "empty":
        obj = {b"data": data[:0], b"labels": []}
    blob = pickle.dumps(obj, protocol=2)
    if kind == "truncated":
        blob = blob[: int(rng.integers(1, len(blob)))]
    (d / "data_batch_1").write_bytes(blob)
    status, got = _outcome(f"cifar10:{d}", d / "data_batch_1")
    if kind == "good":
        assert status == "ok"
    if status == "ok":
        x, y = _all_x_y(got)
        assert x.shape == (20, 3, 32, 32) and np.isfinite(x).all()
        assert sorted(y.tolist()) == sorted(labels)


def test_model_with_meaningless_inputs_is_never_silently_ok():
    # NaN inputs: every row says non_finite; an all-constant input: degenerate / identical rows
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh())
    x = torch.full((60, 4), float("nan"))
    sig = netxray.nonlinearity_signature(model, x, n_samples=60)
    assert set(sig["status"]) == {"non_finite"}
    sig = netxray.nonlinearity_signature(model, torch.ones(60, 4), n_samples=60)
    assert set(sig["status"]) == {"degenerate"} and "ok" not in set(sig["status"])
