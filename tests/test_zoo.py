"""Zoo studies (SPEC §3.3): grids, resumable atomic training, corrupted checkpoints, NaN →
diverged, Ray engine == local engine, the Small CNN Zoo reader and the accuracy predictor."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from netxray.lenses import zoo as Z
from netxray.measures import weights as W
from netxray.report import mark_temp_dir

GRID = "width=8,12;depth=1;lr=1e-2;epochs=1,2;seed=0,1"


def _weights_of(d) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(d.glob("models/*/model.safetensors"))
            if not p.parent.name.startswith(".")}


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "z"
    df = Z.train_zoo(out, "mlp", GRID, engine="local", workers=2, progress=False)
    assert (df.status == "trained").all(), df.status.tolist()
    return out


def test_parse_grid_and_expand():
    g = Z.parse_grid("width=8,32;lr=1e-3,0.1;act=relu;flag=true")
    assert g == {"width": [8, 32], "lr": [1e-3, 0.1], "act": ["relu"], "flag": [True]}
    for bad, msg in (("width", "not 'key=v1"), ("width=8;width=9", "twice"), ("w=1,,2", "empty"), ("", "no 'key")):
        with pytest.raises(ValueError, match=msg):
            Z.parse_grid(bad)
    jobs = Z.expand_grid(["mlp", "cnn"], GRID)
    assert len(jobs) == 2 * 2 * 2 * 2
    runs = {j["run"] for j in jobs}
    assert len(runs) == len(jobs) // 2  # epochs=1 and 2 of the same run share a group
    assert all("epochs" not in r for r in runs)


def test_train_zoo_layout_and_records(tiny_zoo):
    dirs = sorted(p for p in (tiny_zoo / "models").iterdir())
    assert len(dirs) == 8 and not any(p.name.startswith(".tmp") for p in dirs)
    rec = json.loads((dirs[0] / Z.RECORD).read_text())
    assert set(rec["params"]) == {"width", "depth", "lr", "epochs", "seed"}
    assert 0.0 <= rec["metrics"]["test_acc"] <= 1.0 and (dirs[0] / "model.safetensors").exists()


def test_resume_trains_only_what_is_missing(tiny_zoo, tmp_path):
    z = tmp_path / "z"
    shutil.copytree(tiny_zoo, z)
    victim = sorted((z / "models").iterdir())[3]
    shutil.rmtree(victim)
    # an interrupted run leaves a temp dir behind (with the marker netxray writes first into
    # it); it must be cleaned, never analysed
    (z / "models" / ".tmp-dead-123").mkdir()
    mark_temp_dir(z / "models" / ".tmp-dead-123")
    (z / "models" / ".tmp-dead-123" / "model.safetensors").write_bytes(b"partial")
    before = _weights_of(z)
    df = Z.train_zoo(z, "mlp", GRID, engine="serial", progress=False)
    assert df.status.value_counts().to_dict() == {"exists": 7, "trained": 1}
    assert df.loc[df.status == "trained", "id"].tolist() == [victim.name]
    after = _weights_of(z)
    assert all(after[k] == v for k, v in before.items())  # finished models untouched
    assert after[victim.name] == _weights_of(tiny_zoo)[victim.name]  # same seed, same weights
    assert not (z / "models" / ".tmp-dead-123").exists()


def test_corrupted_checkpoint_is_reported_and_skipped_and_nan_is_diverged(tiny_zoo, tmp_path):
    from netxray.models.checkpoint import load, save_checkpoint

    z = tmp_path / "z"
    shutil.copytree(tiny_zoo, z)
    models = sorted((z / "models").iterdir())
    (models[0] / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    # a model with non-finite weights must be classed diverged, its statistics still finite
    m = load(models[1])
    with torch.no_grad():
        m.hidden[0].linear.weight[0, :3] = float("nan")
    save_checkpoint(m, models[1])
    res = Z.analyze_zoo(z, engine="serial")
    df = res.models.set_index("id")
    assert df.loc[models[0].name, "status"].startswith("error") and df.loc[models[0].name, "class"] == "error"
    assert models[0].name in [e[0] for e in res.summary["errors"]]
    assert df.loc[models[1].name, "class"] == "diverged" and df.loc[models[1].name, "f_n_nonfinite"] == 3
    assert np.isfinite(df.loc[models[1].name, "f_global_std"])
    rest = df.drop(index=[models[0].name, models[1].name])
    assert (rest.status == "ok").all() and rest["class"].isin(["optimal", "suboptimal", "diverged"]).all()
    assert (rest["class"] == "optimal").sum() >= 1
    for edges, h in res.histograms.values():
        assert models[1].name not in h
        for d in h.values():
            assert float((d * np.diff(edges)).sum()) == pytest.approx(1.0)


def test_ray_engine_equals_local_engine(tiny_zoo, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # one instance for both calls
    try:
        z = tmp_path / "zr"
        df = Z.train_zoo(z, "mlp", "width=8;depth=1;lr=1e-2;epochs=1,2;seed=0", engine="ray", progress=False)
        assert (df.status == "trained").all(), df.status.tolist()
        a = Z.analyze_zoo(tiny_zoo, engine="ray").models
    finally:
        ray.shutdown()
    local, ray_w = _weights_of(tiny_zoo), _weights_of(z)
    assert len(ray_w) == 2 and all(ray_w[k] == local[k] for k in ray_w)  # bit-identical checkpoints
    b = Z.analyze_zoo(tiny_zoo, engine="serial").models
    fcols = [c for c in a.columns if c.startswith(("f_", "pred_"))]
    pd.testing.assert_frame_equal(a[["id", "class", *fcols]], b[["id", "class", *fcols]])


def test_classes_follow_spec():
    df = pd.DataFrame({
        "id": list("abcdef"), "dataset": "d", "arch": ["x"] * 5 + ["y"], "status": "ok",
        "num_classes": 10, "test_acc": [0.95, 0.945, 0.90, 0.11, 0.97, 0.5],
        "f_n_nonfinite": [0, 0, 0, 0, 2, 0],
    })
    cls = Z._classify(df, optimal_within=0.01, chance_margin=0.02).tolist()
    # e has non-finite weights (diverged) so the best live x is a (0.95): b within 1 point
    assert cls == ["optimal", "optimal", "suboptimal", "diverged", "diverged", "optimal"]


# --------------------------------------------------------------------------- Small CNN Zoo
def _write_scnn(d, n=60, seed=0):
    """A fixture in the Small CNN Zoo layout: conv (3,3,1,4) + bias, dense (4,3) + bias, TF order;
    accuracy is a known function of the conv kernels' spread."""
    rng = np.random.default_rng(seed)
    shapes = [("conv/kernel:0", (3, 3, 1, 4)), ("conv/bias:0", (4,)), ("dense/kernel:0", (4, 3)), ("dense/bias:0", (3,))]
    rows, start = [], 0
    for name, shp in shapes:
        size = int(np.prod(shp))
        rows.append({"varname": name, "start_idx": start, "end_idx": start + size, "size": size, "shape": str(shp)})
        start += size
    scale = rng.uniform(0.05, 1.0, n)
    lr = rng.choice([1e-3, 1e-2], n)
    weights = rng.normal(size=(n, start)) * scale[:, None]
    acc = 0.2 + 0.7 * (scale - 0.05) / 0.95 + rng.normal(0, 0.01, n)
    np.save(d / "weights.npy", weights.astype(np.float32))
    pd.DataFrame(rows).to_csv(d / "layout.csv", index=False)
    pd.DataFrame({"modeldir": [f"run{i // 2}" for i in range(n)], "step": [i % 2 for i in range(n)],
                  "test_accuracy": acc, "config.learning_rate": lr,
                  "config.dataset": "fake"}).to_csv(d / "metrics.csv", index=False)
    return weights.astype(np.float32), acc


