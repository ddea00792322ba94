"""How the Serve application is bound (no Ray started): resources, autoscaling, the model's
user_config, and the deployment versions that make a weights change a reconfigure."""
import pytest

pytest.importorskip("ray")

from physgm.config import build_config  # noqa: E402
from serving.deploy import build_app  # noqa: E402
from serving.model_source import ModelSource  # noqa: E402


def parts(app):
    ingress = app._bound_deployment
    model, sim = (a._bound_deployment for a in ingress.init_args[:2])
    return ingress, model, sim


def test_resources_batching_and_autoscaling_come_from_the_config():
    cfg = build_config({"serve": {"replicas": 3, "num_cpus": 2, "num_gpus": 0.25,
                                  "max_batch_size": 16, "batch_wait_timeout_s": 0.05,
                                  "sim_replicas": 2, "sim_num_gpus": 0.5}})
    ingress, model, sim = parts(build_app(cfg, ModelSource("random", seed=3)))
    assert (ingress.name, model.name, sim.name) == ("PhysGMIngress", "PhysGMModel", "PhysGMSim")
    assert model.num_replicas == 3 and sim.num_replicas == 2
    assert model.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 0.25}
    assert sim.ray_actor_options["num_gpus"] == 0.5
    assert ingress.ray_actor_options["num_cpus"] == 0
    random = {"kind": "random", "location": None, "model_version": None}
    assert model.user_config == {**random, "seed": 3, "max_batch_size": 16,
                                 "batch_wait_timeout_s": 0.05,   # and the stand-in pair:
                                 "models": {"pretrained": {**random, "seed": 3},
                                            "dpo": {**random, "seed": 4}}}
    settings = ingress.init_args[2]
    assert settings["limits"]["max_bytes"] == 20 * 2 ** 20 and settings["api_key_digest"] is None

    auto = build_config({"serve": {"autoscaling": True, "min_replicas": 1, "max_replicas": 6,
                                   "target_ongoing_requests": 4}})
    _, model, _ = parts(build_app(auto, ModelSource("random")))
    scaling = model._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == \
        (1, 6, 4)


def test_versions_change_only_with_what_needs_new_replicas(tmp_path):
    cfg = build_config({})
    a = parts(build_app(cfg, ModelSource("random")))
    b = parts(build_app(cfg, ModelSource("checkpoint", str(tmp_path), model_version="v2")))
    assert [d.version for d in a] == [d.version for d in b]          # weights: reconfigure
    assert a[1].user_config != b[1].user_config
    batching = parts(build_app(build_config({"serve": {"max_batch_size": 1}}),
                               ModelSource("random")))
    assert [d.version for d in batching] == [d.version for d in a]   # live setting too
    sim = parts(build_app(build_config({"serve": {"sim": {"grid_res": 48}}}),
                          ModelSource("random")))
    assert sim[2].version != a[2].version and sim[1].version == a[1].version
    model = parts(build_app(build_config({"model": {"dim": 64}}), ModelSource("random")))
    assert model[1].version != a[1].version and model[2].version == a[2].version
    keyed = parts(build_app(cfg, ModelSource("random"), api_key="k" * 20))
    assert keyed[0].version != a[0].version and keyed[0].init_args[2]["api_key_digest"]
    assert "k" * 20 not in str(keyed[0].init_args)                   # only the digest travels
