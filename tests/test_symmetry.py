"""Tests of lens 4, symmetry (SPEC §4): known answers, canonical forms, alignment, equivalence.

The random symmetry transforms below are written out by hand per family (not with the lens's
own axis machinery), so they check the lens against an independent statement of each symmetry.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from netxray.lenses.symmetry import (
    align,
    alignment_distances,
    canonicalize,
    covering_bounds,
    effective_volume,
    functionally_equivalent,
    plot_effective_volume,
    symmetry_group,
)
from netxray.measures import symmetry as msym

# ---------------------------------------------------------------------------------------------
# known answers (SPEC §4.1, §4.2, §4.3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(10, 6.559763), (100, 157.970004), (1000, 2567.604644)])
def test_log10_factorial_known_answers(n, expected):
    assert msym.log10_factorial(n) == pytest.approx(expected, abs=1e-6)
    # agrees with the exact integer where that is computable
    assert msym.log10_factorial(n) == pytest.approx(math.log10(math.factorial(n)), rel=1e-13)


def test_factorials_of_huge_widths_never_overflow():
    for n in (4096, 10**5, 10**7):
        v = msym.log10_factorial(n)
        assert math.isfinite(v) and v > 0
    # Stirling: log n! = n log n − n + ½ log(2πn) + 1/(12n) + O(n⁻³)
    n = 10**7
    stirling = n * math.log(n) - n + 0.5 * math.log(2 * math.pi * n) + 1 / (12 * n)
    assert msym.log_factorial(n) == pytest.approx(stirling, rel=1e-15)
    b = msym.covering_log_bounds([784, 4096, 4096, 4096, 10], eps=1e-3)
    assert all(math.isfinite(b[k]) for k in ("classical_log", "reduced_log", "log_Lambda"))
    assert b["difference_log"] == pytest.approx(b["sum_log_factorials"], rel=1e-6)


@pytest.mark.parametrize(
    ("widths", "S", "classical", "sumfact", "reduced", "rel"),
    [
        ([10, 10, 1], 121, 530.4, 6.55976, 523.9, 1.24),
        ([10, 100, 1], 1201, 6421, 157.970, 6263, 2.46),
        ([10, 1000, 1], 12001, 7.612e4, 2567.60, 7.355e4, 3.37),
        ([784, 512, 512, 10], 669706, 7.228e6, 2333.08, 7.225e6, 0.03),
    ],
)
def test_covering_bound_table(widths, S, classical, sumfact, reduced, rel):
    df = covering_bounds(widths, eps=0.01)
    r = df.iloc[0]
    assert r.S == S
    # the table's values are rounded to 4 significant digits
    assert r.classical_log10 == pytest.approx(classical, rel=6e-4)
    assert r.sum_log10_factorials == pytest.approx(sumfact, abs=5e-3)
    assert r.reduced_log10 == pytest.approx(reduced, rel=6e-4)
    assert 100 * r.relative_reduction == pytest.approx(rel, abs=0.006)
    assert "small reduction in log terms" in r.verdict


def test_log_multiset_coefficient_matches_exact_binomials():
    for m in (2, 3, 7, 1000):
        for d in (1, 2, 5, 30):
            exact = math.log(math.comb(m + d - 1, d))
            assert msym.log_multiset_coefficient(math.log(m), d) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("m", "expected"), [(3, 1134), (5, 39375)])
def test_burnside_counts_by_enumerating_canonical_forms(m, expected):
    grid = np.linspace(-1.0, 1.0, m)
    assert msym.enumerate_canonical_forms((1, 2, 1), grid) == expected
    assert msym.canonical_form_count_formula((1, 2, 1), m) == expected
    # Burnside's lemma by cycle index equals the stars-and-bars count
    M = m**3
    assert msym.burnside_orbit_count(M, 2) == math.comb(M + 1, 2)


def test_effective_volume_shrinks_with_width(tmp_path):
    df = effective_volume([512, 4096, 32768], depth=2)
    assert np.all(np.diff(df.log10_volume_ratio) < 0)  # total volume ratio vanishes
    # per dimension it tends to 1 (log → 0) once the hidden layers dominate S
    assert np.all(np.diff(df.log10_ratio_per_parameter) > 0)
    fig = plot_effective_volume(df, path=tmp_path / "vol.png")
    assert (tmp_path / "vol.png").stat().st_size > 0 and fig is not None


# ---------------------------------------------------------------------------------------------
# hand-written random symmetry transforms, one per family
# ---------------------------------------------------------------------------------------------


def _scales(d, gen, mode):
    if mode == "relu":  # positive rescaling a ∈ [0.5, 2]
        return torch.rand(d, generator=gen, dtype=torch.float64) * 1.5 + 0.5
    if mode == "tanh":  # sign flips
        return torch.randint(0, 2, (d,), generator=gen).to(torch.float64) * 2 - 1
    return torch.ones(d, dtype=torch.float64)


def _perm_bn(bn, p, a=None):
    a = torch.ones(len(p), dtype=torch.float64) if a is None else a
    bn.weight.copy_(bn.weight[p] * a)
    bn.bias.copy_(bn.bias[p] * a)
    bn.running_mean.copy_(bn.running_mean[p])
    bn.running_var.copy_(bn.running_var[p])


@torch.no_grad()
def _transform_mlp(model, gen, mode):
    m = copy.deepcopy(model).double()
    layers = [h.linear for h in m.hidden] + [m.head]
    for lin, nxt in zip(layers[:-1], layers[1:], strict=True):
        p = torch.randperm(lin.out_features, generator=gen)
        a = _scales(lin.out_features, gen, mode)
        lin.weight.copy_(lin.weight[p] * a[:, None])
        lin.bias.copy_(lin.bias[p] * a)
        nxt.weight.copy_(nxt.weight[:, p] / a)
    return m


@torch.no_grad()
def _transform_cnn(model, gen):
    m = copy.deepcopy(model).double()
    blocks = [b for b in m.features if hasattr(b, "conv")]
    for k, blk in enumerate(blocks):
        c = blk.conv.out_channels
        p, a = torch.randperm(c, generator=gen), _scales(c, gen, "relu")
        blk.conv.weight.copy_(blk.conv.weight[p])
        _perm_bn(blk.bn, p, a)  # ReLU rescaling acts on the BN affine part
        if k + 1 < len(blocks):
            w = blocks[k + 1].conv.weight
            w.copy_(w[:, p] / a[None, :, None, None])
        else:  # Flatten into the classifier: blocks of H·W columns per channel
            w = m.classifier.weight
            v = w.view(w.shape[0], c, -1)
            w.copy_((v[:, p] / a[None, :, None]).reshape(w.shape))
    return m


@torch.no_grad()
def _transform_resnet(model, gen):
    m = copy.deepcopy(model).double()
    c0 = m.stem.conv.out_channels
    # residual stream of stage 1: a permutation q and a positive scale r per channel
    q, r = torch.randperm(c0, generator=gen), _scales(c0, gen, "relu")
    m.stem.conv.weight.copy_(m.stem.conv.weight[q])
    _perm_bn(m.stem.bn, q, r)
    for s in range(m.num_stages):
        for blk in getattr(m, f"layer{s + 1}"):
            q_in, r_in = q, r
            if not isinstance(blk.shortcut, nn.Identity):  # a new stream starts here
                c = blk.conv2.out_channels
                q, r = torch.randperm(c, generator=gen), _scales(c, gen, "relu")
                conv, bn = blk.shortcut[0], blk.shortcut[1]
                conv.weight.copy_(conv.weight[q][:, q_in] / r_in[None, :, None, None])
                _perm_bn(bn, q, r)
            c = blk.conv1.out_channels
            p, a = torch.randperm(c, generator=gen), _scales(c, gen, "relu")
            blk.conv1.weight.copy_(blk.conv1.weight[p][:, q_in] / r_in[None, :, None, None])
            _perm_bn(blk.bn1, p, a)
            blk.conv2.weight.copy_(blk.conv2.weight[q][:, p] / a[None, :, None, None])
            _perm_bn(blk.bn2, q, r)  # the block's output joins the (rescaled) stream
    m.fc.weight.copy_(m.fc.weight[:, q] / r)
    return m


@torch.no_grad()
def _transform_vit(model, gen):
    m = copy.deepcopy(model).double()
    D = m.patch_embed.out_channels
    q = torch.randperm(D, generator=gen)  # residual stream
    m.patch_embed.weight.copy_(m.patch_embed.weight[q])
    m.patch_embed.bias.copy_(m.patch_embed.bias[q])
    m.cls_token.copy_(m.cls_token[..., q])
    m.pos_embed.copy_(m.pos_embed[..., q])
    for blk in m.blocks:
        H, hd = blk.attn.num_heads, blk.attn.head_dim
        h = torch.randperm(H, generator=gen)
        for ln in (blk.norm1, blk.norm2):
            ln.weight.copy_(ln.weight[q])
            ln.bias.copy_(ln.bias[q])
        w = blk.attn.qkv.weight.view(3, H, hd, D)[:, h][..., q]
        blk.attn.qkv.weight.copy_(w.reshape(3 * D, D))
        blk.attn.qkv.bias.copy_(blk.attn.qkv.bias.view(3, H, hd)[:, h].reshape(-1))
        pw = blk.attn.proj.weight[q].view(D, H, hd)[:, h]
        blk.attn.proj.weight.copy_(pw.reshape(D, D))
        blk.attn.proj.bias.copy_(blk.attn.proj.bias[q])
        fc1, fc2 = blk.mlp.fc1, blk.mlp.fc2
        p = torch.randperm(fc1.out_features, generator=gen)
        fc1.weight.copy_(fc1.weight[p][:, q])
        fc1.bias.copy_(fc1.bias[p])
        fc2.weight.copy_(fc2.weight[q][:, p])
        fc2.bias.copy_(fc2.bias[q])
    m.norm.weight.copy_(m.norm.weight[q])
    m.norm.bias.copy_(m.norm.bias[q])
    m.head.weight.copy_(m.head.weight[:, q])
    return m


def _state(model):
    return {k: v.detach().to(torch.float64) for k, v in model.state_dict().items() if v.is_floating_point()}


def _max_state_diff(a, b):
    sa, sb = _state(a), _state(b)
    assert list(sa) == list(sb)
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa if sa[k].numel())


def _outputs(model, x):
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(x.double())


FAMILIES = [
    ("mlp", {}, _transform_mlp, "relu"),
    ("mlp", {"activation": "tanh", "width": 32}, _transform_mlp, "tanh"),
    ("cnn", {}, _transform_cnn, None),
    ("resnet", {}, _transform_resnet, None),
    ("vit", {}, _transform_vit, None),
]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "knobs", "transform", "mode"), FAMILIES,
                         ids=["mlp-relu", "mlp-tanh", "cnn", "resnet", "vit"])
def test_random_symmetry_gives_same_canonical_form_and_outputs(trained, digits, arch, knobs, transform, mode):
    model = trained(arch, **knobs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    moved = transform(model, gen) if mode is None else transform(model, gen, mode)
    x = digits.test.x[:64]
    y = _outputs(model, x)
    # the hand-written transform really is a symmetry, and really moves the weights
    assert float((_outputs(moved, x) - y).abs().max()) < 1e-10
    assert _max_state_diff(model, moved) > 1e-3
    ca, cb = canonicalize(model), canonicalize(moved)
    assert _max_state_diff(ca, cb) < 1e-10
    assert float((_outputs(ca, x) - y).abs().max()) < 1e-10
    # the input model is untouched (weights, dtype, mode)
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # weight matching undoes the transform exactly
    r = align(model, moved)
    assert r.distance_after < 1e-9 < r.distance_before
    assert float((_outputs(r.aligned, x) - y).abs().max()) < 1e-10


# ---------------------------------------------------------------------------------------------
# equivalence, reduction, group table
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_weight_changed_by_1e3_is_not_equivalent_with_witness(trained):
    model = trained("mlp")
    moved = _transform_mlp(model, torch.Generator().manual_seed(2), "relu")
    assert functionally_equivalent(model, moved).verdict == "equivalent"
    gen = torch.Generator().manual_seed(3)
    for k in range(6):  # weights in every layer, at random positions
        bumped = copy.deepcopy(moved)
        w = [bumped.hidden[0].linear, bumped.hidden[1].linear, bumped.head][k % 3].weight
        i = int(torch.randint(w.shape[0], (1,), generator=gen))
        j = int(torch.randint(w.shape[1], (1,), generator=gen))
        with torch.no_grad():
            w[i, j] += 1e-3
        res = functionally_equivalent(model, bumped)
        assert res.verdict == "not equivalent" and res.witness is not None, (k, i, j, res)
        # the witness really separates the two functions
        ya, yb = _outputs(model, res.witness), _outputs(bumped, res.witness)
        assert float((ya - yb).abs().max()) > 1e-6 * (1 + float(ya.abs().max()))


def _toy_mlp(seed=0, widths=(3, 6, 5, 2), act=nn.ReLU):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1]).double()


@torch.no_grad()
def test_duplicate_and_dead_units_are_reduced_so_canonical_forms_stay_unique():
    net = _toy_mlp()
    # unit 4 duplicates unit 1 up to a positive scale (the same ReLU unit), unit 2 has no
    # outgoing weights, unit 0 in the second layer has zero incoming weights (constant)
    net[0].weight[4] = 2.5 * net[0].weight[1]
    net[0].bias[4] = 2.5 * net[0].bias[1]
    net[2].weight[:, 2] = 0.0
    net[2].weight[0] = 0.0
    net[2].bias[0] = 0.7
    c = canonicalize(net)
    assert c.netxray_canonical["merged"] == {"0->2": 1}
    assert c.netxray_canonical["dropped"] == {"0->2": 1, "2->4": 1}
    assert c[0].out_features == 4 and c[2].out_features == 4 and c[4].in_features == 4
    x = torch.randn(200, 3, dtype=torch.float64)
    assert float((c(x) - net(x)).abs().max()) < 1e-12
    # the same function written with the duplicate split differently reduces to the same form
    other = copy.deepcopy(net)
    other[2].weight[:, 1] *= 0.25
    other[2].weight[:, 4] += net[2].weight[:, 1] * 0.75 / 2.5
    assert float((other(x) - net(x)).abs().max()) < 1e-12
    assert _max_state_diff(canonicalize(other), c) < 1e-12
    assert functionally_equivalent(net, other).verdict == "equivalent"


@torch.no_grad()
def test_equivalence_verdicts_on_hand_made_networks():
    # x = relu(x) − relu(−x), written in several ways
    a = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    b = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        a[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        a[0].bias.zero_()
        a[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        a[2].bias.zero_()
        b[0].weight.copy_(torch.tensor([[2.0], [-0.5]]))
        b[0].bias.zero_()
        b[2].weight.copy_(torch.tensor([[0.5, -1.5]]))  # 0.5·relu(2x) − 1.5·relu(−x/2)… ≠ x
        b[2].bias.zero_()
    res = functionally_equivalent(a, b)
    assert res.verdict == "not equivalent"
    with torch.no_grad():
        b[2].weight.copy_(torch.tensor([[0.5, -2.0]]))  # = relu(x) − relu(−x) = x
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)[:, None]
    assert float((a(x) - b(x)).abs().max()) < 1e-12
    res = functionally_equivalent(a, b)
    assert res.verdict == "equivalent"  # rescaling explains it: (1, −1) ≡ (2, −0.5) up to scale
    c = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():  # x = relu(x) − relu(−x) written with three units: relu(x) twice halves
        c[0].weight.copy_(torch.tensor([[1.0], [-1.0], [3.0]]))
        c[0].bias.copy_(torch.tensor([0.0, 0.0, -50.0]))  # third unit dead on the probes only
        c[2].weight.copy_(torch.tensor([[1.0, -1.0, 1e-3]]))
        c[2].bias.zero_()
    res = functionally_equivalent(a, c, inputs=torch.linspace(-3, 3, 50, dtype=torch.float64)[:, None],
                                  search_steps=0)
    assert res.verdict == "inconclusive"  # agree on every probe, yet not a symmetry


def test_symmetry_group_counts_mlp_and_tanh_sign_flips():
    net = _toy_mlp(widths=(4, 10, 100, 3), act=nn.Tanh)
    g = symmetry_group(net)
    assert g["size"].tolist() == [10, 100]
    s = g.attrs["summary"]
    assert s["log10_permutations"] == pytest.approx(6.559763 + 157.970004, abs=1e-6)
    assert s["log10_order"] == pytest.approx(6.559763 + 157.970004 + 110 * math.log10(2), abs=1e-6)
    assert s["continuous_dims"] == 0 and g["sign_flips"].all()
    relu = symmetry_group(_toy_mlp(widths=(4, 10, 100, 3)))
    assert relu.attrs["summary"]["continuous_dims"] == 110 and not relu["sign_flips"].any()
    assert relu["identical_units"].tolist() == [0, 0]
    # three all-zero units in the first hidden layer: swapping them changes nothing, so the
    # orbit of these parameters has 10!/3! elements, fewer than the group's 10!
    net = _toy_mlp(widths=(4, 10, 100, 3))
    with torch.no_grad():
        for u in (1, 4, 7):
            net[0].weight[u] = 0.0
            net[0].bias[u] = 0.0
            net[2].weight[:, u] = 0.0
    g = symmetry_group(net)
    assert g["identical_units"].tolist() == [2, 0]
    assert g["log10_orbit"][0] == pytest.approx(math.log10(math.factorial(10) / 6), rel=1e-12)
    assert g["log10_order"][0] == pytest.approx(6.559763, abs=1e-6)


@pytest.mark.slow
def test_symmetry_group_of_built_ins(trained):
    res = symmetry_group(trained("resnet"))
    s = res.attrs["summary"]
    streams = res[res.kind == "residual stream"]
    # one permutation per residual stream (16, 32, 64 channels), not one per block
    assert streams["size"].tolist() == [16, 32, 64]
    inner = res[res.kind == "block-internal channel"]
    assert len(inner) == 3 and inner["size"].tolist() == [16, 32, 64]
    expected = 2 * sum(msym.log10_factorial(c) for c in (16, 32, 64))
    assert s["log10_permutations"] == pytest.approx(expected, rel=1e-12)
    vit = symmetry_group(trained("vit"))
    heads = vit[vit.kind == "attention head"]
    assert heads["size"].tolist() == [4, 4] and (heads["continuous_dims"] == 2 * 8 * 8 * 4).all()
    assert vit[vit.kind == "MLP hidden unit"]["size"].tolist() == [64, 64]
    cnn = symmetry_group(trained("cnn"))
    assert cnn["size"].tolist() == [16, 32, 64]
    assert "features.4.conv" in cnn.iloc[-1]["tensors"] or "classifier.weight" in cnn.iloc[-1]["tensors"]


class _Custom(nn.Module):
    """A hand-written model: a traced chain with functional activations, plus a branch."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(7, 6)
        self.c = nn.Linear(6, 2)
        self.side = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = torch.nn.functional.relu(self.b(h))
        return self.c(h) + self.side(x) * torch.sigmoid(self.side(x))


