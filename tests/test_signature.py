"""Non-linearity signature: the lens on real models, signature distances, clustering, plot, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netxray._meta import model_hash
from netxray.lenses.nonlinearity import (
    compare_signatures,
    nonlinearity_signature,
    plot_signatures,
    random_rotation,
    rotated_copy,
    signature_vector,
)
from netxray.measures.affinity import affinity_score
from netxray.measures.signature import (
    cluster_signatures,
    distance_matrix,
    dtw_distance,
    resample,
    signature_distance,
    signature_summary,
)


def _x(n=400, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# ---- guarantees on hand-made models -----------------------------------------------------


class InplaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.a1 = nn.Linear(8, 16), nn.SiLU(inplace=True)
        self.l2, self.a2 = nn.Linear(16, 16), nn.Hardswish(inplace=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.a2(self.l2(self.a1(self.l1(x)))))


def test_inplace_activations_bit_identical_logits_and_correct_scores():
    model = InplaceNet().eval()
    x = _x()
    before = model(x).detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    df = nonlinearity_signature(model, x, n_samples=None)
    assert torch.equal(model(x), before)  # bit-identical afterwards, weights untouched
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert df["op"].tolist() == ["SiLU", "Hardswish"] and (df["status"] == "ok").all()
    # the true pre-activations, computed out of place: the scores must be theirs
    with torch.no_grad():
        pre1 = model.l1(x)
        pre2 = model.l2(F.silu(pre1))
    exp1 = affinity_score(pre1, F.silu(pre1)).score
    exp2 = affinity_score(pre2, F.hardswish(pre2)).score
    np.testing.assert_allclose(df["affinity"], [exp1, exp2], atol=1e-9)
    # the reference bug (activation applied twice, input == output) would give exactly 1
    assert (df["affinity"] < 0.99).all() and (df["cka"] < 1 - 1e-6).all()


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.l1, self.l2, self.l3, self.head = (nn.Linear(8, 12), nn.Linear(12, 12),
                                                nn.Linear(12, 12), nn.Linear(12, 2))  # fmt: skip

    def forward(self, x):
        h = F.relu(self.l1(x))
        h = torch.tanh(self.l2(h))
        h = self.l3(h).relu()
        return self.head(F.relu(h - 0.1))


def test_functional_only_model_has_a_full_signature():
    df = nonlinearity_signature(FunctionalNet(), _x())
    assert df["op"].tolist() == ["F.relu", "torch.tanh", "Tensor.relu", "F.relu"]
    assert df["site"].tolist() == ["F.relu#0", "torch.tanh", "Tensor.relu", "F.relu#1"]
    assert df["position"].tolist() == [0, 1, 2, 3]
    assert (df["status"] == "ok").all() and df["affinity"].between(0, 1).all()


class SharedReLU6(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.l1, self.l2, self.act = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU6()

    def forward(self, x):
        return self.act(self.l2(self.act(3 * self.l1(x))))


def test_relu6_is_one_site_per_call():
    df = nonlinearity_signature(SharedReLU6(), _x())
    assert df["op"].tolist() == ["ReLU6", "ReLU6"]  # never an extra Hardtanh row
    assert df["site"].tolist() == ["act#0", "act#1"]
    assert df["call_index"].tolist() == [0, 1]


class GLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.l1, self.glu, self.l2, self.act = nn.Linear(8, 16), nn.GLU(dim=-1), nn.Linear(8, 8), nn.ReLU()
        self.dead = nn.Linear(8, 8)
        with torch.no_grad():  # a dead ReLU: every pre-activation is -1
            self.dead.weight.zero_()
            self.dead.bias.fill_(-1.0)
        self.dead_act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.l2(self.glu(self.l1(x))))
        return self.dead_act(self.dead(h))


def test_glu_is_a_shape_mismatch_row_and_dead_relu_is_degenerate():
    df = nonlinearity_signature(GLUNet(), _x())
    rows = df.set_index("site")
    assert rows.loc["glu", "status"] == "shape_mismatch"
    assert np.isnan(rows.loc["glu", "affinity"]) and "16" in rows.loc["glu", "error"]
    assert np.isfinite(rows.loc["glu", "cka"])  # companions still computed on (n, 16) vs (n, 8)
    assert rows.loc["act", "status"] == "ok" and 0 < rows.loc["act", "affinity"] < 1
    assert rows.loc["dead_act", "status"] == "degenerate"
    assert rows.loc["dead_act", "affinity"] == 1.0 and rows.loc["dead_act", "sparsity_out"] == 1.0
    assert signature_vector(df).tolist() == [rows.loc["act", "affinity"], 1.0]


def test_nan_inputs_give_non_finite_rows_not_a_crash():
    x = _x()
    x[5, 2] = float("nan")
    df = nonlinearity_signature(InplaceNet(), x)
    assert len(df) == 2 and (df["status"] == "non_finite").all()
    assert df["affinity"].isna().all()


class DictTokenNet(nn.Module):
    """A Hugging Face-like model: keyword inputs, token tensors (B, T, D)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.embed, self.fc, self.head = nn.Embedding(20, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, input_ids, attention_mask):
        h = F.gelu(self.fc(self.embed(input_ids)))  # (B, T=5, D=6)
        h = (h * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return self.head(h)


def test_dict_forward_and_token_rules():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (300, 5), generator=g)
    batches = [{"input_ids": ids[i : i + 64], "attention_mask": torch.ones(len(ids[i : i + 64]), 5)}
               for i in range(0, 300, 64)]  # fmt: skip
    pooled = {"samples": "pooled", "n_samples": 200}
    mean = nonlinearity_signature(DictTokenNet(), batches, **pooled)
    ref = nonlinearity_signature(DictTokenNet(), batches, tokens="reference", **pooled)
    samples = nonlinearity_signature(DictTokenNet(), batches, tokens="samples", **pooled)
    assert mean["op"].tolist() == ["F.gelu"]
    assert (mean["n"].item(), mean["d"].item()) == (200, 6)  # mean over tokens: features = D
    assert (ref["n"].item(), ref["d"].item()) == (200, 5)  # the reference's rule: features = T
    assert (samples["n"].item(), samples["d"].item()) == (1000, 6)  # every position a row
    # the default estimator, positions as samples: all 300 inputs, all 5 real tokens of each
    positions = nonlinearity_signature(DictTokenNet(), batches, n_samples=1500)
    every = nonlinearity_signature(DictTokenNet(), batches, tokens="samples", samples="pooled", n_samples=300)
    assert (positions["n"].item(), positions["n_inputs"].item(), positions["d"].item()) == (1500, 300, 6)
    assert positions["affinity"].item() == pytest.approx(every["affinity"].item(), abs=1e-12)
    assert all((t["status"] == "ok").all() for t in (mean, ref, samples, positions))


