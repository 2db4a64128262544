"""Symmetry claims hold for every parameter value (issue 21).

An axis is a claim about *every* value of the parameters. A permutation test on a freshly built
model cannot support it when some tensor starts at zero or at a constant: timm BEiT's head axes
used to omit ``q_bias``/``v_bias`` (zero at init), passed on the fresh model and changed a
trained model's outputs. Here, models with zero-initialised tensors that break a naive axis
check that every reported axis is complete (it holds on a copy whose tensors are *all* random,
checked independently of the lens) or rejected; the lens's verification itself runs on random
values of every tensor.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from _toy_models import TopOneMoE
from netxray.lenses import _symmetry_find
from netxray.lenses import symmetry as sym
from test_symmetry_grouped import _outputs_moved, _random_element, _rel, _unzeroed

timm = pytest.importorskip("timm")


class _BeitLikeAttention(nn.Module):
    """BEiT's attention layout, hand-written: a bias-free qkv Linear whose query and value biases
    are separate zero-initialised parameters (the key bias is a zero constant)."""

    def __init__(self, dim: int = 12, num_heads: int = 3) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, self.k_bias, self.v_bias)))
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1) / (c // self.num_heads) ** 0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class _BeitLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 12)
        self.attn = _BeitLikeAttention()
        self.head = nn.Linear(12, 2)
        nn.init.zeros_(self.head.weight)  # a zero head as well, as timm does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(h + self.attn(h)).mean(1)


TOKENS = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))


def _beit_tiny() -> nn.Module:
    return timm.create_model("beit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=32, depth=2, num_heads=4, num_classes=3)


def _eva02_tiny() -> nn.Module:
    return timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=28, depth=2, num_classes=3)


def _once(m64: nn.Module, members: list) -> list:
    """Members that name the same tensor (tied weights: an LM head that is the embedding) under
    two keys in the same layout move it once."""
    sd = m64.state_dict(keep_vars=True)
    seen, out = set(), []
    for m in members:
        k = (id(sd[m.key]), m.dim, m.offset, m.block, m.segments, m.groups)
        if k not in seen:
            seen.add(k)
            out.append(m)
    return out


def _check_independently(model: nn.Module, data, table, first: int | None = None) -> None:
    """Every reported axis, moved with plain torch indexing on a copy whose tensors are all
    random: the outputs stay (1e-10 relative, or the lens's float32 tolerance where the model
    computes in float32); the writers alone move them."""
    an = sym._analyse(model, data)
    axes = {a.name: a for a in an.axes}
    probe = sym._probe_inputs(model, data, n=8)  # 8 rows: a ReLU unit dead on all of them is unlikely
    m64 = _unzeroed(model)
    y0 = sym._run(m64, probe)
    tol = table.attrs["summary"]["verify_rtol"] or 1e-10
    gen = torch.Generator().manual_seed(1)
    for axis in list(table["axis"])[:first]:
        ax = axes[axis]
        perm = _random_element(ax, gen)
        assert _rel(y0, _outputs_moved(m64, probe, _once(m64, ax.writers + ax.readers), ax.size, perm)) <= tol, axis
        if ax.readers:  # (a tied encoder's rows are written and read: writers only)
            cycle = torch.roll(torch.arange(ax.size), 1)  # every unit moves (random ReLUs may be dead)
            assert _rel(y0, _outputs_moved(m64, probe, _once(m64, ax.writers), ax.size, cycle)) > 100 * tol, axis


def test_handwritten_beit_heads_include_the_zero_initialised_biases():
    torch.manual_seed(0)
    m = _BeitLike().eval()
    g = sym.symmetry_group(m, TOKENS)
    heads = g[g.kind == "attention head"]
    assert heads["size"].tolist() == [3] and bool(heads["verified"].all())
    tens = heads.iloc[0]["tensors"]
    assert "attn.q_bias[dim 0, blocks of 4]" in tens and "attn.v_bias[dim 0, blocks of 4]" in tens
    assert g.attrs["summary"]["status"] == "ok"
    _check_independently(m, TOKENS, g)
    # the user's model is untouched: its zero biases and zero head stay zero, eval mode stays
    assert not bool(m.attn.q_bias.any()) and not bool(m.head.weight.any()) and not m.training


def test_the_naive_head_axis_holds_only_while_the_biases_are_zero():
    # the axis without q_bias/v_bias: a symmetry of the fresh model (the biases are zero), not
    # of the architecture — with random biases the same permutation moves the outputs
    torch.manual_seed(0)
    m = _BeitLike().eval()
    ax = next(a for a in sym._analyse(m, TOKENS).axes if a.kind == "attention head")
    naive = [w for w in ax.writers if "bias" not in w.key]
    assert len(naive) < len(ax.writers)
    probe = sym._probe_inputs(m, TOKENS)
    perm = torch.tensor([2, 0, 1])
    fresh = copy.deepcopy(m).double()
    with torch.no_grad():
        fresh.head.weight.normal_()  # non-zero outputs, the biases still zero
    y0 = sym._run(fresh, probe)
    assert _rel(y0, _outputs_moved(fresh, probe, naive + ax.readers, 3, perm)) <= 1e-10
    rnd = _unzeroed(m)
    y0 = sym._run(rnd, probe)
    assert _rel(y0, _outputs_moved(rnd, probe, naive + ax.readers, 3, perm)) > 1e-6
    assert _rel(y0, _outputs_moved(rnd, probe, ax.writers + ax.readers, 3, perm)) <= 1e-10


def test_an_axis_that_rests_on_a_zero_bias_is_rejected(monkeypatch):
    # an MLP whose hidden biases are zero; its axis is claimed without them (as a finder that
    # forgot them would): it passes a test on the model's own values and must still be rejected
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        m[0].bias.zero_()
    x = torch.randn(8, 4)
    real = sym._generic_axes

    def forgetful(model, graph, keys):
        axes, *rest = real(model, graph, keys)
        for a in axes:
            a.writers = [w for w in a.writers if not w.key.endswith("bias")]
            a.scale = [w for w in a.scale if not w.key.endswith("bias")]
            a.bias, a.fold = None, None
        return (axes, *rest)

    # _analyse looks _generic_axes up in the module that defines both
    monkeypatch.setattr(_symmetry_find, "_generic_axes", forgetful)
    (ax,) = sym._analyse(m, x).axes
    own = sym._Verifier(sym._eval64(m), sym._probe_inputs(m, x)).check([ax])
    assert own[0], "on the model's own (zero) biases the incomplete axis passes"
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert len(g) == 0 and [r["axis"] for r in s["rejected"]] == ["0->2"]
    assert "changed the outputs" in s["rejected"][0]["reason"] and s["status"].startswith("failed")
    assert not bool(m[0].bias.any())


@pytest.mark.parametrize("make", [_beit_tiny, _eva02_tiny], ids=["beit", "eva02"])
def test_timm_beit_and_eva02_heads_are_complete_and_hold_on_random_weights(make):
    torch.manual_seed(0)
    m = make().eval()
    g = sym.symmetry_group(m)
    s = g.attrs["summary"]
    heads = g[g.kind == "attention head"]
    assert len(heads) == 2 and bool(g["verified"].all()) and s["status"] == "ok", s
    assert all("attn.q_bias" in t and "attn.v_bias" in t for t in heads["tensors"])
    assert "random values" in s["statement"]
    _check_independently(m, None, g)


def test_verification_leaves_the_copy_with_the_models_values():
    # the identical-units count reads the copy after verification: it must hold the model's own
    # values again (two identical hidden units stay identical)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    with torch.no_grad():
        m[0].weight[1] = m[0].weight[0]
        m[0].bias[1] = m[0].bias[0]
        m[2].weight[:, 1] = m[2].weight[:, 0]
    g = sym.symmetry_group(m, torch.randn(8, 4, dtype=torch.float64))
    assert g["identical_units"].tolist() == [1] and bool(g["verified"].all())


# ------------------------------------------------------------------ shared modules, tied weights


class _SharedLinear(nn.Module):
    """One Linear(16, 16) used twice with a ReLU between: its rows and columns act on one space."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 16)
        self.fc = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = torch.relu(self.fc(h))
        return self.out(torch.relu(self.fc(h)))


