"""Lens 3 (SPEC §3.1–3.2): weight statistics vs direct numpy/scipy, histograms, node strengths
against hand-computed small layers, NaN/inf handling, unmapped layers, CLI."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from netxray._meta import model_hash
from netxray.lenses import parameters as P
from netxray.measures import weights as W


# --------------------------------------------------------------------------- measures
def test_tensor_stats_match_numpy_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(5, size=5000).astype(np.float32) * 0.1 + 0.02
    s = W.tensor_stats(x, near_zero=1e-2)
    xd = x.astype(np.float64)
    assert s["count"] == s["n_finite"] == 5000 and s["n_nonfinite"] == 0
    assert s["mean"] == pytest.approx(xd.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(xd.std(ddof=0), rel=1e-12)
    assert s["skewness"] == pytest.approx(stats.skew(xd, bias=True), rel=1e-9)
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(xd, fisher=True, bias=True), rel=1e-9)
    for q in (0, 25, 50, 75, 100):
        assert s[f"p{q}"] == pytest.approx(np.percentile(xd, q), rel=1e-12)
    assert s["l1"] == pytest.approx(np.abs(xd).sum(), rel=1e-12)
    assert s["l2"] == pytest.approx(np.linalg.norm(xd), rel=1e-12)
    assert s["rms"] == pytest.approx(np.sqrt(np.mean(xd**2)), rel=1e-12)
    assert s["near_zero_frac"] == pytest.approx(np.mean(np.abs(xd) <= 1e-2))


def test_nonfinite_values_are_counted_not_poisoning():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    bad = x.copy()
    bad[[3, 50, 700]] = [np.nan, np.inf, -np.inf]
    s, ref = W.tensor_stats(bad), W.tensor_stats(np.delete(x, [3, 50, 700]))
    assert s["n_nonfinite"] == 3 and s["count"] == 1000 and s["n_finite"] == 997
    for k in W.STAT_COLUMNS[3:]:
        assert np.isfinite(s[k]) and s[k] == pytest.approx(ref[k], rel=1e-12)
    allbad = W.tensor_stats([np.nan, np.inf])
    assert allbad["n_nonfinite"] == 2 and np.isnan(allbad["mean"])


def test_tensor_stats_never_reorders_the_callers_float64_data():
    x = np.random.default_rng(5).normal(size=3000)
    t = torch.tensor(x)
    x0, t0 = x.copy(), t.clone()
    W.tensor_stats(x)
    W.tensor_stats(t)
    assert np.array_equal(x, x0) and torch.equal(t, t0)


def test_constant_tensor_has_zero_std_and_undefined_shape():
    s = W.tensor_stats(np.full(10, 0.5))
    assert s["std"] == 0.0 and np.isnan(s["skewness"]) and np.isnan(s["kurtosis"])


def test_shared_histograms_integrate_to_one():
    rng = np.random.default_rng(2)
    arrays = [rng.normal(0, 1, 500), rng.normal(1, 0.2, 300), np.r_[rng.uniform(-3, 3, 100), np.nan]]
    edges = W.shared_bin_edges(arrays, bins=37)
    assert edges[0] == pytest.approx(np.nanmin(np.concatenate(arrays)))
    assert edges[-1] == pytest.approx(np.nanmax(np.concatenate(arrays)))
    for a in arrays:
        d, n_out = W.histogram_density(a, edges)
        assert n_out == 0
        assert float((d * np.diff(edges)).sum()) == pytest.approx(1.0, abs=1e-12)
    d, n_out = W.histogram_density([0.1, 0.2, 5.0], [0.0, 0.5, 1.0])
    assert n_out == 1 and float((d * 0.5).sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="edges"):
        W.histogram_density([1.0], [1.0, 0.0])


def test_divergences_and_tests_vs_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 400), rng.normal(0.3, 2, 300)
    D, p = W.ks_distance(a, b)
    ref = stats.ks_2samp(a, b)
    assert D == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    edges = W.shared_bin_edges([a, b], bins=20)
    pa, pb = W.histogram_density(a, edges)[0], W.histogram_density(b, edges)[0]
    j = W.jeffreys_divergence(pa, pb, edges)
    assert j == pytest.approx(W.jeffreys_divergence(pb, pa, edges)) and j > 0
    assert W.jeffreys_divergence(pa, pa, edges) == 0.0
    # hand formula on masses without empty bins (smoothing negligible)
    P_, Q_ = np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.4, 0.2])
    assert W.jeffreys_divergence(P_, Q_, alpha=0.0) == pytest.approx(np.sum((P_ - Q_) * np.log(P_ / Q_)))
    # binned KS is the exact KS up to one bin's mass
    assert abs(W.binned_ks(pa, pb, edges) - D) <= np.max(np.r_[pa, pb] * np.diff(edges)[0]) + 1e-12
    F, pv = W.brown_forsythe(a, b)
    ref = stats.levene(a, b, center="median")
    assert F == pytest.approx(ref.statistic) and pv == pytest.approx(ref.pvalue)
    # Brown–Forsythe is the ANOVA on absolute deviations from the median
    za, zb = np.abs(a - np.median(a)), np.abs(b - np.median(b))
    assert F == pytest.approx(stats.f_oneway(za, zb).statistic)
    assert W.mad(b) == pytest.approx(stats.median_abs_deviation(b))
    assert W.mad(b, scale="normal") == pytest.approx(stats.median_abs_deviation(b, scale="normal"))
    with pytest.raises(ValueError, match="group 1"):
        W.brown_forsythe(a, [1.0])


def test_linear_strengths_by_hand():
    w = np.array([[1.0, -2.0, 0.5], [3.0, 4.0, -1.0]])
    b = np.array([0.25, -0.5])
    s = W.linear_strengths(w, b)
    assert s["in_signed"].tolist() == [1 - 2 + 0.5 + 0.25, 3 + 4 - 1 - 0.5]
    assert s["in_abs"].tolist() == [1 + 2 + 0.5 + 0.25, 3 + 4 + 1 + 0.5]
    assert s["out_signed"].tolist() == [4.0, 2.0, -0.5]
    assert s["out_abs"].tolist() == [4.0, 6.0, 1.5]
    with pytest.raises(ValueError, match="bias"):
        W.linear_strengths(w, [1.0])


def test_conv_channel_graph_by_hand():
    k = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2) - 10
    a, aa = W.conv_channel_matrix(k)
    for o in range(2):
        for c in range(3):
            assert a[o, c] == k[o, c].sum() and aa[o, c] == np.abs(k[o, c]).sum()
    # grouped: 4 out, 4 in, 2 groups -> block diagonal
    kg = np.ones((4, 2, 3))
    g, _ = W.conv_channel_matrix(kg, groups=2)
    assert g.tolist() == [[3, 3, 0, 0], [3, 3, 0, 0], [0, 0, 3, 3], [0, 0, 3, 3]]


def test_attention_head_strengths_by_hand():
    rng = np.random.default_rng(4)
    D, H = 6, 3
    wq, wk, wv, wo = (rng.normal(size=(D, D)) for _ in range(4))
    s = W.attention_head_strengths(wq, wk, wv, wo, H)
    for h in range(H):
        r = slice(2 * h, 2 * h + 2)
        assert s["q_signed"][h] == pytest.approx(wq[r].sum())
        assert s["k_abs"][h] == pytest.approx(np.abs(wk[r]).sum())
        assert s["v_signed"][h] == pytest.approx(wv[r].sum())
        assert s["o_signed"][h] == pytest.approx(wo[:, r].sum())
        assert s["o_abs"][h] == pytest.approx(np.abs(wo[:, r]).sum())
    with pytest.raises(ValueError, match="num_heads"):
        W.attention_head_strengths(wq, wk, wv, wo, 4)


# --------------------------------------------------------------------------- lens
def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(), nn.Linear(5, 2),
    )


def test_weight_stats_rows_roles_and_global_row():
    m = _small_net().train()
    h0 = model_hash(m)
    df = P.weight_stats(m)
    assert model_hash(m) == h0 and m.training  # never modify what the user gave
    by = df.set_index("name")
    assert by.loc["1.weight", "role"] == "norm" and by.loc["1.bias", "role"] == "norm"
    assert by.loc["0.bias", "role"] == "bias" and by.loc["5.weight", "role"] == "weight"
    assert len(df) == len(list(m.parameters())) + 1
    w5 = m[5].weight.detach().double().numpy().ravel()
    assert by.loc["5.weight", "std"] == pytest.approx(w5.std())
    allw = np.concatenate([m[i].weight.detach().double().numpy().ravel() for i in (0, 5, 7)])
    assert by.loc["<global>", "count"] == allw.size
    assert by.loc["<global>", "kurtosis"] == pytest.approx(stats.kurtosis(allw))
    assert df.attrs["meta"]["model_hash"] == h0


@pytest.mark.parametrize("include_global", [True, False])
def test_weight_stats_leave_a_float64_model_untouched(include_global):
    # float64 CPU parameters convert to numpy without a copy: the percentiles must not sort them
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).double()
    before = copy.deepcopy(model.state_dict())
    P.weight_stats(model, include_global=include_global)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_tied_weights_are_counted_once():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight
    df = P.weight_stats(nn.Sequential(a, nn.ReLU(), b)).set_index("name")
    assert "2.weight" not in df.index and df.loc["<global>", "count"] == 16


def test_weight_stats_flags_nonfinite_weights():
    m = copy.deepcopy(_small_net())
    with torch.no_grad():
        m[5].weight[0, 0] = float("nan")
        m[5].weight[1, 1] = float("inf")
    df = P.weight_stats(m).set_index("name")
    assert df.loc["5.weight", "n_nonfinite"] == 2 and df.loc["5.weight", "status"] == "nonfinite"
    assert np.isfinite(df.loc["5.weight", "std"]) and np.isfinite(df.loc["<global>", "mean"])
    assert df.loc["<global>", "n_nonfinite"] == 2


def test_node_strengths_hand_computed_with_total_through_flatten():
    m = _small_net().eval()
    df = P.node_strengths(m, example=torch.randn(2, 1, 8, 8))
    ok = df[df.status == "ok"]
    conv_w = m[0].weight.detach().double().numpy()
    in0 = ok[(ok.layer == "0") & (ok.kind == "in")].sort_values("unit")
    assert np.allclose(in0["signed"], conv_w.sum(axis=(1, 2, 3)) + m[0].bias.detach().double().numpy())
    lin = m[5].weight.detach().double().numpy()
    out5 = ok[(ok.layer == "5") & (ok.kind == "out")]
    assert np.allclose(out5["abs"], np.abs(lin).sum(0))
    # conv → BN → ReLU → pool → flatten → Linear: channel c owns 16 columns of layer 5
    tot0 = ok[(ok.layer == "0") & (ok.kind == "total")].sort_values("unit")
    expect = in0["signed"].to_numpy() + lin.sum(0).reshape(3, 16).sum(1)
    assert np.allclose(tot0["signed"], expect)
    # Linear → Tanh → Linear: total = in-strength + out-strength
    tot5 = ok[(ok.layer == "5") & (ok.kind == "total")].sort_values("unit")
    w7 = m[7].weight.detach().double().numpy()
    assert np.allclose(tot5["signed"], lin.sum(1) + m[5].bias.detach().double().numpy() + w7.sum(0))
    assert not ((ok.layer == "7") & (ok.kind == "total")).any()  # the head feeds no layer
    skipped = df[df.status == "skipped"]
    assert skipped.layer.tolist() == ["1"] and "normalization" in skipped.detail.iloc[0]
    fl = P.strength_fluctuation(df).set_index(["layer", "kind"])
    assert fl.loc[("5", "in"), "abs_std"] == pytest.approx(np.std(np.abs(lin).sum(1) + np.abs(m[5].bias.detach().double().numpy())))


class _Branchy(nn.Module):
    """An MLP whose forward branches on the data: torch.fx cannot trace it (TraceError)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if h.sum() > 0:  # data-dependent control flow
            h = torch.tanh(self.fc2(h))
        else:
            h = torch.sigmoid(self.fc2(h))
        return self.fc3(h)


