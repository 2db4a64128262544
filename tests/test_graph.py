"""The model graph recorded from one forward pass (issue 10, item 1).

Every expected answer below is read off the model's source: which modules exist, how often each
is called, which tensors are added or concatenated, which axis a Linear or a Conv reads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netxray.capture.graph import record_graph, unwrap_model


class ResBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class ResMLP(nn.Module):
    """embed → 3 residual blocks → head: blocks, stem, pre-head and 3 residual adds known."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(5, d)
        self.blocks = nn.ModuleList([ResBlock(d) for _ in range(3)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.head = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(self.a(x)), self.b(x)], dim=1)
        return self.head(y.mean(dim=(2, 3)))


class ChannelLast(nn.Module):
    """A ConvNeXt-style block: conv (NCHW) → permute → LayerNorm/Linear/GELU (NHWC) → permute."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.up = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.down = nn.Linear(4 * c, c)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        y = self.down(self.act(self.up(self.norm(y))))
        return self.relu(x + y.permute(0, 3, 1, 2))


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.fc(x)))


class DictModel(nn.Module):
    """Hugging Face style: keyword inputs, a mask beside the main input, a tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.layers = nn.ModuleList([ResBlock(8) for _ in range(2)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        h = self.emb(input_ids)
        for layer in self.layers:
            h = layer(h) * attention_mask[..., None]
        return {"last_hidden_state": h, "mask": attention_mask}


class ParamActivation(nn.Module):
    """A sigmoid on a parameter table (Swin V2's position bias): not data dependent."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(1, 4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) + torch.sigmoid(self.table)


def test_residual_mlp_blocks_stem_head_and_adds():
    model = ResMLP()
    g = record_graph(model, torch.randn(2, 5))
    assert [b.name for b in g.blocks()] == ["blocks.0", "blocks.1", "blocks.2"]
    assert g.stem().name == "embed"
    assert g.head().name == "head" and g.pre_head().name == "norm"
    adds = g.residual_adds()
    assert len(adds) == 3
    for add, block in zip(adds, g.blocks(), strict=True):
        # the shortcut is the block's input itself, and the fork is that same value
        assert add.skip == add.fork == g.main_input(block)
        assert g.nodes[add.node].module_path == block.name
    # per-edge shapes and the parameter each call reads
    lin = [n for n in g.ops("linear") if n.module_path == "blocks.0.fc1"][0]
    assert g.values[lin.inputs[0]].shape == (2, 8) and g.values[lin.outputs[0]].shape == (2, 16)
    assert "blocks.0.fc1.weight" in lin.params and g.param_module("blocks.0.fc1.weight") == "blocks.0.fc1"
    # module order, parents and depth
    calls = [n.name for n in g.module_calls()]
    assert calls[:4] == ["", "embed", "blocks.0", "blocks.0.fc1"]
    fc1 = g.module_calls("blocks.0.fc1")[0]
    assert g.nodes[fc1.parent].name == "blocks.0" and fc1.depth == 2
    assert [n.name for n in g.feeds(g.module_calls("blocks.0")[0])][:1] == ["blocks.1"]
    assert [n.name for n in g.fed_by(g.module_calls("blocks.1")[0])] == ["blocks.0"]
    assert not g.notes


class OneLayerResidual(nn.Module):
    """``x + relu(fc(x))``: a residual block around a single parametrised call."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


def test_blocks_directly_in_a_root_sequential():
    # nn.Sequential(stem, Block, Block, Block, head): the blocks are the root's children, and
    # each holds one Linear (one parametrised call) around its shortcut
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), *[OneLayerResidual() for _ in range(3)], nn.ReLU(), nn.Linear(8, 3))
    g = record_graph(model, torch.randn(2, 5))
    assert [b.name for b in g.blocks()] == ["1", "2", "3"]
    assert g.stem().name == "0" and g.head().name == "5"
    assert g.natural_probes() == ["0", "1", "2", "3", "4"]
    # a chain of single Linears (no shortcut) has no blocks: each call is one layer, not a unit
    chain = nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3))
    assert record_graph(chain, torch.randn(2, 5)).blocks() == []


