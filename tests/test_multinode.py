"""Several Ray nodes on one machine, as on the cluster: each node carries the custom
resources of one node type of cluster/ray_cluster.yaml (learner, two sim-actor nodes,
reward), and every role lands on its node type. A sim node is removed mid-DPO and a reward
replica killed: the run finishes with exact task accounting.

Placement is read from Ray's state API, which the dashboard serves: the head starts one on
a free port, and every state-API call names this cluster (``address=``), so neither another
Ray instance on the machine nor whatever listens on the default port 8265 is asked."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
import yaml

from dpo_fixtures import make_world, small_cfg

ROOT = Path(__file__).resolve().parents[1]
PINS = {"pretrain.resources_per_worker": "{learner: 1}", "dpo.learner_resources": "{learner: 1}",
        "dpo.actor_resources": "{sim_actor: 1}", "reward.resources": "{reward: 1}",
        "serve.resources": "{serve: 1}", "serve.sim_resources": "{serve: 1}"}


def node_type_resources() -> dict[str, dict]:
    """Custom resources (no CPU/GPU) of each worker node type of the cluster file."""
    types = yaml.safe_load((ROOT / "cluster" / "ray_cluster.yaml").read_text())
    return {name: {k: float(v) for k, v in t["resources"].items() if k not in ("CPU", "GPU")}
            for name, t in types["available_node_types"].items() if name != "head"}


def wait_for_state_api(address: str, timeout_s: float = 120.0) -> None:
    """Until the cluster's dashboard answers state-API requests (it starts after the head)."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            list_actors(address=address, limit=1)
            return
        except Exception as err:  # noqa: BLE001 - not registered / not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray's state API of {address} did not come up") from err
            time.sleep(1.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    from runtime.distributed import free_port

    tmp = tmp_path_factory.mktemp("multinode")
    make_world(tmp, val_fraction=0.2)
    types = node_type_resources()
    with pytest.MonkeyPatch.context() as mp:
        # these would override the address= of every state-API call
        for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            mp.delenv(var, raising=False)
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port()})
        nodes = {"gpu_learner": c.add_node(num_cpus=2, resources=types["gpu_learner"]),
                 "gpu_sim_a": c.add_node(num_cpus=2, resources=types["gpu_sim"]),
                 "gpu_sim_b": c.add_node(num_cpus=2, resources=types["gpu_sim"]),
                 "gpu_reward": c.add_node(num_cpus=2, resources=types["gpu_reward"])}
        ray.init(address=c.address)
        try:
            wait_for_state_api(c.address)
            yield c, nodes, tmp
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture(autouse=True)
def no_serve_left(cluster):
    """Each test leaves no Serve instance behind: a DPO run that fails keeps its reward
    service's Serve (started without an HTTP proxy) running, and the next test's HTTP app
    could not get one."""
    yield
    from ray import serve

    serve.shutdown()


def node_type_of(nodes: dict, node_id: str) -> str:
    return next(name for name, n in nodes.items() if n.node_id == node_id)


def actors_of(c, class_name: str) -> list:
    """Actors of ``class_name`` in the cluster ``c`` (alive and dead), from the state API;
    with details (``num_restarts`` is one)."""
    from ray.util.state import list_actors

    return list_actors(address=c.address, filters=[("class_name", "=", class_name)],
                       limit=1000, detail=True)


def test_pretraining_workers_land_on_learner_nodes(cluster):
    from pretrain.train import run_pretrain

    c, nodes, tmp = cluster
    cfg = small_cfg(tmp, name="mn-pretrain", **PINS, **{
        "pretrain.steps": 2, "pretrain.num_workers": 2, "pretrain.batch_size": 1,
        "pretrain.log_every": 1, "pretrain.val_every": 2, "pretrain.checkpoint_every": 2,
        "model.dim": 32, "model.heads": 2, "model.depth": 1, "model.backbone_depth": 1})
    out = run_pretrain(cfg, progress=False)
    assert out["status"] == "ok" and out["step"] == 2
    workers = actors_of(c, "RayTrainWorker")
    assert len(workers) >= 2
    assert {node_type_of(nodes, w.node_id) for w in workers} == {"gpu_learner"}


