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
