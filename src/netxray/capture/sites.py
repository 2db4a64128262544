"""What counts as an activation: ``nn`` activation modules and functional activation calls.

A module is an activation site when it is an instance of one of ``ACTIVATION_MODULES``; a class
that subclasses another activation (``nn.ReLU6`` subclasses ``nn.Hardtanh``) is still one module,
so it gets one hook and one site per call. Functional calls are recognised by identity of the
function object that ``__torch_function__`` dispatch hands to a :class:`TorchFunctionMode`, which
also catches aliases imported before the capture started (``from torch.nn.functional import relu``)
and ``Tensor`` methods (``x.relu()``), which monkey-patching would miss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.LogSigmoid,
    nn.Threshold, nn.GLU,
)


def _functional_table() -> dict[Callable, str]:
    """Map each functional activation (by object identity) to a readable op name."""
    table: dict[Callable, str] = {}
    f_names = (
        "relu", "relu_", "relu6", "elu", "elu_", "selu", "celu", "leaky_relu", "leaky_relu_",
        "prelu", "rrelu", "rrelu_", "gelu", "silu", "mish", "hardswish", "hardsigmoid",
        "hardtanh", "hardtanh_", "softplus", "softsign", "tanhshrink", "softshrink",
        "hardshrink", "logsigmoid", "threshold", "threshold_", "glu", "sigmoid", "tanh",
    )
    torch_names = (
        "relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_", "selu", "selu_", "celu",
        "celu_", "rrelu", "rrelu_", "prelu", "threshold", "threshold_",
    )
    tensor_names = ("relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_")
    for name in f_names:
        fn = getattr(F, name, None)
        if fn is not None:
            table.setdefault(fn, f"F.{name}")
    for name in torch_names:
        fn = getattr(torch, name, None)
        if fn is not None:
            table.setdefault(fn, f"torch.{name}")
    for name in tensor_names:
        fn = getattr(torch.Tensor, name, None)
        if fn is not None:
            table.setdefault(fn, f"Tensor.{name}")
    special = getattr(torch.special, "expit", None)
    if special is not None:
        table.setdefault(special, "torch.special.expit")
    return table


FUNCTIONAL_ACTIVATIONS: dict[Callable, str] = _functional_table()


def is_activation_module(module: nn.Module) -> bool:
    """True for ``nn`` activation modules (one site per call, whatever the class hierarchy)."""
    return isinstance(module, ACTIVATION_MODULES)


def functional_op_name(func: Callable) -> str | None:
    """The op name of a functional activation, or None when ``func`` is not one."""
    try:
        return FUNCTIONAL_ACTIVATIONS.get(func)
    except TypeError:  # unhashable callables are never activations
        return None
