"""Symmetry of the families people use (issue 10, item 3): Hugging Face BERT, GPT-2, Llama and ViT
from tiny configs, torchvision ResNet, MobileNetV2, DenseNet and ViT with random init.

For every model: the axes the lens reports are the family's (FFN hidden units, gated FFN units,
attention heads with grouped-query groups, residual streams with embeddings and tied heads, CNN
channels through BatchNorm, depthwise convs and concatenations); every axis passes a permutation
test written here independently of the lens (the slices each axis names are permuted with plain
torch indexing on a float64 copy, and the outputs must not move, while moving only the writers of
the same axis must move them); ``canonicalize`` preserves the outputs; wrappers give identical
tables. Tiny configs and 16×16 images keep the file within its time budget.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from netxray.lenses import symmetry as sym
from netxray.measures import symmetry as msym

transformers = pytest.importorskip("transformers")
torchvision = pytest.importorskip("torchvision")


def _bert():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    return transformers.LlamaForCausalLM(cfg)


def _hf_vit():
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=48, num_labels=3)
    return transformers.ViTForImageClassification(cfg)


def _tv_vit():
    m = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=32, mlp_dim=64, num_classes=5)
    nn.init.normal_(m.heads.head.weight)  # torchvision zero-initialises the head: outputs would be 0
    return m


def _densenet():
    # densenet121's code path (dense layers concatenating their outputs, transitions) at a size
    # that fits the test budget; the full densenet121 is in the sweep
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                                       num_classes=5)


IMG = torch.rand(2, 3, 16, 16)
MODELS = {
    "bert": (_bert, None),
    "gpt2": (_gpt2, None),
    "llama": (_llama, None),
    "hf-vit": (_hf_vit, None),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=5), IMG),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=5, width_mult=0.25), IMG),
    "densenet": (_densenet, IMG),
    "tv-vit": (_tv_vit, None),
}



@pytest.fixture(scope="module")
def built(symmetry_tables):
    """Each model once, with its table and analysis (module scope: the file's time budget)."""
    return symmetry_tables(MODELS)


def _probe(model, data):
    return sym._probe_inputs(model, data)


def _outputs(model, probe):
    m = copy.deepcopy(model).double().eval()
    return sym._run(m, probe)


def _rel(a, b):
    ref = max(float(t.abs().max()) for t in a)
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True)) / ref


def _positions(member, size, units):
    # written out here, independently of the lens: entry j of unit u in segment s sits at
    # offset + s·size·block + u·block + j along the member's dimension
    seg = torch.arange(member.segments)[:, None, None] * (size * member.block)
    return (member.offset + seg + units[None, :, None] * member.block + torch.arange(member.block)).reshape(-1)


@torch.no_grad()
def _permuted_outputs(m64, probe, members, size, perm):
    """Outputs of the float64 copy ``m64`` with ``members`` permuted by ``perm`` (restored after)."""
    sd = m64.state_dict(keep_vars=True)
    saved, done = {}, set()
    for mem in members:
        t = sd[mem.key]
        # a tied tensor (GPT-2's wte = lm_head) is one tensor under two names: move it once
        if (id(t), mem.dim, mem.offset, mem.block, mem.segments) in done:
            continue
        done.add((id(t), mem.dim, mem.offset, mem.block, mem.segments))
        saved.setdefault(id(t), (t, t.clone()))  # the original, before any member moved it
        src = _positions(mem, size, perm)
        dst = _positions(mem, size, torch.arange(size))
        t.index_copy_(mem.dim, dst, t.index_select(mem.dim, src).clone())
    try:
        return sym._run(m64, probe)
    finally:
        for t, orig in saved.values():
            t.copy_(orig)


@torch.no_grad()
def _apply(model, members, size, perm):
    """A float64 copy of ``model`` with ``members`` permuted by ``perm``."""
    m = copy.deepcopy(model).double().eval()
    sd = m.state_dict(keep_vars=True)
    done = set()
    for mem in members:
        t = sd[mem.key]
        if (id(t), mem.dim, mem.offset, mem.block, mem.segments) in done:
            continue
        done.add((id(t), mem.dim, mem.offset, mem.block, mem.segments))
        t.index_copy_(mem.dim, _positions(mem, size, torch.arange(size)),
                      t.index_select(mem.dim, _positions(mem, size, perm)).clone())
    return m


