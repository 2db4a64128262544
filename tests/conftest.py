"""Session fixtures shared by every test module.

``trained(arch, **knobs)`` trains a small built-in model on ``digits`` once per session per
(arch, knobs) and hands out a fresh deep copy in eval mode each call, so one test can never
change the model another test sees. ``knobs`` are model knobs (``width``, ``depth``,
``channels``, ``activation``, …) or training arguments (``epochs``, ``lr``, ``seed``,
``optimizer``, ``weight_decay``, …) of :func:`netxray.train`.

    def test_something(trained):
        model = trained("cnn")                   # about a second to train, the first time only
        tanh_mlp = trained("mlp", activation="tanh", width=32)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from netxray._threads import set_threads

# The suite runs small models on a 2-core machine (shared, in development, by several
# processes): intra-op threads buy nothing there and oversubscribed OpenMP/BLAS threads spin,
# which made some tests ten times slower. One thread per test process for torch and for numpy's
# and scipy's BLAS pools (set_threads sets them all); benchmarks set their own.
set_threads(1)

# Fewer epochs than the library defaults: fixture models only need to be clearly trained
# (test accuracy well above the 10 % of chance), not at their best. Small widths keep every
# lens that runs on them fast.
FIXTURE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 8, "width": 64, "depth": 2},
    "cnn": {"epochs": 3, "channels": [16, 32, 64]},
    "resnet": {"epochs": 3, "width": 16},
    "vit": {"epochs": 8, "dim": 32, "depth": 2, "num_heads": 4},
}

# knobs that describe a size differently from the fixture defaults replace them
_ALTERNATIVES = {
    "widths": ("width", "depth"),
    "channels": ("width", "depth"),
    "width": ("channels", "widths"),
    "depth": ("channels", "widths"),
    "num_stages": ("channels",),
    "blocks": ("depth",),
}


def _fixture_knobs(arch: str, knobs: dict[str, Any]) -> dict[str, Any]:
    merged = dict(FIXTURE_DEFAULTS.get(arch, {}))
    for key in knobs:
        for alt in _ALTERNATIVES.get(key, ()):
            if alt not in knobs:
                merged.pop(alt, None)
    merged.update(knobs)
    return merged


@pytest.fixture(scope="session")
def digits():
    """The built-in ``digits`` splits (1×8×8 images, 10 classes), loaded once per session."""
    from netxray.data import load_data

    return load_data("digits")


@pytest.fixture(scope="session")
def trained(digits) -> Callable[..., nn.Module]:
    """``trained(arch, **knobs) -> nn.Module``: a small built-in model trained on digits (cached).

    Returns a deep copy in eval mode; its ``netxray_train_metrics`` attribute holds the metrics of
    the training run (``test_acc`` etc.).
    """
    from netxray.training import train

    cache: dict[str, nn.Module] = {}

    def get(arch: str, **knobs: Any) -> nn.Module:
        kw = _fixture_knobs(arch, knobs)
        kw.setdefault("seed", 0)
        key = repr((arch, sorted(kw.items())))
        if key not in cache:
            result = train(arch, digits, progress=False, **kw)
            result.model.netxray_train_metrics = result.metrics
            cache[key] = result.model.eval()
        model = copy.deepcopy(cache[key])
        return model.eval()

    return get


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm (seeded), in place.

    Fresh BatchNorms are the identity in eval mode; random ones make a permutation test bite.
    """
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(scope="session")
def symmetry_tables() -> Callable[[dict], dict]:
    """``symmetry_tables(models)``: for ``{name: (make, data)}``, each model built once (random
    BatchNorms, eval mode) with its symmetry table: ``{name: (model, data, table)}``."""
    from netxray.lenses import symmetry as sym

    def build(models: dict) -> dict:
        torch.manual_seed(0)
        out = {}
        for name, (make, data) in models.items():
            m = randomise_batchnorm(make()).eval()
            out[name] = (m, data, sym.symmetry_group(m, data))
        return out

    return build
