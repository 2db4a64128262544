"""The positions estimator of the signature (SPEC §1.2): positions as samples, padding never a
sample, the same draw whatever the padded length, the null baseline at the same n and d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netxray.capture.reducers import PositionDraw, PositionStore
from netxray.lenses.nonlinearity import nonlinearity_signature, rotated_copy
from netxray.measures.affinity import affinity_score


class ConvReLU(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


def test_positions_at_a_conv_site_equal_the_explicit_matrices():
    x = torch.randn(50, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    # 50 images × 16 pixels = 800 positions: n_samples = 800 takes every one of them
    df = nonlinearity_signature(ConvReLU(), x, n_samples=800, null_baseline=True)
    with torch.no_grad():
        pre = ConvReLU().conv(x)
    xs = pre.permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()  # (B·H·W, C)
    ys = np.maximum(xs, 0)
    assert (df["n"].item(), df["d"].item(), df["n_inputs"].item()) == (800, 5, 50)
    assert df["affinity"].item() == pytest.approx(affinity_score(xs, ys).score, abs=1e-9)
    # the null baseline: the same site's input, rotated — the same n and d
    null = affinity_score(xs, rotated_copy(xs, 0 * 100_003 + 0)).score
    assert df["null_affinity"].item() == pytest.approx(null, abs=1e-9)
    assert df["estimator"].item() == "positions"
    assert df.attrs["meta"]["estimator"] == "positions as samples"
    # the pooled estimator is the paper's pipeline: 50 rows, under-determined neither here
    pooled = nonlinearity_signature(ConvReLU(), x, samples="pooled")
    expect = affinity_score(pre.mean((2, 3)).double().numpy(), F.relu(pre).mean((2, 3)).double().numpy())
    assert pooled["n"].item() == 50 and pooled["affinity"].item() == pytest.approx(expect.score, abs=1e-9)


def test_position_draw_pairs_input_with_output_and_levels_the_inputs():
    draw = PositionDraw(keep=3, seed=7)
    draw.set_batch(np.array([10, 11, 12]), None)
    x = torch.arange(3 * 2 * 4 * 4, dtype=torch.float32).reshape(3, 2, 4, 4)
    rows, ranks, keys, owners = draw.rows(x, channel_axis=1)
    assert rows.shape == (9, 2) and owners.tolist() == [10] * 3 + [11] * 3 + [12] * 3
    again, _, _, _ = draw.rows(x * 2 + 1, channel_axis=1)  # the output side of the same call
    assert torch.equal(again, rows * 2 + 1)  # the same positions on both sides
    assert ((rows[:, 0] // 32).long() == torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])).all()
    other = PositionDraw(keep=3, seed=8)
    other.set_batch(np.array([10, 11, 12]), None)
    assert not torch.equal(other.rows(x, channel_axis=1)[0], rows)  # another seed, other positions
    # the store keeps R rows by rank level: 7 of 9 → every input's 2 best, and one third choice;
    # the same rows whether the inputs come in one batch or one at a time
    store = PositionStore(draw, channel_axis=1, seq_layout="tokens", max_rows=7)
    store.update(x)
    kept = store.compute()
    streamed = PositionStore(draw, channel_axis=1, seq_layout="tokens", max_rows=7)
    for i in range(3):
        draw.set_batch(np.array([10 + i]), None)
        streamed.update(x[i : i + 1])
    assert torch.equal(streamed.compute(), kept)
    counts = np.bincount((kept[:, 0] // 32).long().numpy(), minlength=3)
    assert kept.shape == (7, 2) and sorted(counts.tolist()) == [2, 2, 3] and store.per_input == 3
    # an input with fewer positions gives all it has; the others fill the rest
    short = PositionDraw(keep=64, seed=0)
    short.set_batch(np.array([0, 1]), torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]))
    tokens = torch.randn(2, 6, 3)
    store = PositionStore(short, channel_axis=-1, seq_layout="tokens", max_rows=5)
    store.update(tokens)
    kept = store.compute()
    assert kept.shape == (5, 3)
    assert all(any(torch.equal(r, t) for t in tokens[0, :2]) or any(torch.equal(r, t) for t in tokens[1])
               for r in kept)  # fmt: skip  (never a padded token of input 0)
    assert sum(any(torch.equal(r, t) for r in kept) for t in tokens[0, :2]) == 2


class TokenGELU(nn.Module):
    """Per-token computation (no attention): real tokens' values do not depend on padding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.embed, self.fc, self.head = nn.Embedding(30, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        h = F.gelu(self.fc(self.embed(input_ids)))
        h = (h * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return self.head(h)


def _padded(lengths: list[int], total: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), total, dtype=torch.long)
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, 30, (n,), generator=g)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_padding_is_never_a_sample_and_changes_nothing():
    lengths = [int(v) for v in np.random.default_rng(0).integers(3, 20, size=150)]
    short, long = _padded(lengths, 24), _padded(lengths, 64)
    assert torch.equal(short["input_ids"], long["input_ids"][:, :24])
    labels = torch.arange(150) % 2
    a = nonlinearity_signature(TokenGELU(), ({**short}, labels), n_samples=1024)
    b = nonlinearity_signature(TokenGELU(), ({**long}, labels), n_samples=1024)
    assert a["n"].item() == b["n"].item() == 1024
    assert a["affinity"].item() == b["affinity"].item()  # identical draws of identical values
    # every real token is a candidate and no pad token is: with room for all, n = Σ lengths
    every = nonlinearity_signature(TokenGELU(), ({**long}, labels), n_samples=sum(lengths))
    assert every["n"].item() == sum(lengths)


