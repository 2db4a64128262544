"""Lens 2, SPEC §2.2: removable layers, pruning, MACs, the pruning study and its CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from netxray.lenses.pruning import (
    count_macs,
    count_params,
    prune_layers,
    prune_study,
    removable_layers,
)
from netxray.models import build_model, load, save_checkpoint


def _removable(model) -> dict[str, bool]:
    return removable_layers(model).set_index("layer")["removable"].to_dict()


def test_which_layers_can_be_removed():
    resnet = build_model({"arch": "resnet", "input_shape": [1, 8, 8], "num_classes": 10,
                          "width": 8, "depth": 2})  # fmt: skip
    assert _removable(resnet) == {
        "stem": False, "layer1.0": True, "layer1.1": True, "layer2.0": False, "layer2.1": True,
        "layer3.0": False, "layer3.1": True,
    }  # fmt: skip
    reasons = removable_layers(resnet).set_index("layer")["reason"]
    assert "projection" in reasons["layer2.0"] and "stem" in reasons["stem"]
    cnn = build_model({"arch": "cnn", "input_shape": [1, 8, 8], "num_classes": 10,
                       "channels": [8, 16], "convs_per_stage": 2})  # fmt: skip
    assert _removable(cnn) == {
        "features.0": False, "features.1": True, "features.3": False, "features.4": True
    }
    assert "8 → 16" in removable_layers(cnn).set_index("layer").loc["features.3", "reason"]
    vit = build_model({"arch": "vit", "input_shape": [1, 8, 8], "num_classes": 10, "dim": 16,
                       "depth": 2, "num_heads": 2, "patch_size": 4})  # fmt: skip
    assert _removable(vit) == {"blocks.0": True, "blocks.1": True}
    mlp = build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10,
                       "widths": [32, 32, 16]})  # fmt: skip
    assert _removable(mlp) == {"hidden.0": False, "hidden.1": True, "hidden.2": False}


def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    # conv: 8·8·4 outputs × 1·3·3 = 2304; linear: 10 × 256 = 2560 (per sample, any batch size)
    assert count_macs(model, torch.zeros(3, 1, 8, 8)) == 2304 + 2560
    assert count_params(model) == 4 * 9 + 4 + 2560 + 10
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    assert count_macs(grouped, torch.zeros(1, 4, 5, 5)) == 5 * 5 * 4 * 1 * 9


def test_pruning_a_residual_block_runs_and_loads(trained, digits, tmp_path):
    model = trained("resnet", depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_layers(model, ["layer2.1"])
    assert isinstance(pruned.layer2[1], nn.Identity)
    assert pruned.netxray_config["removed"] == ["layer2.1"]
    # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "removed" not in model.netxray_config
    block_params = sum(p.numel() for p in model.layer2[1].parameters())
    assert count_params(pruned) == count_params(model) - block_params
    x = digits.test.x[:16]
    with torch.no_grad():
        out = pruned(x)
        # identity block: the pruned net computes layer2.0's output straight into layer3
        h = model.stem(x)
        h = model.layer1(h)
        h = model.layer2[0](h)
        h = model.layer3(h)
        ref = model.fc(model.flatten(model.pool(h)))
    assert out.shape == (16, 10) and torch.allclose(out, ref, atol=1e-6)
    loaded = load(save_checkpoint(pruned, tmp_path / "pruned"))
    assert loaded.netxray_config["removed"] == ["layer2.1"]
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    with pytest.raises(ValueError, match="cannot remove 'layer2.0': its shortcut is a projection"):
        prune_layers(model, ["layer2.0"])
    with pytest.raises(ValueError, match="cannot remove 'layer2.1': already removed"):
        prune_layers(pruned, ["layer2.1"])
    with pytest.raises(ValueError, match="not a built-in"):
        prune_layers(nn.Sequential(nn.Linear(2, 2)), ["0"])


def test_prune_study_variants_on_a_given_curve(trained, digits, tmp_path):
    model = trained("resnet", depth=2)
    layers = ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    # a curve that rises everywhere except a plateau at layer2.1 and a dip at layer3.0
    curve = pd.DataFrame({
        "layer": layers, "q_mean": [0.5, 0.6, 0.7, 0.8, 0.8, 0.7, 0.9], "q_std": [0.0] * 7,
        "repeats": [3] * 7, "status": ["ok"] * 7,
    })  # fmt: skip
    study = prune_study(model, digits, curve=curve, finetune_epochs=1, n=120, repeats=2,
                        random_draws=2, out=tmp_path / "study")  # fmt: skip
    t = study.table.set_index("variant")
    assert list(t.index) == ["original", "finetuned", "modularity", "random#0", "random#1",
                             "non_redundant"]  # fmt: skip
    # layer3.0 is redundant (a dip) but has a projection shortcut: said, not removed
    assert t.loc["modularity", "removed"] == "layer2.1"
    assert any(s.startswith("layer3.0: its shortcut") for s in study.summary["redundant_not_removable"])
    # non-redundant control: the removable layer where Q rises most (layer1.0 and 1.1 rise 0.1;
    # layer3.1 rises 0.2)
    assert t.loc["non_redundant", "removed"] == "layer3.1"
    assert (t["n_removed"].iloc[2:] == 1).all()
    assert t.loc["original", "params_pct"] == 100 and t.loc["modularity", "params_pct"] < 100
    assert t.loc["modularity", "macs"] < t.loc["original", "macs"]
    assert 0.5 < t.loc["original", "acc_pruned"] <= 1
    assert t["acc_finetuned"].iloc[1:].between(0, 1).all()
    assert study.curve_after is not None and "layer2.1" not in set(study.curve_after["layer"])
    for name in ("prune_table.csv", "curve_before.csv", "curve_after.csv", "prune_summary.json"):
        assert (tmp_path / "study" / name).exists()
    reloaded = load(tmp_path / "study" / "pruned")
    assert reloaded.netxray_config["removed"] == ["layer2.1"]


def test_prune_cli(trained, tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    ckpt = save_checkpoint(trained("resnet", depth=2), tmp_path / "ckpt")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["prune", str(ckpt), "--data", "digits", "--finetune-epochs", "0",
                                   "--out", str(out), "--n", "120", "--repeats", "2",
                                   "--random-draws", "1", "--tol", "0.05"])  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "prune_table.csv")
    assert "original" in set(table["variant"])
    # the fine-tuned unpruned control exists exactly when something was pruned
    assert ("finetuned" in set(table["variant"])) == ("modularity" in set(table["variant"]))
    assert (out / "curve_before.png").exists()
    if "modularity" in set(table["variant"]):
        assert load(out / "pruned").netxray_config["removed"]
    # a second run replaces the files netxray wrote; a folder holding the user's own
    # prune_table.csv is refused before any work (issue 20: --out touches only what netxray wrote)
    again = CliRunner().invoke(app, ["prune", str(ckpt), "--data", "digits", "--finetune-epochs", "0",
                                     "--out", str(out), "--n", "120", "--repeats", "2",
                                     "--random-draws", "1", "--tol", "0.05", "--quiet"])  # fmt: skip
    assert again.exit_code == 0, again.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "prune_table.csv").write_text("the user's")
    refused = CliRunner().invoke(app, ["prune", str(ckpt), "--out", str(mine)])
    assert refused.exit_code == 1 and "prune_table.csv not written by netxray" in refused.output, refused.output
    assert (mine / "prune_table.csv").read_text() == "the user's"


class _Res(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, mask=None):
        return (x + torch.relu(self.fc(x)), None)  # Hugging Face style: a tuple


class _ForeignNet(nn.Module):
    """Not a built-in: flatten → embed → 3 residual blocks returning tuples → widen → head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(64, 16)
        self.blocks = nn.ModuleList([_Res(16) for _ in range(3)])
        self.widen = nn.Sequential(nn.Linear(16, 24), nn.ReLU())
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        h = self.embed(x.flatten(1))
        for block in self.blocks:
            h = block(h, mask=None)[0]
        return self.head(self.widen(h))


