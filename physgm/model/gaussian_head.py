"""DPT-style Gaussian head: four transformer depths → one 3D Gaussian per input pixel.

Reassemble (Ranftl et al., DPT 2021): the patch tokens of four blocks become per-view maps
(N, D, h, w), projected and resampled to 4h, 2h, h and h/2; fusion blocks (residual conv
units) merge them coarse to fine; the finest map is upsampled to the image size, joined with
the input RGB and decoded into 12 channels per pixel, then activated:

- depth  = near + (far − near)·σ(·)        distance along the pixel's unit ray [m]
- scales = s_min + (s_max − s_min)·σ(·)    (3,) [m]
- quats  = normalise(·)                    (w, x, y, z); bias starts at identity
- opacity = σ(·)
- colour = σ(· + logit(pixel RGB)) with ``color_residual`` (else σ(·)), RGB in [0, 1]

``pixels_to_gaussians`` places them in the world: ``means = o + depth·d``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from physgm.config import ModelConfig

N_OUT = 12  # depth 1, scales 3, quats 4, opacity 1, colour 3


@dataclass(eq=False)
class PixelGaussians:
    """Per-pixel Gaussians of every view, activated.

    depth (B, V, H, W) [m] along the unit ray; scales (B, V, H, W, 3) [m];
    quats (B, V, H, W, 4) unit (w, x, y, z); opacities (B, V, H, W) in [0, 1];
    colors (B, V, H, W, 3) RGB in [0, 1].
    """

    depth: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    def detach(self) -> "PixelGaussians":
        return PixelGaussians(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


def pixels_to_gaussians(pix: PixelGaussians, origins: torch.Tensor, directions: torch.Tensor,
                        index: int = 0, min_opacity: float = 0.0):
    """Batch item ``index`` of ``pix`` → ``physgm.gaussians.Gaussians`` with N = V·H·W
    (fewer with ``min_opacity`` > 0, which drops nearly transparent ones). Differentiable.

    origins: (V, 3) camera centres or (V, H, W, 3) per-pixel ray origins [m];
    directions: (V, H, W, 3) unit ray directions (``Camera.rays()`` stacked over views).
    """
    from physgm.gaussians import Gaussians

    depth = pix.depth[index]
    v, h, w = depth.shape
    if tuple(directions.shape) != (v, h, w, 3):
        raise ValueError(f"directions must be (V, H, W, 3) = {(v, h, w, 3)}, "
                         f"got {tuple(directions.shape)}")
    if origins.shape == (v, 3):
        origins = origins[:, None, None, :]
    elif tuple(origins.shape) != (v, h, w, 3):
        raise ValueError(f"origins must be (V, 3) or (V, H, W, 3) with V={v}, H={h}, W={w}, "
                         f"got {tuple(origins.shape)}")
    means = origins.to(depth) + depth[..., None] * directions.to(depth)
    g = dict(means=means.reshape(-1, 3), scales=pix.scales[index].reshape(-1, 3),
             quats=pix.quats[index].reshape(-1, 4), opacities=pix.opacities[index].reshape(-1),
             colors=pix.colors[index].reshape(-1, 3))
    if min_opacity > 0:
        keep = g["opacities"] >= min_opacity
        g = {k: t[keep] for k, t in g.items()}
    return Gaussians(**g)


class ResidualConvUnit(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """x (coarser) is upsampled to skip's size, merged with it, refined."""

    def __init__(self, ch: int):
        super().__init__()
        self.skip_unit = ResidualConvUnit(ch)
        self.unit = ResidualConvUnit(ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is not None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.skip_unit(skip)
        return self.out(self.unit(x))


def _reassemble(dim: int, ch: int, factor: float) -> nn.Sequential:
    """(N, D, h, w) → (N, features, factor·h, factor·w) for factor in {4, 2, 1, 1/2}."""
    layers: list[nn.Module] = [nn.Conv2d(dim, ch, 1)]
    if factor > 1:
        k = int(factor)
        layers.append(nn.ConvTranspose2d(ch, ch, kernel_size=k, stride=k))
    elif factor < 1:
        layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    FACTORS = (4.0, 2.0, 1.0, 0.5)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f = cfg.dpt_features
        widths = (f, 2 * f, 4 * f, 4 * f)
        self.cfg = cfg
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in widths)
        self.reassemble = nn.ModuleList(_reassemble(cfg.dim, c, s)
                                        for c, s in zip(widths, self.FACTORS))
        self.to_features = nn.ModuleList(nn.Conv2d(c, f, 3, padding=1, bias=False) for c in widths)
        self.fusion = nn.ModuleList(FusionBlock(f) for _ in widths)
        self.neck = nn.Conv2d(f, f // 2, 3, padding=1)
        self.decode = nn.Sequential(nn.Conv2d(f // 2 + 3, 32, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(32, N_OUT, 1))
        out = self.decode[-1]
        # Start near "a small, half-transparent Gaussian with the pixel's colour at mid
        # depth": small weights so the biases set the initial values.
        nn.init.normal_(out.weight, std=1e-3)
        with torch.no_grad():
            out.bias.zero_()
            out.bias[1:4] = math.log(0.1 / 0.9)  # scale at 10 % of [scale_min, scale_max]
            out.bias[4] = 1.0                    # identity rotation

    def forward(self, feats: Sequence[torch.Tensor], images: torch.Tensor) -> PixelGaussians:
        """feats: 4 maps (B·V, D, h, w), shallow to deep; images (B, V, 3, H, W) in [0, 1]."""
        b, v, _, H, W = images.shape
        maps = []
        for x, norm, re_, proj in zip(feats, self.norms, self.reassemble, self.to_features):
            x = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            maps.append(proj(re_(x)))
        x = self.fusion[3](maps[3])
        for level in (2, 1, 0):
            x = self.fusion[level](x, maps[level])
        x = F.interpolate(self.neck(x), size=(H, W), mode="bilinear", align_corners=False)
        rgb = images.reshape(b * v, 3, H, W)
        raw = self.decode(torch.cat([x, rgb], dim=1))                     # (B·V, 12, H, W)
        raw = raw.permute(0, 2, 3, 1).reshape(b, v, H, W, N_OUT)
        return self.activate(raw, images)

    def activate(self, raw: torch.Tensor, images: torch.Tensor) -> PixelGaussians:
        """raw (B, V, H, W, 12) → PixelGaussians (see the module docstring)."""
        c = self.cfg
        depth = c.near + (c.far - c.near) * torch.sigmoid(raw[..., 0])
        scales = c.scale_min + (c.scale_max - c.scale_min) * torch.sigmoid(raw[..., 1:4])
        quats = F.normalize(raw[..., 4:8], dim=-1, eps=1e-8)
        opacities = torch.sigmoid(raw[..., 8])
        col = raw[..., 9:12]
        if c.color_residual:
            pixel = images.permute(0, 1, 3, 4, 2).clamp(1e-3, 1 - 1e-3)
            col = col + torch.logit(pixel)
        return PixelGaussians(depth=depth, scales=scales, quats=quats, opacities=opacities,
                              colors=torch.sigmoid(col))
