"""Batches of rendered toy scenes in the layout of ``physgm.data.dataset.collate_views``,
for benchmarks and tests that must not depend on a scene store.

Each scene is a ball of coloured 3D Gaussians at the origin, seen by V input cameras and T
target cameras on an orbit (radius 2 m, 40° field of view); images and masks come from the
real renderer, labels from ``physgm.materials.sample_params`` (true = label here).
"""
from __future__ import annotations

import numpy as np
import torch

from physgm.camera import orbit_cameras, plucker_batch
from physgm.gaussians import Gaussians
from physgm.materials import MATERIALS, normalize, sample_params
from physgm.render import rasterize


def _blob(gen: torch.Generator, n: int = 96) -> Gaussians:
    direction = torch.randn(n, 3, generator=gen)
    radius = 0.35 * torch.rand(n, 1, generator=gen) ** (1 / 3)
    base = torch.rand(3, generator=gen)
    return Gaussians(means=direction / direction.norm(dim=1, keepdim=True) * radius,
                     scales=torch.rand(n, 3, generator=gen) * 0.05 + 0.04,
                     quats=torch.randn(n, 4, generator=gen),
                     opacities=torch.full((n,), 0.9),
                     colors=(base + 0.2 * torch.rand(n, 3, generator=gen)).clamp(0, 1))


def synthetic_scene(seed: int, n_views: int = 2, n_targets: int = 1, size: int = 32) -> dict:
    """One scene item (no batch dim): images (V, 3, H, W), plucker (V, 6, H, W), K, c2w,
    depth (V, 1, H, W) [m] (0 off the object), target_images (T, 3, H, W), target_alpha (T, 1, H, W), target_K, target_c2w, labels."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    blob = _blob(gen)
    start = float(rng.uniform(0, 360))
    cams = orbit_cameras(n_views + n_targets, radius=2.0, elevation_deg=20.0, fov_deg=40.0,
                         width=size, height=size, azimuth_start_deg=start)
    with torch.no_grad():
        renders = [rasterize(blob, c, backend="torch") for c in cams]
    rgb = torch.stack([r.rgb for r in renders]).permute(0, 3, 1, 2).contiguous()
    alpha = torch.stack([r.alpha for r in renders])[:, None]
    depth = torch.stack([torch.where(r.alpha >= 0.05, r.depth, torch.zeros_like(r.depth))
                         for r in renders])[:, None]
    material = MATERIALS[int(rng.integers(len(MATERIALS)))]
    z, mask = normalize(sample_params(material, rng))
    label = {"material": torch.tensor(MATERIALS.index(material)),
             "params_z": torch.from_numpy(z), "params_mask": torch.from_numpy(mask)}
    iv, it = slice(0, n_views), slice(n_views, None)
    return {"scene_id": f"synthetic-{seed}", "images": rgb[iv],
            "plucker": plucker_batch(cams[iv]),
            "K": torch.stack([c.K for c in cams[iv]]),
            "c2w": torch.stack([c.c2w for c in cams[iv]]), "depth": depth[iv],
            "target_images": rgb[it], "target_alpha": alpha[it],
            "target_K": torch.stack([c.K for c in cams[it]]),
            "target_c2w": torch.stack([c.c2w for c in cams[it]]),
            **label, **{f"true_{k}": v.clone() for k, v in label.items()}}


def stack_scenes(items: list[dict]) -> dict:
    """Items of one view count → a batch dict (tensors stacked on a new dim 0)."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return out


def synthetic_batch(batch_size: int, n_views: int = 2, n_targets: int = 1, size: int = 32,
                    seed: int = 0) -> dict:
    """``batch_size`` scenes with seeds seed, seed+1, … stacked into one batch."""
    return stack_scenes([synthetic_scene(seed + i, n_views, n_targets, size)
                         for i in range(batch_size)])