class ChannelLast(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return F.gelu(self.conv(x).permute(0, 2, 3, 1))  # (B, H=6, W=6, C=4)


def test_channel_last_pools_over_space_not_channels():
    x = torch.randn(120, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    last = nonlinearity_signature(ChannelLast(), x, channel_axis=-1, samples="pooled")
    assert last["d"].item() == 4  # features = the 4 channels
    with torch.no_grad():
        pre = ChannelLast().conv(x).permute(0, 2, 3, 1)
    expected = affinity_score(pre.mean((1, 2)), F.gelu(pre).mean((1, 2))).score
    assert last["affinity"].item() == pytest.approx(expected, abs=1e-9)
    # by default the axis is read from the graph (a conv output, permuted): the same answer
    default = nonlinearity_signature(ChannelLast(), x, samples="pooled")
    assert default["d"].item() == 4 and default["affinity"].item() == last["affinity"].item()
    # forcing axis 1 on a channel-last map reproduces the reference's mistake: d = H
    assert nonlinearity_signature(ChannelLast(), x, channel_axis=1, samples="pooled")["d"].item() == 6
    # positions as samples (the default): every (image, pixel) a sample of the 4 channels, at most
    # ⌈2048 / 120⌉ = 18 of each image's 36 pixels, 2 160 drawn, 2 048 kept
    pos = nonlinearity_signature(ChannelLast(), x)
    assert (pos["d"].item(), pos["n"].item()) == (4, 2048)


def test_model_mode_and_weights_untouched_and_deterministic():
    model = InplaceNet().train()
    h = model_hash(model)
    a = nonlinearity_signature(model, _x(600), n_samples=300, seed=3, null_baseline=True)
    b = nonlinearity_signature(model, _x(600), n_samples=300, seed=3, null_baseline=True)
    assert model.training and all(m.training for m in model.modules())
    assert model_hash(model) == h
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["meta"]["model_hash"] == h and a.attrs["meta"]["seed"] == 3
    assert a.attrs["meta"]["n"] == 300 and (a["n"] == 300).all()
    c = nonlinearity_signature(model, _x(600), n_samples=300, seed=4)
    assert not np.allclose(a["affinity"], c["affinity"])  # another seed draws other samples


def test_rotated_copy_is_x_times_a_haar_rotation():
    rng = np.random.default_rng(0)
    # n >= d: literally x @ Q with the seeded d×d rotation
    x = rng.normal(size=(30, 7))
    np.testing.assert_array_equal(rotated_copy(x, 5), x @ random_rotation(7, 5))
    # n < d (the d×d rotation is never formed): inner products between samples are kept exactly
    x = rng.normal(size=(4, 50)) + 3.0
    y = rotated_copy(x, 1)
    assert y.shape == (4, 50)
    np.testing.assert_allclose(y @ y.T, x @ x.T, rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(rotated_copy(x, 1), y)  # seeded
    assert not np.allclose(rotated_copy(x, 2), y)


def test_rotated_copy_orientation_is_uniform_when_n_below_d():
    # x Q for Haar Q sends each sample to a uniform direction: for u = y_0/|y_0| on the sphere
    # S^{d-1}, E[u_1²] = 1/d and Var(u_1²) = 3/(d(d+2)) − 1/d². With d = 6 and 2000 draws the
    # mean's standard deviation is sqrt(0.0347/2000) = 0.0042; allow 5 of them.
    x = np.random.default_rng(0).normal(size=(3, 6))
    u1 = []
    for seed in range(2000):
        y0 = rotated_copy(x, seed)[0]
        u1.append(y0[0] ** 2 / (y0 @ y0))
    d = 6
    sd = np.sqrt((3 / (d * (d + 2)) - 1 / d**2) / 2000)
    assert abs(np.mean(u1) - 1 / d) < 5 * sd


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="tokens"):
        nonlinearity_signature(InplaceNet(), _x(), tokens="first")
    with pytest.raises(TypeError, match="nn.Module"):
        nonlinearity_signature(lambda x: x, _x())


# ---- the built-in families ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "vit"])
def test_builtin_families(trained, digits, arch):
    model = trained(arch)
    df = nonlinearity_signature(model, digits, n_samples=300, null_baseline=True)
    assert (df["status"] == "ok").all(), df[["site", "status", "error"]]
    assert df["affinity"].between(0, 1).all() and df["null_affinity"].between(0, 1).all()
    assert (df["n"] == 300).all()
    if arch == "mlp":
        assert df["site"].tolist() == [f"hidden.{i}.act" for i in range(len(model.hidden))]
    if arch == "resnet":  # the block's single relu module is called twice per forward
        blocks = [p for p, m in model.named_modules() if type(m).__name__ == "BasicBlock"]
        assert len(df) == 1 + 2 * len(blocks)
        assert f"{blocks[0]}.relu#0" in df["site"].tolist()
        assert f"{blocks[0]}.relu#1" in df["site"].tolist()
    if arch == "vit":
        assert (df["op"] == "GELU").sum() == len(model.blocks)
    # a trained ReLU/GELU network is measurably non-linear somewhere but never below chance
    assert df["affinity"].min() < 0.99


# ---- signature distances, clustering, plot --------------------------------------------------


def test_dtw_known_values_and_properties():
    assert dtw_distance([0, 1, 2], [0, 1, 2]) == 0.0
    assert dtw_distance([0, 1, 1, 1, 2], [0, 1, 2]) == 0.0  # a stretching costs nothing
    # squared local cost, square root of the accumulated cost: path (0,0),(1,1),(2,1)
    assert dtw_distance([0.0, 1.0, 3.0], [0.0, 2.0]) == pytest.approx(np.sqrt(0 + 1 + 1))
    rng = np.random.default_rng(0)
    a, b = rng.random(7), rng.random(7)
    assert dtw_distance(a, b) <= np.linalg.norm(a - b) + 1e-12  # the diagonal is one path
    assert dtw_distance(a, b) == pytest.approx(dtw_distance(b, a))
    c = rng.random(11)
    assert signature_distance(a, c) == dtw_distance(a, c)


def test_resampled_distance():
    a = [0.0, 1.0]
    b = [0.0, 0.5, 1.0]  # the same line sampled more finely
    assert signature_distance(a, b, method="resampled") == pytest.approx(0.0, abs=1e-12)
    assert resample([1.0, 3.0], 5).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert signature_distance([0, 0], [1, 1], method="resampled", length=4) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="method"):
        signature_distance(a, b, method="euclid")
    with pytest.raises(ValueError, match="non-finite"):
        signature_distance([0.1, np.nan], b)


def test_summary_matrix_and_clustering():
    s = signature_summary([0.2, 0.4, 0.6, 0.8])
    assert s["length"] == 4 and s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["min"] == 0.2 and s["max"] == 0.8 and s["std"] == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8]))
    sigs = {"relu_a": [0.5, 0.6, 0.7], "relu_b": [0.5, 0.55, 0.6, 0.7], "tanh_a": [0.9, 0.95],
            "tanh_b": [0.9, 0.9, 0.96]}  # fmt: skip
    names, d = distance_matrix(sigs)
    assert names == list(sigs) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    labels = cluster_signatures(d, names, n_clusters=2)["labels"]
    assert labels[0] == labels[1] != labels[2] == labels[3]
    cmp = compare_signatures(sigs, n_clusters=2)
    assert cmp.labels == labels and list(cmp.distances.index) == names
    assert cmp.summary["length"].tolist() == [3, 4, 2, 3]


