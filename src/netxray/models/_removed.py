"""Removed layers of a pruned built-in model: ``config["removed"]`` lists module paths that are
replaced by ``nn.Identity`` when the model is built, so ``netxray.load`` rebuilds a pruned model.

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
