"""Big models in their own dtype (issue 23): a sharded bfloat16 Hugging Face checkpoint loads as
bfloat16 — never a float32 copy of every weight — with its values bit for bit."""

from __future__ import annotations

import json

import torch
import transformers

import netxray


def test_a_sharded_bfloat16_checkpoint_loads_in_bfloat16_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    loaded = netxray.load(f"hf:{tmp_path}")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    want = model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())


def test_a_libraries_own_norm_layers_are_norms_in_the_parameters_lens():
    # LlamaRMSNorm is no torch.nn norm: its all-ones weights were counted among the weights
    # (the weights' kurtosis was theirs) and listed as "unmapped" by the node strengths
    from netxray.lenses.parameters import node_strengths, parameter_role, weight_stats

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg)
    mods = dict(model.named_modules())
    assert parameter_role(mods["model.norm"], "weight") == "norm"
    assert parameter_role(mods["model.layers.0.input_layernorm"], "weight") == "norm"
    assert parameter_role(mods["model.layers.0.mlp.down_proj"], "weight") == "weight"
    stats = weight_stats(model).set_index("name")
    assert stats.loc["model.norm.weight", "role"] == "norm"
    assert stats.loc["model.layers.0.post_attention_layernorm.weight", "role"] == "norm"
    strengths = node_strengths(model).set_index("layer")
    assert set(strengths.loc["model.norm", ["status"]].to_numpy().ravel()) == {"skipped"}
    assert "normalization layer" in str(strengths.loc["model.norm", "detail"])
