"""Small hand-written models several test files share (one definition each)."""

from __future__ import annotations

import torch
from torch import nn


class TopOneMoE(nn.Module):
    """One mixture-of-experts layer, top-1 routing: each expert sees only its samples."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.router = nn.Linear(4, 8), nn.Linear(8, 3)
        self.experts = nn.ModuleList(
            [nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8)) for _ in range(3)]
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        route = self.router(h).argmax(-1)
        y = torch.zeros_like(h)
        for i, expert in enumerate(self.experts):
            mask = route == i
            if mask.any():
                y[mask] = expert(h[mask])
        return self.head(torch.relu(h + y))
