"""Plücker ray embedding: per-pixel rays → one token per patch.

The rays come from ``physgm.camera.plucker`` (channels: moment o × d, then unit direction
d; world frame), stacked to (N, 6, H, W); ``PixelUnshuffle(patch)``
stacks each patch's p² rays into 6·p² channels and a linear layer (a 1×1 conv) maps them to
the token width. The result is added to the image patch tokens, so every token knows the
rays of its pixels (camera pose and intrinsics) without a separate camera encoder.
"""
from __future__ import annotations

import torch
from torch import nn


class PluckerEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(patch_size)
        self.proj = nn.Conv2d(6 * patch_size * patch_size, dim, kernel_size=1)

    def forward(self, rays: torch.Tensor) -> torch.Tensor:
        """rays (N, 6, H, W) → tokens (N, h·w, dim), row-major over the patch grid."""
        if rays.ndim != 4 or rays.shape[1] != 6:
            raise ValueError(f"Plücker rays must be (N, 6, H, W), got {tuple(rays.shape)}")
        return self.proj(self.unshuffle(rays)).flatten(2).transpose(1, 2)
