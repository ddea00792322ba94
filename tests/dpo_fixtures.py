"""A tiny DPO world for the tests: a synthetic scene store and a randomly initialised
'pretrained' checkpoint (no pretraining needed), and the config that runs on them."""
from __future__ import annotations

from pathlib import Path

import torch

from physgm.config import RunConfig, load_config

N_SCENES = 6


def small_cfg(tmp, **over) -> RunConfig:
    sets = [f"out_dir={tmp}/runs", f"data.path={tmp}/data.zarr", "data.image_size=32",
            "data.video_frames=6", "data.max_particles=600", "data.n_views=2",
            "data.val_fraction=0.0", "data.test_fraction=0.3", "render.width=32",
            "render.height=32", "sim.grid_res=24", "dpo.k=3", "dpo.n_actors=2",
            "dpo.batch_pairs=2", "dpo.checkpoint_every=1", "dpo.epochs=2",
            "dpo.log_videos_every=2", "model.image_size=32"]
    return load_config(None, sets + [f"{k}={v}" for k, v in over.items()])


def make_world(tmp: Path, val_fraction: float = 0.0) -> Path:
    """Write ``N_SCENES`` scenes (30 % test, ``val_fraction`` validation) and a random
    checkpoint under ``tmp``; returns the checkpoint (``runs/quickstart/checkpoints/final``)."""
    from physgm.data.store import assign_splits, list_scenes, open_store, set_splits, write_scene
    from physgm.data.synth import generate_scene
    from physgm.model import PhysGM, save_model

    cfg = small_cfg(tmp)
    root = open_store(cfg.data.path, "w")
    for i in range(N_SCENES):
        res = generate_scene(i, cfg)
        write_scene(root, res.scene.scene_id, res.scene)
    set_splits(root, assign_splits(list_scenes(root), val_fraction, 0.3))
    torch.manual_seed(0)
    out = cfg.run_dir / "checkpoints" / "final"
    save_model(out, PhysGM(cfg.model), cfg)
    return out
