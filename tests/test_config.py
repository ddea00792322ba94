"""Config: YAML files, --set overrides, and errors that say what to change."""
from pathlib import Path

import pytest

from physgm.config import (ConfigError, RunConfig, build_config, dump_config, flatten,
                           load_config, parse_overrides)

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_loads_and_is_small():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert isinstance(cfg, RunConfig)
    assert cfg.sim.grid_res <= 32 and cfg.sim.n_frames <= 16
    assert cfg.render.width == 64


def test_overrides_parse_yaml_values_and_nest():
    assert parse_overrides(["sim.grid_res=64", "sim.gravity=[0,-1,0]", "name=x"]) == {
        "sim": {"grid_res": 64, "gravity": [0, -1, 0]}, "name": "x"}
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["sim.grid_res=48", "dpo.k=8"])
    assert cfg.sim.grid_res == 48 and cfg.dpo.k == 8


def test_errors_name_field_range_and_value():
    with pytest.raises(ConfigError) as err:
        build_config({}, ["sim.grid_res=4"])
    msg = str(err.value)
    assert "sim.grid_res" in msg and "8" in msg and "got 4" in msg
    with pytest.raises(ConfigError, match="unknown field"):
        build_config({}, ["sim.gridres=64"])
    with pytest.raises(ConfigError, match="key=value"):
        build_config({}, ["sim.grid_res"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/file.yaml")


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sim: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_dump_round_trips_and_flatten_names_every_leaf(tmp_path):
    cfg = build_config({}, ["sim.grid_res=40", "name=trial"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg
    flat = flatten(cfg)
    assert flat["sim.grid_res"] == 40 and flat["name"] == "trial"
    assert cfg.run_dir == Path("runs") / "trial"


def test_a_loss_weight_override_keeps_the_other_weights():
    """`--set pretrain.loss_weights.params=0.5` changes one weight; the ones the quickstart
    names keep its values, the others the config's defaults (not physgm_losses' generic
    alpha 0.1, which collapses the model)."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["pretrain.loss_weights.params=0.5"])
    assert cfg.pretrain.loss_weights == {"rgb": 1.0, "alpha": 0.01, "depth": 1.0,
                                         "material": 1.0, "params": 0.5}
