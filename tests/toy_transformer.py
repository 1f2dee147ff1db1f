"""A toy pre-LN transformer whose modules carry the real names (``blocks.{i}.ffn.fc1`` as in
VAR, or ``blocks.{i}.mlp.fc1`` as in RAR), for testing hooks and interventions."""

import torch
from torch import nn


class ToyMLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x_BTC):
        return self.fc2(self.act(self.fc1(x_BTC)))


class ToyBlock(nn.Module):
    def __init__(self, width: int, hidden: int, mlp_name: str):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp_name = mlp_name
        self.add_module(mlp_name, ToyMLP(width, hidden))

    def forward(self, x_BTC):
        return x_BTC + getattr(self, self.mlp_name)(self.norm(x_BTC))


class ToyTransformer(nn.Module):
    """x (B, T, C) -> (B, T, C); ``mlp_name`` is "ffn" (VAR naming) or "mlp" (RAR naming)."""

    def __init__(self, depth: int = 3, width: int = 8, hidden: int = 16, mlp_name: str = "ffn", seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.blocks = nn.ModuleList(ToyBlock(width, hidden, mlp_name) for _ in range(depth))
        self.fc1_names = [f"blocks.{i}.{mlp_name}.fc1" for i in range(depth)]

    def forward(self, x_BTC):
        for block in self.blocks:
            x_BTC = block(x_BTC)
        return x_BTC