@torch.no_grad()
def test_arbitrary_model_axes_are_proven_from_structure_and_the_rest_is_stated():
    torch.manual_seed(0)
    m = _Custom().double()
    g = symmetry_group(m)
    assert g["axis"].tolist() == ["a->b", "b->c"]
    assert g["sign_flips"].tolist() == [True, False]
    statement = g.attrs["summary"]["statement"]
    assert "side" in statement  # called twice: shared weights, not analysed — and said so
    c = canonicalize(m)
    x = torch.randn(64, 5, dtype=torch.float64)
    assert float((c(x) - m(x)).abs().max()) < 1e-12
    # data-dependent control flow is no obstacle to a recorded forward pass: on positive data
    # the Linear runs, and its output features are the model's output, so nothing permutes
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 3)

        def forward(self, x):
            if x.sum() > 0:  # defeats symbolic tracing, not a recorded pass
                return self.l(x)
            return x

    g2 = symmetry_group(DataDependent(), torch.rand(4, 3) + 0.1)
    s2 = g2.attrs["summary"]
    assert len(g2) == 0 and s2["status"] == "ok" and "output shows them: l (3)" in s2["statement"]

    # a model that cannot run: nothing proven, status "failed" with the reason, never "ok"
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 3)

        def forward(self, x):
            raise RuntimeError("needs a cache object")

    g3 = symmetry_group(Broken())
    s3 = g3.attrs["summary"]
    assert len(g3) == 0 and s3["status"].startswith("failed")
    assert "needs a cache object" in s3["statement"]


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="widths"):
        covering_bounds([10], eps=0.01)
    with pytest.raises(ValueError, match="eps"):
        covering_bounds([10, 5, 1], eps=0)
    with pytest.raises(ValueError, match="fully connected"):
        covering_bounds(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 1)), eps=0.1)
    with pytest.raises(ValueError, match="one architecture"):
        align(_toy_mlp(widths=(3, 4, 2)), _toy_mlp(widths=(3, 5, 2)))
    with pytest.raises(TypeError, match="nn.Module"):
        symmetry_group("model.safetensors")
    with pytest.raises(ValueError, match="at least 2"):
        alignment_distances([_toy_mlp()])


