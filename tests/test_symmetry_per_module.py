"""The symmetry verification on a copy that keeps the model's dtype (issue 23): each module
computes in float64 only while it runs, so a bfloat16 model of a billion parameters is verified
without a float64 copy of all its weights. It must decide exactly as the whole float64 copy does."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from torch import nn

from netxray.lenses import symmetry as sym
from netxray.lenses._symmetry_axes import _upcast_per_module


def _bf16_llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # no zero or constant tensor may carry a claim: trained-like values
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.to(torch.bfloat16)


class RollActivation(nn.Module):
    """Element-wise in name only: it moves each unit's value to its neighbour, so the hidden units
    after it are no permutable axis (a claim the verification must reject)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.roll(x, 1, dims=-1))


def test_a_per_module_copy_computes_what_the_whole_float64_copy_computes():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 3)).to(torch.bfloat16)
    x = torch.randn(5, 6, dtype=torch.float64)
    whole = sym._eval64(m)
    per = _upcast_per_module(m)
    with torch.no_grad():
        assert torch.equal(per(x), whole(x))  # casting up is exact: the same float64 ops, the same bits
    # the copy keeps its stored dtype between calls, and after an error inside a module too
    assert {p.dtype for p in per.parameters()} == {torch.bfloat16}
    with pytest.raises(RuntimeError), torch.no_grad():
        per(torch.randn(5, 7, dtype=torch.float64))
    assert {p.dtype for p in per.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}  # the user's model untouched


def test_per_module_and_whole_copy_verify_the_same_llama_axes():
    model = _bf16_llama()
    before = copy.deepcopy(model.state_dict())
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    whole = sym.symmetry_group(model, ids, verify_copy="whole")
    per = sym.symmetry_group(model, ids, verify_copy="per-module")
    cols = ["axis", "kind", "size", "identical_units", "verified"]
    assert per[cols].equals(whole[cols])
    assert bool(per["verified"].all()) and per.attrs["summary"]["status"] == "ok"
    assert per.attrs["summary"]["log10_order"] == whole.attrs["summary"]["log10_order"]
    assert "per module" in per.attrs["summary"]["statement"]
    assert "per module" not in whole.attrs["summary"]["statement"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.bfloat16


def test_per_module_verification_rejects_a_wrong_axis_and_keeps_homogeneous_rescalings_exact():
    # ReLU axes claim positive rescalings: a factor a ∈ U[0.5, 2] written into bfloat16 weights
    # is rounded, and the outputs would move by ~1e-3 — the factors 2^±1 stay exact
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), RollActivation(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7),
                      nn.ReLU(), nn.Linear(7, 2)).to(torch.bfloat16)  # fmt: skip
    g = sym.symmetry_group(m, verify_copy="per-module")
    s = g.attrs["summary"]
    assert g["axis"].tolist() == ["2->4", "4->6"] and bool(g["verified"].all())
    assert [r["axis"] for r in s["rejected"]] == ["0->2"]
    assert s["verify_rtol"] == 1e-10  # every op of this model computes in float64 on the copy


def test_verify_copy_is_checked():
    with pytest.raises(ValueError, match="verify_copy"):
        sym.symmetry_group(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), verify_copy="half")


@pytest.mark.parametrize("make", ["mlp", "grouped", "llama"])
def test_checks_on_an_exact_copy_give_every_value_back_bit_for_bit(make):
    # an exact copy is restored by undoing each move (no saved copy of the moved tensors): after
    # passing, failing and broken checks alike, every tensor must hold its values to the bit
    torch.manual_seed(0)
    if make == "mlp":
        model = nn.Sequential(nn.Linear(4, 6), RollActivation(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7),
                              nn.ReLU(), nn.Linear(7, 2)).to(torch.bfloat16)  # fmt: skip
        data = None
    elif make == "grouped":
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2),
                              nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).to(torch.bfloat16)  # fmt: skip
        data = torch.randn(2, 3, 9, 9)
    else:
        model, data = _bf16_llama(), torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    copy_ = _upcast_per_module(model)
    an = sym._analyse(model, data)
    assert an.axes
    probe = sym._probe_inputs(model, data, m64=copy_)
    before = {k: v.clone() for k, v in copy_.state_dict().items()}
    v = sym._Verifier(copy_, probe, seed=3, rtol=1e-5)
    assert v.exact_scales
    verdicts = v.check_each(an.axes) + [v.check([ax]) for ax in an.axes]
    assert any(ok for ok, _, _ in verdicts)
    after = copy_.state_dict()
    assert all(torch.equal(after[k], want) for k, want in before.items())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
@pytest.mark.parametrize("verify_copy", ["whole", "per-module"])
def test_the_verification_runs_on_the_device_asked_and_decides_the_same(device, verify_copy):
    model = _bf16_llama()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    here = sym.symmetry_group(model, ids, verify_copy=verify_copy)
    there = sym.symmetry_group(model, ids, verify_copy=verify_copy, device=device)
    cols = ["axis", "size", "identical_units", "verified"]
    assert there[cols].equals(here[cols]) and bool(there["verified"].all())
    assert next(model.parameters()).device.type == "cpu"  # the model itself never moves


def test_the_symmetry_command_takes_a_device(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.models import build_model, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [12]}),
                    tmp_path / "a")  # fmt: skip
    r = CliRunner().invoke(app, ["symmetry", str(tmp_path / "a"), "--device", "cpu"])
    assert r.exit_code == 0 and "status: ok" in r.output, r.output
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["symmetry", str(tmp_path / "a"), "--device", "cuda"])
        assert r.exit_code == 1 and "error: --device cuda" in r.output and "no CUDA GPU" in r.output, r.output