def test_node_strengths_total_on_a_model_fx_cannot_trace():
    """The totals come from the recorded graph: a model with data-dependent control flow gets
    them, equal to SPEC 3.2 (in-strength from layer l + out-strength into layer l+1) and to the
    totals of the same weights as a plain Sequential MLP (what the torch.fx reader gave)."""
    torch.manual_seed(0)
    m = _Branchy().eval()
    df = P.node_strengths(m, example=torch.randn(2, 6))
    assert not (df.status == "note").any(), df[df.status == "note"].detail.tolist()
    tot = df[(df.kind == "total") & (df.status == "ok")]
    assert sorted(set(zip(tot.layer, tot.detail, strict=True))) == [("fc1", "next=fc2"), ("fc2", "next=fc3")]
    w = {k: getattr(m, k).weight.detach().double().numpy() for k in ("fc1", "fc2", "fc3")}
    b = {k: getattr(m, k).bias.detach().double().numpy() for k in ("fc1", "fc2", "fc3")}
    for a, nxt in (("fc1", "fc2"), ("fc2", "fc3")):
        got = tot[tot.layer == a].sort_values("unit")
        assert np.allclose(got["signed"], w[a].sum(1) + b[a] + w[nxt].sum(0))
        assert np.allclose(got["abs"], np.abs(w[a]).sum(1) + np.abs(b[a]) + np.abs(w[nxt]).sum(0))
    seq = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    seq.load_state_dict({f"{i}.{n}": t for i, k in ((0, "fc1"), (2, "fc2"), (4, "fc3"))
                         for n, t in getattr(m, k).state_dict().items()})
    ref = P.node_strengths(seq, example=torch.randn(2, 6))
    ref = ref[ref.kind == "total"].replace({"layer": {"0": "fc1", "2": "fc2"}})
    assert np.allclose(ref.sort_values(["layer", "unit"])["signed"], tot.sort_values(["layer", "unit"])["signed"])