def test_serial_excludes_branches_of_a_residual_block():
    g = record_graph(ResMLP(), torch.randn(2, 5))
    serial = {n.name for n in g.module_calls() if g.is_serial(n)}
    assert {"embed", "blocks.0", "blocks.1", "blocks.2", "norm"} <= serial
    # inside a block the shortcut is alive beside the branch: fc1, act, fc2 are not serial
    assert not serial & {"blocks.0.fc1", "blocks.0.act", "blocks.0.fc2"}


def test_concat_is_recorded_with_both_branches():
    g = record_graph(Concat(), torch.randn(2, 3, 5, 5))
    (cat,) = g.concats()
    shapes = [g.values[v].shape for v in cat.inputs]
    assert shapes == [(2, 4, 5, 5), (2, 6, 5, 5)]
    assert g.values[cat.outputs[0]].shape == (2, 10, 5, 5)
    assert cat.args["dim"] == 1
    assert g.producer(cat.inputs[1]).module_path == "b"
    assert not g.residual_adds()  # concatenation is not an addition


def test_channel_last_permutes_and_layouts():
    g = record_graph(ChannelLast(), torch.randn(2, 6, 4, 4))
    assert [n.name for n in g.reshapes()] == ["permute", "permute"]
    layouts = g.activation_layouts()
    # the GELU runs on (B, H, W, 4C) between two Linears: features on the last axis
    assert layouts[("activation", "act", "", 0)].axis == 3
    assert layouts[("activation", "act", "", 0)].ndim == 4
    # the ReLU runs on the NCHW sum (read back through the permute): features on axis 1
    assert layouts[("activation", "relu", "", 0)].axis == 1
    (add,) = g.residual_adds()
    assert add.skip == g.inputs[0]


def test_reused_module_is_called_twice():
    g = record_graph(Reused(), torch.randn(3, 4))
    assert g.reused_modules() == {"fc": 2}
    calls = g.module_calls("fc")
    assert [c.call_index for c in calls] == [0, 1]
    # the second call reads what the first produced (through the tanh)
    tanh = g.ops("tanh")[0]
    assert tanh.inputs[0] in calls[0].outputs and calls[1].inputs[0] == tanh.outputs[0]
    assert tanh.site == ("activation", "", "torch.tanh", 0)


def test_dict_inputs_main_path_and_mapping_outputs():
    ids = torch.randint(0, 20, (2, 7))
    g = record_graph(DictModel(), {"input_ids": ids, "attention_mask": torch.ones(2, 7)})
    main, mask = g.inputs
    assert g.nodes[g.values[main].producer].name == "input_ids" and g.values[main].primary
    assert g.values[mask].data_dependent and not g.values[mask].primary
    # the mask is read by both layers, yet the layers are serial on the main path
    assert [b.name for b in g.blocks()] == ["layers.0", "layers.1"]
    assert g.stem().name == "emb"
    assert len(g.outputs) == 2


def test_activation_on_a_parameter_is_not_data_dependent():
    g = record_graph(ParamActivation(), torch.randn(2, 4))
    layouts = g.activation_layouts()
    assert layouts[("activation", "", "torch.relu", 0)].data_dependent
    assert not layouts[("activation", "", "torch.sigmoid", 0)].data_dependent
    # a parameter + a data value is no residual add (only one operand depends on the data)
    assert not g.residual_adds()


def test_wrappers_give_the_same_graph():
    model = ResMLP()
    x = torch.randn(2, 5)
    plain = record_graph(model, x)
    for wrapped in (nn.DataParallel(model), torch.compile(model)):
        assert unwrap_model(wrapped) is model
        g = record_graph(wrapped, x)
        assert [n.name for n in g.module_calls()] == [n.name for n in plain.module_calls()]
        assert [b.name for b in g.blocks()] == [b.name for b in plain.blocks()]


