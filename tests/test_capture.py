"""Guarantees of the capture mechanism (issue 2, item 5)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import relu as aliased_relu

from netxray.capture import Capture, collect, pool_features


class InplaceNet(nn.Module):
    """In-place SiLU and Hardswish, a shared ReLU called twice, ReLU6, and functional calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.relu = nn.ReLU()
        self.silu = nn.SiLU(inplace=True)
        self.hswish = nn.Hardswish(inplace=True)
        self.relu6 = nn.ReLU6()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn(self.fc1(x)))
        h = self.silu(h - 0.5)
        h = self.hswish(h * 2)
        h = self.relu(self.relu6(h) - 0.2)
        h = F.gelu(h) + torch.tanh(h) + h.sigmoid()
        return self.fc2(h)


class FunctionalOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 7)
        self.fc3 = nn.Linear(7, 2)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = aliased_relu(self.fc2(x))  # imported before any capture existed
        return self.fc3(x.relu())


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        self.act(self.fc(x))
        raise RuntimeError("boom")


def _data(n: int = 64, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_outputs_bit_identical_with_inplace_activations():
    torch.manual_seed(0)
    model = InplaceNet().eval()
    x, _ = _data()
    reference = model(x)
    with Capture(model) as cap:
        observed = model(x)
    assert torch.equal(reference, observed)
    assert torch.equal(model(x), reference)  # and after
    assert len(cap.sites) > 0


def test_inplace_activation_input_is_the_pre_activation_value():
    torch.manual_seed(0)
    model = InplaceNet().eval()
    x, _ = _data()
    with Capture(model) as cap:
        model(x)
    pre = model.relu(model.bn(model.fc1(x))) - 0.5  # what SiLU received
    site = cap.sites["silu"]
    assert torch.allclose(site.inputs, pre)
    assert torch.allclose(site.outputs, F.silu(pre))
    assert not torch.allclose(site.inputs, site.outputs)


def test_site_names_order_and_call_indices():
    model = InplaceNet().eval()
    x, _ = _data()
    with Capture(model) as cap:
        model(x)
    names = list(cap.sites)
    assert names == [
        "relu#0", "silu", "hswish", "relu6", "relu#1", "F.gelu", "torch.tanh", "Tensor.sigmoid",
    ]
    assert [s.call_index for s in cap.sites.values()][:5] == [0, 0, 0, 0, 1]


def test_relu6_is_one_site_per_call():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 4), nn.ReLU6())
    with Capture(model) as cap:
        model(torch.randn(10, 4))
    assert [s.op for s in cap.sites.values()] == ["ReLU6", "ReLU6"]
    assert list(cap.sites) == ["1", "3"]


def test_functional_only_model_has_full_signature():
    model = FunctionalOnly().eval()
    cap = collect(model, torch.randn(50, 5), n_samples=None)
    assert [s.op for s in cap.sites.values()] == ["F.relu", "F.relu", "Tensor.relu"]
    assert list(cap.sites) == ["F.relu#0", "F.relu#1", "Tensor.relu"]
    assert all(s.n == 50 and s.status == "ok" for s in cap.sites.values())


def test_hooks_removed_and_modes_restored_when_forward_raises():
    model = Exploding()
    model.train()
    model.act.eval()  # a mixed state must come back exactly
    with pytest.raises(RuntimeError, match="boom"):
        collect(model, torch.randn(8, 3))
    assert model.training and not model.act.training
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(RuntimeError):
        with Capture(model):
            model(torch.randn(2, 3))
    assert all(not m._forward_hooks for m in model.modules())


def test_parameters_buffers_and_mode_untouched():
    torch.manual_seed(1)
    model = InplaceNet()
    model.train()
    state = copy.deepcopy(model.state_dict())
    collect(model, _data(200)[0], n_samples=100, batch_size=32)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_seeded_subset_is_deterministic_and_labels_follow():
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh())
    x, y = _data(300)
    a = collect(model, (x, y), n_samples=100, seed=3, batch_size=17)
    again = collect(model, (x, y), n_samples=100, seed=3, batch_size=17)
    b = collect(model, (x, y), n_samples=100, seed=3, batch_size=64)
    c = collect(model, (x, y), n_samples=100, seed=4)
    assert torch.equal(a.sites["1"].outputs, again.sites["1"].outputs)
    # another batch size picks the same samples (matmul blocking may move the last ulp)
    assert torch.equal(torch.from_numpy(a.indices), torch.from_numpy(b.indices))
    assert torch.allclose(a.sites["1"].outputs, b.sites["1"].outputs, atol=1e-6)
    assert not torch.equal(a.sites["1"].outputs, c.sites["1"].outputs)
    assert torch.equal(a.labels, y[torch.from_numpy(a.indices)])
    assert torch.allclose(a.sites["1"].inputs, model[0](x[torch.from_numpy(a.indices)]))
    assert a.indices.tolist() != list(range(100))  # random, not the first batch