def test_node_strengths_total_needs_an_example_input():
    torch.manual_seed(0)
    df = P.node_strengths(_Branchy())  # not a built-in model, no example: said in plain words
    note = df[df.status == "note"].detail.tolist()
    assert not (df.kind == "total").any() and len(note) == 1
    assert "example input" in note[0] and "Error" not in note[0]
    bad = P.node_strengths(_Branchy(), example=torch.randn(2, 7))  # wrong width: the pass fails
    note = bad[bad.status == "note"].detail.iloc[0]
    assert "could not run on the example input" in note and not (bad.kind == "total").any()
    assert (bad.loc[bad.kind == "in", "status"] == "ok").all()  # the rest of the table stands


def test_node_strengths_reports_unmapped_layers_and_mha_heads():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))
            self.rnn = nn.GRU(4, 4)
            self.attn = nn.MultiheadAttention(4, 2)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):  # pragma: no cover - never run
            return x

    m = Odd()
    df = P.node_strengths(m)
    bad = df[df.status.isin(["unmapped", "skipped"])].set_index("layer")
    assert bad.loc["rnn", "status"] == "unmapped" and "GRU" in bad.loc["rnn", "detail"]
    assert bad.loc["<model>", "status"] == "skipped" and "scale" in bad.loc["<model>", "detail"]
    heads = df[(df.layer == "attn") & (df.kind == "q")]
    wq = m.attn.in_proj_weight.detach().double().numpy()[:4]
    assert np.allclose(heads.sort_values("unit")["signed"], [wq[:2].sum(), wq[2:].sum()])
    assert any("rnn" in s for s in df.attrs["summary"]["not_mapped"])


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "vit"])
def test_node_strengths_cover_builtin_families(arch):
    from netxray.models import build_model, default_config

    torch.manual_seed(0)
    m = build_model(default_config(arch, [1, 8, 8], 10))
    df = P.node_strengths(m)
    assert (df.status != "error").all(), df[df.status == "error"].detail.tolist()
    assert not (df.status == "unmapped").any()
    linear_like = [n for n, mod in m.named_modules() if isinstance(mod, (nn.Linear, nn.Conv2d))]
    assert set(linear_like) <= set(df.loc[df.status == "ok", "layer"])
    kinds = set(df.loc[df.status == "ok", "kind"])
    if arch == "vit":
        assert {"q", "k", "v", "o"} <= kinds
        assert any(df.loc[df.kind == "total", "detail"].str.contains("fc2"))  # fc1 → GELU → fc2
    if arch in ("mlp", "cnn"):
        assert "total" in kinds