def _tolerance(model):
    # Llama's RMSNorm computes in float32 even in a float64 copy
    return 1e-5 if isinstance(model, transformers.LlamaForCausalLM) else 1e-10


@pytest.mark.parametrize("name", list(MODELS))
def test_every_axis_passes_an_independent_permutation_test(built, name):
    model, data, table = built[name]
    s = table.attrs["summary"]
    assert len(table) > 0 and table["verified"].all(), s
    assert s["rejected"] == [] and s["status"] == "ok", s["status"]
    an = sym._analyse(model, data)
    axes = {a.name: a for a in an.axes}
    assert set(table["axis"]) <= set(axes)
    probe = _probe(model, data)
    y0 = _outputs(model, probe)
    gen = torch.Generator().manual_seed(1)
    tol = _tolerance(model)
    m64 = copy.deepcopy(model).double().eval()
    for name_ in table["axis"]:
        ax = axes[name_]
        perm = torch.randperm(ax.size, generator=gen)
        while ax.size > 1 and torch.equal(perm, torch.arange(ax.size)):
            perm = torch.randperm(ax.size, generator=gen)
        y = _permuted_outputs(m64, probe, ax.writers + ax.readers, ax.size, perm)
        assert _rel(y0, y) <= tol, (name_, _rel(y0, y))
        # the test is not vacuous: the writers alone, without their readers, change the outputs
        y_half = _permuted_outputs(m64, probe, ax.writers, ax.size, perm)
        assert _rel(y0, y_half) > 10 * tol, (name_, "writers alone left the outputs unchanged")
    # nothing of the user's model changed
    assert not model.training and next(model.parameters()).dtype == torch.float32


def _kinds(table):
    return {k: sorted(table[table.kind == k]["size"].tolist()) for k in set(table["kind"])}


def test_transformer_axes_are_ffn_heads_and_stream(built):
    lf = msym.log10_factorial
    bert = built["bert"][2]
    k = _kinds(bert)
    assert k["residual stream"] == [32] and k["attention head"] == [4, 4] and k["FFN hidden unit"] == [48, 48]
    stream = bert[bert.kind == "residual stream"].iloc[0]["tensors"]
    for t in ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
              "embeddings.LayerNorm.weight", "attention.output.dense.weight[dim 0]", "pooler.dense.weight[dim 1]"):
        assert t in stream
    # BERT's pooler is a hidden layer of its own (dense → tanh → classifier): one more 32!
    expected = 2 * lf(32) + 2 * lf(4) + 2 * lf(48) + 32 * math.log10(2)  # tanh: sign flips
    assert bert.attrs["summary"]["log10_order"] == pytest.approx(expected, rel=1e-12)

    gpt2 = built["gpt2"][2]
    k = _kinds(gpt2)
    assert k["residual stream"] == [32] and k["attention head"] == [4, 4] and k["FFN hidden unit"] == [128, 128]
    stream = gpt2[gpt2.kind == "residual stream"].iloc[0]["tensors"]
    # the tied output head reads the stream with the token embedding's own tensor
    assert "transformer.wte.weight[dim 1]" in stream and "transformer.wpe.weight[dim 1]" in stream
    # Conv1D stores (in, out): c_fc's rows are its columns
    ffn = gpt2[gpt2.kind == "FFN hidden unit"].iloc[0]["tensors"]
    assert "mlp.c_fc.weight[dim 1]" in ffn and "mlp.c_proj.weight[dim 0]" in ffn

    llama = built["llama"][2]
    k = _kinds(llama)
    # 4 query heads in 2 key/value groups: the groups permute (2!) and within each group the 2
    # query heads (2!·2!): log|G_attn| = log 2! + 2·log 2! per layer, not log 4!
    assert k["key/value head group"] == [2, 2] and k["attention head"] == [2, 2, 2, 2]
    attn = llama[llama.kind.isin(["key/value head group", "attention head"])]
    assert attn["log10_order"].sum() == pytest.approx(2 * (lf(2) + 2 * lf(2)), rel=1e-12)
    assert k["FFN gated hidden unit"] == [40, 40] and k["residual stream"] == [32]
    gated = llama[llama.kind == "FFN gated hidden unit"].iloc[0]["tensors"]
    assert "gate_proj.weight[dim 0]" in gated and "up_proj.weight[dim 0]" in gated
    assert "down_proj.weight[dim 1]" in gated
    stream = llama[llama.kind == "residual stream"].iloc[0]["tensors"]
    assert "input_layernorm.weight" in stream and "model.norm.weight" in stream and "lm_head.weight" in stream

    for name in ("hf-vit", "tv-vit"):
        k = _kinds(built[name][2])
        assert {"residual stream", "attention head", "FFN hidden unit"} <= set(k), (name, k)