def test_dpo_survives_a_lost_sim_node_and_a_killed_reward_replica(cluster):
    from learner.dpo import run_dpo
    from runtime.scenes import scene_split

    c, nodes, tmp = cluster
    cfg = small_cfg(tmp, name="mn-dpo", **PINS, **{"dpo.epochs": 3})
    events = {}

    def chaos(orch) -> None:
        from ray.util.state import get_actor

        if "removed" not in events and orch.state.step >= 1:
            sims = [get_actor(a._actor_id.hex(), address=c.address).node_id
                    for a in orch.actors]
            assert {node_type_of(nodes, n) for n in sims} == {"gpu_sim_a", "gpu_sim_b"}  # SPREAD
            # the rollout queue lives on the driver's node (the head), never on a sim node
            queue = get_actor(orch.queue.actor._actor_id.hex(), address=c.address).node_id
            assert queue == c.head_node.node_id
            victim = node_type_of(nodes, sims[0])
            events["removed"] = victim
            events["lost_actor"] = orch.actors[0]._actor_id.hex()
            c.remove_node(nodes[victim], allow_graceful=False)
        elif "killed" not in events and orch.state.step >= 3:
            # the lost actor comes back on the surviving sim node (the driver's loop waits
            # here so that a run shorter than the restart cannot hide a restart that fails)
            deadline = time.time() + 120
            while True:  # (until Ray notices the node is gone, it still reports it ALIVE)
                a = get_actor(events["lost_actor"], address=c.address)
                where = node_type_of(nodes, a.node_id) if a.node_id else None
                if a.state == "ALIVE" and where != events["removed"]:
                    break
                assert time.time() < deadline, f"the lost sim actor stayed {a.state} on {where}"
                time.sleep(0.5)
            events["restarted_on"] = where
            replica = [a for a in actors_of(c, "ServeReplica:reward:RewardService")
                       if a.state == "ALIVE"][0]
            events["killed"] = replica.actor_id
            ray.kill(ray.get_actor(replica.name, namespace=replica.ray_namespace),
                     no_restart=True)

    s = run_dpo(cfg, str(tmp / "runs/quickstart/checkpoints/final"), show=False, on_step=chaos)
    assert set(events) == {"removed", "lost_actor", "restarted_on", "killed"}
    n_train = len(scene_split(cfg, "train"))
    assert s["tasks_done"] == 3 * n_train and set(s["coverage"].values()) == {3}  # exact
    assert s["pairs_learned"] + s["stale_dropped"] == s["pairs_received"]  # none lost
    assert s["actor_failures"] >= 1
    survivor = {"gpu_sim_a": "gpu_sim_b", "gpu_sim_b": "gpu_sim_a"}[events["removed"]]
    assert events["restarted_on"] == survivor
    learners = actors_of(c, "LearnerCore")
    assert learners and {node_type_of(nodes, a.node_id) for a in learners} == {"gpu_learner"}
    replicas = actors_of(c, "ServeReplica:reward:RewardService")
    assert len({a.actor_id for a in replicas}) >= 2  # the killed one came back as a new one
    assert {node_type_of(nodes, a.node_id) for a in replicas} <= {"gpu_learner", "gpu_reward"}


def test_serve_replicas_land_on_serve_nodes(cluster):
    import requests

    from runtime.distributed import free_port
    from serving.deploy import start
    from serving.model_source import ModelSource

    c, nodes, tmp = cluster
    cfg = small_cfg(tmp, name="mn-serve", **PINS)
    port = free_port()
    start(cfg, ModelSource("random"), host="127.0.0.1", port=port, warmup=False)
    # Serve runs an HTTP proxy on the head and on each node with replicas; here all nodes
    # share one host, so they share the port (SO_REUSEPORT), and a proxy that has just
    # started answers 404 until it has the routes: ask until the app answers
    deadline, health = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        try:
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=60)
        except requests.ConnectionError as err:
            health = err
        if getattr(health, "status_code", None) == 200:
            break
        time.sleep(0.5)
    assert getattr(health, "status_code", None) == 200, health
    replicas = (actors_of(c, "ServeReplica:physgm:PhysGMModel")
                + actors_of(c, "ServeReplica:physgm:PhysGMSim"))
    placed = {node_type_of(nodes, a.node_id) for a in replicas if a.state == "ALIVE"}
    assert placed == {"gpu_reward"}