def test_stream_of_batches_keeps_a_seeded_reservoir():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    x, y = _data(200)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 200, 32)]
    cap = collect(model, batches, n_samples=50, seed=0)
    again = collect(model, batches, n_samples=50, seed=0)
    site = cap.sites["1"]
    assert site.n == 50 and cap.labels.shape == (50,)
    assert torch.equal(site.outputs, again.sites["1"].outputs)
    # each kept row is a real sample, with its own label
    full = model[0](x).detach()  # the ReLU's input: no two samples share it (outputs can be 0)
    # the kept samples run as their own batches: matmul blocking may move the last ulp
    match = (site.inputs[:, None, :] - full[None]).abs().amax(-1) < 1e-5
    rows = match.float().argmax(1)
    assert match.any(1).all() and torch.equal(cap.labels, y[rows])
    assert rows.max() > 50  # drawn from the whole stream
    assert torch.equal(torch.from_numpy(cap.indices), rows)  # stream positions, in order


def test_dict_batches_are_passed_as_keyword_arguments():
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.act = nn.GELU()

        def forward(self, input_ids, attention_mask):
            h = self.emb(input_ids) * attention_mask[..., None]
            return self.act(h).mean(1)

    ids = torch.randint(0, 20, (40, 5))
    data = {"input_ids": ids, "attention_mask": torch.ones(40, 5), "labels": torch.arange(40) % 2}
    cap = collect(DictModel(), data, n_samples=30)
    site = cap.sites["act"]
    assert site.n == 30 and site.input_shape == (5, 8) and site.outputs.shape == (30, 8)
    assert cap.labels.shape == (30,)


def test_pooling_rules():
    conv = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.allclose(pool_features(conv), conv.mean(dim=(2, 3)))
    channels_last = conv.permute(0, 2, 3, 1)  # (B, H, W, C)
    assert torch.allclose(pool_features(channels_last, channel_axis=-1), conv.mean(dim=(2, 3)))
    tokens = torch.randn(2, 7, 16)
    assert pool_features(tokens).shape == (2, 16)
    assert pool_features(tokens, tokens="reference").shape == (2, 7)
    assert pool_features(tokens, tokens="samples").shape == (14, 16)
    assert pool_features(tokens, seq_layout="channels").shape == (2, 7)


def test_conv_model_is_pooled_to_channels_inside_the_hook():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU())
    cap = collect(model, torch.randn(20, 1, 16, 16), layers=[nn.Conv2d])
    sites = cap.sites
    assert sites["1"].outputs.shape == (20, 4) and sites["1"].input_shape == (4, 16, 16)
    assert sites["3"].outputs.shape == (20, 6)
    assert [s.kind for s in sites.values()] == ["layer", "activation", "layer", "activation"]
    flat = collect(model, torch.randn(20, 1, 16, 16), activations=False, layers=["2"], reducer="flatten")
    assert list(flat.sites) == ["2"] and flat.sites["2"].outputs.shape == (20, 6 * 14 * 14)


def test_a_failing_site_is_a_status_not_a_crash():
    class Broken:
        def update(self, batch):
            raise ValueError("cannot reduce this")

        def compute(self):
            return None

    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh())
    cap = collect(
        model,
        torch.randn(10, 3),
        reducer=lambda name, side: Broken() if name == "1" else _Keep(),
    )
    assert cap.sites["1"].status == "error" and "cannot reduce" in cap.sites["1"].error
    assert cap.sites["3"].status == "ok"


class _Keep:
    def __init__(self) -> None:
        self.rows = []

    def update(self, batch):
        self.rows.append(batch.clone())

    def compute(self):
        return torch.cat(self.rows)


def test_bad_input_gets_clear_errors():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(ValueError, match="labels do not match the samples"):
        collect(model, (torch.randn(10, 3), torch.zeros(9, dtype=torch.long)))
    with pytest.raises(ValueError, match="unknown layer"):
        collect(model, torch.randn(10, 3), layers=["nope"])
    with pytest.raises(TypeError, match="nn.Module"):
        Capture("not a model")
    with pytest.raises(ValueError, match="n_samples"):
        collect(model, torch.randn(10, 3), n_samples=0)
    with pytest.raises(TypeError, match="data must be"):
        collect(model, 42)
    with pytest.raises(TypeError, match=r"dict data must map .* got \{'meta': 'str'\}"):
        collect(model, {"input": torch.randn(4, 3), "meta": "v1"})