def test_cnn_axes_through_batchnorm_depthwise_and_concatenation(built):
    r = built["resnet18"][2]
    k = _kinds(r)
    # one permutation per residual stream (a stage), shared by the stem/shortcut, every block's
    # conv2/bn2 and the next readers; one per block-internal channel axis
    assert k["residual stream"] == [64, 128, 256, 512]
    assert k["channel"] == [64, 64, 128, 128, 256, 256, 512, 512]
    stream = r[r.kind == "residual stream"].iloc[0]["tensors"]
    assert "bn1.running_mean" in stream and "layer1.1.conv2.weight[dim 0]" in stream
    mb = built["mobilenet_v2"][2]
    # the expansion channels move through the depthwise 3×3 (its filters move with them)
    assert any("conv.1.0.weight[dim 0]" in t for t in mb["tensors"]), "no depthwise conv in any axis"
    assert "residual stream" in set(mb["kind"])
    dn = built["densenet"][2]
    # each dense layer's 8 new channels keep their own permutation inside every later
    # concatenation: read at an offset by every later BatchNorm and conv
    parts = dn[dn["tensors"].str.contains("from ")]
    assert len(parts) >= 4 and (parts["size"] == 8).sum() >= 4


def test_canonicalize_preserves_outputs_and_is_invariant(built):
    for name in ("bert", "llama", "resnet18"):
        model, data, _ = built[name]
        probe = _probe(model, data)
        y0 = _outputs(model, probe)
        c = sym.canonicalize(model, data=data)
        assert _rel(y0, sym._run(c, probe)) <= _tolerance(model), name
    # a random symmetry of BERT (stream, heads, FFN permuted by the lens's own axes) has the
    # same canonical form and is certified equivalent
    model, data, _ = built["bert"]
    an = sym._analyse(model)
    moved = model
    gen = torch.Generator().manual_seed(3)
    for ax in an.axes:
        moved = _apply(moved, ax.writers + ax.readers, ax.size, torch.randperm(ax.size, generator=gen))
    ca, cb = sym.canonicalize(model), sym.canonicalize(moved)
    diff = max(float((ca.state_dict()[k] - cb.state_dict()[k]).abs().max()) for k in ca.state_dict()
               if ca.state_dict()[k].is_floating_point())
    assert diff < 1e-10
    assert sym.functionally_equivalent(model, moved).verdict == "equivalent"
    bumped = copy.deepcopy(moved)
    with torch.no_grad():
        bumped.bert.encoder.layer[1].intermediate.dense.weight[3, 5] += 1e-2
    assert sym.functionally_equivalent(model, bumped).verdict == "not equivalent"


def test_wrappers_give_identical_tables(built):
    model, data, table = built["gpt2"]
    for wrapped in (nn.DataParallel(model), torch.compile(model)):
        t = sym.symmetry_group(wrapped, data)
        cols = [c for c in table.columns if c != "note"]
        assert t[cols].equals(table[cols])
        assert t.attrs["summary"]["log10_order"] == table.attrs["summary"]["log10_order"]
        assert t.attrs["summary"]["wrapper"] in ("DataParallel", "torch.compile")
    model, data, table = built["resnet18"]
    t = sym.symmetry_group(nn.DataParallel(model), data)
    assert t[["axis", "size", "tensors"]].equals(table[["axis", "size", "tensors"]])


class RollActivation(nn.Module):
    """Named like an activation, but it mixes features: the finder's claim must fail."""

    def forward(self, x):
        return torch.roll(x, 1, dims=-1) * torch.sigmoid(x)