def test_covering_bounds_of_a_model_reads_widths_b_and_rho():
    net = _toy_mlp(widths=(4, 10, 100, 3))
    df = covering_bounds(net, eps=[0.1, 0.01])
    assert df.widths[0] == "4,10,100,3" and len(df) == 2
    B = max(float(p.detach().abs().max()) for p in net.parameters())
    assert df.B[0] == pytest.approx(B) and df.rho[0] == 1.0
    ref = msym.covering_log_bounds([4, 10, 100, 3], 0.01, B=B, rho=1.0)
    assert df.classical_log[1] == pytest.approx(ref["classical_log"])


def test_covering_bounds_refuse_a_model_with_parameters_outside_linear_layers():
    class RecurrentHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 16, batch_first=True)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    with pytest.raises(ValueError, match=r"outside nn.Linear layers in \['rnn \(LSTM\)'\]"):
        covering_bounds(RecurrentHead(), eps=0.01)


def test_covering_bounds_refusal_counts_the_axes_the_group_table_has():
    # an LSTM before an MLP head: the group table has a hidden-unit axis (the head's 6 units);
    # the refusal names the LSTM, never "0 hidden-unit axes"
    class RecurrentMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 8, batch_first=True)
            self.head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    m = RecurrentMLP().eval()
    assert "hidden unit" in set(symmetry_group(m, torch.randn(4, 5, 4))["kind"])
    with pytest.raises(ValueError, match=r"rnn \(LSTM\)") as err:
        covering_bounds(m, eps=0.01)
    assert "0 hidden-unit axes" not in str(err.value)

    # only Linear layers, but a gated hidden layer (as an LLM's FFN): the axes are counted by kind
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.gate, self.down = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.down(torch.relu(self.up(x)) * self.gate(x))

    assert symmetry_group(Gated()).kind.tolist() == ["gated hidden unit"]
    with pytest.raises(ValueError, match=r"0 plain hidden-unit axes for 2 hidden layers, and axes of other kinds: "
                                         r"gated hidden unit"):
        covering_bounds(Gated(), eps=0.01)