def test_a_load_data_spec_string_means_its_test_split():
    from netxray.data import load_data

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
    cap = collect(model, "digits", n_samples=None)
    test = load_data("digits").test
    assert torch.equal(cap.labels, test.y)
    assert torch.equal(cap.sites["2"].outputs, model(test.x).detach())


def test_a_float64_model_is_fed_float64():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh()).double()
    x = torch.randn(20, 3)  # float32 data, as every built-in data set
    cap = collect(model, x, n_samples=None)
    assert cap.sites["1"].outputs.dtype == torch.float64
    assert torch.allclose(cap.sites["1"].outputs, model(x.double()))


class _ChannelLastBlock(nn.Module):
    """conv (NCHW, 6 channels) → permute → Linear 6→24 → GELU → Linear 24→6 → permute back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 6, 3, padding=1)
        self.up = nn.Linear(6, 24)
        self.act = nn.GELU()
        self.down = nn.Linear(24, 6)
        self.relu = nn.ReLU()
        self.bias_table = nn.Parameter(torch.randn(1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(self.act(self.up(self.conv(x).permute(0, 2, 3, 1))))
        # an activation on a parameter table (Swin V2's position bias): not data dependent
        bias = torch.sigmoid(self.bias_table).mean()
        return self.relu(x + y.permute(0, 3, 1, 2)) + bias


def test_per_site_layouts_and_parameter_activations():
    torch.manual_seed(0)
    model = _ChannelLastBlock()
    x = torch.randn(40, 6, 5, 5)  # H = W = 5: a wrong axis would give d = 5
    sites = collect(model, x).sites
    assert sites["act"].outputs.shape == (40, 24)  # channel-last (B, H, W, 24): d = 24
    assert sites["relu"].outputs.shape == (40, 6)  # NCHW (B, 6, H, W): d = 6
    param = sites["torch.sigmoid"]
    assert param.status == "not_data_dependent" and "does not depend on the data" in param.error
    assert param.outputs is None and param.output_shape == (3, 3)
    # an explicit channel_axis still overrides every site
    forced = collect(model, x, channel_axis=1).sites
    assert forced["act"].outputs.shape == (40, 5)


def _widths(model: nn.Module) -> set[int]:
    """Every channel / feature count a layer of ``model`` reads or writes."""
    out: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out |= {m.in_channels, m.out_channels}
        elif isinstance(m, nn.Linear):
            out |= {m.in_features, m.out_features}
    return out


@pytest.mark.parametrize("family", ["convnext", "swin", "swin_v2", "maxvit"])
def test_channel_last_families_report_channels(family):
    """ConvNeXt, Swin (v1, v2) and MaxViT: every site's d is a channel count, never H or W."""
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    if family == "convnext":
        from torchvision.models.convnext import CNBlockConfig, ConvNeXt

        model, size = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3), 32
    elif family in ("swin", "swin_v2"):
        from torchvision.models import swin_transformer as st

        v2 = {"block": st.SwinTransformerBlockV2, "downsample_layer": st.PatchMergingV2} if family == "swin_v2" else {}
        model = st.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                   window_size=[2, 2], num_classes=3, **v2)  # fmt: skip
        size = 24
    else:
        # NCHW MBConv and window/grid attention on (B, nW, tokens, C), 2×2 partitions
        model = tv.models.maxvit.MaxVit(input_size=(32, 32), stem_channels=12, partition_size=2,
                                        block_channels=[12, 24], block_layers=[1, 1], head_dim=4,
                                        stochastic_depth_prob=0.0, num_classes=3)  # fmt: skip
        size = 32
    sig = collect(model, torch.randn(24, 3, size, size)).activation_sites()
    # spatial sizes and window token counts: what a wrong axis would report
    spatial = ({size // f for f in (2, 4, 8, 16, 32) if size // f} | {4}) - _widths(model)
    scored = [s for s in sig.values() if s.status != "not_data_dependent"]
    assert scored and all(s.status == "ok" for s in scored), [(s.name, s.error) for s in scored]
    for s in scored:
        d = s.outputs.shape[1]
        assert d in _widths(model) or d == 1, (s.name, s.output_shape, d)
        assert d not in spatial, (s.name, s.output_shape, d)
    if family == "swin_v2":  # the continuous position bias MLP: apart, with its reason, no error
        apart = [s for s in sig.values() if s.status == "not_data_dependent"]
        assert apart and all("does not depend on the data" in s.error for s in apart)
        # the ReLU of the bias MLP and the sigmoid on its table, in every attention layer
        assert {s.op for s in apart} == {"ReLU", "torch.sigmoid"}
        assert all(".attn" in s.module_path for s in apart)
