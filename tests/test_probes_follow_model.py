"""The modularity curve's default probes follow the model (issue 21, item 6): every block on the
path to the output — a segmentation backbone's blocks, an encoder's and a decoder's layers — and
the activation calls of models without blocks (several inputs, a top-1 mixture of experts, a
model written with ``torch.nn.functional`` only)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import netxray
from _toy_models import TopOneMoE
from netxray.capture import Capture, natural_probes
from netxray.capture.core import resolve_layers
from netxray.capture.graph import record_graph


class _FunctionalOnly(nn.Module):
    """No submodule: parameters on the root, layers written with torch.nn.functional."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 4) * 0.5)
        self.b1 = nn.Parameter(torch.zeros(16))
        self.w2 = nn.Parameter(torch.randn(16, 16) * 0.25)
        self.b2 = nn.Parameter(torch.zeros(16))
        self.w3 = nn.Parameter(torch.randn(3, 16) * 0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.linear(x, self.w1, self.b1))
        x = torch.tanh(F.linear(x, self.w2, self.b2))
        return F.linear(x, self.w3)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.h = nn.Linear(4, 6), nn.Linear(3, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h(torch.relu(self.a(x) + self.b(y)))


def _labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 3


def _curve(model: nn.Module, data) -> list[str]:
    curve = netxray.modularity_curve(model, data, n=12, k=3, repeats=2)
    assert (curve["status"] == "ok").all(), curve[["layer", "status", "error"]]
    return list(curve["layer"])


def test_functional_only_model_is_probed_at_its_activation_calls():
    torch.manual_seed(0)
    m = _FunctionalOnly().eval()
    x = torch.randn(12, 4)
    assert natural_probes(m, x[:2]) == [":F.relu", ":torch.tanh"]
    assert _curve(m, (x, _labels(12))) == [":F.relu", ":torch.tanh"]
    # the probe is the activation's output, and the model's output is untouched by it
    with torch.no_grad():
        plain = m(x)
        with Capture(m, activations=False, layers=[":torch.tanh"], reducer="flatten") as cap:
            probed = m(x)
    assert torch.equal(plain, probed)
    site = cap.layer_sites()[":torch.tanh"]
    expected = torch.tanh(F.linear(F.relu(F.linear(x, m.w1, m.b1)), m.w2, m.b2))
    assert torch.allclose(site.outputs, expected)


def test_an_unknown_functional_probe_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown layer"):
        resolve_layers(_FunctionalOnly(), [":F.nonexistent"])
    with pytest.raises(ValueError, match="unknown layer"):
        resolve_layers(_FunctionalOnly(), ["nowhere:F.relu"])


def test_a_two_input_model_probes_each_input_layer_and_the_joint_activation():
    torch.manual_seed(0)
    m = _TwoInputs().eval()
    x, y = torch.randn(12, 4), torch.randn(12, 3)
    assert natural_probes(m, (x[:2], y[:2])) == ["a", "b", ":torch.relu"]
    assert _curve(m, ((x, y), _labels(12))) == ["a", "b", ":torch.relu"]


def test_a_top1_moe_is_probed_before_and_after_the_experts_never_inside_one():
    torch.manual_seed(0)
    m = TopOneMoE().eval()
    x = torch.randn(12, 4)
    probes = natural_probes(m, x[:2])
    assert probes == [":torch.relu"]  # both calls: before the router, after the experts' sum
    assert not any(p.startswith("experts") for p in probes)
    assert _curve(m, (x, _labels(12))) == [":torch.relu#0", ":torch.relu#1"]


def test_lraspp_probes_its_backbone_blocks():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    m = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3
    ).eval()
    x = torch.randn(12, 3, 32, 32)
    g = record_graph(m, x[:2])
    # the head keeps backbone.4's output (its low-level features): the blocks after it are
    # still the chain, and the head reads the last backbone layer's features
    assert [b.name for b in g.blocks()] == [f"backbone.{i}" for i in range(1, 16)]
    assert g.head().name == "classifier"
    expected = [f"backbone.{i}" for i in range(17)]  # stem, 15 inverted residuals, the 960-channel conv
    assert g.natural_probes() == expected
    assert _curve(m, (x, _labels(12))) == expected


def test_t5_classifier_probes_encoder_and_decoder_layers():
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tf.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
                      num_heads=4, num_labels=3, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    m = tf.T5ForSequenceClassification(cfg).eval()
    ids = torch.cat([torch.randint(2, 64, (12, 7)), torch.ones(12, 1, dtype=torch.long)], 1)
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": _labels(12)}
    probes = natural_probes(m, {"input_ids": ids[:2], "attention_mask": torch.ones_like(ids[:2])})
    blocks = [f"transformer.{s}.block.{i}" for s in ("encoder", "decoder") for i in range(2)]
    assert [p for p in probes if ".block." in p] == blocks
    # the decoder's output, fed to the head; its dropout also runs on the decoder's embeddings
    assert "transformer.decoder.dropout" in probes
    layers = _curve(m, data)
    assert [v for v in layers if ".block." in v] == blocks
    assert layers[-1] == "transformer.decoder.dropout#1"
    assert list(dict.fromkeys(v.split("#")[0] for v in layers)) == probes  # the curve's order


def test_a_functional_probe_is_not_offered_for_removal():
    from netxray.lenses.pruning import removable_layers

    torch.manual_seed(0)
    table = removable_layers(_FunctionalOnly().eval(), example_inputs=torch.randn(2, 4))
    assert list(table["layer"]) == [":F.relu", ":torch.tanh"] and not table["removable"].any()
    assert table["reason"].str.contains("functional activation call").all()


def test_probes_are_in_forward_order_with_a_module_named_like_a_function():
    # ALBERT's classifier dropout is a module named "dropout", and F.dropout runs long before
    # it: a function call is no call of that module (the pre-head stays last)
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tf.AlbertConfig(vocab_size=64, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=16, max_position_embeddings=16,
                          num_labels=3)  # fmt: skip
    m = tf.AlbertForSequenceClassification(cfg).eval()
    ids = torch.randint(2, 64, (2, 8))
    probes = natural_probes(m, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert probes == ["albert.encoder.embedding_hidden_mapping_in", "albert.encoder.albert_layer_groups.0", "dropout"]
