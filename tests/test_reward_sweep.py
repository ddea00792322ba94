"""`physgm reward sweep`: the true parameters reproduce the GT video (reward ~0) and moving a
parameter the video can see lowers the reward."""
import json

import pytest
from typer.testing import CliRunner

from runtime.scenes import load_rollout_scene
from reward.sweep import sensitivity, shifted_z, sweep
from physgm.config import load_config
from physgm.materials import Material, PhysParams
from reward.scorer import RewardScorer


@pytest.fixture(scope="module")
def scene_cfg(tmp_path_factory):
    """One soft jelly scene (E = 2e4 Pa: its bounce depends on E)."""
    from physgm.data.store import open_store, write_scene
    from physgm.data.synth import generate_scene

    tmp = tmp_path_factory.mktemp("sweep")
    sets = [f"data.path={tmp}/data.zarr", "data.image_size=32", "data.video_frames=8",
            "data.max_particles=800", "data.n_views=1", "data.throw_probability=0",
            "data.drop_height_m=[0.1,0.12]", "render.width=32", "render.height=32",
            "sim.grid_res=24", "data.materials=[jelly]"]
    cfg = load_config(None, sets)
    res = generate_scene(0, cfg)
    scene = res.scene
    scene.true = PhysParams(material=Material.jelly, E=2e4, nu=0.3, density=1000.0)
    root = open_store(cfg.data.path, "w")
    write_scene(root, scene.scene_id, scene)
    return cfg, scene.scene_id, sets


def test_true_parameters_score_best_and_e_is_visible(scene_cfg):
    cfg, sid, _ = scene_cfg
    # re-simulate the stored GT (generated with other params) at the stated truth first
    scene = load_rollout_scene(cfg, sid)
    from physgm.dpo import simulate_and_render
    m, z = shifted_z(scene, "E", 0.0)
    (truth,), _ = simulate_and_render(scene, [m], z[None], 32, 32)
    scene.reference = truth.video
    rows = sweep(scene, RewardScorer(cfg.reward), "E", [-0.5, 0.0, 1.0], 32, 32)
    by = {r["offset"]: r for r in rows}
    assert by[0.0]["reward"] == pytest.approx(0.0, abs=1e-6)
    assert by[0.0]["value"] == pytest.approx(2e4)
    assert by[1.0]["value"] == pytest.approx(2e5, rel=1e-6)
    assert by[-0.5]["value"] == pytest.approx(1e4)  # clipped into jelly's range
    assert by[1.0]["reward"] < -0.01
    assert sensitivity(rows) > 0.0


def test_bad_parameter_names_raise(scene_cfg):
    cfg, sid, _ = scene_cfg
    scene = load_rollout_scene(cfg, sid)
    with pytest.raises(ValueError, match="unknown parameter"):
        shifted_z(scene, "stiffness", 0.1)
    with pytest.raises(ValueError, match="has no parameter"):
        shifted_z(scene, "friction_angle", 1.0)


def test_cli_prints_json_and_rejects_bad_input(scene_cfg):
    from physgm.cli import app

    cfg, sid, sets = scene_cfg
    args = ["reward", "sweep", "--scene", sid, "--offsets", "0,0.5"]
    for s in sets:
        args += ["--set", s]
    out = CliRunner().invoke(app, args + ["--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output.strip().splitlines()[-1])
    assert data["param"] == "E" and data["unit"] == "decades"
    assert [r["offset"] for r in data["rows"]] == [0.0, 0.5]
    bad = CliRunner().invoke(app, args + ["--param", "stiffness"])
    assert bad.exit_code == 2 and "unknown parameter" in bad.output