def test_weight_stats_on_trained_model_and_plots(trained, tmp_path):
    from matplotlib.figure import Figure

    m = trained("mlp")
    df = P.weight_stats(m)
    assert (df.status == "ok").all() and (df["count"] > 0).all()
    fig = P.plot_weight_histograms(m, tmp_path / "h.png")
    assert isinstance(fig, Figure) and (tmp_path / "h.png").stat().st_size > 0
    fig = P.plot_strengths(P.node_strengths(m), tmp_path / "s.png")
    assert isinstance(fig, Figure) and (tmp_path / "s.png").exists()
    edges, hs = P.weight_histograms([m, trained("mlp")], bins=30)
    for h in hs:
        for d in h.values():
            assert float((d * np.diff(edges)).sum()) == pytest.approx(1.0)


def test_cli_weights(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, default_config, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(default_config("mlp", [1, 8, 8], 10, width=16, depth=1)), tmp_path / "ck")
    out = tmp_path / "stats.csv"
    r = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(out), "--strengths",
                                 str(tmp_path / "st.csv"), "--plot", str(tmp_path / "plots"), "--quiet"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert df["name"].iloc[-1] == "<global>" and (tmp_path / "plots" / "strengths.png").exists()
    r = CliRunner().invoke(app, ["weights", str(tmp_path / "missing"), "--out", str(out)])
    assert r.exit_code == 1 and "error: cannot load checkpoint" in r.output and "not found" in r.output


