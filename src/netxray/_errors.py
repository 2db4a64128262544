"""Helpers every layer may need, in one module below all of them (it imports nothing from
netxray): the errors a model source or a checkpoint raises and the import of an optional
package.

``data``, ``models``, ``capture`` and the lenses all import from here; before, ``data.sources``
imported ``models.sources`` for its error and ``require``, which tied the data layer to the model layer in an
import circle.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["CheckpointError", "CheckpointNotFoundError", "ModelSourceError", "require"]

# which ``pip install 'netxray[EXTRA]'`` provides an optional top-level package
_EXTRAS = {"torchvision": "vision", "timm": "vision", "PIL": "vision", "transformers": "hf",
           "tokenizers": "hf", "datasets": "hf"}  # fmt: skip


class ModelSourceError(ValueError):
    """A model source string cannot be used; the message says what was expected or what to install."""


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match its config."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file or directory does not exist."""


# Tracebacks and reprs name each error by the public module users import it from, as before the
# move (``netxray.models.checkpoint.CheckpointError``); those modules re-export them.
ModelSourceError.__module__ = "netxray.models.sources"
CheckpointError.__module__ = "netxray.models.checkpoint"
CheckpointNotFoundError.__module__ = "netxray.models.checkpoint"


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
