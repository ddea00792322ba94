"""Multi-view transformer: global tokens + all views' patch tokens attend jointly.

Input tokens (B, G + V·h·w, D): G learnable global tokens first, then each view's patch
tokens (image features + Plücker embedding + view embedding). Pre-norm blocks, full
attention through ``scaled_dot_product_attention``. Returns the final normed tokens and the
raw outputs of the blocks the DPT Gaussian head fuses.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from physgm.model.layers import Block, init_weights


def dpt_layer_indices(depth: int, n: int = 4) -> list[int]:
    """n evenly spaced block indices ending at the last block, e.g. depth 24 → 5, 11, 17, 23;
    depth 4 → 0, 1, 2, 3; shallower stacks repeat indices."""
    return [max(0, round(depth * (i + 1) / n) - 1) for i in range(n)]


class MultiViewTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0,
                 grad_checkpoint: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.grad_checkpoint = grad_checkpoint
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, keep: Sequence[int] = ()
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, N, D) → (normed output (B, N, D), [output of block i for i in keep])."""
        wanted = set(keep)
        saved: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
            if i in wanted:
                saved[i] = x
        return self.norm(x), [saved[i] for i in keep]
