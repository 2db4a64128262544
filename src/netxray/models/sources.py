"""Model sources: one string names a model, the same in Python (``netxray.load``) and on the CLI.

==========================  ==============================================================
``runs/mlp`` (a path)       a netxray checkpoint (directory or ``.safetensors`` + config.json)
``PATH.py:FACTORY``         your own code: ``FACTORY()`` in that file returns the nn.Module
``torchvision:NAME``        ``torchvision.models.get_model(NAME, weights=None)`` (random init)
``timm:NAME``               ``timm.create_model(NAME, pretrained=False)`` (random init)
``hf:DIR``                  a local Hugging Face model directory (``save_pretrained``), read
                            with ``local_files_only=True``; the head from ``task`` or the
                            config's ``architectures``
==========================  ==============================================================

``weights=FILE`` loads a state dict into a ``PATH.py:FACTORY``, ``torchvision:`` or ``timm:``
model: ``.safetensors``, or ``.pt/.pth/.bin`` through ``torch.load(weights_only=True)``; keys
and shapes are checked before anything is loaded. Nothing is downloaded: the builders are
called without pretrained weights, Hugging Face only reads the directory. torchvision, timm and
transformers are optional: a missing one is a one-line :class:`ModelSourceError` naming the
extra to install (``pip install 'netxray[vision]'`` or ``'netxray[hf]'``).

Every model is returned in eval mode with ``model.netxray_source`` (the string) and, when the
source declares one, ``model.netxray_preprocessing`` (image size, mean, std) which the
``imagefolder:`` data source uses by default.

Example
-------
>>> m = load("torchvision:resnet18")  # doctest: +SKIP
>>> m.netxray_source  # doctest: +SKIP
'torchvision:resnet18'
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from netxray._errors import _EXTRAS, ModelSourceError, require  # noqa: F401  (re-exported: they lived here)
from netxray.models._builders import (  # noqa: F401  (re-exported: they lived here)
    _HF_REFUSED,
    HF_TASKS,
    MODEL_SOURCES,
    _hf,
    _hf_class,
    _hf_config,
    _hf_image_preprocessing,
    _load_weights,
    _timm,
    _torchvision,
    build_hf_from_config,
    build_source,
    parse_source,
)

__all__ = ["MODEL_SOURCES", "ModelSourceError", "load", "parse_source"]


def load(
    spec: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    task: str | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Load a model from a source string (see the module docstring), in eval mode.

    Args:
        spec: ``CHECKPOINT``, ``PATH.py:FACTORY``, ``torchvision:NAME``, ``timm:NAME`` or ``hf:DIR``.
        weights: a state-dict file for ``PATH.py:FACTORY``, ``torchvision:`` and ``timm:`` models.
        task: for ``hf:DIR``, the head: ``sequence-classification``, ``image-classification``,
            ``base``… (default: the config's ``architectures``, else the bare model).
        device: None (CPU, as loaded), ``"cpu"``, ``"cuda"`` or ``"auto"``.
        kwargs: passed to the builder (``num_classes=10`` for torchvision/timm).

    Example:
        >>> import tempfile
        >>> from netxray.models import build_model, save_checkpoint
        >>> d = save_checkpoint(build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2}),
        ...                     tempfile.mkdtemp())
        >>> type(load(d)).__name__
        'MLP'
    """
    kind, rest = parse_source(spec)
    if weights is not None and kind in ("checkpoint", "hf"):
        raise ModelSourceError(
            f"--weights is for PATH.py:FACTORY, torchvision: and timm: models; {kind} model "
            f"{os.fspath(spec)!r} carries its own weights"
        )
    if task is not None and kind != "hf":
        raise ModelSourceError(f"--task applies to hf:DIR models only, not {os.fspath(spec)!r}")
    if kind == "checkpoint":
        from netxray.models.checkpoint import load as load_checkpoint

        if kwargs:
            raise ModelSourceError(f"a netxray checkpoint takes no builder options, got {sorted(kwargs)}")
        model = load_checkpoint(rest)
    elif kind == "factory":
        from netxray.models.user_model import load_user_model

        model = load_user_model(rest, weights, factory_kwargs=kwargs)
    else:
        model = build_source(spec, kind, rest, weights, task, kwargs)
    model.netxray_source = os.fspath(spec)
    if device is not None:
        from netxray._device import resolve_device

        model = model.to(resolve_device(device, model))
    return model.eval()