def test_pruning_any_model_from_its_graph():
    from netxray.lenses.pruning import SkipBlock

    torch.manual_seed(0)
    model = _ForeignNet()
    x = torch.randn(5, 1, 8, 8)
    table = removable_layers(model, ["embed", "blocks.0", "blocks.1", "blocks.2", "widen"], x)
    t = table.set_index("layer")
    assert t["removable"].to_dict() == {"embed": False, "blocks.0": True, "blocks.1": True,
                                        "blocks.2": True, "widen": False}  # fmt: skip
    assert "shapes differ" in t.loc["embed", "reason"] and "(16,) → (24,)" in t.loc["widen", "reason"]
    pruned = prune_layers(model, ["blocks.1"], x)
    assert isinstance(pruned.blocks[1], SkipBlock) and pruned.netxray_removed == ["blocks.1"]
    assert isinstance(model.blocks[1], _Res)  # the original is untouched
    with torch.no_grad():
        h = model.embed(x.flatten(1))
        h = model.blocks[2](model.blocks[0](h)[0])[0]
        assert torch.equal(pruned(x), model.head(model.widen(h)))
    with pytest.raises(ValueError, match="cannot remove 'widen': its input and output shapes differ"):
        prune_layers(model, ["widen"], x)
    with pytest.raises(ValueError, match="pass example_inputs"):
        prune_layers(model, ["blocks.1"])


def test_a_layer_without_residual_path_is_not_removable():
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    t = removable_layers(mlp, ["2"], torch.randn(2, 4)).set_index("layer")
    assert not t.loc["2", "removable"] and "no residual path" in t.loc["2", "reason"]


