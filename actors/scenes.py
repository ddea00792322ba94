"""Scenes for the DPO loop and its evaluation: the object to re-simulate (from the zarr
store), and the frozen encoder's global tokens of each scene (computed once, cached)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from actors.rollout import RolloutScene
from physgm.camera import Camera, plucker_batch
from physgm.config import MPMConfig, RunConfig
from physgm.gaussians import Gaussians


def load_rollout_scene(cfg: RunConfig, scene_id: str, sim_cfg: MPMConfig | None = None
                       ) -> RolloutScene:
    """Read what an actor needs to re-simulate ``scene_id`` with other parameters."""
    from physgm.data.dataset import scene_mpm_config
    from physgm.data.store import open_store, read_scene

    scene = read_scene(open_store(cfg.data.path, "r"), scene_id)
    if scene.particles is None or scene.gaussians is None:
        raise ValueError(f"scene {scene_id!r} has no particles/Gaussians (a converted real "
                         "capture): the DPO actors re-simulate the stored object, so DPO needs "
                         "synthetic scenes (simulating the model's predicted Gaussians instead "
                         "is not implemented yet)")
    g = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in scene.gaussians.items()}
    h, w = scene.video.shape[1:3]
    camera = Camera(torch.as_tensor(scene.video_K).float(), torch.as_tensor(scene.video_c2w).float(),
                    w, h)
    velocity = np.asarray(scene.sim.get("velocity", scene.sim.get("initial_velocity", (0, 0, 0))),
                          np.float64)
    return RolloutScene(
        scene_id=scene_id, particles=np.asarray(scene.particles, np.float32),
        volumes=np.asarray(scene.volumes, np.float64), gaussians=Gaussians(**g), camera=camera,
        reference=scene.video, sim=scene_mpm_config(scene.sim, sim_cfg or cfg.sim), velocity=velocity,
        reference_alpha=scene.video_alpha, true=scene.true)


def scene_split(cfg: RunConfig, split: str) -> list[str]:
    """Scene ids of ``split`` (train | val | test, or all: every complete scene, for a store
    that was never trained on) in ``cfg.data.path``."""
    from physgm.data.store import list_scenes, open_store, splits

    root = open_store(cfg.data.path, "r")
    ids = list_scenes(root) if split == "all" else splits(root).get(split, [])
    if not ids:
        raise ValueError(f"{cfg.data.path} has no '{split}' scenes: generate more scenes "
                         "(physgm data synth --scenes N) or change data.val/test_fraction")
    return list(ids)


def encode_scenes(model, cfg: RunConfig, scene_ids: list[str], cache: Path | None = None,
                  max_views: int = 4) -> dict[str, np.ndarray]:
    """Global tokens (G, D) of each scene from all its stored views (up to ``max_views``),
    through the frozen backbone + transformer; cached in ``cache`` (a .pt file) if given."""
    from physgm.data.store import open_store, read_scene

    if cache is not None and Path(cache).is_file():
        stored = torch.load(cache, weights_only=False)
        if set(scene_ids) <= set(stored):
            return {s: stored[s] for s in scene_ids}
    root = open_store(cfg.data.path, "r")
    out = {}
    model.eval()
    for sid in scene_ids:
        sc = read_scene(root, sid, arrays=("images", "K", "c2w"))
        v = min(max_views, sc.images.shape[0])
        h, w = sc.images.shape[1:3]
        cams = [Camera(torch.as_tensor(sc.K[i]).float(), torch.as_tensor(sc.c2w[i]).float(), w, h)
                for i in range(v)]
        images = torch.as_tensor(sc.images[:v]).permute(0, 3, 1, 2).float()[None] / 255.0
        with torch.no_grad():
            tokens = model.encode_global(images, plucker_batch(cams)[None])
        out[sid] = tokens[0].float().cpu().numpy()
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, cache)
    return out
