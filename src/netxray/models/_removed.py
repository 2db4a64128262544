"""Removed layers of a pruned model: ``config["removed"]`` lists module paths of a built-in model
that are replaced by ``nn.Identity`` when the model is built, so ``netxray.load`` rebuilds a
pruned model; a removed residual block of any other model becomes a :class:`SkipBlock`, which a
checkpoint records and rebuilds (``models.checkpoint``), so the structure of removal lives here,
below the pruning lens that decides what to remove.

The modules keep their paths (every other layer keeps its name and its checkpoint keys); which
layers may be removed without breaking shapes is decided by ``netxray.lenses.pruning``.

Example
-------
>>> from netxray.models import build_model
>>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3, 3],
...                  "removed": ["hidden.1"]})
>>> type(m.hidden[1]).__name__
'Identity'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def check_removed(value: Any) -> list[str]:
    """Validate ``config["removed"]``: a list of distinct, non-empty module paths."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(
            f"removed must be a list of module paths (e.g. ['layer1.1']), got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"removed lists a module path more than once: {list(value)}")
    return list(value)


def apply_removed(model: nn.Module, paths: list[str]) -> nn.Module:
    """Replace each module at ``paths`` by ``nn.Identity`` (in place); unknown paths are errors."""
    named = dict(model.named_modules())
    for path in paths:
        if path not in named or path == "":
            raise ValueError(
                f"removed: {type(model).__name__} has no module {path!r} to remove"
            )
        parent_path, _, child = path.rpartition(".")
        parent = named[parent_path] if parent_path else model
        setattr(parent, child, nn.Identity())
    return model


class SkipBlock(nn.Module):
    """Stands in for a removed residual block: returns the block's main input unchanged.

    The main input is the first floating-point tensor argument (else ``hidden_states``, else the
    first floating tensor keyword argument); it is returned as a tensor, or as a tuple
    ``(x, None, …)`` of the removed block's length when the block returned a tuple (Hugging Face
    layers), so the code around it runs unchanged. ``removed`` names the class it replaced.

    Example:
        >>> SkipBlock("Block")(torch.ones(2, 3), mask=None).shape
        torch.Size([2, 3])
    """

    def __init__(self, removed: str, out_type: str = "tensor") -> None:
        super().__init__()
        self.removed = removed
        self.out_type = out_type

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        x = next((a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
        if x is None:
            x = kwargs.get("hidden_states")
        if x is None:
            x = next((v for v in kwargs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        if x is None:
            raise TypeError(f"SkipBlock (removed {self.removed}): no floating tensor input to pass on")
        if self.out_type.startswith("tuple:"):
            return (x,) + (None,) * (int(self.out_type.split(":")[1]) - 1)
        return x

    def extra_repr(self) -> str:
        return f"removed={self.removed}"
