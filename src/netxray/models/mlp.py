"""Multi-layer perceptron: ``flatten`` → ``hidden[i]`` = (``linear``, ``act``) → ``head``.

Config knobs: ``widths`` (hidden widths, list) or ``width`` + ``depth``; ``activation``.

Example
-------
>>> from netxray.models import build_model
>>> m = build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [32, 16]})
>>> [n for n, _ in m.hidden.named_children()]
['0', '1']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ._common import check_knobs, make_activation, positive_int, positive_int_list

KNOBS = ("widths", "width", "depth", "activation")
DEFAULT_WIDTH = 128
DEFAULT_DEPTH = 2


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Full MLP config: ``width``/``depth`` turned into ``widths``, defaults filled in."""
    check_knobs("mlp", config, KNOBS)
    if "widths" in config and ("width" in config or "depth" in config):
        raise ValueError("mlp: give either 'widths' or 'width'/'depth', not both")
    if "widths" in config:
        widths = positive_int_list("mlp", "widths", config["widths"])
    else:
        width = positive_int("mlp", "width", config.get("width", DEFAULT_WIDTH))
        depth = positive_int("mlp", "depth", config.get("depth", DEFAULT_DEPTH))
        widths = [width] * depth
    activation = config.get("activation", "relu")
    make_activation(activation)  # validates the name
    return {
        "arch": "mlp",
        "input_shape": list(config["input_shape"]),
        "num_classes": config["num_classes"],
        "widths": widths,
        "activation": activation,
    }


class MLP(nn.Module):
    """``x → flatten → [Linear → act] * len(widths) → Linear(num_classes)``."""

    def __init__(self, input_shape: list[int], num_classes: int, widths: list[int], activation: str):
        super().__init__()
        self.flatten = nn.Flatten()
        d_in = math.prod(input_shape)
        layers = []
        for w in widths:
            layers.append(
                nn.Sequential(OrderedDict(linear=nn.Linear(d_in, w), act=make_activation(activation)))
            )
            d_in = w
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(d_in, num_classes)

    def netxray_probes(self) -> list[str]:
        """Module paths whose outputs are this model's natural probe layers, in forward order
        (the interface :func:`netxray.capture.natural_probes` reads from any model)."""
        return [f"hidden.{i}" for i in range(len(self.hidden))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)


def build(config: dict[str, Any]) -> MLP:
    return MLP(config["input_shape"], config["num_classes"], config["widths"], config["activation"])