def test_cli_weights_bad_input_is_one_error_line(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, default_config, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(default_config("mlp", [1, 8, 8], 10, width=16, depth=1)), tmp_path / "ck")
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    badcfg = tmp_path / "badcfg"
    shutil.copytree(ckpt, badcfg)
    (badcfg / "config.json").write_text("{not json")
    out = tmp_path / "out" / "stats.csv"

    def run(*args: str):
        r = CliRunner().invoke(app, ["weights", *args, "--out", str(out)])
        # a clean exit(1) with an error line, never a traceback (CliRunner keeps the exception)
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
        assert "Traceback" not in r.output and "error: " in r.output
        return r.output

    assert "cannot load checkpoint" in run(str(broken))
    assert "config.json" in run(str(badcfg))
    assert "checkpoint not found" in run(str(tmp_path / "missing"))  # exit 1, not a usage error (2)
    for bad in ("0", "-3"):
        assert f"--bins must be a positive integer, got {bad}" in run(str(ckpt), "--bins", bad,
                                                                      "--plot", str(tmp_path / "p"))
    assert "--near-zero must be a finite number >= 0" in run(str(ckpt), "--near-zero", "-1")
    assert not out.exists() and not (tmp_path / "p").exists()  # rejected before any work


def test_cli_weights_lens_value_error_becomes_error_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, default_config, save_checkpoint

    ckpt = save_checkpoint(build_model(default_config("mlp", [1, 8, 8], 10, width=16, depth=1)), tmp_path / "ck")

    def boom(*a, **k):
        raise ValueError("cannot map this layer")

    monkeypatch.setattr(P, "node_strengths", boom)
    r = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"),
                                 "--strengths", str(tmp_path / "st.csv")])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert "error: weights of" in r.output and "cannot map this layer" in r.output


# ---- float32 route: exact percentiles without a float64 copy (issue 12, item 8) ---------------


def test_exact_float32_percentiles_match_numpy_bit_for_bit():
    from netxray.measures.weights import PERCENTILES, exact_percentiles_float32

    rng = np.random.default_rng(0)
    cases = [
        rng.normal(size=10_001).astype(np.float32),
        np.round(rng.normal(size=5000), 1).astype(np.float32),  # many duplicates
        np.array([-0.0, 0.0, -0.0, 1.0], dtype=np.float32),
        np.array([7.5], dtype=np.float32),
        (rng.standard_cauchy(3001) * 1e30).astype(np.float32),  # huge range, both signs
        np.array([-np.float32(3.4e38), np.float32(1e-45), -np.float32(1e-45)], dtype=np.float32),
    ]
    for v in cases:
        chunks = [v[i : i + 777] for i in range(0, len(v), 777)]
        got = exact_percentiles_float32(lambda c=chunks: iter(c), PERCENTILES, len(v))
        want = np.percentile(v.astype(np.float64), PERCENTILES)
        assert got.tolist() == want.tolist()
        more = [1, 33.3, 99.9]
        assert exact_percentiles_float32(lambda c=chunks: iter(c), more, len(v)).tolist() == (
            np.percentile(v.astype(np.float64), more).tolist()
        )


def test_tensor_stats_float32_route_equals_float64_route():
    rng = np.random.default_rng(1)
    v = rng.normal(0.1, 2.0, size=300_000).astype(np.float32)
    v[::1000] = np.nan
    v[5] = np.inf
    s32 = W.tensor_stats(v)
    s64 = W.tensor_stats(v.astype(np.float64))
    for key in W.STAT_COLUMNS:
        if key.startswith("p") or key in ("count", "n_finite", "n_nonfinite", "near_zero_frac"):
            assert s32[key] == s64[key], key
        else:
            assert s32[key] == pytest.approx(s64[key], rel=1e-12, abs=1e-15), key
    bf = torch.tensor(v[6:1000]).to(torch.bfloat16)  # bf16 read through float32, exactly
    assert W.tensor_stats(bf)["p50"] == np.percentile(bf.float().numpy().astype(np.float64), 50)
    assert W.tensor_stats(np.array([np.nan], dtype=np.float32))["n_finite"] == 0