def test_compare_and_plot_real_signatures(tmp_path):
    a = nonlinearity_signature(InplaceNet(), _x(), null_baseline=True)
    b = nonlinearity_signature(GLUNet(), _x())
    cmp = compare_signatures({"inplace": a, "glu": b}, method="resampled")
    assert cmp.summary.set_index("model").loc["glu", "dropped_sites"] == 1  # the GLU row, said
    fig = plot_signatures(a, tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 1000 and fig.axes
    fig2 = plot_signatures({"inplace": a, "glu": b}, tmp_path / "two.svg")
    assert (tmp_path / "two.svg").read_text().startswith("<?xml")
    assert len(fig2.axes[0].get_legend().get_texts()) == 2


# ---- CLI -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_signature_and_compare(trained, tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models.checkpoint import save_checkpoint

    ck_a = save_checkpoint(trained("mlp"), tmp_path / "mlp")
    ck_b = save_checkpoint(trained("cnn"), tmp_path / "cnn")
    runner = CliRunner()
    res = runner.invoke(app, ["signature", str(ck_a), "--data", "digits", "--out",
                              str(tmp_path / "sig.csv"), "--plot", str(tmp_path / "sig.png"),
                              "--n-samples", "200", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    sig = pd.read_csv(tmp_path / "sig.csv")
    assert (sig["status"] == "ok").all() and (sig["n"] == 200).all()
    meta = json.loads((tmp_path / "sig.csv.meta.json").read_text())
    assert meta["data"] == "digits" and meta["n"] == 200 and len(meta["model_hash"]) == 64
    assert (tmp_path / "sig.png").stat().st_size > 1000

    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", str(ck_a), str(ck_b), str(ck_a), "--data", "digits", "--lenses", "nonlinearity",
                              "--out", str(out), "--n-samples", "200", "--clusters", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    dist = pd.read_csv(out / "distances.csv", index_col="model")
    assert dist.shape == (3, 3) and dist.iloc[0, 2] == 0.0 and dist.iloc[0, 1] > 0
    clus = pd.read_csv(out / "clustering.csv")
    assert clus["cluster"].iloc[0] == clus["cluster"].iloc[2]
    for f in ("signatures.csv", "summary.csv", "signatures.png", "meta.json"):
        assert (out / f).exists()

    # the signatures-only command writes the same comparison files
    out2 = tmp_path / "cmp2"
    res = runner.invoke(app, ["compare-signatures", str(ck_a), str(ck_b), str(ck_a), "--data", "digits",
                              "--out", str(out2), "--n-samples", "200", "--clusters", "2", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    dist2 = pd.read_csv(out2 / "distances.csv", index_col="model")
    assert dist2.shape == (3, 3) and dist2.iloc[0, 2] == 0.0 and dist2.iloc[0, 1] > 0
    assert pd.read_csv(out2 / "clustering.csv")["cluster"].nunique() == 2
    for f in ("signatures.csv", "summary.csv", "signatures.png", "meta.json"):
        assert (out2 / f).exists()
    one2 = runner.invoke(app, ["compare-signatures", str(ck_a), "--out", str(out2)])
    assert one2.exit_code == 1 and "at least two" in one2.output

    missing = runner.invoke(app, ["signature", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")])
    assert missing.exit_code == 1 and "nope" in missing.output
    one = runner.invoke(app, ["compare", str(ck_a), "--out", str(out)])
    assert one.exit_code == 1 and "at least two" in one.output


def test_fused_recurrent_gates_are_said_not_observed():
    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 8, batch_first=True)
            self.act = nn.Tanh()
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.act(self.rnn(x)[0][:, -1]))

    df = nonlinearity_signature(Recurrent(), torch.randn(64, 5, 4), n_samples=None)
    assert list(df["site"]) == ["act"]
    (line,) = df.attrs["summary"]["not_observed"]
    assert line.startswith("rnn (LSTM): not observed") and "fused recurrent kernel" in line
