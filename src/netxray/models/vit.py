"""Small vision transformer (Dosovitskiy et al. 2021), pre-norm, class token.

``patch_embed`` (conv, kernel = stride = patch) → tokens + ``cls_token`` + ``pos_embed`` →
``blocks[i]`` (``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``) → ``norm`` → ``head`` on the
class token. ``Attention`` is written out (``qkv``, ``proj``, ``num_heads``) rather than
``nn.MultiheadAttention`` so that weights and heads are plain, addressable Linear layers.

Config knobs: ``patch_size``, ``dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``activation``
(of the MLP, GELU by default). (C, L) inputs use a Conv1d patch embedding.

Example
-------
>>> import torch
>>> from netxray.models import build_model
>>> m = build_model({"arch": "vit", "input_shape": [1, 8, 8], "num_classes": 10, "dim": 16,
...                  "depth": 1, "num_heads": 2})
>>> m(torch.zeros(3, 1, 8, 8)).shape
torch.Size([3, 10])
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ._common import check_knobs, conv_cls, make_activation, positive_int, spatial_dims

KNOBS = ("patch_size", "dim", "depth", "num_heads", "mlp_ratio", "activation")
DEFAULTS: dict[str, Any] = {
    "patch_size": 4,
    "dim": 64,
    "depth": 2,
    "num_heads": 4,
    "mlp_ratio": 2,
    "activation": "gelu",
}


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q Kᵀ / sqrt(d_head)) V per head, then ``proj``.

    ``qkv``: Linear(dim, 3·dim), rows ordered [Q; K; V], each block split into ``num_heads``
    consecutive chunks of ``dim / num_heads`` rows (head h owns rows h·d_head … (h+1)·d_head − 1).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"vit: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, d_head)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, hidden: int, activation: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(dim, hidden), act=make_activation(activation), fc2=nn.Linear(hidden, dim)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Full ViT config with defaults; checks that patches tile the input and heads split dim."""
    check_knobs("vit", config, KNOBS)
    input_shape = list(config["input_shape"])
    spatial_dims("vit", tuple(input_shape))
    out = {"arch": "vit", "input_shape": input_shape, "num_classes": config["num_classes"]}
    for key in ("patch_size", "dim", "depth", "num_heads", "mlp_ratio"):
        out[key] = positive_int("vit", key, config.get(key, DEFAULTS[key]))
    out["activation"] = config.get("activation", DEFAULTS["activation"])
    make_activation(out["activation"])
    bad = [s for s in input_shape[1:] if s % out["patch_size"]]
    if bad:
        raise ValueError(
            f"vit: patch_size {out['patch_size']} must divide every spatial size of "
            f"input_shape {input_shape}"
        )
    if out["dim"] % out["num_heads"]:
        raise ValueError(f"vit: dim {out['dim']} must be divisible by num_heads {out['num_heads']}")
    return out


class ViT(nn.Module):
    """Patch embedding, class token, learned positions, pre-norm blocks, linear head."""

    def __init__(
        self,
        input_shape: list[int],
        num_classes: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: int,
        activation: str,
    ):
        super().__init__()
        dims = spatial_dims("vit", tuple(input_shape))
        self.patch_embed = conv_cls(dims)(input_shape[0], dim, kernel_size=patch_size, stride=patch_size)
        num_patches = math.prod(s // patch_size for s in input_shape[1:])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, dim * mlp_ratio, activation) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # the usual ViT initialisation (timm): truncated normal 0.02 for embeddings and linears
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def netxray_probes(self) -> list[str]:
        """Module paths whose outputs are this model's natural probe layers, in forward order
        (the interface :func:`netxray.capture.natural_probes` reads from any model)."""
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, T, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def build(config: dict[str, Any]) -> ViT:
    return ViT(
        config["input_shape"],
        config["num_classes"],
        config["patch_size"],
        config["dim"],
        config["depth"],
        config["num_heads"],
        config["mlp_ratio"],
        config["activation"],
    )
