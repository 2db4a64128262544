"""Trained vs untrained, shown (issue 19): on the built-in models trained on digits, which lens
separates a trained model from its own initialisation, and in which direction.

- modularity (Lu et al.): training separates the classes in the last layers — Q/Q_max at the last
  probed layer is higher after training than at the initialisation, for every family;
- parameters (Zheng et al.): training changes the shape of each weight tensor's distribution
  (its excess kurtosis: −1.2 for torch's default uniform init) far more than drawing the
  initialisation again with another seed does;
- non-linearity (Bouniot et al.): the signature moves further from the initialisation's than the
  initialisations of two seeds are from each other (its direction is not the same for every
  family: measured numbers in docs/trained-vs-init.md);
- symmetry (Shen): the group is a property of the architecture, so |G| is the same — any other
  answer would be a bug.
"""

from __future__ import annotations

import pytest
import torch

from netxray.lenses.modularity import modularity_curve
from netxray.lenses.nonlinearity import nonlinearity_signature
from netxray.lenses.parameters import weight_stats
from netxray.lenses.symmetry import symmetry_group
from netxray.measures.signature import dtw_distance
from netxray.models import build_model

ARCHS = ["mlp", "cnn", "resnet", "vit"]


def _init(model, seed: int = 0):
    """The model as ``netxray.train`` initialised it (the same seed before the same build)."""
    torch.manual_seed(seed)
    return build_model(model.netxray_config).eval()


def _ok_scores(df):
    return df.loc[df["status"] == "ok", "affinity"].to_numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_each_lens_tells_a_trained_model_from_its_initialisation(trained, digits, arch):
    model = trained(arch)
    init, other_init = _init(model), _init(model, seed=1)
    # modularity: higher class separation at the last probed layer after training
    q = {name: modularity_curve(m, digits, n=300, repeats=2, seed=0)["q_rel_mean"].iloc[-1]
         for name, m in (("trained", model), ("init", init))}  # fmt: skip
    assert q["trained"] > q["init"] + 0.02, q
    # parameters: each weight tensor's shape of distribution (excess kurtosis) moves away from
    # its initial law further than a re-initialisation with another seed moves it
    def kurtosis(m):
        s = weight_stats(m)
        return s[(s["role"] == "weight") & (s["count"] >= 256)].set_index("name")["kurtosis"]

    k_trained, k_init, k_other = kurtosis(model), kurtosis(init), kurtosis(other_init)
    moved, reseeded = (k_trained - k_init).abs().mean(), (k_other - k_init).abs().mean()
    assert moved > reseeded, (moved, reseeded)
    # non-linearity: the signature moves further than the seed-to-seed spread at init
    sig = {name: _ok_scores(nonlinearity_signature(m, digits, seed=0))
           for name, m in (("trained", model), ("init", init), ("other", other_init))}  # fmt: skip
    assert dtw_distance(sig["trained"], sig["init"]) > dtw_distance(sig["init"], sig["other"])
    # symmetry: a property of the architecture, identical for any weights
    g_trained, g_init = symmetry_group(model), symmetry_group(init)
    assert g_trained.attrs["summary"]["log10_order"] == pytest.approx(g_init.attrs["summary"]["log10_order"])