def test_model_hash_is_reused_inside_a_scan_block_and_recomputed_after_a_change():
    import netxray._meta as meta

    m = torch.nn.Linear(3, 2)
    calls = []
    real = meta.state_dict_hash
    meta.state_dict_hash = lambda sd: calls.append(1) or real(sd)
    try:
        with meta.reused_model_hashes():
            h1 = meta.model_hash(m)
            assert meta.model_hash(m) == h1 and len(calls) == 1  # reused
            with torch.no_grad():
                m.weight.add_(1.0)  # an in-place change bumps the version counter
            h2 = meta.model_hash(m)
            assert h2 != h1 and len(calls) == 2
        meta.model_hash(m)
        assert len(calls) == 3  # outside the block: always computed
    finally:
        meta.state_dict_hash = real


# ---- streamed safetensors checkpoints and the spectral table (issue 12, items 4-5) -----------


def _sharded(tmp_path, state, n_shards=2):
    import json

    import safetensors.torch as st

    keys = list(state)
    weight_map = {}
    for s in range(n_shards):
        fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: state[k].detach().clone().contiguous() for k in keys[s::n_shards]}
        st.save_file(part, str(tmp_path / fname))
        weight_map.update({k: fname for k in part})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return tmp_path


def test_streamed_checkpoint_gives_the_in_memory_statistics(tmp_path):
    torch.manual_seed(0)
    from collections import OrderedDict

    model = nn.Sequential(OrderedDict(fc1=nn.Linear(20, 30), act=nn.ReLU(), norm=nn.LayerNorm(30),
                                      fc2=nn.Linear(30, 5)))  # fmt: skip
    ckpt = _sharded(tmp_path, model.state_dict(), n_shards=3)
    mem = P.weight_stats(model).set_index("name")
    streamed = P.weight_stats(ckpt).set_index("name")
    assert set(streamed.index) == set(mem.index)
    for col in W.STAT_COLUMNS:
        np.testing.assert_allclose(streamed.loc[mem.index, col].astype(float),
                                   mem[col].astype(float), rtol=1e-12, atol=1e-15, err_msg=col)  # fmt: skip
    assert (streamed.loc[mem.index, "role"] == mem["role"]).all()  # name heuristic agrees here
    assert streamed.attrs["meta"]["streamed"] is True


def test_streamed_bf16_is_read_exactly(tmp_path):
    torch.manual_seed(1)
    w = torch.randn(64, 48).to(torch.bfloat16)
    ckpt = _sharded(tmp_path, {"layer.weight": w, "layer.bias": torch.zeros(64, dtype=torch.float16)}, 1)
    row = P.weight_stats(ckpt).set_index("name").loc["layer.weight"]
    exact = w.float().double().numpy().ravel()
    assert row["p50"] == np.percentile(exact, 50) and row["p0"] == exact.min()
    assert row["mean"] == pytest.approx(exact.mean(), rel=1e-12)


def test_checkpoint_errors_are_clear(tmp_path):
    import json

    with pytest.raises(FileNotFoundError, match="does not exist"):
        P.checkpoint_tensors(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no model.safetensors.index.json"):
        P.checkpoint_tensors(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="missing"):
        P.checkpoint_tensors(tmp_path)


def test_weight_spectra_table(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 200))
    df = P.weight_spectra(model)
    assert df["name"].tolist() == ["0.weight", "3.weight"]  # biases left out
    conv = df.set_index("name").loc["0.weight"]
    assert (conv["n_rows"], conv["n_cols"]) == (16, 27)  # out × in·k·k
    k = model[0].weight.detach().double().reshape(16, 27).numpy()
    assert conv["spectral_norm"] == pytest.approx(np.linalg.norm(k, 2), rel=1e-10)
    assert set(df.attrs["esd"]) == {"0.weight", "3.weight"}
    streamed = P.weight_spectra(_sharded(tmp_path, model.state_dict(), 2)).set_index("name")
    np.testing.assert_allclose(streamed.loc[df["name"], "stable_rank"], df["stable_rank"], rtol=1e-12)


