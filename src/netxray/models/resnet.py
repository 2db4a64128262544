"""CIFAR-style ResNet: ``stem`` (conv → bn → relu) → ``layer1``, ``layer2``, … (stages of
``BasicBlock``) → ``pool`` (global average) → ``flatten`` → ``fc``.

``BasicBlock``: ``relu(bn1(conv1(x)))`` → ``bn2(conv2(.))`` + ``shortcut(x)`` → ``relu``; the one
``relu`` module is called twice per forward (as in torchvision), so it gives two activation sites.
The first block of every stage after the first halves the spatial size (stride 2); the shortcut is
a 1×1 conv + BN where the shape changes, ``nn.Identity`` otherwise.

Config knobs: ``channels`` (per stage) or ``width`` (first stage, doubling) + ``num_stages``;
``blocks`` (per stage) or ``depth`` (blocks in every stage). (C, L) inputs use the 1-D layers.

Example
-------
>>> from netxray.models import build_model
>>> m = build_model({"arch": "resnet", "input_shape": [1, 8, 8], "num_classes": 10, "width": 8})
>>> [n for n, _ in m.named_children()]
['stem', 'layer1', 'layer2', 'layer3', 'pool', 'flatten', 'fc']
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ._common import (
    avgpool_cls,
    bn_cls,
    check_knobs,
    conv_cls,
    positive_int,
    positive_int_list,
    spatial_dims,
)

KNOBS = ("channels", "width", "num_stages", "blocks", "depth")
DEFAULT_WIDTH = 16
DEFAULT_STAGES = 3
DEFAULT_DEPTH = 1


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN and a residual connection; one shared ``relu`` called twice."""

    def __init__(self, c_in: int, c_out: int, stride: int, dims: int):
        super().__init__()
        conv, bn = conv_cls(dims), bn_cls(dims)
        self.conv1 = conv(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(c_out)
        self.relu = nn.ReLU()
        self.conv2 = conv(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = bn(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut: nn.Module = nn.Sequential(
                conv(c_in, c_out, kernel_size=1, stride=stride, bias=False), bn(c_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Full ResNet config: ``channels`` and ``blocks`` lists of equal length."""
    check_knobs("resnet", config, KNOBS)
    input_shape = list(config["input_shape"])
    spatial_dims("resnet", tuple(input_shape))
    if "channels" in config and ("width" in config or "num_stages" in config):
        raise ValueError("resnet: give either 'channels' or 'width'/'num_stages', not both")
    if "blocks" in config and "depth" in config:
        raise ValueError("resnet: give either 'blocks' or 'depth', not both")
    if "channels" in config:
        channels = positive_int_list("resnet", "channels", config["channels"])
    else:
        width = positive_int("resnet", "width", config.get("width", DEFAULT_WIDTH))
        stages = positive_int("resnet", "num_stages", config.get("num_stages", DEFAULT_STAGES))
        channels = [width * 2**i for i in range(stages)]
    if "blocks" in config:
        blocks = positive_int_list("resnet", "blocks", config["blocks"])
        if len(blocks) != len(channels):
            raise ValueError(
                f"resnet: blocks {blocks} must have one entry per stage ({len(channels)} stages)"
            )
    else:
        depth = positive_int("resnet", "depth", config.get("depth", DEFAULT_DEPTH))
        blocks = [depth] * len(channels)
    return {
        "arch": "resnet",
        "input_shape": input_shape,
        "num_classes": config["num_classes"],
        "channels": channels,
        "blocks": blocks,
    }


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2) sized by ``channels`` and ``blocks``."""

    def __init__(self, input_shape: list[int], num_classes: int, channels: list[int], blocks: list[int]):
        super().__init__()
        dims = spatial_dims("resnet", tuple(input_shape))
        conv, bn = conv_cls(dims), bn_cls(dims)
        self.stem = nn.Sequential(
            OrderedDict(
                conv=conv(input_shape[0], channels[0], kernel_size=3, padding=1, bias=False),
                bn=bn(channels[0]),
                relu=nn.ReLU(),
            )
        )
        c_in = channels[0]
        for s, (c_out, n) in enumerate(zip(channels, blocks, strict=True)):
            stage = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                stage.append(BasicBlock(c_in, c_out, stride, dims))
                c_in = c_out
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
        self.num_stages = len(channels)
        self.pool = avgpool_cls(dims)(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def netxray_probes(self) -> list[str]:
        """Module paths whose outputs are this model's natural probe layers, in forward order
        (the interface :func:`netxray.capture.natural_probes` reads from any model)."""
        probes = ["stem"]
        for s in range(self.num_stages):
            stage = getattr(self, f"layer{s + 1}")
            probes += [f"layer{s + 1}.{name}" for name, _ in stage.named_children()]
        return probes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(self.flatten(self.pool(x)))


def build(config: dict[str, Any]) -> ResNet:
    return ResNet(config["input_shape"], config["num_classes"], config["channels"], config["blocks"])