def test_a_wrongly_claimed_axis_is_rejected_with_its_reason():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), RollActivation(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    g = sym.symmetry_group(m)
    s = g.attrs["summary"]
    assert g["axis"].tolist() == ["2->4"] and bool(g["verified"].all())
    assert [r["axis"] for r in s["rejected"]] == ["0->2"]
    assert "changed the outputs" in s["rejected"][0]["reason"]
    assert s["status"].startswith("partial") and "failed verification" in s["statement"]
    # the group counts only what was verified
    assert s["log10_permutations"] == pytest.approx(msym.log10_factorial(5), rel=1e-12)
    # canonicalize uses only verified axes, so it keeps the function
    x = torch.randn(16, 4, dtype=torch.float64)
    c = sym.canonicalize(m)
    with torch.no_grad():
        assert float((c(x) - copy.deepcopy(m).double()(x)).abs().max()) < 1e-12


def test_a_model_whose_stream_is_its_output_has_no_stream_axis():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=24, max_position_embeddings=16)
    g = sym.symmetry_group(transformers.BertModel(cfg).eval())
    s = g.attrs["summary"]
    # last_hidden_state shows the residual stream: permuting it would permute the output
    assert "residual stream" not in set(g["kind"]) and s["status"] == "ok"
    assert "output shows them" in s["statement"] and "word_embeddings" in s["statement"]
    assert sorted(g["kind"]) == ["FFN hidden unit", "attention head"]
    assert np.isclose(s["log10_permutations"], msym.log10_factorial(24) + msym.log10_factorial(2))


def test_axes_verified_together_find_each_wrong_axis(monkeypatch):
    # group testing: every axis's random element composed in one forward pass, a failing group
    # split in halves; the verdicts must be those of checking each axis alone
    checks = []
    check = sym._Verifier.check

    def counted(self, axes):
        checks.append(len(axes))
        return check(self, axes)

    monkeypatch.setattr(sym._Verifier, "check", counted)
    torch.manual_seed(0)
    good = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 7), nn.ReLU(),
                         nn.Linear(7, 3))  # fmt: skip
    g = sym.symmetry_group(good)
    assert g["axis"].tolist() == ["0->2", "2->4", "4->6"] and bool(g["verified"].all())
    assert checks == [3]  # all true: one composed check, one forward pass
    checks.clear()
    bad = nn.Sequential(nn.Linear(4, 6), RollActivation(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7),
                        RollActivation(), nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 2))  # fmt: skip
    g = sym.symmetry_group(bad)
    s = g.attrs["summary"]
    assert g["axis"].tolist() == ["2->4", "6->8"] and bool(g["verified"].all())
    assert sorted(r["axis"] for r in s["rejected"]) == ["0->2", "4->6"]
    assert all("changed the outputs" in r["reason"] for r in s["rejected"])
    assert checks[0] == 4 and checks.count(1) >= 2  # the failing group was split down to single axes


@pytest.mark.parametrize("width", [12, 6000])
def test_identical_unit_groups_equal_the_exact_grouping(width):
    # the member-by-member projection filter must give the groups of the exact comparison over
    # the concatenated rows: never missing a duplicate, never merging distinct units. At 6000
    # units the closest pair on one projection often lies inside the rounding window (a single
    # projection would send the whole axis to the all-rows comparison)
    from netxray.measures import symmetry as msym

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 3))
    for dup in (False, True):
        if dup:
            with torch.no_grad():  # unit 7 becomes an exact copy of unit 2, and 9 of 2 too
                for u in (7, 9):
                    net[0].weight[u] = net[0].weight[2]
                    net[0].bias[u] = net[0].bias[2]
                    net[2].weight[:, u] = net[2].weight[:, 2]
                net[0].weight[11, 0] = float(net[0].weight[2, 0]) * (1 + 2**-20)  # 11: a near copy
                net[0].weight[11, 1:] = net[0].weight[2, 1:]
                net[0].bias[11] = net[0].bias[2]
                net[2].weight[:, 11] = net[2].weight[:, 2]
        an = sym._analyse(net)
        ax = an.axes[0]
        state = sym._state64(net)
        exact = msym.duplicate_groups(sym._concat_rows(state, ax.writers + ax.readers, ax.size), tol=0.0)
        got = sym._identical_unit_groups(state, ax)
        assert sorted(map(sorted, got)) == sorted(map(sorted, exact))
        assert sorted(u for g in got for u in g) == list(range(ax.size))
        assert (len(exact) < ax.size) == dup
        assert symmetry_group_identical(net) == (2 if dup else 0)


def symmetry_group_identical(net):
    return int(sym.symmetry_group(net)["identical_units"].iloc[0])
