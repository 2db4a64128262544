"""netxray — an X-ray for trained neural networks.

Four lenses on a trained PyTorch model: the non-linearity signature (affinity scores of every
activation call), the modularity curve (class separation layer by layer), the learnable
parameters (weight statistics and node strengths), and symmetry (permutation groups, covering
bounds, canonical forms and alignment).

Public names are imported lazily so that ``import netxray`` stays fast and a lens's heavy
dependencies load only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # foundation
    "load": "netxray.models.sources",
    "save_checkpoint": "netxray.models.checkpoint",
    "build_model": "netxray.models",
    "train": "netxray.training",
    "load_data": "netxray.data",
    "collect": "netxray.capture",
    # lens 1: non-linearity
    "affinity_score": "netxray.measures.affinity",
    "nonlinearity_signature": "netxray.lenses.nonlinearity",
    "signature_distance": "netxray.measures.signature",
    # lens 2: modularity
    "modularity": "netxray.measures.modularity",
    "modularity_curve": "netxray.lenses.modularity",
    "redundant_layers": "netxray.lenses.modularity",
    # lens 3: parameters
    "weight_stats": "netxray.lenses.parameters",
    "node_strengths": "netxray.lenses.parameters",
    # lens 4: symmetry
    "symmetry_group": "netxray.lenses.symmetry",
    "covering_bounds": "netxray.lenses.symmetry",
    "canonicalize": "netxray.lenses.symmetry",
    "align": "netxray.lenses.symmetry",
    "functionally_equivalent": "netxray.lenses.symmetry",
    # product
    "scan": "netxray.report",
    "Report": "netxray.report",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netxray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
