"""The compatibility suite's representative subset (issue 10, item 6), within the test budget.

The same checks as ``make compat`` (``benchmarks/compat.py``), on small instances of the same
architecture classes (a timm ResNet, torchvision MobileNetV3, ConvNeXt, Swin, DenseNet and ViT; Hugging
Face BERT, GPT-2 and Llama from tiny configs): ``scan`` runs all four lenses, the signature has
one site per activation call (counted independently), the logits are bit-identical with and
without capture, the modularity curve probes exactly the stem, every block and the pre-head —
and the blocks are exactly the instances of the family's block class, read from the source.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

tv = pytest.importorskip("torchvision")
tf = pytest.importorskip("transformers")

_spec = importlib.util.spec_from_file_location(
    "netxray_compat", Path(__file__).resolve().parents[1] / "benchmarks" / "compat.py"
)
compat = importlib.util.module_from_spec(_spec)
sys.modules["netxray_compat"] = compat  # dataclasses look their module up while it loads
_spec.loader.exec_module(compat)


def _resnet():
    # timm's ResNet takes stage widths (torchvision's BasicBlock ResNet is fixed at 64…512,
    # which costs the signature most of the budget): the same block, a residual per stage
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3, channels=(8, 16, 32, 64), stem_width=8)


def _mobilenet():
    # MobileNetV3: inverted residuals with squeeze-and-excitation and hardswish; a small setting
    # (in, kernel, expanded, out, SE, activation, stride, dilation, width multiplier)
    from torchvision.models.mobilenetv3 import InvertedResidualConfig as C
    from torchvision.models.mobilenetv3 import MobileNetV3

    setting = [C(8, 3, 8, 8, True, "RE", 2, 1, 1.0), C(8, 3, 24, 8, False, "HS", 1, 1, 1.0),
               C(8, 5, 32, 16, True, "HS", 2, 1, 1.0)]  # fmt: skip
    return MobileNetV3(setting, last_channel=32, num_classes=3)


def _convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)], num_classes=3)


def _swin():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 1], num_heads=[1, 2],
                           window_size=[2, 2], num_classes=3)  # fmt: skip


def _densenet():
    from torchvision.models.densenet import DenseNet

    return DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=3)


def _vit():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8,
                              mlp_dim=16, num_classes=3)  # fmt: skip
    # torchvision zero-initialises the head: every output is 0 and the symmetry lens cannot
    # verify an axis by comparing outputs (it says "unverified", which the sweep reports as such)
    torch.nn.init.normal_(model.heads.head.weight, std=0.1)
    return model


def _hf(config_name: str, **cfg):
    def build():
        config = getattr(tf, config_name)(num_labels=3, **cfg)
        return tf.AutoModelForSequenceClassification.from_config(config)

    return build


_SMALL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}

CASES = [  # (case, block class name, number of blocks from the construction)
    (compat.Case("resnet", "timm", _resnet, size=16), "BasicBlock", 4),
    (compat.Case("mobilenet_v3", "torchvision", _mobilenet, size=16), "InvertedResidual", 3),
    (compat.Case("convnext", "torchvision", _convnext, size=16), "CNBlock", 3),
    (compat.Case("swin", "torchvision", _swin, size=16), "SwinTransformerBlock", 3),
    (compat.Case("densenet", "torchvision", _densenet, size=16), "_DenseBlock", 2),
    (compat.Case("vit", "torchvision", _vit, size=16), "EncoderBlock", 2),
    (compat.Case("bert", "hf", _hf("BertConfig", vocab_size=compat.VOCAB, max_position_embeddings=16,
                                   **_SMALL), kind="tokens"), "BertLayer", 2),
    (compat.Case("gpt2", "hf", _hf("GPT2Config", vocab_size=compat.VOCAB, n_positions=16, n_embd=16,
                                   n_layer=2, n_head=2, pad_token_id=0), kind="tokens"), "GPT2Block", 2),
    (compat.Case("llama", "hf", _hf("LlamaConfig", vocab_size=compat.VOCAB, max_position_embeddings=16,
                                    num_key_value_heads=1, pad_token_id=0, **_SMALL), kind="tokens"),
     "LlamaDecoderLayer", 2),
]  # fmt: skip


@pytest.mark.parametrize(("case", "block_class", "n_blocks"), CASES, ids=[c[0].name for c in CASES])
def test_representative_model(case, block_class, n_blocks):
    from netxray.capture.graph import record_graph

    row = compat.check_model(case, n=12, repeats=2, use_scan=False)
    assert "error" not in row, row.get("error")
    assert row["lenses"] == dict.fromkeys(("nonlinearity", "modularity", "parameters", "symmetry"), "ok")
    assert row["sites"] == row["activation_calls"] > 0
    assert row["logits_identical"]
    assert row["curve_is_probes"]
    if case.name in ("convnext", "swin"):  # channel-last sites: d is the channel count
        assert row["layout"]["checked"] > 0 and row["layout"]["wrong"] == []
    # the blocks are exactly the instances of the family's block class (read from the source)
    torch.manual_seed(0)
    model = case.build().eval()
    x, _ = compat.make_data(case, 2)
    graph = record_graph(model, x)
    instances = [p for p, m in model.named_modules() if type(m).__name__ == block_class]
    assert len(instances) == n_blocks
    in_blocks = [b.name for b in graph.blocks() if b.op == block_class]
    assert in_blocks == instances
    probes = graph.natural_probes()
    assert probes[1 : 1 + n_blocks] == instances or set(instances) <= set(probes)
    assert row["probes"] == len(probes) == len(graph.blocks()) + (row["stem"] is not None) + (
        row["pre_head"] is not None
    )


def test_maxvit_sites_report_their_channel_count():
    """MaxViT mixes NCHW convolutions (MBConv) and window/grid token tensors (B, G, P², C):
    every site's d is the channel count of the layer that ran before it, and its input shape
    holds that count on the channel axis of its own layout (axis 0 of an NCHW sample, the
    last axis of a token tensor)."""
    from torchvision.models.maxvit import MaxVit

    from netxray import nonlinearity_signature

    torch.manual_seed(0)
    # maxvit_t's structure at a size this test affords: two stages, partition 2 on 32×32
    model = MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16],
                   block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0, num_classes=3).eval()  # fmt: skip
    x = torch.randn(8, 3, 32, 32)
    calls, widths = compat.count_activation_calls(model, x[:2], widths=True)
    sig = nonlinearity_signature(model, x, n_samples=8, null_baseline=False)
    assert len(sig) == calls == 14
    check = compat._layout_check(sig, widths)
    assert check == {"checked": 14, "wrong": []}
    for _, r in sig.iterrows():
        shape = r["input_shape"]
        shape = tuple(ast.literal_eval(shape) if isinstance(shape, str) else shape)
        if "attention" in r["site"]:
            assert len(shape) == 3 and shape[-1] == r["d"]  # (windows, tokens, channels)
        elif len(shape) == 3:
            assert shape[0] == r["d"]  # (channels, H, W)


def test_sweep_stops_a_phase_that_outlives_its_limit():
    """The sweep's worker reports phases; one that computes past its limit (CPU seconds) is
    stopped and named."""
    import time as _time

    def spins():
        end = _time.perf_counter() + 120
        while _time.perf_counter() < end:  # computing, not waiting: its CPU time grows
            pass

    row = compat.run_one("spins", compat.Case("spins", "test", spins), n=4, timeout=3, max_seconds=60)
    # "build" (or "start" when a loaded machine delays the fork's first heartbeat)
    assert re.fullmatch(r"timed out: phase (start|build) ran over its 3 s limit", row["error"]), row["error"]
    assert row["ok"] is False and row["wall_seconds"] < 100  # stopped, not left to its 120 s
    # the limit grows with the model: 600 s up to 50 M parameters, then in proportion
    assert compat._phase_limit(600, 10_000_000) == 600
    assert compat._phase_limit(600, 644_000_000) == pytest.approx(600 * 644 / 50)
    # the clock is a process's CPU time, read from /proc
    import os

    assert compat._cpu_seconds(os.getpid()) > 0


def test_splice_replaces_and_adds_only_the_remeasured_rows():
    old = ("# t\n\nold intro\n\n**2 of 3 models pass every check; total 1.0 min.**\n\n| model | x |\n|---|---|\n"
           "| a | 1 |\n| b ✗ | 2 |\n| c | 3 |\n\n## Not covered\n\n- old\n")  # fmt: skip
    new = ("# t\n\nnew intro\n\n**1 of 2 models pass every check; total 0.1 min.**\n\n| model | x |\n|---|---|\n"
           "| b | 20 |\n| d ✗ | 40 |\n\n## Not covered\n\n- new\n")  # fmt: skip
    out = compat.splice(old, new, {"b", "d"})
    rows = [line for line in out.splitlines() if line.startswith("| ") and "model" not in line]
    assert rows == ["| a | 1 |", "| b | 20 |", "| c | 3 |", "| d ✗ | 40 |"]
    assert "**3 of 4 models pass every check; total 1.0 min.**" in out  # the others' time stays
    assert "new intro" in out and "old intro" not in out
    assert out.endswith("## Not covered\n\n- new\n") and "- old" not in out
