"""Which layers to probe: the natural probe layers of any model.

A model declares its probes through one interface: a method ``netxray_probes()`` returning
module paths in forward order. The built-in families (MLP, CNN, ResNet, ViT) declare theirs that
way, and so can your own model; any other model's probes are read from its graph recorded on a
batch of its inputs. Capture reads the interface and never imports the built-in models.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from netxray.capture.graph import record_graph, unwrap_model

__all__ = ["natural_probes"]


def natural_probes(model: nn.Module, example_inputs: Any = None) -> list[str]:
    """Module paths whose outputs are the natural probe layers, in forward order.

    A model with a ``netxray_probes()`` method declares its own: the built-in MLP every
    ``hidden.i``; CNN every ConvBlock in ``features``; ResNet ``stem`` and every block
    ``layerS.i``; ViT every ``blocks.i``. Any other model (torchvision, timm, Hugging Face, your
    own): read from its graph recorded on ``example_inputs`` (a batch: a tensor, a tuple of
    arguments or a dict of keyword arguments; two samples are plenty) — the stem or embedding,
    every repeated block (residual blocks, transformer layers, inverted residuals, ConvNeXt/Swin
    blocks, DenseNet dense blocks and transitions) and the module whose output is fed to the head
    (:meth:`netxray.capture.graph.ModelGraph.natural_probes`). ``nn.DataParallel`` /
    ``torch.compile`` wrappers are unwrapped: the paths are those of the wrapped model.

    Raises ``ValueError`` for a model that declares no probes when ``example_inputs`` is None, or
    when its graph shows no layer to probe.

    >>> import torch
    >>> seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> natural_probes(seq, torch.zeros(2, 4))
    ['1', '3']
    """
    model = unwrap_model(model)
    declared = getattr(model, "netxray_probes", None)
    if callable(declared):
        return list(declared())
    if example_inputs is None:
        raise ValueError(
            f"natural_probes: {type(model).__name__} is not a built-in netxray model (MLP, CNN, "
            "ResNet, ViT) and declares no netxray_probes(); pass example_inputs (a batch of its "
            "inputs) so its probes can be read from a recorded forward pass, or pass layer names "
            "instead"
        )
    probes = record_graph(model, example_inputs).natural_probes()
    if not probes:
        raise ValueError(
            f"natural_probes: the graph of {type(model).__name__} has no block, activation or "
            "parametrised layer on its main path to probe; pass layer names instead"
        )
    return probes