def test_hf_bert_signature_ignores_padding():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    lengths = [int(v) for v in np.random.default_rng(1).integers(4, 20, size=80)]
    labels = torch.arange(80) % 2
    a = nonlinearity_signature(model, (_padded(lengths, 24), labels), n_samples=600)
    b = nonlinearity_signature(model, (_padded(lengths, 64), labels), n_samples=600)
    assert (a["status"] == "ok").all()
    tokens = ~a["input_shape"].str.endswith(",)")  # (T, D) sites; the pooler's tanh sees (D,)
    assert (a.loc[tokens, "n"] == 600).all() and (a.loc[~tokens, "n"] == 80).all()
    # masked attention gives the real tokens the same values up to float32 rounding
    assert np.max(np.abs(a["affinity"].to_numpy() - b["affinity"].to_numpy())) < 1e-5
    # the pooled estimator averages the real tokens only: padding-invariant too
    pa, pb = (nonlinearity_signature(model, (_padded(lengths, t), labels), samples="pooled") for t in (24, 64))
    assert np.max(np.abs(pa["affinity"].to_numpy() - pb["affinity"].to_numpy())) < 1e-5


def test_modularity_ignores_padding():
    from netxray.lenses.modularity import modularity_curve

    class TokenStack(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.embed = nn.Embedding(30, 8)
            self.block = nn.Sequential(nn.Linear(8, 8), nn.GELU())
            self.head = nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask):
            h = self.block(self.embed(input_ids))
            return self.head((h * attention_mask[..., None]).sum(1))

    lengths = [int(v) for v in np.random.default_rng(2).integers(3, 20, size=120)]
    labels = torch.tensor([int(n > 10) for n in lengths])
    curves = [modularity_curve(TokenStack(), (_padded(lengths, t), labels), layers=["block"], n=100, repeats=2)
              for t in (24, 64)]  # fmt: skip
    assert (curves[0]["status"] == "ok").all()
    assert curves[0]["q_mean"].tolist() == pytest.approx(curves[1]["q_mean"].tolist(), abs=1e-9)


def test_the_draw_does_not_depend_on_the_batching():
    x = torch.randn(50, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    a = nonlinearity_signature(ConvReLU(), x, n_samples=300, batch_size=7)
    b = nonlinearity_signature(ConvReLU(), x, n_samples=300, batch_size=256)
    assert a["n"].item() == 300 and a["per_input_max"].item() == 6  # ⌈300 / 50⌉ each
    # the same rows; the conv itself rounds differently at another batch size (float32)
    assert a["affinity"].item() == pytest.approx(b["affinity"].item(), abs=1e-8)


def test_the_rows_a_capture_keeps_are_estimated_before_they_fill_memory(monkeypatch):
    from netxray.measures import cost

    wide = nn.Sequential(nn.Conv2d(3, 512, 1), nn.ReLU())  # 512 channels, 256 positions an image
    x = torch.randn(16, 3, 16, 16)
    # 2 sides × min(10^6, 16 · 256) rows × 512 × 4 B ≈ 16.8 MB: refused on a 10 MB machine
    monkeypatch.setattr(cost, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(cost.CostError, match="n-samples"):
        nonlinearity_signature(wide, x, n_samples=10**6, companions=False)


class TokenSiLU(nn.Module):
    """A token model (B, T, D) with a SiLU between two projections, as in a Llama MLP."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.up, self.down = nn.Linear(6, 24), nn.Linear(24, 6)

    def forward(self, x):
        return self.down(F.silu(self.up(x)))


def test_position_store_keeps_bf16_rows_and_scores_equal_float32_storage(monkeypatch):
    from netxray.capture import collect

    model = TokenSiLU().to(torch.bfloat16)
    x = torch.randn(40, 5, 6, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    cap = collect(model, x, activations=True, n_samples=150, reducer="positions", batch_size=16)
    (rec,) = cap.activation_sites().values()
    assert rec.inputs.dtype == rec.outputs.dtype == torch.bfloat16 and tuple(rec.outputs.shape) == (150, 24)
    df = nonlinearity_signature(model, x, n_samples=150, batch_size=16)
    assert df["status"].item() == "ok"
    # the rows as the store kept them before (float32): bf16 → float32 is exact, the same scores
    rows = PositionDraw.rows
    monkeypatch.setattr(PositionDraw, "rows", lambda self, *a, **k: (lambda r: (r[0].float(), *r[1:]))(rows(self, *a, **k)))
    cap32 = collect(model, x, activations=True, n_samples=150, reducer="positions", batch_size=16)
    (rec32,) = cap32.activation_sites().values()
    assert rec32.inputs.dtype == torch.float32 and torch.equal(rec32.inputs, rec.inputs.float())
    df32 = nonlinearity_signature(model, x, n_samples=150, batch_size=16)
    num = df.select_dtypes("number").columns
    np.testing.assert_array_equal(df[num].to_numpy(), df32[num].to_numpy())


def test_position_store_trims_chunk_by_chunk_like_one_join():
    draw = PositionDraw(keep=4, seed=5)
    x = torch.randn(12, 9, 3, generator=torch.Generator().manual_seed(0))
    whole = PositionStore(draw, channel_axis=-1, seq_layout="tokens", max_rows=17)
    draw.set_batch(np.arange(12), None)
    whole.update(x)
    parts = PositionStore(draw, channel_axis=-1, seq_layout="tokens", max_rows=17)
    for i in range(0, 12, 5):
        draw.set_batch(np.arange(i, min(i + 5, 12)), None)
        parts.update(x[i:i + 5])
    assert torch.equal(whole.compute(), parts.compute()) and len(parts.compute()) == 17