def test_cli_weights_streams_a_sharded_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    torch.manual_seed(3)
    state = {"model.layers.0.mlp.up_proj.weight": torch.randn(40, 16).to(torch.bfloat16),
             "model.norm.weight": torch.ones(16, dtype=torch.bfloat16)}  # fmt: skip
    ckpt = _sharded(tmp_path / "ckpt" if (tmp_path / "ckpt").mkdir() is None else None, state, 2)
    (ckpt / "config.json").write_text('{"model_type": "llama"}')  # a Hugging Face config
    res = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"),
                                   "--spectra", str(tmp_path / "sp.csv"), "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    import pandas as pd

    stats = pd.read_csv(tmp_path / "s.csv").set_index("name")
    assert stats.loc["model.norm.weight", "role"] == "norm"
    assert stats.loc["<global>", "count"] == 40 * 16  # only the weight matrix
    assert pd.read_csv(tmp_path / "sp.csv")["name"].tolist() == ["model.layers.0.mlp.up_proj.weight"]
    res = CliRunner().invoke(app, ["weights", str(ckpt), "--strengths", str(tmp_path / "x.csv")])
    assert res.exit_code != 0 and "without its model" in res.output


def test_weight_stats_float32_route_equals_the_float64_route():
    # float32 parameters are read in float32 chunks (exact radix percentiles, moments combined
    # tensor by tensor); the same model in float64 takes the float64 buffer route. The values
    # are the same numbers (float32 → float64 is exact), so percentiles agree bit for bit and
    # moments to float64 rounding.
    m = _small_net()
    df32 = P.weight_stats(m).set_index("name")
    df64 = P.weight_stats(copy.deepcopy(m).double()).set_index("name")
    allw = np.concatenate([m[i].weight.detach().double().numpy().ravel() for i in (0, 5, 7)])
    for q in (0, 25, 50, 75, 100):
        assert df32.loc["<global>", f"p{q}"] == np.percentile(allw, q) == df64.loc["<global>", f"p{q}"]
        assert df32.loc["5.weight", f"p{q}"] == df64.loc["5.weight", f"p{q}"]
    for col in ("mean", "std", "skewness", "kurtosis", "l1", "l2", "rms", "near_zero_frac"):
        assert df32.loc["<global>", col] == pytest.approx(df64.loc["<global>", col], rel=1e-12, abs=1e-15)
    assert df32.loc["<global>", "count"] == allw.size


def test_histogram_counts_equal_width_path_matches_sorted_search_and_adds_up():
    # values exactly on the edges, just beside them, outside, and random: numpy's equal-bin path
    # (taken for linspace edges) must give the counts of the sorted search on the same edges
    rng = np.random.default_rng(0)
    edges = W.shared_bin_edges(bins=64, range=(-0.3, 0.7))
    near = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    x = np.concatenate([rng.normal(0.2, 0.3, 100_000), near, [np.nan, np.inf, 5.0]])
    counts, n_out = W.histogram_counts(x, edges)
    ref, _ = np.histogram(x[np.isfinite(x)], bins=edges)
    assert np.array_equal(counts, ref)
    assert n_out == int(np.isfinite(x).sum()) - int(ref.sum())
    a, b = x[:50_000], x[50_000:]
    assert np.array_equal(W.histogram_counts(a, edges)[0] + W.histogram_counts(b, edges)[0], counts)


def test_weight_histograms_global_row_equals_the_concatenation():
    m = _small_net()
    edges, (h,) = P.weight_histograms(m, bins=32)
    ws = {n: p.detach().double().numpy().ravel() for n, p in m.named_parameters() if n in h}
    allw = np.concatenate(list(ws.values()))
    assert np.array_equal(edges, np.linspace(allw.min(), allw.max(), 33))
    assert np.array_equal(h["<global>"], W.histogram_density(allw, edges)[0])
    for n, w in ws.items():
        assert np.array_equal(h[n], W.histogram_density(w, edges)[0])


def test_cli_weights_fit_rule_and_device(tmp_path):
    """--fit-rule weightwatcher writes WeightWatcher's fit (the same α and tails as
    weight_spectra(rule="weightwatcher")); --device cpu runs; --device cuda without a GPU and a
    bad rule are one error line each."""
    import pandas as pd
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, default_config, save_checkpoint

    torch.manual_seed(0)
    model = build_model(default_config("mlp", [1, 8, 8], 10, width=32, depth=2))
    ckpt = save_checkpoint(model, tmp_path / "ck")
    spec = tmp_path / "spectra.csv"
    r = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--spectra", str(spec),
                                 "--fit-rule", "weightwatcher", "--device", "cpu", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pd.read_csv(spec)
    want = P.weight_spectra(model, rule="weightwatcher")
    np.testing.assert_allclose(got["alpha"].to_numpy(), want["alpha"].to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(got["n_tail"].to_numpy(), want["n_tail"].to_numpy())
    bad = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--fit-rule", "ww"])
    assert bad.exit_code == 1 and "--fit-rule" in bad.output
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--device", "cuda"])
        assert r.exit_code == 1 and "no CUDA GPU" in r.output


# --------------------------------------------------------------------------- low precision, streaming
def _bf16_model_and_upcast() -> tuple[nn.Module, nn.Module]:
    """A bf16 model with an attention block, a conv and a wide layer, and its float32 copy
    (bf16 → float32 is exact: every number of the parameters lens must be the same)."""
    torch.manual_seed(7)
    m = nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 300), nn.GELU(),
                      nn.Linear(300, 40), nn.LayerNorm(40))  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
        m[3].weight[2, 5] = float("nan")
    return m.to(torch.bfloat16), copy.deepcopy(m).to(torch.bfloat16).float()