def test_outputs_flags_and_hooks_untouched():
    model = ResMLP().train()
    model.blocks[1].eval()
    x = torch.randn(4, 5)
    before = model(x)
    record_graph(model, x)
    after = model(x)
    assert torch.equal(before, after)
    assert model.training and not model.blocks[1].training and model.blocks[0].training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unknown_tensors_are_named_in_notes():
    class Attr(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.offset = torch.ones(3)  # a plain attribute: neither parameter nor buffer

        def forward(self, x):
            return self.fc(x) + self.offset

    g = record_graph(Attr(), torch.randn(2, 3))
    assert any("unknown origin" in note and "(3,)" in note for note in g.notes)


def test_a_model_that_cannot_run_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot run on the example inputs"):
        record_graph(nn.Linear(3, 2), torch.randn(2, 5))
    with pytest.raises(TypeError, match="example_inputs"):
        record_graph(nn.Linear(3, 2), "x")


def test_torchvision_resnet18():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    g = record_graph(tv.models.resnet18(weights=None), torch.randn(2, 3, 32, 32))
    assert [b.name for b in g.blocks()] == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert g.stem().name == "maxpool" and g.head().name == "fc" and g.pre_head().name == "avgpool"
    adds = g.residual_adds()
    assert len(adds) == 8
    # blocks 2.0, 3.0, 4.0 have projection shortcuts: the skip is the downsample's output
    skips = {g.producer(a.skip).module_path for a in adds}
    assert {"layer2.0.downsample.1", "layer3.0.downsample.1", "layer4.0.downsample.1"} <= skips
    assert g.reused_modules()["layer1.0.relu"] == 2


def test_hugging_face_bert_from_config():
    tf = pytest.importorskip("transformers")
    cfg = tf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)  # fmt: skip
    model = tf.BertModel(cfg)
    ids = torch.randint(0, 50, (2, 6))
    g = record_graph(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert [b.name for b in g.blocks()] == ["encoder.layer.0", "encoder.layer.1"]
    assert g.stem().name == "embeddings"
    # two residual adds per layer (attention and feed-forward), each inside a LayerNorm'd output
    adds = g.residual_adds()
    assert [a.module_path for a in adds] == [
        f"encoder.layer.{i}.{part}" for i in range(2) for part in ("attention.output", "output")
    ]


def test_natural_probes_for_any_model():
    from netxray.capture import natural_probes

    assert natural_probes(ResMLP(), torch.randn(2, 5)) == ["embed", "blocks.0", "blocks.1", "blocks.2", "norm"]
    # no repeated block: the serial activation modules, the head's final Linear excluded
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert natural_probes(mlp, torch.zeros(2, 4)) == ["1", "3"]
    assert natural_probes(nn.DataParallel(mlp), torch.zeros(2, 4)) == ["1", "3"]
    with pytest.raises(ValueError, match="pass example_inputs"):
        natural_probes(mlp)


def test_modularity_curve_defaults_on_a_foreign_model():
    from netxray import modularity_curve

    torch.manual_seed(0)
    model = ResMLP()
    x, y = torch.randn(40, 5), torch.arange(40) % 2
    curve = modularity_curve(model, (x, y), n=20, repeats=2)
    assert list(curve["layer"]) == ["embed", "blocks.0", "blocks.1", "blocks.2", "norm"]
    assert (curve["status"] == "ok").all()
    wrapped = modularity_curve(torch.compile(model), (x, y), n=20, repeats=2)
    assert wrapped["q_mean"].tolist() == curve["q_mean"].tolist()


def test_scan_of_a_wrapped_model_is_the_scan_of_the_model():
    import pandas as pd

    from netxray.report import scan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    data = (torch.randn(40, 5), torch.arange(40) % 3)
    kw = {"lenses": ["nonlinearity", "parameters"], "n_samples": 40, "progress": False}
    plain = scan(model, data, **kw)
    for wrapped in (nn.DataParallel(model), torch.compile(model)):
        other = scan(wrapped, data, **kw)
        for lens in kw["lenses"]:
            pd.testing.assert_frame_equal(other[lens], plain[lens])