def test_small_cnn_zoo_reader_features_and_predictor(tmp_path):
    weights, acc = _write_scnn(tmp_path)
    metrics, layout = Z.read_small_cnn_zoo(tmp_path)
    assert len(metrics) == 60 and layout["varname"].tolist()[0] == "conv/kernel:0"
    tensors, strengths = Z._scnn_tensors(str(tmp_path), 5)
    k = weights[5, :36].astype(np.float64).reshape(3, 3, 1, 4)
    assert np.allclose(strengths[0][1], k.sum(axis=(0, 1, 2)))  # in-strength per output channel
    dense = weights[5, 40:52].astype(np.float64).reshape(4, 3)
    assert np.allclose(strengths[1][2], np.abs(dense).sum(0))
    res = Z.analyze_zoo(tmp_path, engine="serial")
    df = res.models
    allw = np.r_[weights[5, :36], weights[5, 40:52]].astype(np.float64)
    assert df.loc[5, "f_global_std"] == pytest.approx(allw.std())
    assert df.loc[5, "run"] == "run2" and df.loc[5, "hp_learning_rate"] in (1e-3, 1e-2)
    pred = res.predictors.set_index(["predictor", "features"])
    # accuracy is set by the weight scale: weights predict it, the (unrelated) lr cannot
    assert pred.loc[("gbt", "weights"), "r2"] > 0.8 and pred.loc[("gbt", "weights"), "kendall_tau"] > 0.7
    assert pred.loc[("ridge", "hparams"), "r2"] < 0.2