def test_prune_study_with_nothing_removable_neither_prunes_nor_finetunes(digits):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 10))  # fmt: skip
    study = prune_study(mlp, digits, finetune_epochs=1, n=100, repeats=2)
    # the fine-tuned control is listed as skipped (not run), so the table says why it is empty
    assert list(study.table["variant"]) == ["original", "finetuned"]
    assert study.table.set_index("variant").loc["finetuned", "status"].startswith("skipped")
    assert study.model is None and study.curve_after is None
    assert study.summary["n_removable"] == 0
    assert "nothing was pruned or fine-tuned" in study.summary["note"]
    assert "no residual path" in study.summary["note"]


def test_torchvision_resnet18_removable_blocks():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18(weights=None, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    t = removable_layers(model, None, x).set_index("layer")
    assert list(t.index[t["removable"]]) == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert "shapes differ" in t.loc["layer2.0", "reason"]
    pruned = prune_layers(model, ["layer3.1"], x)
    assert pruned(x).shape == (2, 10)


def test_pruned_torchvision_model_saves_and_loads_back(tmp_path):
    """A pruned torchvision model is a checkpoint: source + removed blocks + weights, rebuilt by
    netxray.load (Python and the CLI's model argument) with bit-identical outputs."""
    pytest.importorskip("torchvision")
    import json

    import netxray
    from netxray.cli.scan_cmd import load_cli_model
    from netxray.lenses.pruning import SkipBlock

    torch.manual_seed(0)
    model = netxray.load("torchvision:resnet18", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    pruned = prune_layers(model, ["layer3.1", "layer4.1"], x)
    with torch.no_grad():  # weights the source's random init cannot reproduce: loaded, not rebuilt
        pruned.fc.weight.add_(1.0)
    path = netxray.save_checkpoint(pruned, tmp_path / "pruned")
    record = json.loads((path / "config.json").read_text())["model"]
    assert record["source"] == "torchvision:resnet18" and record["kwargs"] == {"num_classes": 10}
    assert [b["path"] for b in record["removed_blocks"]] == ["layer3.1", "layer4.1"]
    for loaded in (netxray.load(path), load_cli_model(path, None, None)):
        assert isinstance(loaded.layer3[1], SkipBlock) and isinstance(loaded.layer4[1], SkipBlock)
        assert loaded.netxray_removed == ["layer3.1", "layer4.1"]
        assert not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(x), pruned.eval()(x))
        assert count_params(loaded) == count_params(pruned) < count_params(model)
    # pruned again after loading: the checkpoint lists every removed block
    again = prune_layers(netxray.load(path), ["layer1.1"], x)
    path2 = netxray.save_checkpoint(again, tmp_path / "again")
    assert netxray.load(path2).netxray_removed == ["layer1.1", "layer3.1", "layer4.1"]
    # a model built by your own code has no source to rebuild: one clear error, nothing written
    own = prune_layers(nn.Sequential(nn.Linear(4, 4), ResidualMLPBlockForSave(), nn.Linear(4, 2)), ["1"],
                       torch.randn(2, 4))  # fmt: skip
    with pytest.raises(ValueError, match="no checkpoint can rebuild it"):
        netxray.save_checkpoint(own, tmp_path / "own")
    assert not (tmp_path / "own").exists()


def test_prune_study_writes_a_loadable_pruned_source_model(tmp_path):
    """The study's DIR/pruned of a torchvision model is a checkpoint netxray.load reads; a model
    from your own code gets its weights only (pruned.safetensors), as the docs say."""
    pytest.importorskip("torchvision")
    import netxray
    from netxray.lenses.pruning import PruneStudy, _write_study

    x = torch.randn(2, 3, 32, 32)
    table = pd.DataFrame([{"variant": "modularity", "acc_finetuned": 0.5, "params": 1, "macs": 1}])
    empty = pd.DataFrame()
    pruned = prune_layers(netxray.load("torchvision:resnet18", num_classes=4), ["layer2.1"], x)
    _write_study(PruneStudy(table, empty, empty, empty, None, pruned, {"removed": ["layer2.1"]}), tmp_path / "a")
    loaded = netxray.load(tmp_path / "a" / "pruned")
    assert loaded.netxray_removed == ["layer2.1"]
    assert loaded.netxray_checkpoint["metrics"]["removed"] == ["layer2.1"]
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned.eval()(x))
    own = prune_layers(nn.Sequential(nn.Linear(4, 4), ResidualMLPBlockForSave(), nn.Linear(4, 2)), ["1"],
                       torch.randn(2, 4))  # fmt: skip
    _write_study(PruneStudy(table, empty, empty, empty, None, own, {"removed": ["1"]}), tmp_path / "b")
    assert (tmp_path / "b" / "pruned.safetensors").exists() and not (tmp_path / "b" / "pruned").exists()


class ResidualMLPBlockForSave(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(x)))
