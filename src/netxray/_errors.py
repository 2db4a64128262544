"""Helpers every layer may need, in one module below all of them (it imports nothing from
netxray): the error a model source raises and the import of an optional package.

``data``, ``models``, ``capture`` and the lenses all import from here; before, ``data.sources``
imported ``models.sources`` for these two, which tied the data layer to the model layer in an
import circle.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ModelSourceError", "require"]

# which ``pip install 'netxray[EXTRA]'`` provides an optional top-level package
_EXTRAS = {"torchvision": "vision", "timm": "vision", "PIL": "vision", "transformers": "hf",
           "tokenizers": "hf", "datasets": "hf"}  # fmt: skip


class ModelSourceError(ValueError):
    """A model source string cannot be used; the message says what was expected or what to install."""


def require(module: str, what: str, error: type[Exception] = ModelSourceError) -> Any:
    """Import an optional package or raise ``error`` (one line naming the extra that provides it).

    Example:
        >>> require("math", "an example").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but broken: show the real error
        extra = _EXTRAS.get(top)
        hint = f"pip install 'netxray[{extra}]'" if extra else f"pip install {top}"
        raise error(f"{what} needs the {top} package, which is not installed: {hint}") from None