def test_small_cnn_zoo_bad_layout_is_a_clear_error(tmp_path):
    _write_scnn(tmp_path, n=4)
    lay = pd.read_csv(tmp_path / "layout.csv")
    lay.loc[0, "end_idx"] = 35
    lay.to_csv(tmp_path / "layout.csv", index=False)
    with pytest.raises(ValueError, match="conv/kernel:0"):
        Z.read_small_cnn_zoo(tmp_path)
    (tmp_path / "metrics.csv").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        Z.read_small_cnn_zoo(tmp_path)


def test_cli_zoo_analyze(tiny_zoo, tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    out = tmp_path / "res.parquet"
    r = CliRunner().invoke(app, ["zoo", "analyze", str(tiny_zoo), "--out", str(out), "--engine", "serial",
                                 "--plot", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert len(df) == 8 and {"class", "test_acc", "f_global_std"} <= set(df.columns)
    assert "Kendall tau" in r.output and (tmp_path / "plots" / "stats_by_class.png").exists()
    summ = json.loads((tmp_path / "res.summary.json").read_text())
    assert summ["summary"]["n_models"] == 8


def test_jeffreys_separates_classes_on_shared_bins():
    # sanity of the population measure used by analyze: identical draws are closer than a wider one
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000), rng.normal(0, 2, 4000)
    e = W.shared_bin_edges([a, b, c], bins=50)
    pa, pb, pc = (W.histogram_density(x, e)[0] for x in (a, b, c))
    assert W.jeffreys_divergence(pa, pb, e) < W.jeffreys_divergence(pa, pc, e)


def test_cli_zoo_train_resumes_finished_zoo(tiny_zoo, tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    z = tmp_path / "z"
    shutil.copytree(tiny_zoo, z)
    r = CliRunner().invoke(app, ["zoo", "train", "--out", str(z), "--arch", "mlp", "--grid", GRID,
                                 "--engine", "serial", "--quiet"])
    assert r.exit_code == 0, r.output
    assert _weights_of(z) == _weights_of(tiny_zoo)
    r = CliRunner().invoke(app, ["zoo", "train", "--out", str(z), "--arch", "mlp", "--grid", "width"])
    assert r.exit_code != 0 and "key=v1" in str(r.exception)


def test_stratified_comparisons_work_within_hyperparameter_cells():
    rng = np.random.default_rng(0)
    rows = []
    for lr, shift in ((1e-3, 0.0), (1e-2, 5.0)):  # statistics move with lr (the confound)
        for i in range(8):
            opt = i < 4
            spread = 0.01 if opt else 1.0  # inside a cell, suboptimal models vary more
            rows.append({"id": f"m{lr}-{i}", "dataset": "d", "arch": "x", "class": "optimal" if opt else "suboptimal",
                         "hp_lr": lr, "hp_epochs": 1, **{f"f_{s}": shift + spread * rng.normal() for s in Z.COMPARE_STATS}})
    res = Z.ZooAnalysis(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame())
    comp, summ = Z.stratified_comparisons(res, by=("lr",))
    assert sorted(comp["hp_lr"].unique()) == [1e-3, 1e-2]
    assert summ["x"]["stats_compared"] == 2 * len(Z.COMPARE_STATS)
    assert summ["x"]["frac_stats_sub_spread_larger"] == 1.0
    with pytest.raises(ValueError, match="hyperparameter columns"):
        Z.stratified_comparisons(res, by=("width",))


def _power_law_linear(n_out: int, n_in: int, alpha: float, rng) -> torch.nn.Linear:
    """A Linear layer whose WᵀW has eigenvalues drawn from a Pareto law of density ∝ λ^{−α}."""
    m = min(n_out, n_in)
    lam = (1 - rng.random(m)) ** (-1 / (alpha - 1))
    u, _ = np.linalg.qr(rng.normal(size=(n_out, m)))
    v, _ = np.linalg.qr(rng.normal(size=(n_in, m)))
    lin = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy((u * np.sqrt(lam)) @ v.T))
    return lin


def test_alpha_features_recover_a_constructed_power_law_spectrum():
    """Two 600-wide layers built with spectra of exponent α = 2.5 and 3.5, then a 10-unit head
    (10 eigenvalues: too few for a fit). The features are the per-layer fits of
    netxray.measures.spectral (same numbers), and each recovers its α within the spectral
    tests' stated tolerance max(3σ̂, 0.15); the head is left out and counted."""
    from netxray.measures.spectral import spectral_stats

    rng = np.random.default_rng(7)
    model = torch.nn.Sequential(_power_law_linear(800, 600, 2.5, rng), torch.nn.ReLU(),
                                _power_law_linear(600, 800, 3.5, rng), torch.nn.ReLU(),
                                torch.nn.Linear(600, 10, dtype=torch.float64))
    f = Z.model_features(model)
    s0, s1 = (spectral_stats(model[i].weight) for i in (0, 2))
    assert f["alpha_first"] == s0["alpha"] and f["alpha_hidden"] == s1["alpha"]
    assert abs(f["alpha_first"] - 2.5) <= max(3 * s0["alpha_sigma"], 0.15)
    assert abs(f["alpha_hidden"] - 3.5) <= max(3 * s1["alpha_sigma"], 0.15)
    assert np.isnan(f["alpha_last"]) and f["alpha_fit_frac"] == pytest.approx(2 / 3)
    assert f["alpha_mean"] == pytest.approx((s0["alpha"] + s1["alpha"]) / 2)
    assert f["alpha_min"] == s0["alpha"] and f["alpha_max"] == s1["alpha"]
    assert f["alpha_weighted_mean"] == pytest.approx(
        (s0["alpha"] * np.log10(s0["xmax"]) + s1["alpha"] * np.log10(s1["xmax"])) / 2)


def test_alpha_features_of_small_cnn_zoo_kernels_read_tf_layout():
    """A TF conv kernel (kh, kw, in, out) and dense kernel (in, out) are read as out × in·kh·kw
    and out × in: their singular values are those of the same kernels in PyTorch layout."""
    import tempfile

    from netxray.measures.spectral import singular_values

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(3)
        conv = rng.normal(size=(3, 3, 4, 16))
        dense = rng.normal(size=(64, 12))
        flat = np.r_[conv.ravel(), rng.normal(size=16), dense.ravel()][None, :]
        np.save(f"{d}/weights.npy", flat)
        pd.DataFrame({"varname": ["conv/kernel:0", "conv/bias:0", "dense/kernel:0"],
                      "start_idx": [0, 576, 592], "end_idx": [576, 592, 1360],
                      "shape": ["(3, 3, 4, 16)", "(16,)", "(64, 12)"]}).to_csv(f"{d}/layout.csv", index=False)
        mats = Z._scnn_matrices(d, 0)
    assert [(n, m.shape) for n, m in mats] == [("conv/kernel:0", (16, 36)), ("dense/kernel:0", (12, 64))]
    assert mats[1][1].dtype == np.float64
    torch_conv = np.transpose(conv, (3, 2, 0, 1)).reshape(16, -1)  # (out, in, kh, kw)
    np.testing.assert_allclose(singular_values(mats[0][1]), singular_values(torch_conv), rtol=1e-10)
    np.testing.assert_allclose(singular_values(mats[1][1]), singular_values(dense), rtol=1e-10)


def test_analysis_finds_accuracy_that_follows_alpha(tmp_path):
    """A Small-CNN-Zoo-layout population whose dense kernel (128 × 96) has a power-law
    spectrum of exponent α ~ U(2, 5) and accuracy = 0.95 − 0.1·α (+ 0.005 noise): the α
    features carry the signal, so α alone ranks the models (Spearman ρ of mean α vs accuracy
    near −1; the fit's σ̂ ≈ 0.1–0.4 on 96 eigenvalues blurs it a little) and predicts accuracy
    out of fold; the plot is written."""
    rng = np.random.default_rng(11)
    n = 40
    alphas = rng.uniform(2.0, 5.0, n)
    rows = []
    for a in alphas:
        lam = (1 - rng.random(96)) ** (-1 / (a - 1))
        u, _ = np.linalg.qr(rng.normal(size=(128, 96)))
        v, _ = np.linalg.qr(rng.normal(size=(96, 96)))
        rows.append(((u * np.sqrt(lam)) @ v.T).ravel())  # TF dense layout (in = 128, out = 96)
    np.save(tmp_path / "weights.npy", np.asarray(rows))
    pd.DataFrame({"varname": ["dense/kernel:0"], "start_idx": [0], "end_idx": [128 * 96],
                  "shape": ["(128, 96)"]}).to_csv(tmp_path / "layout.csv", index=False)
    acc = 0.95 - 0.1 * alphas + rng.normal(0, 0.005, n)
    pd.DataFrame({"modeldir": [f"run{i}" for i in range(n)], "step": 0, "test_accuracy": acc,
                  "config.dataset": "fake"}).to_csv(tmp_path / "metrics.csv", index=False)
    res = Z.analyze_zoo(tmp_path, engine="serial", optimal_within=0.5)
    corr = Z.alpha_vs_accuracy(res.models).set_index("feature")
    assert corr.loc["alpha_mean", "n"] == n and corr.loc["alpha_mean", "spearman"] < -0.8
    assert [r["feature"] for r in res.summary["alpha_vs_accuracy"]][:1] == ["alpha_mean"]
    pred = res.predictors.set_index(["predictor", "features"])
    assert pred.loc[("ridge", "alpha"), "status"] == "ok" and pred.loc[("ridge", "alpha"), "r2"] > 0.5
    assert pred.loc[("gbt", "alpha"), "kendall_tau"] > 0.5
    paths = Z.plot_zoo(res, tmp_path / "plots")
    assert tmp_path / "plots" / "alpha_vs_accuracy.png" in paths
