"""Built-in architectures (the seed papers' families), built from small config dicts.

``config = {"arch": "mlp" | "cnn" | "resnet" | "vit", "input_shape": [...], "num_classes": int,
...knobs}``. Every built model carries ``model.netxray_config``, the full resolved config, so that
``build_model(model.netxray_config)`` rebuilds the same architecture (checkpoints rely on it).
Module layouts are a contract (docs/architecture.md): other parts address layers by these names.

Example
-------
>>> import torch
>>> from netxray.models import build_model, default_config
>>> cfg = default_config("cnn", [1, 8, 8], 10, channels=[8, 16])
>>> model = build_model(cfg)
>>> model.netxray_probes()  # the layers the modularity curve probes (netxray.capture.natural_probes)
['features.0', 'features.2']
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from . import cnn, mlp, resnet, vit
from ._removed import apply_removed, check_removed
from .checkpoint import CheckpointError, load, save_checkpoint
from .cnn import CNN, ConvBlock
from .mlp import MLP
from .resnet import BasicBlock, ResNet
from .vit import Attention, Block, ViT

__all__ = [
    "ARCHS",
    "MLP",
    "CNN",
    "ResNet",
    "ViT",
    "ConvBlock",
    "BasicBlock",
    "Attention",
    "Block",
    "CheckpointError",
    "build_model",
    "default_config",
    "load",
    "save_checkpoint",
]

ARCHS: tuple[str, ...] = ("mlp", "cnn", "resnet", "vit")

_FAMILIES: dict[str, tuple[Callable[[dict], dict], Callable[[dict], nn.Module]]] = {
    "mlp": (mlp.resolve, mlp.build),
    "cnn": (cnn.resolve, cnn.build),
    "resnet": (resnet.resolve, resnet.build),
    "vit": (vit.resolve, vit.build),
}


def _check_common(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise TypeError(f"model config must be a dict, got {type(config).__name__}")
    arch = config.get("arch")
    if arch not in _FAMILIES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {list(ARCHS)}")
    shape = config.get("input_shape")
    if (
        not isinstance(shape, (list, tuple))
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(
            f"{arch}: input_shape must be a non-empty list of positive integers "
            f"(sample shape without the batch axis, e.g. [1, 8, 8]), got {shape!r}"
        )
    k = config.get("num_classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{arch}: num_classes must be a positive integer, got {k!r}")
    out = dict(config)
    out["input_shape"] = [int(s) for s in shape]
    return out


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` and fill in every default: the dict stored as ``netxray_config``.

    Resolving is idempotent: ``resolve_config(resolve_config(c)) == resolve_config(c)``.
    """
    config = _check_common(config)
    removed = config.pop("removed", None)  # pruned layers (models/_removed.py)
    resolve, _ = _FAMILIES[config["arch"]]
    full = resolve(config)
    if removed:
        full["removed"] = check_removed(removed)
    return full


def default_config(
    arch: str, input_shape: list[int] | tuple[int, ...], num_classes: int, **overrides: Any
) -> dict[str, Any]:
    """The full default config of a family for this input, with ``overrides`` applied.

    Width/depth knobs per family: mlp ``widths`` or ``width``+``depth``; cnn ``channels`` or
    ``width``+``depth`` (+ ``convs_per_stage``); resnet ``channels`` or ``width``+``num_stages``,
    ``blocks`` or ``depth``; vit ``dim``, ``depth``, ``num_heads``, ``patch_size``, ``mlp_ratio``.

    >>> default_config("mlp", [64], 10, width=32, depth=3)["widths"]
    [32, 32, 32]
    """
    return resolve_config(
        {"arch": arch, "input_shape": list(input_shape), "num_classes": num_classes, **overrides}
    )


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a fresh (randomly initialised, train-mode) model from ``config``.

    Initialisation draws from torch's global RNG: seed it (``torch.manual_seed``) for
    reproducible weights. The resolved config is attached as ``model.netxray_config``.

    >>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3]})
    >>> m.netxray_config["activation"]
    'relu'
    """
    full = resolve_config(config)
    _, build = _FAMILIES[full["arch"]]
    model = build(full)
    apply_removed(model, full.get("removed", []))
    model.netxray_config = copy.deepcopy(full)
    return model
