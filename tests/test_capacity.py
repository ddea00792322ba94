"""Does a stage fit the cluster? Role demands from the config, packed onto nodes (pure)."""
import pytest

from physgm.config import load_config
from runtime.capacity import pack, shortfall_message, stage_demands, total


def test_quickstart_dpo_needs_four_cpus_and_no_custom_resources():
    cfg = load_config("configs/quickstart.yaml")
    demands = stage_demands(cfg, "dpo")
    assert {d.role for d in demands} == {"learner", "sim_actor", "reward_replica"}
    assert total(demands) == {"CPU": 4.0}
    assert pack(demands, [{"CPU": 4.0}]) == {}
    # the measured hang: a 2-CPU head; learner and reward took both CPUs, the actors waited
    unplaced = pack(demands, [{"CPU": 2.0}])
    assert sum(unplaced.values()) == 2
    msg = shortfall_message("dpo", demands, [{"CPU": 2.0, "node:127.0.0.1": 1.0}], unplaced)
    assert "needs {CPU: 4}" in msg and "have {CPU: 2}" in msg
    assert "dpo.n_actors" in msg and "dpo.actor_cpus" in msg


def test_paper_roles_land_only_where_their_custom_resource_is():
    cfg = load_config("configs/paper.yaml")
    demands = {d.role: d for d in stage_demands(cfg, "dpo")}
    assert demands["sim_actor"].per.get("sim_actor") == 1.0
    assert demands["learner"].per.get("learner") == 1.0
    sim_node = {"CPU": 8.0, "GPU": 1.0, "sim_actor": 2.0}
    learner_node = {"CPU": 48.0, "GPU": 4.0, "learner": 4.0, "reward": 6.0}
    one_actor = [demands["sim_actor"].__class__("sim_actor", 1, demands["sim_actor"].per, "")]
    assert pack(one_actor, [learner_node]) == {"sim_actor": 1}  # CPUs and GPUs, but no pin
    assert pack(one_actor, [sim_node]) == {}


def test_every_stage_names_the_settings_behind_each_role():
    cfg = load_config(None, ["pretrain.resources_per_worker={learner: 1}",
                             "serve.resources={serve: 1}", "serve.sim_resources={serve: 1}"])
    for stage in ("pretrain", "dpo", "serve"):
        for d in stage_demands(cfg, stage):
            assert d.count >= 1 and d.per["CPU"] >= 0 and "." in d.fields
    assert stage_demands(cfg, "pretrain")[0].per["learner"] == 1.0
    assert {d.role: d.per.get("serve") for d in stage_demands(cfg, "serve")} == \
        {"serve_model": 1.0, "serve_sim": 1.0}
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_demands(cfg, "eval")
