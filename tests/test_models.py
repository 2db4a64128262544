"""Built-in architectures, their layout contract, checkpoints and the provenance helpers (issue 2, item 3)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from netxray._meta import atomic_write_bytes, metadata, model_hash
from netxray.capture import natural_probes
from netxray.models import (
    ARCHS,
    Attention,
    BasicBlock,
    CheckpointError,
    ConvBlock,
    build_model,
    default_config,
    load,
    save_checkpoint,
)
from netxray.models.checkpoint import load_config

SHAPES = {"2d": [1, 8, 8], "1d": [1, 40]}
SMALL = {
    "mlp": {"widths": [12, 10]},
    "cnn": {"channels": [4, 6], "convs_per_stage": 2},
    "resnet": {"channels": [4, 8], "blocks": [2, 1]},
    "vit": {"dim": 8, "depth": 2, "num_heads": 2, "patch_size": 4},
}


def small(arch: str, shape: list[int], seed: int = 0, **over) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(default_config(arch, shape, 10, **{**SMALL[arch], **over}))


def exercise_buffers(model: nn.Module, shape: list[int]) -> None:
    """Move BN running statistics away from their initial values (so the round trip must carry them)."""
    model.train()
    with torch.no_grad():
        model(torch.randn(16, *shape) * 3 + 1)
    model.eval()


# --------------------------------------------------------------------------------------------
# architectures and the layout contract


@pytest.mark.parametrize("dims", ["2d", "1d"])
@pytest.mark.parametrize("arch", ARCHS)
def test_build_and_forward(arch, dims):
    shape = SHAPES[dims]
    model = small(arch, shape)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()
    assert model.netxray_config["arch"] == arch
    assert model.netxray_config["input_shape"] == shape
    # the stored config rebuilds the same architecture
    again = build_model(model.netxray_config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    probes = natural_probes(model)
    names = dict(model.named_modules())
    assert probes and all(p in names for p in probes)
    # probes are listed in forward order: record the order their forward hooks fire
    fired: list[str] = []
    hooks = [names[p].register_forward_hook(lambda m, i, o, p=p: fired.append(p)) for p in probes]
    model.eval()(torch.randn(2, *shape))
    for h in hooks:
        h.remove()
    assert fired == probes


def test_mlp_layout():
    m = small("mlp", [1, 8, 8])
    assert isinstance(m.flatten, nn.Flatten) and isinstance(m.head, nn.Linear)
    assert isinstance(m.hidden, nn.ModuleList) and len(m.hidden) == 2
    assert [type(layer.linear) for layer in m.hidden] == [nn.Linear, nn.Linear]
    assert isinstance(m.hidden[0].act, nn.ReLU)
    assert m.hidden[0].linear.in_features == 64 and m.hidden[1].linear.out_features == 10
    assert natural_probes(m) == ["hidden.0", "hidden.1"]
    tanh = build_model(default_config("mlp", [4], 3, width=5, depth=3, activation="tanh"))
    assert tanh.netxray_config["widths"] == [5, 5, 5]
    assert all(isinstance(layer.act, nn.Tanh) for layer in tanh.hidden)


@pytest.mark.parametrize("dims,conv,bn,pool", [
    ("2d", nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d),
    ("1d", nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
])
def test_cnn_layout(dims, conv, bn, pool):
    m = small("cnn", SHAPES[dims])
    kinds = [type(b) for b in m.features]
    assert kinds == [ConvBlock, ConvBlock, pool, ConvBlock, ConvBlock]
    block = m.features[0]
    assert isinstance(block, nn.Sequential)
    assert [n for n, _ in block.named_children()] == ["conv", "bn", "act"]
    assert type(block.conv) is conv and type(block.bn) is bn and isinstance(block.act, nn.ReLU)
    assert isinstance(m.flatten, nn.Flatten) and isinstance(m.classifier, nn.Linear)
    assert natural_probes(m) == ["features.0", "features.1", "features.3", "features.4"]
    # width/depth knobs: channels double per stage
    assert default_config("cnn", [1, 8, 8], 10, width=8, depth=3)["channels"] == [8, 16, 32]


@pytest.mark.parametrize("dims,conv,bn", [("2d", nn.Conv2d, nn.BatchNorm2d), ("1d", nn.Conv1d, nn.BatchNorm1d)])
def test_resnet_layout_and_shared_relu(dims, conv, bn):
    m = small("resnet", SHAPES[dims])
    assert [n for n, _ in m.named_children()] == ["stem", "layer1", "layer2", "pool", "flatten", "fc"]
    assert [n for n, _ in m.stem.named_children()] == ["conv", "bn", "relu"]
    assert natural_probes(m) == ["stem", "layer1.0", "layer1.1", "layer2.0"]
    b0, b2 = m.layer1[0], m.layer2[0]
    assert isinstance(b0, BasicBlock)
    for name, kind in [("conv1", conv), ("bn1", bn), ("relu", nn.ReLU), ("conv2", conv), ("bn2", bn)]:
        assert type(getattr(b0, name)) is kind
    assert isinstance(b0.shortcut, nn.Identity)
    assert isinstance(b2.shortcut, nn.Sequential) and type(b2.shortcut[0]) is conv and type(b2.shortcut[1]) is bn
    # ONE relu module, called twice per block forward (as in torchvision)
    calls = []
    b0.relu.register_forward_hook(lambda *a: calls.append(1))
    m.eval()(torch.randn(2, *SHAPES[dims]))
    assert len(calls) == 2
    assert default_config("resnet", [1, 8, 8], 10, width=4, depth=3)["blocks"] == [3, 3, 3]


@pytest.mark.parametrize("dims", ["2d", "1d"])
def test_vit_layout(dims):
    m = small("vit", SHAPES[dims])
    assert type(m.patch_embed) is (nn.Conv2d if dims == "2d" else nn.Conv1d)
    assert m.patch_embed.kernel_size == m.patch_embed.stride == ((4, 4) if dims == "2d" else (4,))
    n_tokens = (4 if dims == "2d" else 10) + 1
    assert m.cls_token.shape == (1, 1, 8) and m.pos_embed.shape == (1, n_tokens, 8)
    assert natural_probes(m) == ["blocks.0", "blocks.1"]
    blk = m.blocks[0]
    assert isinstance(blk.attn, Attention) and not any(
        isinstance(x, nn.MultiheadAttention) for x in m.modules()
    )
    assert blk.attn.num_heads == 2
    assert (blk.attn.qkv.in_features, blk.attn.qkv.out_features) == (8, 24)
    assert (blk.attn.proj.in_features, blk.attn.proj.out_features) == (8, 8)
    assert isinstance(blk.norm1, nn.LayerNorm) and isinstance(blk.norm2, nn.LayerNorm)
    assert [n for n, _ in blk.mlp.named_children()] == ["fc1", "act", "fc2"]
    assert isinstance(blk.mlp.act, nn.GELU) and isinstance(m.norm, nn.LayerNorm)


def test_vit_attention_matches_reference_formula():
    """Attention = softmax(QKᵀ/√d_h)V per head, heads = consecutive row blocks of qkv."""
    torch.manual_seed(0)
    attn = Attention(dim=6, num_heads=2).double()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    q, k, v = attn.qkv(x).split(6, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(3 * h, 3 * h + 3)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 3**0.5, dim=-1)
        heads.append(w @ v[..., sl])
    expected = attn.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "config,match",
    [
        ({"arch": "lstm", "input_shape": [4], "num_classes": 2}, "unknown arch 'lstm'"),
        ({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widht": 3}, r"unknown config key\(s\) \['widht'\]"),
        ({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3], "width": 3}, "either 'widths'"),
        ({"arch": "mlp", "input_shape": [4], "num_classes": 0}, "num_classes must be a positive integer"),
        ({"arch": "mlp", "input_shape": [], "num_classes": 2}, "input_shape must be a non-empty list"),
        ({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3, 0]}, r"widths\[1\] must be a positive"),
        ({"arch": "mlp", "input_shape": [4], "num_classes": 2, "activation": "swishy"}, "unknown activation"),
        ({"arch": "cnn", "input_shape": [16], "num_classes": 2}, r"expected \(C, H, W\) images or \(C, L\)"),
        ({"arch": "resnet", "input_shape": [2, 3, 4, 5], "num_classes": 2}, r"expected \(C, H, W\)"),
        ({"arch": "cnn", "input_shape": [1, 8, 8], "num_classes": 2, "channels": [2] * 5}, "at most 4 stages"),
        ({"arch": "vit", "input_shape": [1, 8, 8], "num_classes": 2, "patch_size": 3}, "must divide"),
        ({"arch": "vit", "input_shape": [1, 8, 8], "num_classes": 2, "dim": 10, "num_heads": 4}, "divisible"),
        ({"arch": "resnet", "input_shape": [1, 8, 8], "num_classes": 2, "channels": [4, 8], "blocks": [1]}, "one entry per stage"),
    ],
)
def test_bad_configs(config, match):
    with pytest.raises(ValueError, match=match):
        build_model(config)


def test_natural_probes_rejects_foreign_models():
    with pytest.raises(ValueError, match="not a built-in netxray model"):
        natural_probes(nn.Sequential(nn.Linear(2, 2)))


def test_build_is_seeded():
    a, b, c = small("cnn", [1, 8, 8], seed=3), small("cnn", [1, 8, 8], seed=3), small("cnn", [1, 8, 8], seed=4)
    assert model_hash(a) == model_hash(b) != model_hash(c)


# --------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("dims", ["2d", "1d"])
@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_bit_identical(arch, dims, tmp_path):
    shape = SHAPES[dims]
    model = small(arch, shape, seed=1)
    exercise_buffers(model, shape)
    before = model_hash(model)
    d = save_checkpoint(model, tmp_path / "ckpt", metrics={"test_acc": 0.5})
    assert model_hash(model) == before and not model.training  # saving changed nothing
    x = torch.randn(7, *shape)
    ref = model(x)
    for path in (d, d / "model.safetensors", d / "config.json"):
        loaded = load(path)
        assert not loaded.training
        assert type(loaded) is type(model)
        assert loaded.netxray_config == model.netxray_config
        assert model_hash(loaded) == before
        assert torch.equal(loaded(x), ref)  # bit-identical outputs
    rec = load_config(d)
    assert rec["metrics"] == {"test_acc": 0.5} and rec["model_hash"] == before


def test_checkpoint_keeps_dtype_and_other_files(tmp_path):
    model = small("mlp", [4], seed=2).double()
    (tmp_path / "notes.txt").write_text("mine")
    save_checkpoint(model, tmp_path)
    loaded = load(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float64
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(loaded(x), model.eval()(x))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # nothing but the two files and the user's file: no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]


def test_save_rejects_foreign_and_edited_models(tmp_path):
    with pytest.raises(CheckpointError, match="no netxray_config"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "a")
    m = small("resnet", [1, 8, 8])
    m.layer1[1] = nn.Identity()  # pruned: no longer the model its config describes
    with pytest.raises(CheckpointError, match=r"do not match its netxray_config.*missing tensors \['layer1.1"):
        save_checkpoint(m, tmp_path / "b")
    assert not (tmp_path / "b" / "config.json").exists()


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return save_checkpoint(small("mlp", [1, 8, 8]), tmp_path / "ckpt")


def test_load_missing(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load(tmp_path / "nope")
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json is missing"):
        load(ckpt)
    with pytest.raises(CheckpointError, match="not a netxray checkpoint"):
        load(Path(__file__))


def test_load_missing_weights(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing"):
        load(ckpt)


def test_load_corrupted_weights(ckpt):
    w = ckpt / "model.safetensors"
    blob = w.read_bytes()
    w.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load(ckpt)
    # with a hash recorded for the truncated file, the safetensors parser itself must refuse it
    import hashlib

    rec = json.loads((ckpt / "config.json").read_text())
    rec["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    (ckpt / "config.json").write_text(json.dumps(rec))
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a readable safetensors file"):
        load(ckpt)
    # without the recorded hash there is nothing binding the weights to the config: refused
    del rec["weights_sha256"]
    (ckpt / "config.json").write_text(json.dumps(rec))
    with pytest.raises(CheckpointError, match=r"weights_sha256 is missing"):
        load(ckpt)


def test_load_corrupted_config(ckpt):
    cfg = ckpt / "config.json"
    cfg.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON"):
        load(ckpt)
    cfg.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match='"format": "netxray-checkpoint"'):
        load(ckpt)


def test_load_future_format_and_bad_model_config(ckpt):
    cfg = ckpt / "config.json"
    rec = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**rec, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load(ckpt)
    cfg.write_text(json.dumps({**rec, "model": {**rec["model"], "arch": "lstm"}}))
    with pytest.raises(CheckpointError, match="invalid model config.*unknown arch"):
        load(ckpt)


def test_load_mismatched_weights(tmp_path):
    """Weights of a different architecture under a config: named tensors, shapes, expected."""
    a = save_checkpoint(small("mlp", [1, 8, 8], widths=[12, 10]), tmp_path / "a")
    b = save_checkpoint(small("mlp", [1, 8, 8], widths=[12, 7]), tmp_path / "b")
    rec = json.loads((a / "config.json").read_text())
    blob = (b / "model.safetensors").read_bytes()
    rec["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # a consistent, but wrong, pair
    (a / "config.json").write_text(json.dumps(rec))
    shutil.copy(b / "model.safetensors", a / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"hidden.1.linear.weight: shape \[7, 12\], expected \[10, 12\]"):
        load(a)
    c = save_checkpoint(small("cnn", [1, 8, 8]), tmp_path / "c")
    shutil.copy(c / "model.safetensors", a / "model.safetensors")
    rec["weights_sha256"] = hashlib.sha256((c / "model.safetensors").read_bytes()).hexdigest()
    (a / "config.json").write_text(json.dumps(rec))
    with pytest.raises(CheckpointError, match=r"missing tensors \['head.bias'.*unexpected tensors \['classifier"):
        load(a)


def test_replaced_weights_without_config_do_not_load(tmp_path):
    """Half a checkpoint swap (new weights, old config) is refused even when shapes agree."""
    d = save_checkpoint(small("mlp", [1, 8, 8], seed=1), tmp_path / "d")
    other = save_checkpoint(small("mlp", [1, 8, 8], seed=2), tmp_path / "o")
    shutil.copy(other / "model.safetensors", d / "model.safetensors")
    with pytest.raises(CheckpointError, match="replaced without their config"):
        load(d)


def test_failed_write_leaves_no_loadable_half_checkpoint(tmp_path, monkeypatch):
    import netxray.models.checkpoint as ck

    old = small("mlp", [1, 8, 8], seed=1)
    new = small("mlp", [1, 8, 8], seed=2)
    d = save_checkpoint(old, tmp_path / "d")

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    # failure after the weights were replaced, before the config: old config + new weights
    monkeypatch.setattr(ck, "atomic_write_text", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(new, d)
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load(d)
    # failure in a fresh directory after the weights: no config, nothing loads
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(new, tmp_path / "fresh")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load(tmp_path / "fresh")
    monkeypatch.undo()
    # a failure inside the weights write leaves the old pair intact (and no temp files)
    d2 = save_checkpoint(old, tmp_path / "d2")
    monkeypatch.setattr(ck, "atomic_write_bytes", lambda p, data: (_ for _ in ()).throw(OSError("simulated")))
    with pytest.raises(OSError):
        save_checkpoint(new, d2)
    assert model_hash(load(d2)) == model_hash(old)
    assert sorted(p.name for p in d2.iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("where", ["in_weights_write", "between_files"])
def test_killed_process_leaves_no_loadable_half_checkpoint(tmp_path, where):
    """A real SIGKILL in the middle of writing: the directory holds the old checkpoint or nothing loadable."""
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        import netxray._meta as meta
        import netxray.models.checkpoint as ck
        from netxray.models import build_model
        torch.manual_seed(1)
        cfg = {{"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [12]}}
        ck.save_checkpoint(build_model(cfg), {str(tmp_path / "d")!r})
        torch.manual_seed(2)
        new = build_model(cfg)
        if {where!r} == "in_weights_write":
            # killed after half of the new weights reached the temp file
            real_fsync = os.fsync
            def fsync(fd):
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            os.fsync = fsync
        else:
            ck.atomic_write_text = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        ck.save_checkpoint(new, {str(tmp_path / "d")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    torch.manual_seed(1)
    old = build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [12]})
    if where == "in_weights_write":
        # the old checkpoint is intact; the temp file is ignored
        assert model_hash(load(tmp_path / "d")) == model_hash(old)
        assert any(p.name.endswith(".tmp") for p in (tmp_path / "d").iterdir())
    else:
        with pytest.raises(CheckpointError, match="SHA-256 does not match"):
            load(tmp_path / "d")


# --------------------------------------------------------------------------------------------
# provenance helpers


def test_model_hash_detects_any_change():
    m = small("mlp", [4], seed=0)
    h = model_hash(m)
    assert h == model_hash(small("mlp", [4], seed=0))
    with torch.no_grad():
        m.hidden[0].linear.weight[0, 0] += 1e-7
    assert model_hash(m) != h
    # order-independent over the state dict, device/mode-independent
    m2 = small("mlp", [4], seed=0)
    assert model_hash(m2.train()) == model_hash(m2.eval()) == h


def test_atomic_write_cleans_up_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def fail(fd):
        raise OSError("simulated fsync failure")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_bytes(tmp_path / "no" / "x", b"")


def test_metadata_fields():
    meta = metadata(seed=3, n=10, d=None)
    assert meta["seed"] == 3 and meta["n"] == 10 and meta["d"] is None
    assert meta["netxray_version"] and meta["torch_version"] == torch.__version__
    assert metadata(seed=3) == metadata(seed=3)  # no time stamps: same inputs, same metadata


def test_atomic_writes_use_ordinary_modes_and_keep_existing_ones(tmp_path):
    import os
    import stat

    from netxray._meta import atomic_write_text

    mask = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.csv", "a")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # what open() would give, not 0600
        kept = tmp_path / "kept.sh"
        kept.write_text("old")
        kept.chmod(0o750)
        atomic_write_text(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o750 and kept.read_text() == "new"
    finally:
        os.umask(mask)

