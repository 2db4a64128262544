"""Shared pieces of the built-in architectures: activations, 1-D/2-D layer factories, validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

# name -> activation module class; the built-ins use activation *modules* so that every call is a
# module call with a stable path (the capture layer also sees functional calls, but models made
# of modules are the easy, documented case).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "mish": nn.Mish,
    "hardswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name.lower()]()


def spatial_dims(arch: str, input_shape: tuple[int, ...]) -> int:
    """1 for (C, L) inputs, 2 for (C, H, W) inputs; a clear error otherwise."""
    if len(input_shape) == 3:
        return 2
    if len(input_shape) == 2:
        return 1
    raise ValueError(
        f"{arch}: input_shape {list(input_shape)} is not supported; expected (C, H, W) images "
        "or (C, L) signals (use arch='mlp' for flat vectors)"
    )


def conv_cls(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv1d


def bn_cls(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d


def maxpool_cls(dims: int) -> type[nn.Module]:
    return nn.MaxPool2d if dims == 2 else nn.MaxPool1d


def avgpool_cls(dims: int) -> type[nn.Module]:
    return nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool1d


def check_knobs(arch: str, config: dict[str, Any], allowed: Iterable[str]) -> None:
    """Reject unknown config keys by name, so a typo never silently falls back to a default."""
    allowed = set(allowed) | {"arch", "input_shape", "num_classes"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"{arch}: unknown config key(s) {unknown}; expected some of {sorted(allowed)}"
        )


def positive_int(arch: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arch}: {key} must be a positive integer, got {value!r}")
    return int(value)


def positive_int_list(arch: str, key: str, value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{arch}: {key} must be a non-empty list of positive integers, got {value!r}")
    return [positive_int(arch, f"{key}[{i}]", v) for i, v in enumerate(value)]
