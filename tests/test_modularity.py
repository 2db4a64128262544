"""Lens 2, SPEC §2.1: the kNN cosine graph and Newman modularity, plus the curve on a trained model."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from netxray.measures.modularity import (
    knn_graph,
    modularity,
    modularity_from_gram,
    newman_modularity,
)


def _blobs(n_per: int, n_classes: int, dim: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    centers = rng.normal(size=(n_classes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = sep * centers[y] + rng.normal(size=(len(y), dim))
    return x, y


def _nx_q(adj, labels) -> float:
    g = nx.from_scipy_sparse_array(adj)
    comms = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(g, comms, weight="weight")


# ------------------------------------------------------------------ known answers


def test_separable_classes_reach_the_ceiling():
    # classes along orthogonal axes, far from each other: every kNN edge stays in its class
    x, y = _blobs(60, 4, 4, 0.0, 0)
    x = 50.0 * np.eye(4)[y] + np.random.default_rng(1).normal(size=x.shape)
    r = modularity(x, y, k=3)
    assert r.f_in == pytest.approx(1.0, abs=1e-12)
    assert r.q == pytest.approx(r.q_max, abs=1e-12)
    assert r.q_rel == pytest.approx(1.0, abs=1e-12)
    # four balanced classes of equal strength: Q_max = 1 - 4 * (1/4)^2 up to strength imbalance
    assert 0.7 < r.q_max <= 0.75 + 1e-12
    assert r.status == "ok" and r.n_clipped == 0


def test_qmax_of_ten_balanced_classes_is_about_point_nine():
    x, y = _blobs(50, 10, 32, 6.0, 2)
    r = modularity(x, y)
    assert r.q_max == pytest.approx(0.9, abs=0.01)
    assert 0 < r.q <= r.q_max


def test_shuffled_labels_give_near_zero_q():
    # under random labels E[Q] ≈ 0 with std ≈ sqrt(0.9·0.1/1500) ≈ 0.008 for N=500, k=3
    x, y = _blobs(50, 10, 16, 4.0, 3)
    assert modularity(x, y).q > 0.3  # the structure is there with the true labels
    qs = []
    for seed in range(10):
        yp = np.random.default_rng(seed).permutation(y)
        qs.append(modularity(x, yp).q)
    assert max(abs(q) for q in qs) < 0.03
    assert abs(float(np.mean(qs))) < 0.01


# ------------------------------------------------------------------ invariances


def test_invariances():
    x, y = _blobs(40, 5, 12, 2.0, 4)
    base = modularity(x, y, k=4)
    # positive rescaling, global and per sample (cosine similarity ignores norms)
    assert modularity(7.5 * x, y, k=4).q == pytest.approx(base.q, abs=1e-12)
    scales = np.random.default_rng(5).uniform(0.1, 10, size=(len(x), 1))
    assert modularity(scales * x, y, k=4).q == pytest.approx(base.q, abs=1e-12)
    # permuting nodes together with their labels
    perm = np.random.default_rng(6).permutation(len(x))
    assert modularity(x[perm], y[perm], k=4).q == pytest.approx(base.q, abs=1e-12)
    # renaming classes (any hashable labels)
    names = np.array(["cat", "dog", "emu", "fox", "gnu"])[(y + 2) % 5]
    renamed = modularity(x, names, k=4)
    assert renamed.q == pytest.approx(base.q, abs=1e-12)
    assert renamed.f_in == pytest.approx(base.f_in, abs=1e-12)


# ------------------------------------------------------------------ graph construction


def _angles(*deg):
    t = np.deg2rad(np.array(deg, dtype=np.float64))
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def test_mutual_and_one_way_edge_weights_by_hand():
    # unit vectors at 0°, 10°, 30°, 100°; k = 1:
    # 0 -> 1 and 1 -> 0 (mutual, cos 10°), 2 -> 1 (one way, cos 20°), 3 -> 2 (one way, cos 70°)
    x = _angles(0, 10, 30, 100)
    a, n_neg = knn_graph(3.0 * x, k=1)  # scaled: cosine, not dot product
    a = a.toarray()
    c = lambda deg: math.cos(math.radians(deg))  # noqa: E731
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = c(10)  # mutual keeps the full weight
    expected[1, 2] = expected[2, 1] = c(20) / 2  # one-way edge: half
    expected[2, 3] = expected[3, 2] = c(70) / 2
    np.testing.assert_allclose(a, expected, atol=1e-12)
    assert n_neg == 0
    # Q by hand with communities {0, 1} and {2, 3}
    s = expected.sum(1)
    two_w = s.sum()
    within = 2 * (expected[0, 1] + expected[2, 3])
    sc = np.array([s[0] + s[1], s[2] + s[3]])
    q_hand = (within - (sc**2).sum() / two_w) / two_w
    r = modularity(x, [0, 0, 1, 1], k=1)
    assert r.q == pytest.approx(q_hand, abs=1e-12)
    assert r.f_in == pytest.approx(within / two_w, abs=1e-12)


def test_self_is_never_a_neighbour_even_for_duplicates():
    # duplicates have cosine 1 with each other; a node must still not pick itself
    x = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    a, _ = knn_graph(x, k=1)
    assert a.diagonal().sum() == 0
    np.testing.assert_allclose(a.toarray(), [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])


def test_negative_weights_are_clipped_and_counted():
    # three directions 120° apart: every neighbour has cosine -1/2
    x = _angles(0, 120, 240)
    r = modularity(x, [0, 1, 1], k=1)
    assert r.n_clipped == 3
    assert r.status == "no_edges" and math.isnan(r.q)
    # 170° reaches 175° and then 300° (130° away, cosine < 0): that edge is clipped and
    # counted; 175° likewise reaches 300° (125°) — exactly two negative directed edges
    x = _angles(0, 5, 170, 175, 300)
    a, n_neg = knn_graph(x, k=2)
    assert n_neg == 2
    assert a.data.min() > 0 and a[2, 4] == 0 and a[3, 4] == 0
    r = modularity(x, [0, 0, 1, 1, 0], k=2)
    assert r.n_clipped == 2 and r.status == "ok"


@pytest.mark.parametrize("k", [1, 3, 10])
def test_agrees_with_networkx(k):
    x, y = _blobs(40, 6, 8, 1.5, 7 + k)
    x[:5] -= 3 * x[:5].mean(0)  # a few nodes pointing the other way, to exercise clipping
    r = modularity(x, y, k=k, return_graph=True)
    assert abs(_nx_q(r.graph, y) - r.q) < 1e-9
    q, f_in, q_max = newman_modularity(r.graph, y)
    assert (q, f_in, q_max) == (r.q, r.f_in, r.q_max)


def test_block_size_and_gram_paths_agree():
    x, y = _blobs(30, 4, 20, 1.0, 11)
    full = modularity(x, y, k=5, return_graph=True)
    blocked = modularity(x, y, k=5, block_size=7, return_graph=True)
    # same edges; weights equal up to BLAS rounding of differently shaped products
    assert (full.graph != 0).nnz == (blocked.graph != 0).nnz
    assert abs(full.graph - blocked.graph).max() < 1e-14
    gram = modularity_from_gram(x @ x.T, y, k=5, d=x.shape[1])
    assert gram.q == pytest.approx(full.q, abs=1e-12)
    assert gram.d == full.d == 20


def test_torch_and_nd_inputs():
    torch = pytest.importorskip("torch")
    x, y = _blobs(20, 3, 12, 2.0, 12)
    base = modularity(x, y)
    r = modularity(torch.tensor(x.reshape(60, 3, 2, 2)), torch.tensor(y))
    assert r.q == pytest.approx(base.q, abs=1e-12) and r.d == 12


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors():
    x, y = _blobs(10, 2, 4, 1.0, 13)
    with pytest.raises(ValueError, match="labels do not match the samples"):
        modularity(x, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        modularity(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="k must be smaller than the number of samples"):
        modularity(x, y, k=len(x))
    with pytest.raises(ValueError, match="k must be >= 1"):
        modularity(x, y, k=0)
    with pytest.raises(ValueError, match="2-D array"):
        modularity(x[:, 0], y)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        modularity(bad, y)
    with pytest.raises(ValueError, match="1-D array"):
        modularity(x, y[:, None])


# ------------------------------------------------------------------ the curve (SPEC §2.2)

torch = pytest.importorskip("torch")

from netxray.lenses.modularity import (  # noqa: E402
    CURVE_COLUMNS,
    layer_difference,
    modularity_curve,
    plot_layer_difference,
    plot_modularity_curve,
    redundant_layers,
    stratified_subsets,
)


def test_stratified_subsets_keep_class_proportions_and_seed():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    subs = stratified_subsets(y, 40, 3, seed=1)
    for s in subs:
        assert len(s) == 40 and len(np.unique(s)) == 40
        assert np.bincount(y[s]).tolist() == [20, 12, 8]
    assert not np.array_equal(subs[0], subs[1])
    again = stratified_subsets(y, 40, 3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(subs, again, strict=True))
    # sizes that do not divide evenly still add up to n
    assert all(len(s) == 7 for s in stratified_subsets(y, 7, 2))


def test_curve_rises_on_a_trained_model(trained, digits):
    from netxray._meta import model_hash

    model = trained("cnn")
    before = model_hash(model)
    curve = modularity_curve(model, digits.test, n=200, repeats=3, seed=0)
    assert list(curve.columns) == CURVE_COLUMNS
    assert list(curve["layer"]) == ["features.0", "features.2", "features.4"]
    assert (curve["status"] == "ok").all()
    first, last = curve.iloc[0], curve.iloc[-1]
    noise = math.sqrt(first["q_std"] ** 2 + last["q_std"] ** 2)
    assert last["q_mean"] - first["q_mean"] > max(0.02, 3 * noise)
    assert (curve["q_mean"] <= curve["q_max"] + 1e-12).all()
    assert ((curve["q_rel_mean"] > 0) & (curve["q_rel_mean"] <= 1 + 1e-12)).all()
    # a trained net separates the classes better in its last layer than the same net untrained
    from netxray.models import build_model

    torch.manual_seed(0)
    fresh = build_model(model.netxray_config)
    fresh_curve = modularity_curve(fresh, digits.test, n=200, repeats=3, seed=0)
    assert last["q_mean"] > fresh_curve.iloc[-1]["q_mean"] + 0.05
    # provenance, determinism, and the model left as it was
    meta = curve.attrs["meta"]
    assert meta["n"] == 200 and meta["k"] == 3 and meta["seed"] == 0 and meta["model_hash"] == before
    again = modularity_curve(model, digits.test, n=200, repeats=3, seed=0)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(curve, again)
    assert model_hash(model) == before and not model.training
    # per-repeat values kept for the paired tolerance: their mean is the table's q_mean
    per_repeat = curve.attrs["q_repeats"]
    for row in curve.itertuples():
        assert len(per_repeat[row.layer]) == 3
        assert np.mean(per_repeat[row.layer]) == pytest.approx(row.q_mean, abs=1e-12)


def test_redundancy_tolerance_pairs_the_repeats():
    import pandas as pd

    # repeat r shares its samples across layers: layer b is above a by 0.010 in every repeat,
    # although each layer varies by ±0.03 between repeats. Paired: a clear rise. Unpaired: noise.
    a = [0.80, 0.86, 0.83, 0.77, 0.84]
    b = [q + 0.010 + e for q, e in zip(a, [0.001, -0.001, 0.0, 0.001, -0.001], strict=True)]
    curve = pd.DataFrame({
        "layer": ["a", "b"], "q_mean": [np.mean(a), np.mean(b)],
        "q_std": [np.std(a, ddof=1), np.std(b, ddof=1)], "repeats": [5, 5], "status": ["ok", "ok"],
    })  # fmt: skip
    unpaired = redundant_layers(curve)
    assert unpaired["kind"].tolist() == ["first", "plateau"]
    curve.attrs["q_repeats"] = {"a": a, "b": b}
    paired = redundant_layers(curve)
    diffs = np.subtract(b, a)
    assert paired["tol"].iloc[1] == pytest.approx(max(1e-3, 2 * np.std(diffs, ddof=1) / math.sqrt(5)))
    assert paired["kind"].tolist() == ["first", "rise"]


def test_curve_equals_the_measure_on_captured_features(trained, digits):
    # the layer-at-a-time Gram path (early stop, column chunks) gives the plain measure's Q
    from netxray.capture import collect

    model = trained("mlp")
    curve = modularity_curve(model, digits.test, n=150, k=4, repeats=1, seed=3)
    idx = stratified_subsets(digits.test.y.numpy(), 150, 1, seed=3)[0]
    sub = (digits.test.x[idx], digits.test.y[idx])
    cap = collect(model, sub, activations=False, layers="auto", reducer="flatten", n_samples=None)
    for name, rec in cap.layer_sites().items():
        q = modularity(rec.outputs.numpy(), cap.labels.numpy(), k=4).q
        row = curve.set_index("layer").loc[name]
        assert row["q_mean"] == pytest.approx(q, abs=1e-9)
        assert row["d"] == rec.outputs.shape[1]
    # one pass per layer and per repeat (a tiny memory budget) gives the same table
    curves = [modularity_curve(model, digits.test, n=150, k=4, repeats=2, seed=3, memory_budget=b)
              for b in (1, 1 << 30)]  # fmt: skip
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(curves[0], curves[1], check_exact=False, atol=1e-12, rtol=0)


def test_gram_formed_in_the_hook_when_the_pool_is_one_batch(trained, digits):
    # the pool in one batch: each layer's Gram matrix is formed inside its hook (no rows kept)
    # and every layer shares one forward pass even under a tiny memory budget; the table is the
    # same as with batches of 16 (rows kept, then reduced) — the same float64 chunk sums
    from netxray.lenses import modularity as M

    model = trained("mlp")
    kw = dict(n=150, k=4, repeats=2, seed=3, memory_budget=1)
    one = modularity_curve(model, digits.test, batch_size=512, **kw)
    many = modularity_curve(model, digits.test, batch_size=16, **kw)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(one, many, check_exact=True)
    sites = [{"name": str(i), "module": str(i), "d": 10_000, "calls": 1} for i in range(5)]
    subsets = [np.arange(100), np.arange(50, 150)]

    def passes(batch_size):
        return sum(len(reps) for _, reps in M._plan(sites, subsets, budget=10**6, batch_size=batch_size))

    assert passes(256) == 1  # 150² · 8 B = 0.18 MB per layer: all five in one pass
    assert passes(64) == 10  # rows kept: 4-6 MB per layer, over the budget: each layer and repeat alone
    red = M._GramReducer(3)
    rows = torch.arange(12.0).reshape(3, 4)
    red.update(rows)
    assert red.buf is None  # nothing kept
    g, d = red.compute().gram()
    assert d == 4 and np.array_equal(g, (rows.double() @ rows.double().T).numpy())


class _Broken(torch.nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_one_failing_layer_is_a_status_not_a_crash():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), _Broken(), torch.nn.Linear(8, 3)
    )
    x, y = torch.randn(60, 6), torch.arange(60) % 3
    curve = modularity_curve(model, (x, y), layers=["0", "1", "2", "3"], n=60, repeats=1)
    status = dict(zip(curve["layer"], curve["status"], strict=True))
    assert status["0"] == status["1"] == "ok"
    # NaN outputs have their own status (issue 13: "no finite values" says why)
    assert status["2"] == "non_finite" and "NaN" in curve.set_index("layer").loc["2", "error"]
    assert status["3"] == "non_finite"  # NaN propagates: reported, not dropped
    red = redundant_layers(curve)
    assert list(red["kind"]) == ["first", red.iloc[1]["kind"], "n/a", "n/a"]


def test_curve_bad_input():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    x = torch.randn(20, 4)
    with pytest.raises(ValueError, match="needs class labels"):
        modularity_curve(model, x)
    with pytest.raises(ValueError, match="single class"):
        modularity_curve(model, (x, torch.zeros(20, dtype=torch.long)))
    with pytest.raises(ValueError, match="k must be"):
        modularity_curve(model, (x, torch.arange(20) % 2), n=5, k=5)
    with pytest.raises(ValueError, match="labels do not match"):
        modularity_curve(model, (x, torch.arange(19) % 2))
    with pytest.raises(ValueError, match=r"cannot run on the data's samples \(shape \(5,\)\)"):
        modularity_curve(model, (torch.randn(20, 5), torch.arange(20) % 2), layers=["0"], n=10)
    with pytest.raises(ValueError, match="unknown layer"):
        modularity_curve(model, (x, torch.arange(20) % 2), layers=["nope"])
    # n above the 20 samples: repeats use stratified 80 % subsets (16), so they differ
    small = modularity_curve(model, (x, torch.arange(20) % 2), layers=["0"], n=50, repeats=3)
    assert small["n"].iloc[0] == 16 and "80 %" in small.attrs["meta"]["subset_note"]
    assert small["q_std"].iloc[0] > 0


def _toy_curve(q, std=0.01, repeats=4):
    import pandas as pd

    return pd.DataFrame({
        "layer": [f"l{i}" for i in range(len(q))], "q_mean": q, "q_std": [std] * len(q),
        "q_rel_mean": q, "q_rel_std": [std] * len(q), "repeats": [repeats] * len(q),
        "status": ["ok"] * len(q),
    })  # fmt: skip


def test_redundant_layers_segments_and_tolerance():
    curve = _toy_curve([0.2, 0.4, 0.405, 0.401, 0.3, 0.25, 0.5, 0.5])
    red = redundant_layers(curve)
    # default tol = 2 * sqrt((0.01² + 0.01²) / 4) ≈ 0.01414
    assert red["tol"].iloc[1] == pytest.approx(2 * math.sqrt(2e-4 / 4))
    assert list(red["kind"]) == [
        "first", "rise", "plateau", "plateau", "degradation", "degradation", "rise", "plateau",
    ]  # fmt: skip
    assert list(red["redundant"]) == [False, False, True, True, True, True, False, True]
    segs = red.attrs["segments"]
    assert [(s["kind"], s["layers"]) for s in segs] == [
        ("plateau", ["l2", "l3"]), ("degradation", ["l4", "l5"]), ("plateau", ["l7"])
    ]
    assert segs[1]["dq_total"] == pytest.approx(0.25 - 0.401)
    # an explicit tolerance overrides the spread
    loose = redundant_layers(curve, tol=0.3)
    assert list(loose["kind"][1:]) == ["plateau"] * 7
    with pytest.raises(ValueError, match="tol"):
        redundant_layers(curve, tol=-1)


def test_layer_difference_and_plots(tmp_path):
    curve = _toy_curve([0.2, 0.5, 0.45])
    d = layer_difference(curve)
    assert d.shape == (3, 3) and np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert d.loc["l0", "l1"] == pytest.approx(0.3)
    fig = plot_modularity_curve(curve, path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0 and fig.axes
    plot_layer_difference(curve, path=tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0


# ------------------------------------------------------------------ adversarial inputs


def test_fgsm_pgd_and_adversarial_curves(trained, digits, tmp_path):
    from netxray.lenses.adversarial import adversarial_curves, fgsm, pgd, plot_adversarial

    model = trained("cnn")
    x, y = digits.test.x[:64], digits.test.y[:64]
    xa = fgsm(model, x, y, 0.1)
    assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    xp = pgd(model, x, y, 0.1, steps=5, seed=1)
    assert (xp - x).abs().max() <= 0.1 + 1e-6
    assert torch.equal(xp, pgd(model, x, y, 0.1, steps=5, seed=1))  # seeded
    assert all(p.grad is None for p in model.parameters()) and not model.training
    curves = adversarial_curves(model, digits.test, eps=0.2, n=150, repeats=2, pgd_steps=5)
    acc = curves.attrs["summary"]
    assert acc["acc_fgsm"] < acc["acc_clean"] - 0.3 and acc["acc_pgd"] <= acc["acc_fgsm"] + 0.05
    last = curves.groupby("condition").tail(1).set_index("condition")["q_mean"]
    # adversarial batches separate the true classes far worse in the last layer
    assert last["fgsm"] < last["clean"] - 0.2 and last["pgd"] < last["clean"] - 0.2
    plot_adversarial(curves, path=tmp_path / "adv.png")
    assert (tmp_path / "adv.png").exists()


def test_modularity_cli(tmp_path, trained):
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import save_checkpoint

    ckpt = save_checkpoint(trained("mlp"), tmp_path / "ckpt")
    out = tmp_path / "curve.csv"
    res = CliRunner().invoke(app, ["modularity", str(ckpt), "--data", "digits", "--out", str(out),
                                   "--plot", str(tmp_path / "c.png"), "--n", "150",
                                   "--repeats", "2", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table["layer"]) == ["hidden.0", "hidden.1"] and (table["n"] == 150).all()
    assert (tmp_path / "curve.redundant.csv").exists() and (tmp_path / "c.png").exists()
    assert (tmp_path / "curve.csv.meta.json").exists()
    bad = CliRunner().invoke(app, ["modularity", str(tmp_path / "missing"), "--quiet"])
    assert bad.exit_code == 1 and "cannot load checkpoint" in bad.output


def test_curve_holds_one_layer_gram_at_a_time(monkeypatch):
    """Flat memory in the number of layers: layers captured in one pass keep their rows (within
    the budget), but a layer's Gram matrix is built only when that layer is measured, its rows
    are freed as it is built, and nothing of it outlives its Q: when a Gram is built, no other
    layer's Gram exists any more."""
    import weakref

    from netxray.lenses import modularity as LM
    from netxray.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "input_shape": [6], "num_classes": 3, "widths": [16] * 6})
    x, y = torch.randn(120, 6), torch.arange(120) % 3
    alive, live_at_build = [], []
    real = LM._GramReducer.gram

    def gram(self):
        live_at_build.append(sum(r() is not None for r in alive))
        g, d = real(self)
        assert self.buf is None  # the rows went as the Gram came
        alive.append(weakref.ref(g))
        return g, d

    monkeypatch.setattr(LM._GramReducer, "gram", gram)
    curve = LM.modularity_curve(model, (x, y), n=90, repeats=2)  # the 6 layers share one pass
    assert live_at_build == [0] * 6
    assert all(r() is None for r in alive)
    assert (curve["status"] == "ok").all() and len(curve) == 6


def test_gram_reducer_keeps_bf16_rows_and_gives_the_float32_gram():
    from netxray.lenses._modularity_grams import _gram, _GramReducer

    rows = torch.randn(10, 3, 7, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    red = _GramReducer(n_rows=10)
    red.update(rows[:4])
    red.update(rows[4:])
    assert red.buf.dtype == torch.bfloat16  # not a float32 copy of the rows
    g, d = red.gram()
    g32, d32 = _gram(rows.reshape(10, -1).float())
    assert d == d32 == 21 and np.array_equal(g, g32)
