"""VGG-style CNN: ``features`` (stages of ``ConvBlock`` = conv → bn → act, max-pooling between
stages) → ``flatten`` → ``classifier`` (one Linear from the flattened map).

Config knobs: ``channels`` (per stage) or ``width`` + ``depth`` (first-stage channels, doubling per
stage; number of stages); ``convs_per_stage``; ``activation``. (C, L) inputs use Conv1d /
BatchNorm1d / MaxPool1d.

Example
-------
>>> from netxray.models import build_model
>>> m = build_model({"arch": "cnn", "input_shape": [1, 8, 8], "num_classes": 10, "channels": [8, 16]})
>>> [type(b).__name__ for b in m.features]
['ConvBlock', 'MaxPool2d', 'ConvBlock']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ._common import (
    bn_cls,
    check_knobs,
    conv_cls,
    make_activation,
    maxpool_cls,
    positive_int,
    positive_int_list,
    spatial_dims,
)

KNOBS = ("channels", "width", "depth", "convs_per_stage", "activation")
DEFAULT_CHANNELS = [32, 64, 128]


class ConvBlock(nn.Sequential):
    """``conv`` (3×3 or 3, padding 1, no bias: BN follows) → ``bn`` → ``act``."""

    def __init__(self, c_in: int, c_out: int, dims: int, activation: str):
        super().__init__(
            OrderedDict(
                conv=conv_cls(dims)(c_in, c_out, kernel_size=3, padding=1, bias=False),
                bn=bn_cls(dims)(c_out),
                act=make_activation(activation),
            )
        )


def _final_spatial(input_shape: list[int], stages: int) -> list[int]:
    # max-pool (kernel 2) between stages halves (floor) every spatial size
    sizes = list(input_shape[1:])
    for _ in range(stages - 1):
        sizes = [s // 2 for s in sizes]
    return sizes


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Full CNN config: ``width``/``depth`` turned into ``channels``, defaults filled in."""
    check_knobs("cnn", config, KNOBS)
    input_shape = list(config["input_shape"])
    spatial_dims("cnn", tuple(input_shape))
    if "channels" in config and ("width" in config or "depth" in config):
        raise ValueError("cnn: give either 'channels' or 'width'/'depth', not both")
    if "channels" in config:
        channels = positive_int_list("cnn", "channels", config["channels"])
    elif "width" in config or "depth" in config:
        width = positive_int("cnn", "width", config.get("width", DEFAULT_CHANNELS[0]))
        depth = positive_int("cnn", "depth", config.get("depth", len(DEFAULT_CHANNELS)))
        channels = [width * 2**i for i in range(depth)]
    else:
        channels = list(DEFAULT_CHANNELS)
    convs = positive_int("cnn", "convs_per_stage", config.get("convs_per_stage", 1))
    activation = config.get("activation", "relu")
    make_activation(activation)
    final = _final_spatial(input_shape, len(channels))
    if min(final) < 1:
        raise ValueError(
            f"cnn: {len(channels)} stages pool the input {input_shape} down to {final}; "
            f"expected at most {1 + int(math.log2(min(input_shape[1:])))} stages for this input size"
        )
    return {
        "arch": "cnn",
        "input_shape": input_shape,
        "num_classes": config["num_classes"],
        "channels": channels,
        "convs_per_stage": convs,
        "activation": activation,
    }


class CNN(nn.Module):
    """Stages of ConvBlocks with max-pooling between them, then a linear classifier."""

    def __init__(
        self,
        input_shape: list[int],
        num_classes: int,
        channels: list[int],
        convs_per_stage: int,
        activation: str,
    ):
        super().__init__()
        dims = spatial_dims("cnn", tuple(input_shape))
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for s, c_out in enumerate(channels):
            if s > 0:
                layers.append(maxpool_cls(dims)(2))
            for _ in range(convs_per_stage):
                layers.append(ConvBlock(c_in, c_out, dims, activation))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        final = _final_spatial(list(input_shape), len(channels))
        self.classifier = nn.Linear(c_in * math.prod(final), num_classes)

    def netxray_probes(self) -> list[str]:
        """Module paths whose outputs are this model's natural probe layers, in forward order
        (the interface :func:`netxray.capture.natural_probes` reads from any model)."""
        return [f"features.{name}" for name, m in self.features.named_children() if isinstance(m, ConvBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def build(config: dict[str, Any]) -> CNN:
    return CNN(
        config["input_shape"],
        config["num_classes"],
        config["channels"],
        config["convs_per_stage"],
        config["activation"],
    )
