"""runtime/: scenes to re-simulate (their MPM settings, the token cache), messages as plain
data, the one Ray bootstrap's quiet mode, free ports."""
import json
import socket

import numpy as np
import pytest
import torch

from physgm.config import load_config


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from physgm.data.store import assign_splits, list_scenes, open_store, set_splits, write_scene
    from physgm.data.synth import generate_scene

    tmp = tmp_path_factory.mktemp("runtime")
    cfg = load_config(None, [f"out_dir={tmp}/runs", f"data.path={tmp}/data.zarr",
                             "data.image_size=32", "data.video_frames=5", "data.n_views=3",
                             "data.max_particles=400", "sim.grid_res=24", "sim.threads=3",
                             "sim.n_frames=40", "model.image_size=32", "model.dim=32",
                             "model.heads=2", "model.depth=1", "model.backbone_depth=1"])
    root = open_store(cfg.data.path, "w")
    for i in range(2):
        write_scene(root, f"{i:06d}", generate_scene(i, cfg).scene)
    set_splits(root, assign_splits(list_scenes(root), 0.0, 0.5))
    return cfg


def test_rollout_sim_config_follows_the_scene_and_the_video(store):
    from runtime.scenes import load_rollout_scene, scene_split

    sid = scene_split(store, "all")[0]
    scene = load_rollout_scene(store, sid, threads=2)
    assert scene.sim.n_frames == scene.n_frames - 1 == 4  # the GT video's length, not sim.n_frames
    assert scene.sim.threads == 2 and scene.sim.grid_res == 24
    assert scene.reference.shape[0] == 5 and scene.particles.shape[1] == 3
    assert scene.trajectory.shape == (5, len(scene.particles), 3)  # evaluation's
    lean = load_rollout_scene(store, sid, trajectory=False)  # a DPO actor's: no trajectory
    assert lean.trajectory is None
    np.testing.assert_array_equal(lean.reference, scene.reference)
    np.testing.assert_array_equal(lean.gaussians.means, scene.gaussians.means)


def test_token_cache_is_reused_only_for_the_same_encoder_and_views(store, tmp_path):
    from physgm.model import PhysGM
    from runtime.scenes import encode_scenes, encoder_fingerprint, scene_split

    ids = scene_split(store, "all")
    cache = tmp_path / "tokens.pt"
    torch.manual_seed(0)
    a = PhysGM(store.model)
    first = encode_scenes(a, store, ids, cache=cache, views=2)
    assert cache.is_file() and set(first) == set(ids)
    again = encode_scenes(a, store, ids, cache=cache, views=2)
    assert all(np.array_equal(first[s], again[s]) for s in ids)

    torch.manual_seed(1)
    b = PhysGM(store.model)  # another encoder (e.g. `physgm run --redo pretrain`)
    assert encoder_fingerprint(a) != encoder_fingerprint(b)
    other = encode_scenes(b, store, ids, cache=cache, views=2)
    fresh = encode_scenes(b, store, ids, views=2)
    assert all(np.array_equal(other[s], fresh[s]) for s in ids)
    assert not all(np.array_equal(other[s], first[s]) for s in ids)  # not the stale tokens
    three = encode_scenes(b, store, ids, cache=cache, views=3)
    assert not all(np.allclose(three[s], other[s]) for s in ids)  # the stated V counts
    # a new physics head (DPO's) keeps the tokens: they do not depend on it
    before = encoder_fingerprint(b)
    with torch.no_grad():
        for p in b.physics_head.parameters():
            p.add_(1.0)
    assert encoder_fingerprint(b) == before


def test_messages_round_trip_through_plain_json():
    from runtime.messages import Pair, Task

    task = Task("e0-00001-000003", "000003", 0, 1)
    pair = Pair(task.task_id, task.scene_id, 2, np.linspace(-1, 1, 8).astype(np.float32), 4,
                np.full(8, 0.1, np.float32), -0.12, -0.5, 3)
    blob = json.loads(json.dumps({"t": task.to_dict(), "p": pair.to_dict()}))
    assert Task.from_dict(blob["t"]) == task
    back = Pair.from_dict(blob["p"])
    assert np.array_equal(back.chosen_z, pair.chosen_z) and back.chosen_z.dtype == np.float32
    assert (back.rejected_material, back.policy_version, back.chosen_reward) == (4, 3, -0.12)


def test_free_port_prefers_the_given_one_and_falls_back():
    from runtime.distributed import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        assert free_port(taken) != taken
    port = free_port()
    assert free_port(port) == port