def test_parameters_lens_on_bf16_equals_its_float32_upcast():
    low, up = _bf16_model_and_upcast()
    ex = torch.zeros(2, 3, 8)
    pd_test = pytest.importorskip("pandas").testing
    pd_test.assert_frame_equal(P.weight_stats(low), P.weight_stats(up))
    sl, su = P.weight_spectra(low), P.weight_spectra(up)
    pd_test.assert_frame_equal(sl, su)
    for k in sl.attrs["esd"]:
        np.testing.assert_array_equal(sl.attrs["esd"][k][0], su.attrs["esd"][k][0])
    nl, nu = P.node_strengths(low, example=ex.bfloat16()), P.node_strengths(up, example=ex)
    assert (nl["status"] == "ok").sum() > 0 and not (nl["status"] == "error").any()
    pd_test.assert_frame_equal(nl, nu)
    el, (hl,) = P.weight_histograms(low)
    eu, (hu,) = P.weight_histograms(up)
    np.testing.assert_array_equal(el, eu)
    assert hl.keys() == hu.keys()
    for k in hl:
        np.testing.assert_array_equal(hl[k], hu[k])


def test_streamed_strengths_and_histograms_equal_the_whole_float64_matrix():
    # > W._CHUNK values: several row blocks / chunks; the sums must be numpy's, bit for bit
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((1500, 800)) * np.exp(rng.standard_normal((1500, 800)))).astype(np.float32)
    w[7, 9] = np.inf
    t = torch.from_numpy(w).to(torch.bfloat16)
    wd = t.double().numpy()
    wz = np.where(np.isfinite(wd), wd, 0.0)
    s = W.linear_strengths(t)
    np.testing.assert_array_equal(s["in_signed"], wz.sum(axis=1))
    np.testing.assert_array_equal(s["in_abs"], np.abs(wz).sum(axis=1))
    np.testing.assert_array_equal(s["out_signed"], wz.sum(axis=0))
    np.testing.assert_array_equal(s["out_abs"], np.abs(wz).sum(axis=0))
    edges = W.shared_bin_edges(bins=37, range=(-3.0, 2.0))
    chunked = sum(W.histogram_counts(c, edges)[0] for c in W.float64_chunks(t))
    np.testing.assert_array_equal(chunked, W.histogram_counts(wd, edges)[0])
    assert t.dtype == torch.bfloat16 and np.array_equal(t.double().numpy(), wd, equal_nan=True)  # untouched


def test_blocked_gram_equals_the_whole_matrix_product(monkeypatch):
    from netxray.measures import spectral as S

    rng = np.random.default_rng(4)
    monkeypatch.setattr(S, "_GRAM_BLOCK", 1000)  # many blocks on both paths
    for shape in ((300, 40), (40, 300), (6, 5, 3, 3)):
        a = rng.standard_normal(shape)
        m = a.reshape(shape[0], -1)
        want = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        for w in (a, torch.from_numpy(a)):
            np.testing.assert_allclose(S.smaller_gram(w), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_cli_weights_spectra_precision(tmp_path):
    """--spectra-precision float32 writes the float32 spectra of weight_spectra(precision=
    "float32"); a bad value is one error line."""
    import pandas as pd
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, default_config, save_checkpoint

    torch.manual_seed(0)
    model = build_model(default_config("mlp", [1, 8, 8], 10, width=32, depth=2))
    ckpt = save_checkpoint(model, tmp_path / "ck")
    spec = tmp_path / "spectra.csv"
    r = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--spectra", str(spec),
                                 "--spectra-precision", "float32", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pd.read_csv(spec)
    want = P.weight_spectra(model, precision="float32")
    np.testing.assert_array_equal(got["spectral_norm"].to_numpy(), want["spectral_norm"].to_numpy())
    bad = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--spectra-precision", "half"])
    assert bad.exit_code == 1 and "--spectra-precision" in bad.output
