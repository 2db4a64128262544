"""Symmetry of the families the first sweep left uncovered (issue 10, item 3): grouped
convolutions (ResNeXt, RegNet), ShuffleNet V2's chunk + channel shuffle, GhostNet's cat + slice,
LeViT's heads, MLP-Mixer's token mixing, MobileViT's unfold/fold of patches, timm models built
for another image size, and models
whose outputs are all zero at random init.

Every axis the lens reports is checked here by a permutation test written independently of the
lens: the slices each axis names are permuted with plain torch indexing on a float64 copy — for
the input side of a grouped convolution, row block j's columns are permuted by the permutation
restricted to group j — and the outputs must not move (float64: relative 1e-10), while moving
the writers alone must move them. Small models and 32×32 inputs keep the file within its budget.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from conftest import randomise_batchnorm
from netxray.lenses import symmetry as sym
from netxray.measures import symmetry as msym

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

IMG = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _resnext():
    # ResNeXt's code path (bottlenecks around a grouped 3×3 conv, groups=4 of width 4) at a size
    # that fits the budget; resnext50_32x4d itself is in the sweep
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, groups=4, width_per_group=4)


def _regnet_y():
    # RegNetY: grouped conv, then squeeze-and-excitation on the grouped channels
    from torchvision.models.regnet import BlockParams, RegNet

    bp = BlockParams.from_init_params(depth=3, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    return RegNet(bp, num_classes=3)


def _shufflenet():
    from torchvision.models.shufflenetv2 import ShuffleNetV2

    return ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=3)


def _mixer():
    from timm.models.mlp_mixer import MlpMixer

    # timm zero-initialises the head: the outputs are all zero at init (item 5 as well)
    return MlpMixer(num_classes=3, img_size=32, patch_size=8, num_blocks=2, embed_dim=32)


def _ghostnet():
    from timm.models.ghostnet import GhostNet

    # GhostNet's code path (ghost modules, shortcut convs, squeeze-and-excitation) with 4 blocks
    cfgs = [[[3, 16, 16, 0, 1]], [[3, 48, 24, 0, 2]], [[3, 72, 24, 0, 1]], [[5, 72, 40, 0.25, 2]]]
    return GhostNet(cfgs, num_classes=3)


class _GhostOdd(nn.Module):
    """A ghost module with an odd output count (cat of 11 + 11 channels, sliced to 21) added to
    a 21-channel stream: the slice cuts the second part, and the stream is cut to match."""

    def __init__(self):
        super().__init__()
        from timm.models.ghostnet import GhostModule

        self.stem = nn.Sequential(nn.Conv2d(3, 21, 3, padding=1), nn.BatchNorm2d(21), nn.ReLU())
        self.ghost = GhostModule(21, 21)
        self.fc = nn.Linear(21, 3)

    def forward(self, x):
        h = self.stem(x)
        return self.fc((self.ghost(h) + h).mean((2, 3)))


def _levit():
    from timm.models.levit import Levit

    # LeViT's code path (attention with per-head q/k/v blocks through LinearNorm, attention
    # biases, a downsampling attention) at two small stages
    return Levit(img_size=64, num_classes=3, embed_dim=(32, 48), key_dim=8, depth=(1, 1), num_heads=(2, 3))


def _mobilevit():
    from timm.models.mobilevit import MobileVitBlock

    # MobileViT's block: conv → 1×1 conv → unfold into 2×2 patches → transformer → fold → conv
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
                         MobileVitBlock(8, 8, transformer_dim=12, transformer_depth=1, patch_size=2, num_heads=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))



MODELS = {
    "resnext": (_resnext, IMG),
    "regnet_y": (_regnet_y, IMG),
    "shufflenet": (_shufflenet, IMG),
    "ghostnet": (_ghostnet, IMG),
    "ghost-odd": (_GhostOdd, IMG),
    "levit": (_levit, None),
    "mixer": (_mixer, None),
    "mobilevit": (_mobilevit, IMG[:, :, :8, :8]),
}


@pytest.fixture(scope="module")
def built(symmetry_tables):
    return symmetry_tables(MODELS)


def _positions(member, size, units):
    seg = torch.arange(member.segments)[:, None, None] * (size * member.block)
    return (member.offset + seg + units[None, :, None] * member.block + torch.arange(member.block)).reshape(-1)


@torch.no_grad()
def _move(t, member, size, perm):
    """Permute the slice ``member`` of tensor ``t`` in place by ``perm`` (unit u ← unit perm[u])."""
    if member.groups == 1:
        t.index_copy_(member.dim, _positions(member, size, torch.arange(size)),
                      t.index_select(member.dim, _positions(member, size, perm)).clone())
        return
    # a grouped conv's input side: row block j holds units j·k … j·k + k − 1 as columns 0 … k − 1
    g, k = member.groups, size // member.groups
    rows = t.shape[member.row_dim] // g
    for j in range(g):
        p = perm[j * k:(j + 1) * k] - j * k
        assert bool(((p >= 0) & (p < k)).all()), "a grouped axis moved a unit out of its group"
        cols = (p[:, None] * member.block + torch.arange(member.block)).reshape(-1)
        blk = t.narrow(member.row_dim, j * rows, rows)
        blk.copy_(blk.index_select(member.dim, cols).clone())


@torch.no_grad()
def _outputs_moved(m64, probe, members, size, perm):
    sd = m64.state_dict(keep_vars=True)
    saved = {}
    for mem in members:
        t = sd[mem.key]
        saved.setdefault(id(t), (t, t.clone()))
        _move(t, mem, size, perm)
    try:
        m64.eval()  # timm's LeViT caches its attention biases in eval mode; eval() clears the cache
        return sym._run(m64, probe)
    finally:
        for t, orig in saved.values():
            t.copy_(orig)
        m64.eval()


def _rel(a, b):
    ref = max(float(t.abs().max()) for t in a)
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True)) / ref


def _random_element(ax, gen):
    k = ax.size // ax.groups
    perm = torch.cat([j * k + torch.randperm(k, generator=gen) for j in range(ax.groups)])
    if torch.equal(perm, torch.arange(ax.size)):
        perm[:k] = perm[:k].roll(1)
    return perm


def _unzeroed(model):
    # what the lens does, done here independently: every parameter tensor and running statistic
    # gets random non-zero values (an axis is a symmetry for every parameter value), so no claim
    # passes only because a tensor is zero (LeViT's attention biases, a zero head) or constant
    m = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, t in m.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.3)
    return m.eval()  # eval() drops LeViT's cached attention biases


@pytest.mark.parametrize("name", list(MODELS))
def test_every_axis_passes_an_independent_permutation_test(built, name):
    model, data, table = built[name]
    s = table.attrs["summary"]
    assert len(table) > 0 and table["verified"].all() and s["rejected"] == [], s
    an = sym._analyse(model, data)
    axes = {a.name: a for a in an.axes}
    probe = sym._probe_inputs(model, data)
    m64 = _unzeroed(model)
    y0 = sym._run(m64, probe)
    assert max(float(t.abs().max()) for t in y0) > 0
    gen = torch.Generator().manual_seed(1)
    for axis in table["axis"]:
        ax = axes[axis]
        perm = _random_element(ax, gen)
        y = _outputs_moved(m64, probe, ax.writers + ax.readers, ax.size, perm)
        assert _rel(y0, y) <= 1e-10, (axis, _rel(y0, y))
        y_half = _outputs_moved(m64, probe, ax.writers, ax.size, perm)
        assert _rel(y0, y_half) > 1e-8, (axis, "writers alone left the outputs unchanged")
    assert not model.training and next(model.parameters()).dtype == torch.float32


def test_grouped_convolutions_channels_move_inside_groups_and_groups_as_blocks(built):
    model, _, t = built["resnext"]
    # every bottleneck: conv1 → (4 groups of 4) grouped conv2 → conv3; the 4 groups of conv2's
    # input and output move together (4!), the channels inside each group on their own (4!)^4
    # for conv2's input and again for its output: (4!)^4 · (4!)^4 · 4! per block
    lf = msym.log10_factorial
    for i in range(1, 5):
        blk = t[t["layer"].str.startswith(f"layer{i}.0")]
        grouped = blk[blk.kind == "grouped channel"]
        width = 16 * 2 ** (i - 1)  # width_per_group · groups · 2^stage
        assert sorted(grouped["size"]) == [width, width] and set(grouped["groups"]) == {4}
        assert grouped["log10_order"].tolist() == pytest.approx([4 * lf(width // 4)] * 2, rel=1e-12)
        groups = t[(t.kind == "channel group") & t["layer"].str.contains(f"layer{i}.0.conv1")]
        assert groups["size"].tolist() == [4] and groups["log10_order"].tolist() == pytest.approx([lf(4)])
        # the block permutation moves conv2's rows and both sides' BatchNorms, never its columns
        tens = groups.iloc[0]["tensors"]
        assert f"layer{i}.0.conv2.weight[dim 0" in tens and f"layer{i}.0.bn1.running_mean" in tens
        assert f"layer{i}.0.conv2.weight[dim 1" not in tens
        assert f"layer{i}.0.conv2.weight[dim 1, within 4 row groups" in " ".join(grouped["tensors"])
    assert "grouped" not in " ".join(t.attrs["summary"]["not_analysed"])
    assert t.attrs["summary"]["status"] == "ok"
    # RegNetY: squeeze-and-excitation scales the grouped channels: its rows move with them
    r = built["regnet_y"][2]
    assert {"grouped channel", "channel group"} <= set(r["kind"]) and r.attrs["summary"]["status"] == "ok"
    se = r[(r.kind == "grouped channel") & r["tensors"].str.contains("se.fc2.weight")]
    assert len(se) >= 1


def _tiny_grouped(g2=2):
    # two grouped convs in a row between 1×1 convs: the three spaces around them are linked (one
    # permutation of the 2 groups moves all three) when both have 2 groups
    return nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, groups=g2), nn.ReLU(),
        nn.Conv2d(12, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def test_canonicalize_align_and_equivalence_on_a_grouped_model(built):
    model, data, _ = built["resnext"]
    probe = sym._probe_inputs(model, data)
    y0 = sym._run(copy.deepcopy(model).double().eval(), probe)
    assert _rel(y0, sym._run(sym.canonicalize(model, data=data), probe)) <= 1e-10

    torch.manual_seed(0)
    model = randomise_batchnorm(_tiny_grouped()).eval()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    t = sym.symmetry_group(model, x)
    assert t["verified"].all() and t.attrs["summary"]["status"] == "ok"
    # 8 channels in 2 groups of 4 (twice) and 12 in 2 groups of 6, one block permutation for all
    grouped = t[t.kind == "grouped channel"]
    assert sorted(grouped["size"]) == [8, 8, 12] and set(grouped["groups"]) == {2}
    assert t[t.kind == "channel group"]["size"].tolist() == [2]
    lf = msym.log10_factorial
    assert t.attrs["summary"]["log10_permutations"] == pytest.approx(
        2 * lf(4) + 2 * lf(4) + 2 * lf(6) + lf(2) + lf(6), rel=1e-12)  # + the 6 channels before the head
    # groups=2 then groups=4 on the same 8 channels: they are not claimed, and the reason is named
    other = sym.symmetry_group(_tiny_grouped(g2=4).eval(), x).attrs["summary"]
    assert other["status"].startswith("partial") and any("of 2 and 4 groups" in n for n in other["not_analysed"])
    probe = sym._probe_inputs(model, x)
    y0 = sym._run(copy.deepcopy(model).double().eval(), probe)
    assert _rel(y0, sym._run(sym.canonicalize(model, data=x), probe)) <= 1e-10
    # a random element of the whole group (every axis, blocks of groups included) applied to a
    # copy: same canonical form, aligned back exactly, certified equivalent
    an = sym._analyse(model, x)
    moved = copy.deepcopy(model).double()
    gen = torch.Generator().manual_seed(7)
    sd = moved.state_dict(keep_vars=True)
    for ax in an.axes:
        perm = _random_element(ax, gen)
        for mem in ax.writers + ax.readers:
            _move(sd[mem.key], mem, ax.size, perm)
    assert _rel(y0, sym._run(moved.eval(), probe)) <= 1e-10
    ca, cb = sym.canonicalize(model, data=x), sym.canonicalize(moved, data=x)
    diff = max(float((ca.state_dict()[k] - cb.state_dict()[k]).abs().max()) for k in ca.state_dict()
               if ca.state_dict()[k].is_floating_point())
    assert diff < 1e-10
    al = sym.align(model, moved, data=x, normalize=False)
    assert al.distance_before > 0.1 and al.distance_after < 1e-10
    assert sym.functionally_equivalent(model, moved, inputs=x, search_steps=10).verdict == "equivalent"


def test_shufflenet_branches_and_shuffles(built):
    t = built["shufflenet"][2]
    # every branch-internal hidden axis (conv 1×1 → BN → ReLU → depthwise → BN → conv 1×1) of
    # all 6 blocks, and the block outputs followed through chunk + concatenation + shuffle
    internal = t[t["axis"].str.contains(r"branch2\.0")]
    assert len(internal) == 6
    assert any("channel shuffles" in n for n in t["note"])
    assert t.attrs["summary"]["status"] == "ok", t.attrs["summary"]["not_analysed"]


def test_ghostnet_levit_and_mixer_axes(built):
    g = built["ghostnet"][2]
    # GhostNet: cat([P, cheap(P)])[:, :oup] added to the stream: the stream is cut into the
    # halves each ghost module writes, and the primary channels move with both halves
    assert g.attrs["summary"]["status"] == "ok" and "residual stream" in set(g["kind"])
    # 21 = 11 primary + 10 of the 11 cheap channels: the stream's channels 0-9 and 11-20 both move
    # with primary channels 0-9 (one permutation of 10); channel 10 stays
    odd = built["ghost-odd"][2]
    assert odd["size"].tolist() == [10] and odd.iloc[0]["kind"] == "residual stream"
    assert "stem.0.weight[dim 0, from 11]" in odd.iloc[0]["tensors"]
    lv = built["levit"][2]
    heads = lv[lv.kind == "attention head"]
    # 2 and 3 heads in the two stages, 32 // key_dim 8 = 4 in the downsampling attention
    assert sorted(heads["size"]) == [2, 3, 4] and all("attention_biases" in x for x in heads["tensors"])
    assert any("qkv.bn.running_var" in x for x in heads["tensors"])
    assert any("kv.bn.running_var" in x and "q.ln.linear.weight" in x for x in heads["tensors"])
    assert lv.attrs["summary"]["status"] == "ok"
    mx = built["mixer"][2]
    tok = mx[mx.kind == "token-mixing hidden unit"]
    # MlpMixer's token MLP: 16 patches → 0.5·32 = 16 hidden units → 16 patches, per block
    assert tok["size"].tolist() == [16, 16]
    assert all("mlp_tokens.fc1.weight[dim 0]" in x and "mlp_tokens.fc2.weight[dim 1]" in x for x in tok["tensors"])
    s = mx.attrs["summary"]
    # timm zero-initialises the head: the axes are still tested on random values of every tensor
    assert s["status"] == "ok" and "random values" in s["statement"]


def test_mobilevit_unfold_and_fold_are_followed(built):
    t = built["mobilevit"][2]
    # (B, C, H, W) → (B·C·n_h, p_h, n_w, p_w) → … → (B·P, N, C): the transformer's residual stream
    # is conv_1x1's output channels, read after the fold by conv_proj
    stream = t[t.kind == "residual stream"]
    assert stream["size"].tolist() == [12]
    tens = stream.iloc[0]["tensors"]
    assert "3.conv_1x1.weight[dim 0]" in tens and "3.conv_proj.conv.weight[dim 1]" in tens
    assert "3.transformer.0.norm1.weight" in tens
    assert {"attention head", "FFN hidden unit"} <= set(t["kind"]) and t.attrs["summary"]["status"] == "ok"


def test_timm_model_built_for_another_image_size():
    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3,
                          depth=2).eval()
    assert m.pretrained_cfg["input_size"][-1] == 224  # the stale size the probe must not use
    g = sym.symmetry_group(m)
    s = g.attrs["summary"]
    assert s["probe"].startswith("patch_embed.img_size (32×32)")
    assert {"residual stream", "attention head", "FFN hidden unit"} <= set(g["kind"]) and g["verified"].all()


def test_zero_outputs_are_verified_on_random_values_of_the_zero_parameters():
    torch.manual_seed(0)
    # torchvision zero-initialises the ViT head: every logit is 0 at init
    m = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                                             hidden_dim=16, mlp_dim=24, num_classes=3).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not bool((m(x) != 0).any())
    g = sym.symmetry_group(m, x)
    s = g.attrs["summary"]
    assert {"residual stream", "attention head", "FFN hidden unit"} <= set(g["kind"])
    assert g["verified"].all() and s["status"] == "ok"
    assert "random values" in s["statement"] and "zero-initialised heads" in s["statement"]
    # the user's model is untouched
    assert not bool((m.heads.head.weight != 0).any())


def test_parameters_filled_for_verification_are_zero_again_for_the_identical_units_count():
    # hidden units 0 and 1 write the same row and are read by an all-zero head: identical in
    # every tensor they own (one identical unit). The head is filled with random values only
    # while the axes are verified; counted on those values the two units would differ.
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    with torch.no_grad():
        m[0].weight[1] = m[0].weight[0]
        m[0].bias[1] = m[0].bias[0]
        m[2].weight.zero_()
        m[2].bias.zero_()
    g = sym.symmetry_group(m, torch.randn(8, 4, dtype=torch.float64))
    s = g.attrs["summary"]
    assert "random values" in s["statement"] and g["verified"].all()
    assert g["identical_units"].tolist() == [1]
    assert not bool((m[2].weight != 0).any())


class _Unreadable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        raise RuntimeError("this model cannot run")


def test_an_unreadable_model_is_never_ok():
    from netxray.report.runners import ScanOptions, _run_symmetry

    g = sym.symmetry_group(_Unreadable(), torch.rand(2, 4))
    assert g.attrs["summary"]["status"].startswith("failed") and len(g) == 0
    res = _run_symmetry(_Unreadable(), torch.rand(2, 4), ScanOptions())
    assert res.status == "failed" and "could not be read" in res.reason


def test_grouped_log_order_formula():
    ax = sym.Axis("a", "l", "grouped channel", 12, [], [], groups=3)
    assert sym._axis_log_order(ax) == pytest.approx(3 * math.lgamma(5))
