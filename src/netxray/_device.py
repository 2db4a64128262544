"""Which device a model lives on and which one a run asks for: helpers below every layer (they
import nothing from netxray), used by ``models`` (``netxray.load(..., device=)``) and by
``capture``; ``netxray.capture.inputs`` re-exports them.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

__all__ = ["model_device", "resolve_device"]


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a stateless model)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return None


def resolve_device(device: Any, model: nn.Module | None = None) -> torch.device:
    """The device a lens runs on: ``None`` → where ``model`` is (CPU for a stateless model);
    ``"auto"`` → ``cuda`` when a GPU is available, else ``cpu``; ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``… as given. A CUDA device without a GPU is a one-line ``ValueError``.

    Example:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if device is None:
        found = model_device(model) if model is not None else None
        return found if found is not None else torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r}: no CUDA GPU is available here "
                "(torch.cuda.is_available() is False); use cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    return dev
