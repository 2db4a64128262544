"""The parts of a permutable axis that the symmetry lens and its graph reader share: a
:class:`Member` (one tensor slice an axis moves) and which element-wise operations admit which
symmetry (:func:`_module_kind`). Both the symmetry lens and ``_spaces`` import from here, so
neither imports the other's internals back (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Member"]


@dataclass(frozen=True)
class Member:
    """One tensor slice moved by an axis: ``key`` (state-dict name), the dimension ``dim`` it
    indexes, ``block`` consecutive entries per unit (a Flatten's H·W columns, a head's d_head
    rows), ``segments`` repeats of the whole axis along ``dim`` (Q, K, V in one qkv matrix) and
    ``offset``, where along ``dim`` the slice starts (one part of a concatenation; the query
    heads of one key/value group). ``match``: whether the slice's other dimensions are already
    in canonical/aligned order when this axis is processed (only those slices serve as sort
    tie-breaks and matching features).

    ``groups`` > 1 marks the input side of a grouped convolution (weight (C_out, C_in/g, …)):
    along ``dim`` it holds only k = size/groups units (× block), and the rows along ``row_dim``
    come in ``groups`` equal blocks, row block j reading units j·k … j·k + k − 1. Unit
    u = j·k + i is therefore the slice ``[row block j, entries i·block … along dim]``; such a
    member belongs to an axis whose permutations keep every unit inside its group."""

    key: str
    dim: int
    block: int = 1
    segments: int = 1
    match: bool = True
    offset: int = 0
    groups: int = 1
    row_dim: int = 0

    def describe(self) -> str:
        extra = []
        if self.block > 1:
            extra.append(f"blocks of {self.block}")
        if self.segments > 1:
            extra.append(f"{self.segments} segments")
        if self.offset:
            extra.append(f"from {self.offset}")
        if self.groups > 1:
            extra.append(f"within {self.groups} row groups of dim {self.row_dim}")
        return f"{self.key}[dim {self.dim}{', ' + ', '.join(extra) if extra else ''}]"


# ---------------------------------------------------------------------------------------------
# element-wise operations: which symmetries they admit
# ---------------------------------------------------------------------------------------------

_HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU)
_ODD_MODULES = (nn.Tanh, nn.Softsign, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink)
_OTHER_MODULES = (
    nn.GELU, nn.SiLU, nn.Sigmoid, nn.ELU, nn.CELU, nn.SELU, nn.Softplus, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.LogSigmoid, nn.ReLU6,
)
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.AlphaDropout)
_HOMOGENEOUS_FUNCS = {torch.relu, F.relu, F.leaky_relu, torch.nn.functional.relu_}
_ODD_FUNCS = {torch.tanh, F.tanh, F.softsign}
_OTHER_FUNCS = {
    torch.sigmoid, F.sigmoid, F.gelu, F.silu, F.elu, F.softplus, F.mish, F.hardswish, F.relu6,
    F.hardsigmoid, F.selu, F.celu, F.logsigmoid,
}
_IDENTITY_FUNCS = {F.dropout}
_METHODS = {"relu": "homogeneous", "tanh": "odd", "sigmoid": "other", "relu_": "homogeneous"}


def _module_kind(mod: nn.Module) -> str | None:
    """'homogeneous' | 'odd' | 'other' | 'identity' for element-wise modules, None otherwise."""
    if isinstance(mod, _IDENTITY_MODULES):
        return "identity"
    if isinstance(mod, nn.ReLU6):  # a Hardtanh subclass, but neither odd nor homogeneous
        return "other"
    if isinstance(mod, _HOMOGENEOUS_MODULES):
        return "homogeneous"
    if isinstance(mod, nn.PReLU):
        return "homogeneous" if mod.num_parameters == 1 else None
    if isinstance(mod, nn.Hardtanh):
        return "odd" if mod.min_val == -mod.max_val else "other"
    if isinstance(mod, _ODD_MODULES):
        return "odd"
    if isinstance(mod, _OTHER_MODULES):
        return "other"
    return None