def test_alignment_distances_and_determinism():
    nets = [_toy_mlp(seed=s, widths=(3, 8, 8, 2)) for s in range(4)]
    df = alignment_distances(nets, labels=["a", "a", "b", "b"])
    assert len(df) == 6 and set(df.pair) == {"a|a", "a|b", "b|b"}
    # per axis, the assignment can only lower the matching cost: the identity is feasible
    t = align(nets[0], nets[1]).table
    assert (t.cost_after <= t.cost_before + 1e-12).all() and len(t) == 2
    again = alignment_distances(nets, labels=["a", "a", "b", "b"])
    assert np.array_equal(df.distance_after.to_numpy(), again.distance_after.to_numpy())


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_bounds_and_symmetry(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, save_checkpoint

    runner = CliRunner()
    r = runner.invoke(app, ["bounds", "--widths", "784,512,512,10", "--eps", "0.01", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "2333.08" in r.output and "small reduction in log terms" in r.output
    assert (tmp_path / "bounds.csv").exists()
    r = runner.invoke(app, ["bounds", "--widths", "784"])
    assert r.exit_code == 1 and "--widths" in r.output
    torch.manual_seed(0)
    cfg = {"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [12, 10]}
    save_checkpoint(build_model(cfg), tmp_path / "a")
    torch.manual_seed(1)
    save_checkpoint(build_model(cfg), tmp_path / "b")
    r = runner.invoke(app, ["symmetry", str(tmp_path / "a"), "--compare", str(tmp_path / "b"),
                            "--canonical-out", str(tmp_path / "canon"), "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    assert "not equivalent" in r.output and (tmp_path / "res" / "summary.json").exists()
    r = runner.invoke(app, ["symmetry", str(tmp_path / "canon"), "--compare", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "functionally equivalent" in r.output
    r = runner.invoke(app, ["symmetry", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "cannot load checkpoint" in r.output


@torch.no_grad()
def test_traced_conv_chain_with_bn_pool_flatten_and_odd_activation():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5), nn.GELU(),
        nn.Dropout(), nn.Linear(5, 3),
    ).eval()
    bn = m[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.normal_()
    bn.bias.normal_()
    g = symmetry_group(m)
    assert g["kind"].tolist() == ["channel", "channel", "hidden unit"]
    assert g["activation"].tolist() == ["ReLU", "Tanh", "GELU"]
    # ReLU channels rescale (4 dims); tanh channels flip sign (no max-pool after them)
    assert g["continuous_dims"].tolist() == [4, 0, 0] and g["sign_flips"].tolist() == [False, True, False]
    assert "every layer with parameters is covered" in g.attrs["summary"]["statement"]
    c = canonicalize(m)
    x = torch.randn(32, 1, 8, 8, dtype=torch.float64)
    assert float((c(x) - copy.deepcopy(m).double()(x)).abs().max()) < 1e-12
    # the spatial size is declared nowhere: the first candidate size the net runs on (8×8)
    assert functionally_equivalent(m, c).verdict == "equivalent"
    assert functionally_equivalent(m, c, inputs=x).verdict == "equivalent"
    emb = nn.Sequential(nn.Embedding(5, 3))
    with pytest.raises(ValueError, match="inputs="):
        functionally_equivalent(emb, emb)  # nothing says what its inputs look like


def _cli_ckpts(tmp_path):
    from netxray.models import build_model, save_checkpoint

    cfg = {"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [12, 10]}
    torch.manual_seed(0)
    a = save_checkpoint(build_model(cfg), tmp_path / "a")
    torch.manual_seed(1)
    b = save_checkpoint(build_model(cfg), tmp_path / "b")
    return a, b


def _cli_error(args, expected):
    from typer.testing import CliRunner

    from netxray.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "error: " in r.output and expected in r.output, r.output
    assert "group order" not in r.output and "symmetry of" not in r.output  # nothing printed first
    return r.output


def test_cli_symmetry_canonical_out_never_overwrites_a_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    a, b = _cli_ckpts(tmp_path)
    before = {f: (a / f).read_bytes() for f in ("config.json", "model.safetensors")}
    # the source checkpoint's own directory, given as a directory or as its weights file
    _cli_error(["symmetry", str(a), "--canonical-out", str(a)], "directory of the source checkpoint")
    _cli_error(["symmetry", str(a / "model.safetensors"), "--canonical-out", str(a), "--force"],
               "directory of the source checkpoint")
    _cli_error(["symmetry", str(a), "--canonical-out", str(tmp_path / "x" / ".." / "a"), "--force"],
               "would overwrite it")
    assert {f: (a / f).read_bytes() for f in before} == before
    # another checkpoint: only with --force
    _cli_error(["symmetry", str(a), "--canonical-out", str(b)], "already holds a checkpoint")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    _cli_error(["symmetry", str(a), "--canonical-out", str(other)], "pass --force")
    r = CliRunner().invoke(app, ["symmetry", str(a), "--canonical-out", str(other), "--force", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["symmetry", str(other), "--compare", str(a)])
    assert r.exit_code == 0 and "functionally equivalent" in r.output, r.output
    # the --compare checkpoint is an input too, --force or not
    _cli_error(["symmetry", str(a), "--compare", str(b), "--canonical-out", str(b), "--force"],
               "directory of the --compare checkpoint")
    # a fresh directory needs nothing
    r = CliRunner().invoke(app, ["symmetry", str(a), "--canonical-out", str(tmp_path / "new"), "--quiet"])
    assert r.exit_code == 0 and (tmp_path / "new" / "model.safetensors").exists(), r.output


def test_cli_symmetry_checks_inputs_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    a, _ = _cli_ckpts(tmp_path)
    out = tmp_path / "res"
    _cli_error(["symmetry", str(a), "--compare", str(tmp_path / "nope"), "--out", str(out)],
               "cannot load checkpoint")
    assert not out.exists()
    for eps in ("0", "-0.1", "nan"):
        _cli_error(["symmetry", str(a), "--eps", eps], "--eps must be a positive finite number")
        _cli_error(["bounds", "--widths", "784,512,10", "--eps", f"0.1,{eps}"],
                   "--eps must be a positive finite number")
    f = tmp_path / "file.txt"
    f.write_text("keep")
    _cli_error(["symmetry", str(a), "--out", str(f)], "--out")
    _cli_error(["symmetry", str(a), "--canonical-out", str(f)], "not a directory")
    _cli_error(["bounds", "--widths", "784,512,10", "--out", str(f)], "not a directory")
    assert f.read_text() == "keep"
    # an architecture mismatch in --compare fails before the analysis is printed
    from netxray.models import build_model, save_checkpoint

    wide = save_checkpoint(build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10,
                                        "widths": [20, 10]}), tmp_path / "wide")
    r = CliRunner().invoke(app, ["symmetry", str(a), "--compare", str(wide)])
    assert r.exit_code == 1 and "symmetry of" not in r.output and "group order" not in r.output, r.output