class _TiedAutoencoder(nn.Module):
    """The decoder's weight is the encoder's, transposed (one shared Parameter)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 5)
        self.dec_bias = nn.Parameter(torch.zeros(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.enc(x)), self.enc.weight.t(), self.dec_bias)


def test_a_linear_used_twice_gets_one_joint_axis():
    torch.manual_seed(0)
    m = _SharedLinear().eval()
    x = torch.randn(6, 4)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    # W → PWPᵀ with the input layer's rows and the output layer's columns: 16! — one axis
    assert len(g) == 1 and bool(g["verified"].all()) and s["status"] == "ok", s
    assert g["log10_order"].iloc[0] == pytest.approx(13.320620, abs=1e-6)
    tens = g["tensors"].iloc[0]
    assert "fc.weight[dim 0]" in tens and "fc.weight[dim 1]" in tens and "out.weight[dim 1]" in tens
    _check_independently(m, x, g)


def test_a_tied_autoencoder_permutes_the_shared_rows_once():
    torch.manual_seed(0)
    m = _TiedAutoencoder().eval()
    x = torch.randn(6, 8)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert g["size"].tolist() == [5] and bool(g["verified"].all()) and s["status"] == "ok", s
    assert g["log10_order"].iloc[0] == pytest.approx(2.079181, abs=1e-6)  # log10 5! = log10 120
    assert g["tensors"].iloc[0].count("enc.weight[dim 0]") == 1
    _check_independently(m, x, g)


# ------------------------------------------------------------------ the data contract, dtypes


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(3, 6)
        self.h = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h(torch.relu(self.a(x) + self.b(y)))


def test_a_model_with_two_positional_inputs():
    from netxray import scan

    torch.manual_seed(0)
    m = _TwoInputs().eval()
    x, y = torch.randn(6, 4), torch.randn(6, 3)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    for data in ((x, y), ((x, y), labels)):
        g = sym.symmetry_group(m, data)
        s = g.attrs["summary"]
        assert g["size"].tolist() == [6] and bool(g["verified"].all()) and s["status"] == "ok", s
        assert s["probe"] == "data (2 positional inputs)"
    rep = scan(m, ((x, y), labels), ("symmetry",), progress=False)
    assert rep.results["symmetry"].status == "ok"


def test_a_list_of_dict_batches_is_accepted():
    class KW(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))

        def forward(self, pixel: torch.Tensor) -> torch.Tensor:
            return self.net(pixel)

    torch.manual_seed(0)
    batches = [{"pixel": torch.randn(3, 4), "labels": torch.tensor([0, 1, 0])} for _ in range(2)]
    g = sym.symmetry_group(KW().eval(), batches)
    assert g["size"].tolist() == [6] and g.attrs["summary"]["status"] == "ok"
    bad = sym.symmetry_group(KW().eval(), [object()]).attrs["summary"]
    assert bad["status"].startswith("failed") and "data: a batch must be" in bad["status"]


def test_a_model_that_runs_only_in_float32_is_verified_in_float32():
    class Float32Only(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.net[0].weight.dtype == torch.float64:  # as Mixtral's grouped expert matmul
                raise RuntimeError("Expected a Float32, BFloat16 or Float16 matrix, got Double")
            return self.net(x)

    torch.manual_seed(0)
    m = Float32Only().eval()
    g = sym.symmetry_group(m, torch.randn(5, 4))
    s = g.attrs["summary"]
    assert g["size"].tolist() == [6] and bool(g["verified"].all()) and s["status"] == "ok", s
    assert s["verify_rtol"] == 1e-5 and "verified on a float32 copy" in s["statement"]
    assert m.net[0].weight.dtype == torch.float32


def test_timm_nf_resnet_standardised_weights_are_followed_with_their_gains():
    # ScaledStdConv2d: weight = batch_norm(W.reshape(1, C_out, -1), weight=gain·scale) reshaped
    # back; the axis finder used to crash here (IndexError). Each output channel's gain moves
    # with its rows; the input channels are read through the standardised weight's columns
    torch.manual_seed(0)
    m = timm.create_model("nf_resnet26", pretrained=False, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert len(g) > 10 and bool(g["verified"].all()) and s["status"] == "ok", s
    stem = g[g.axis == "stem.conv"].iloc[0]
    assert stem["size"] == 64 and "stem.conv.gain[dim 0]" in stem["tensors"]
    _check_independently(m, x, g, first=6)  # the stem, the first stage's stream and channels


# ------------------------------------------------------------------ attention heads, more layouts


def _hf(name: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    T = transformers
    if name == "gpt_neox":
        return T.GPTNeoXForCausalLM(T.GPTNeoXConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=4, intermediate_size=32,
                                                    max_position_embeddings=16))
    if name == "phi3":
        return T.Phi3ForCausalLM(T.Phi3Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                              num_key_value_heads=2, intermediate_size=32,
                                              max_position_embeddings=16, pad_token_id=0, eos_token_id=1,
                                              bos_token_id=1))
    if name == "bloom":
        return T.BloomForCausalLM(T.BloomConfig(vocab_size=64, hidden_size=16, n_layer=1, n_head=4))
    if name == "opt":
        return T.OPTForCausalLM(T.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                            ffn_dim=32, max_position_embeddings=16, word_embed_proj_dim=16))
    return T.CLIPVisionModel(T.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=4, image_size=16, patch_size=8))


@pytest.mark.parametrize(("name", "sizes", "member"), [
    ("gpt_neox", [4], "query_key_value.weight[dim 0, blocks of 12]"),  # per head: its q, k, v rows
    ("phi3", [2, 2, 2], "qkv_proj.weight[dim 0, blocks of 4, from 16]"),  # 2 kv groups × 2 query heads
    ("opt", [4], "out_proj.weight[dim 1, blocks of 4]"),
    ("clip", [4], "out_proj.weight[dim 1, blocks of 4]"),
])
def test_fused_and_separate_qkv_heads_hold_on_random_weights(name, sizes, member):
    torch.manual_seed(0)
    m = _hf(name).eval()
    g = sym.symmetry_group(m)
    s = g.attrs["summary"]
    heads = g[g.kind.isin(["attention head", "key/value head group"])]
    assert sorted(heads["size"]) == sizes and bool(g["verified"].all()) and s["status"] == "ok", s
    assert any(member in t for t in heads["tensors"])
    _check_independently(m, None, g)


def test_bloom_heads_are_rejected_because_alibi_fixes_each_heads_slope(monkeypatch):
    # Bloom's ALiBi adds slope_h · distance to head h's scores, slopes fixed by head position:
    # permuting heads is no symmetry, and the claim is rejected. With one slope for every head
    # the same layout holds, so the rejection is ALiBi's, not a wrong layout
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    torch.manual_seed(0)
    m = _hf("bloom").eval()
    s = sym.symmetry_group(m).attrs["summary"]
    assert [r["axis"] for r in s["rejected"]] == ["transformer.h.0.self_attention.heads"]
    slopes = bloom._get_alibi_slopes
    monkeypatch.setattr(bloom, "_get_alibi_slopes", lambda n, d: torch.full_like(slopes(n, d), 0.3))
    g = sym.symmetry_group(m)
    assert "attention head" in set(g["kind"]) and g.attrs["summary"]["status"] == "ok"


def test_albert_shared_layers_tied_decoder_and_heads():
    # ALBERT: one layer's parameters used by every layer (2 here) — one FFN axis and one head
    # axis for the shared layer, not one per use; its MLM decoder is tied to the embeddings
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.AlbertConfig(vocab_size=64, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=32, max_position_embeddings=16)
    m = transformers.AlbertForMaskedLM(cfg).eval()
    g = sym.symmetry_group(m)
    s = g.attrs["summary"]
    assert s["status"] == "ok" and bool(g["verified"].all()), s
    assert sorted(g["kind"]) == ["FFN hidden unit", "attention head", "residual stream", "residual stream"]
    assert g[g.kind == "FFN hidden unit"]["size"].tolist() == [32]
    heads = g[g.kind == "attention head"].iloc[0]
    assert heads["size"] == 4 and "attention.dense.weight[dim 1, blocks of 4]" in heads["tensors"]
    emb = g[g.axis == "stream@albert.embeddings.word_embeddings"].iloc[0]
    assert "predictions.dense.weight[dim 0]" in emb["tensors"] and "predictions.decoder.weight[dim 1]" in emb["tensors"]
    _check_independently(m, None, g)


# ------------------------------------------------------------------ recurrent layers


class _Recurrent(nn.Module):
    def __init__(self, cls: type, layers: int, final_state: bool) -> None:
        super().__init__()
        self.rnn = cls(4, 8, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
        self.final_state = final_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(x)
        if self.final_state:
            h = state[0] if isinstance(state, tuple) else state
            return self.head(h[-1])
        return self.head(out[:, -1])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize(("layers", "final_state"), [(1, False), (1, True), (2, False)])
def test_recurrent_hidden_units_permute_with_every_gate(cls, layers, final_state):
    torch.manual_seed(0)
    m = _Recurrent(cls, layers, final_state).eval()
    x = torch.randn(8, 5, 4)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    # each layer's 8 hidden units (all gates' rows, the recurrence's columns) and the head's 6
    assert sorted(g["size"]) == [6] + [8] * layers and s["status"] == "ok", s
    assert s["log10_order"] == pytest.approx((layers * math.lgamma(9) + math.lgamma(7)) / math.log(10))
    gates = 4 if cls is nn.LSTM else 3
    assert f"rnn.weight_hh_l0[dim 0, {gates} segments]" in g["tensors"].iloc[0]
    _check_independently(m, x, g)


def test_a_two_layer_final_state_is_not_claimed():
    # the final states of two layers share one tensor dimension: the last layer's units there
    # are not followed, and the claim without them is rejected rather than reported
    torch.manual_seed(0)
    m = _Recurrent(nn.LSTM, 2, True).eval()
    s = sym.symmetry_group(m, torch.randn(4, 5, 4)).attrs["summary"]
    assert s["status"].startswith("partial") and [r["axis"] for r in s["rejected"]] == ["rnn#2"]


def test_t5_heads_of_every_layer_move_with_the_shared_position_bias():
    # T5: the first self-attention of each stack owns relative_attention_bias (buckets × H); its
    # per-head bias is added in every layer, so the heads of all layers are one axis with it —
    # per-layer head axes are no symmetry (each fails alone on random weights)
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
                                num_heads=4, relative_attention_num_buckets=8)
    m = transformers.T5ForConditionalGeneration(cfg).eval()
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    data = {"input_ids": ids, "decoder_input_ids": ids}
    g = sym.symmetry_group(m, data)
    s = g.attrs["summary"]
    assert s["status"] == "ok" and bool(g["verified"].all()), s
    heads = g[g.kind == "attention head"].set_index("axis")
    # one joint axis per stack's self-attention, one per layer for the cross-attention
    assert sorted(heads.index) == ["decoder.block.*.layer.0.SelfAttention.heads",
                                   "decoder.block.0.layer.1.EncDecAttention.heads",
                                   "decoder.block.1.layer.1.EncDecAttention.heads",
                                   "encoder.block.*.layer.0.SelfAttention.heads"]
    enc = heads.loc["encoder.block.*.layer.0.SelfAttention.heads", "tensors"]
    assert "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight[dim 1]" in enc
    assert "encoder.block.1.layer.0.SelfAttention.q.weight[dim 0, blocks of 4]" in enc
    assert s["log10_order"] == pytest.approx((4 * math.lgamma(5) + 4 * math.lgamma(33)) / math.log(10))
    _check_independently(m, data, g)


@pytest.mark.parametrize("share_att_key", [True, False])
def test_deberta_v2_heads_with_their_position_projections(share_att_key):
    # DeBERTa-v2's disentangled attention: query_proj/key_proj/value_proj, and the relative
    # position embeddings through the same projections or through pos_key_proj/pos_query_proj
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.DebertaV2Config(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=32, max_position_embeddings=16, relative_attention=True,
                                       position_buckets=8, pos_att_type=["p2c", "c2p"], share_att_key=share_att_key)
    m = transformers.DebertaV2Model(cfg).eval()
    g = sym.symmetry_group(m)
    heads = g[g.kind == "attention head"]
    assert heads["size"].tolist() == [4, 4] and bool(g["verified"].all())
    assert all("attention.output.dense.weight[dim 1, blocks of 4]" in t for t in heads["tensors"])
    assert all(("pos_key_proj.weight" in t) != share_att_key for t in heads["tensors"])
    _check_independently(m, None, g)


# ------------------------------------------------------------------ mixture of experts


def _mixtral(experts: int = 3, top_k: int = 2) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                     num_attention_heads=4, num_key_value_heads=2, num_local_experts=experts,
                                     num_experts_per_tok=top_k, max_position_embeddings=16)
    return transformers.MixtralForCausalLM(cfg)


def test_mixtral_experts_permute_with_the_router_and_their_hidden_units_inside_each():
    torch.manual_seed(0)
    m = _mixtral().eval()
    g = sym.symmetry_group(m)  # Mixtral's expert path runs in float32 only: verified at 1e-5
    s = g.attrs["summary"]
    assert s["verify_rtol"] == 1e-5 and bool(g["verified"].all()), s
    ex = g.set_index("axis")
    assert ex.loc["model.layers.0.mlp.experts", "size"] == 3
    assert ex.loc["model.layers.0.mlp.experts", "log10_order"] == pytest.approx(math.log10(6))
    hid = ex.loc["model.layers.0.mlp.experts.hidden"]
    assert hid["size"] == 72 and hid["groups"] == 3  # 24 units in each of 3 experts: (24!)^3
    assert hid["log10_order"] == pytest.approx(3 * math.lgamma(25) / math.log(10))
    # independently, on all-random float32 weights: experts with the router's rows, and one
    # expert's hidden units (its gate rows, up rows, down columns) — and not the gate rows alone
    r = _unzeroed(m).float()
    probe = sym._probe_inputs(m, None, m64=r)
    y0 = sym._run(r, probe)
    moe = r.model.layers[0].mlp
    with torch.no_grad():
        perm = torch.tensor([2, 0, 1])
        for t in (moe.gate.weight, moe.experts.gate_up_proj, moe.experts.down_proj):
            t.copy_(t[perm].clone())
        assert _rel(y0, sym._run(r, probe)) <= 1e-5
        for t in (moe.gate.weight, moe.experts.gate_up_proj, moe.experts.down_proj):
            t.copy_(t[torch.argsort(perm)].clone())
        p = torch.randperm(24, generator=torch.Generator().manual_seed(0))
        gu, dn = moe.experts.gate_up_proj, moe.experts.down_proj
        gu[1, :24] = gu[1, :24][p].clone()
        assert _rel(y0, sym._run(r, probe)) > 1e-3  # the gate rows alone: no symmetry
        gu[1, 24:] = gu[1, 24:][p].clone()
        dn[1] = dn[1][:, p].clone()
        assert _rel(y0, sym._run(r, probe)) <= 1e-5


def test_experts_no_probe_token_reaches_are_not_claimed():
    # 8 experts, top-1 routing, one sequence of 2 tokens: most experts get no token, so their
    # hidden units would pass any test; that axis is rejected with the reason, never counted
    torch.manual_seed(0)
    m = _mixtral(experts=8, top_k=1).eval()
    ids = torch.tensor([[3, 5]])
    g = sym.symmetry_group(m, {"input_ids": ids})
    rej = {r["axis"]: r["reason"] for r in g.attrs["summary"]["rejected"]}
    assert "model.layers.0.mlp.experts.hidden" in rej and "reach no token" in rej["model.layers.0.mlp.experts.hidden"]
    assert "model.layers.0.mlp.experts.hidden" not in set(g["axis"])


def test_pvt_v2_heads_of_q_and_kv_over_reduced_tokens():
    # PVT-v2: queries from q, keys and values from kv (all keys, then all values) over spatially
    # reduced tokens; stage 1 has one head (nothing to permute, and nothing left unanalysed)
    torch.manual_seed(0)
    m = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert s["status"] == "ok" and bool(g["verified"].all()), s
    heads = g[g.kind == "attention head"]
    assert sorted(heads["size"]) == [2, 2, 5, 5, 8, 8]
    assert all("attn.kv.weight[dim 0, blocks of 32, 2 segments]" in t for t in heads["tensors"])
    _check_independently(m, x, g, first=8)


class _Branchy(nn.Module):
    """Takes path a while a zero-initialised parameter is zero, path b otherwise: with random
    values the recorded path is never run."""

    def __init__(self) -> None:
        super().__init__()
        self.flag = nn.Parameter(torch.zeros(1))
        self.a1, self.a2 = nn.Linear(4, 6), nn.Linear(6, 3)
        self.b1, self.b2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((self.flag == 0).all()):
            return self.a2(torch.relu(self.a1(x)))
        return self.b2(torch.relu(self.b1(x))) + self.flag


def test_an_axis_of_layers_the_random_copy_does_not_run_is_not_claimed():
    # the a-path axis holds, but a test on the random copy (which runs path b) cannot show it:
    # it would pass without exercising anything, so it is rejected with the reason
    torch.manual_seed(0)
    g = sym.symmetry_group(_Branchy().eval(), torch.randn(6, 4))
    s = g.attrs["summary"]
    assert len(g) == 0 and [r["axis"] for r in s["rejected"]] == ["a1->a2"]
    assert "no longer reach a1, a2" in s["rejected"][0]["reason"]


def test_a_segmentation_head_that_resizes_its_features_keeps_its_channel_axes():
    # LRASPP resizes its scale branch's and its logits' maps (F.interpolate): a per-channel
    # spatial map, so the head's 128 channels are still an axis (they were "not analysed")
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    m = tv.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    g = sym.symmetry_group(m.eval(), x)
    s = g.attrs["summary"]
    assert s["status"] == "ok" and s["not_analysed"] == [] and bool(g["verified"].all()), s
    head = g[g["axis"] == "classifier.cbr.0+1"]
    assert head["size"].tolist() == [128]
    _check_independently(m, x, g.loc[head.index])


def test_swin_patch_merging_carries_the_stream_into_the_next_stage():
    # patch merging puts the 2×2 neighbours' channels side by side ((B, H, W, C) → (B, H/2, W/2,
    # 4C)), normalises them together and reduces them with one Linear: the stage's stream
    # permutation moves the norm's weight and the reduction's columns in 4 segments
    torch.manual_seed(0)
    m = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=3, img_size=32,
                          window_size=2, depths=(1, 1), embed_dim=16, num_heads=(2, 2)).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert s["status"] == "ok" and s["not_analysed"] == [] and bool(g["verified"].all()), s
    streams = g[g["kind"] == "residual stream"]
    assert sorted(streams["size"]) == [16, 32]
    first = streams[streams["size"] == 16]
    assert any("layers.1.downsample.reduction.weight[dim 1, 4 segments]" in t for t in first["tensors"]), first
    _check_independently(m, x, g.loc[streams.index])


def test_handwritten_top1_experts_are_analysed_or_listed_with_the_route_reason():
    # experts the probe's samples do not reach are never silently absent: each is in a verified
    # axis or listed as not called on the probe inputs
    torch.manual_seed(0)
    m = TopOneMoE().eval()
    g = sym.symmetry_group(m, torch.randn(2, 4))
    s = g.attrs["summary"]
    assert bool(g["verified"].all()) and len(g) >= 1
    text = " ".join(g["tensors"].astype(str)) + " " + " ".join(s["not_analysed"])
    for i in range(3):
        assert f"experts.{i}.0" in text and f"experts.{i}.2" in text, i
    unreached = [n for n in s["not_analysed"] if "not called on the probe inputs" in n]
    assert unreached and all(n.startswith("experts.") for n in unreached)
