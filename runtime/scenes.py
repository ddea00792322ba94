"""Scenes for the DPO loop, its evaluation and the reward sweep: the object to re-simulate
(read from the zarr store), the one rule that derives its MPM settings, the split lists,
and the frozen encoder's global tokens of each scene (computed once, cached on disk)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from physgm.camera import Camera, plucker_batch
from physgm.config import MPMConfig, RunConfig
from physgm.gaussians import Gaussians
from physgm.materials import PhysParams

TOKEN_CACHE_FORMAT = "physgm-tokens/2"


@dataclass
class RolloutScene:
    """What it takes to re-simulate a scene with other parameters and score the video.

    particles (N, 3) [m] and volumes (N,) [m³] for the MPM; gaussians: the object's
    Gaussians, Gaussian i following particle i (i < len(gaussians)); camera: the GT video
    camera; reference (T, H, W, 3) uint8: the GT video; sim: the MPMConfig that made it
    (``rollout_sim_config``: T − 1 frames); velocity (3,) [m/s] initial; trajectory
    (T, N, 3) [m]: the particles of the GT simulation per frame, where the store has them.
    """

    scene_id: str
    particles: np.ndarray
    volumes: np.ndarray
    gaussians: Gaussians
    camera: Camera
    reference: np.ndarray
    sim: MPMConfig
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    reference_alpha: Optional[np.ndarray] = None
    true: Optional[PhysParams] = None  # the physics that made the reference (evaluation only)
    trajectory: Optional[np.ndarray] = None

    @property
    def n_frames(self) -> int:
        return int(self.reference.shape[0])


def rollout_sim_config(cfg: RunConfig, scene_sim: dict, video_frames: int,
                       threads: int) -> MPMConfig:
    """The MPMConfig that re-simulates a stored scene: ``cfg.sim`` overridden by what the
    scene was made with (grid, domain, frame step, boundary, friction, gravity: the
    scene's ``sim`` attribute), ``n_frames`` = the GT video's length − 1 (a rollout video
    must line up with it frame by frame) and ``threads`` (a DPO actor: ``dpo.actor_cpus``;
    an evaluation task: 1). The one place these overrides happen."""
    from physgm.data.dataset import scene_mpm_config

    sim = scene_mpm_config(scene_sim, cfg.sim)
    return sim.model_copy(update={"n_frames": int(video_frames) - 1, "threads": int(threads)})


ROLLOUT_ARRAYS = ("particles", "volumes", "gaussians", "video", "video_alpha", "video_K",
                  "video_c2w")


def load_rollout_scene(cfg: RunConfig, scene_id: str, threads: int = 1,
                       trajectory: bool = True) -> RolloutScene:
    """Read what it takes to re-simulate ``scene_id`` of ``cfg.data.path`` (not its input
    views; the GT trajectory only with ``trajectory``: evaluation's particle distance uses
    it, a DPO actor does not)."""
    from physgm.data.store import open_store, read_scene

    arrays = ROLLOUT_ARRAYS + (("trajectory",) if trajectory else ())
    scene = read_scene(open_store(cfg.data.path, "r"), scene_id, arrays=arrays)
    if scene.particles is None or scene.gaussians is None:
        raise ValueError(f"scene {scene_id!r} has no particles/Gaussians (a converted real "
                         "capture): the DPO actors re-simulate the stored object, so DPO needs "
                         "synthetic scenes (simulating the model's predicted Gaussians instead "
                         "is not implemented yet)")
    if scene.video is None or scene.video.ndim != 4 or scene.video.shape[0] < 2:
        raise ValueError(f"scene {scene_id!r} of {cfg.data.path} has no GT video (an "
                         "image-only scene): DPO and its evaluation need full scenes "
                         "(`physgm data synth` without --image-only)")
    g = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in scene.gaussians.items()}
    h, w = scene.video.shape[1:3]
    camera = Camera(torch.as_tensor(scene.video_K).float(),
                    torch.as_tensor(scene.video_c2w).float(), w, h)
    velocity = np.asarray(scene.sim.get("velocity", scene.sim.get("initial_velocity", (0, 0, 0))),
                          np.float64)
    return RolloutScene(
        scene_id=scene_id, particles=np.asarray(scene.particles, np.float32),
        volumes=np.asarray(scene.volumes, np.float64), gaussians=Gaussians(**g), camera=camera,
        reference=scene.video, velocity=velocity, reference_alpha=scene.video_alpha,
        sim=rollout_sim_config(cfg, scene.sim, scene.video.shape[0], threads), true=scene.true,
        trajectory=scene.trajectory)


def scene_split(cfg: RunConfig, split: str, need_videos: bool = True) -> list[str]:
    """Scene ids of ``split`` (train | val | test, or all: every complete scene, for a store
    that was never trained on) in ``cfg.data.path``. ``need_videos`` (DPO, its evaluation,
    the reward sweep): an image-only store is refused (StoreError, a ValueError) before any
    work starts."""
    from physgm.data.store import list_scenes, open_store, require_videos, splits

    root = open_store(cfg.data.path, "r")
    if need_videos:
        require_videos(root, cfg.data.path)
    ids = list_scenes(root) if split == "all" else splits(root).get(split, [])
    if not ids:
        raise ValueError(f"{cfg.data.path} has no '{split}' scenes: generate more scenes "
                         "(physgm data synth --scenes N) or change data.val/test_fraction")
    return list(ids)


def encoder_fingerprint(model) -> str:
    """sha256 of every weight that the global tokens depend on (all but the physics head):
    tokens cached under another fingerprint came from another encoder."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("physics_head."):
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def encode_scenes(model, cfg: RunConfig, scene_ids: list[str], cache: Path | None = None,
                  views: Optional[int] = None) -> dict[str, np.ndarray]:
    """Global tokens (G, D) of each scene from its first ``views`` stored views (default
    ``dpo.encode_views``; fewer when the scene has fewer), through the frozen backbone +
    transformer: the tokens of DPO and of its w/o-vs-w/ evaluation.

    With ``cache`` (a .pt file) the tokens are reused only if that file was written by the
    same encoder weights (``encoder_fingerprint``), the same ``views`` and the same store;
    otherwise they are computed again and the file replaced."""
    from physgm.data.store import open_store, read_scene

    views = cfg.dpo.encode_views if views is None else int(views)
    if views < 1:
        raise ValueError(f"views (dpo.encode_views) must be ≥ 1, got {views}")
    key = {"format": TOKEN_CACHE_FORMAT, "encoder": encoder_fingerprint(model),
           "views": int(views), "data": str(Path(cfg.data.path).resolve())}
    stored: dict = {}
    if cache is not None and Path(cache).is_file():
        blob = torch.load(cache, weights_only=False)
        if isinstance(blob, dict) and blob.get("key") == key:
            stored = blob["tokens"]
    missing = [s for s in scene_ids if s not in stored]
    if missing:
        root = open_store(cfg.data.path, "r")
        model.eval()
        for sid in missing:
            sc = read_scene(root, sid, arrays=("images", "K", "c2w"))
            v = min(views, sc.images.shape[0])
            h, w = sc.images.shape[1:3]
            cams = [Camera(torch.as_tensor(sc.K[i]).float(), torch.as_tensor(sc.c2w[i]).float(),
                           w, h) for i in range(v)]
            images = torch.as_tensor(sc.images[:v]).permute(0, 3, 1, 2).float()[None] / 255.0
            with torch.no_grad():
                tokens = model.encode_global(images, plucker_batch(cams)[None])
            stored[sid] = tokens[0].float().cpu().numpy()
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(cache).with_suffix(".tmp")
            torch.save({"key": key, "tokens": stored}, tmp)
            tmp.replace(cache)
    return {s: stored[s] for s in scene_ids}
