"""Cluster launch: the launcher YAML passes Ray's own validator, every role of
configs/paper.yaml fits a node type, broken files fail with messages that say what to
change, paper.yaml is at the paper's scale, the cost model matches hand-computed figures."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cluster.check import check_cluster, read_env_file
from cluster.costs import Figures, simulation_work, stage_costs
from cluster.instances import GIB, INSTANCES
from cluster.placement import NodeType, Role, pack_stage
from physgm.cli import app
from physgm.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster" / "ray_cluster.yaml"
PAPER = ROOT / "configs" / "paper.yaml"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)  # file mounts resolve from the repo root, as for `ray up`
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def cli(*args: str):
    return runner.invoke(app, ["cluster", *args])


def write_variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(CLUSTER.read_text())
    edit(data)
    out = tmp_path / "variant.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


# ---- the shipped files ----------------------------------------------------------------
def test_check_passes_with_rays_validator():
    res = cli("check", "cluster/ray_cluster.yaml", "--config", "configs/paper.yaml")
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("OK")
    assert "sim_actor" in res.output and "gpu_sim" in res.output

    res = cli("check", "cluster/ray_cluster.yaml", "--json")
    report = json.loads(res.output)
    assert report["ok"] and report["errors"] == 0
    assert any(f["topic"] == "schema" and "valid for the Ray" in f["message"]
               for f in report["findings"])
    plans = {p["stage"]: p for p in report["plans"]}
    cfg = load_config(PAPER)
    assert plans["dpo"]["placed"]["sim_actor"] == {"gpu_sim": cfg.dpo.n_actors}
    assert plans["dpo"]["nodes"]["gpu_sim"] == math.ceil(cfg.dpo.n_actors * cfg.dpo.actor_gpus)
    assert sum(plans["pretrain"]["placed"]["pretrain_worker"].values()) == cfg.pretrain.num_workers
    assert plans["pretrain"]["gpus"] == cfg.pretrain.num_workers
    assert plans["serve"]["placed"] == {"serve_model": {"gpu_reward": cfg.serve.replicas},
                                        "serve_sim": {"gpu_reward": cfg.serve.sim_replicas}}
    assert set(plans["pretrain"]["placed"]["pretrain_worker"]) == {"gpu_learner"}


def test_root_copy_is_identical_and_valid():
    root_copy = ROOT / "ray_cluster.yaml"
    assert root_copy.read_bytes() == CLUSTER.read_bytes(), \
        "ray_cluster.yaml differs from cluster/ray_cluster.yaml: cp cluster/ray_cluster.yaml ."
    res = cli("check", "ray_cluster.yaml")
    assert res.exit_code == 0, res.output


def test_nothing_listens_publicly_and_setup_is_wired():
    data = yaml.safe_load(CLUSTER.read_text())
    head = " ".join(data["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "setup.sh mlflow" in head
    assert read_env_file(ROOT / "cluster" / "cluster.env")["PHYSGM_MLFLOW_HOST"] == "127.0.0.1"
    assert all("setup.sh install" in c for c in data["setup_commands"])
    assert data["file_mounts"]["~/physgm-cluster"] == "cluster"
    for name, nt in data["available_node_types"].items():
        assert nt["node_config"]["InstanceType"] in INSTANCES, name
    assert data["available_node_types"]["gpu_sim"]["node_config"]["InstanceMarketOptions"][
        "MarketType"] == "spot"


def test_scripts_parse_and_refuse_an_unpinned_commit(tmp_path):
    for script in ("setup.sh", "job.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "cluster" / script)], check=True)
    env = tmp_path / "cluster.env"
    env.write_text("PHYSGM_REPO=https://example.invalid/physgm.git\nPHYSGM_COMMIT=main\n")
    out = subprocess.run(["bash", str(ROOT / "cluster" / "setup.sh"), "install", str(env)],
                         capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert "PHYSGM_COMMIT" in out.stderr and "40-character" in out.stderr
    out = subprocess.run(["bash", str(ROOT / "cluster" / "setup.sh"), "bogus", str(env)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr


# ---- broken files fail clearly ---------------------------------------------------------
def test_schema_violation_fails_with_the_field(tmp_path):
    bad = write_variant(tmp_path, lambda d: d["available_node_types"]["gpu_sim"]["resources"]
                        .update(CPU="eight"))
    res = cli("check", str(bad))
    assert res.exit_code == 1
    assert "available_node_types.gpu_sim.resources.CPU" in res.output
    assert "is not of type 'integer'" in res.output and "ray-schema.json" in res.output

    bad = write_variant(tmp_path, lambda d: d.update(head_nodes={}))
    res = cli("check", str(bad))
    assert res.exit_code == 1 and "head_nodes" in res.output

    bad = write_variant(tmp_path, lambda d: d.update(head_node_type="nope"))
    res = cli("check", str(bad))
    assert res.exit_code == 1 and "head_node_type" in res.output

    bad = write_variant(tmp_path, lambda d: d.pop("provider"))
    res = cli("check", str(bad), "--no-config")
    assert res.exit_code == 1 and "'provider' is a required property" in res.output


def test_role_that_fits_no_node_type_fails():
    res = cli("check", "cluster/ray_cluster.yaml", "--set", "dpo.actor_gpus=2")
    assert res.exit_code == 1
    msg = next(line for line in res.output.splitlines() if "fits no node type" in line)
    assert "sim_actor" in msg and "dpo.actor_gpus" in msg and "gpu_sim: GPU 1 < 2" in msg

    res = cli("check", "cluster/ray_cluster.yaml", "--set", "dpo.learner_gpus=1.5")
    assert res.exit_code == 1 and "fraction ≤ 1 or a whole number" in res.output


def test_too_many_actors_for_max_workers_fails():
    res = cli("check", "cluster/ray_cluster.yaml", "--set", "dpo.n_actors=64")
    assert res.exit_code == 1
    assert "needs 32 gpu_sim nodes" in res.output and "raise it to 32" in res.output


def test_global_max_workers_and_memory_are_enforced(tmp_path):
    bad = write_variant(tmp_path, lambda d: d.update(max_workers=10))
    res = cli("check", str(bad))
    assert res.exit_code == 1 and "max_workers is 10" in res.output

    bad = write_variant(tmp_path, lambda d: d["metadata"]["physgm"]["memory_gib"].update(
        sim_actor=40))  # two per 64 GiB g6e.2xlarge no longer fit
    res = cli("check", str(bad))
    assert res.exit_code == 1 and "gpu_sim nodes" in res.output


def test_overclaimed_hardware_and_public_ports_fail(tmp_path):
    bad = write_variant(tmp_path, lambda d: d["available_node_types"]["gpu_sim"]["resources"]
                        .update(GPU=2))
    res = cli("check", str(bad), "--no-config")
    assert res.exit_code == 1 and "resources.GPU = 2 but g6e.2xlarge has 1" in res.output

    def expose(d):
        d["head_start_ray_commands"][1] = d["head_start_ray_commands"][1].replace(
            "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
    res = cli("check", str(write_variant(tmp_path, expose)), "--no-config")
    assert res.exit_code == 1 and "dashboard binds to 0.0.0.0" in res.output

    def open_port(d):
        d["provider"]["security_group"] = {"GroupName": "g", "IpPermissions": [
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    res = cli("check", str(write_variant(tmp_path, open_port)), "--no-config")
    assert res.exit_code == 1 and "opens ports 8265–8265 to the internet" in res.output


def test_checkpoint_names_must_match_the_setup_downloads():
    res = cli("check", "cluster/ray_cluster.yaml", "--set",
              "reward.sam2_checkpoint=checkpoints/sam2.1_hiera_tiny.pt")
    assert res.exit_code == 1
    assert "reward.sam2_checkpoint = checkpoints/sam2.1_hiera_tiny.pt" in res.output


def test_strict_fails_on_warnings_and_missing_file_is_a_usage_error():
    report = check_cluster(CLUSTER, load_config(PAPER), "configs/paper.yaml")
    assert report.ok() and report.warnings  # the shipped cluster.env leaves the commit to you
    assert cli("check", "cluster/ray_cluster.yaml", "--strict").exit_code == 1
    res = cli("check", "cluster/missing.yaml")
    assert res.exit_code == 2 and "cluster file not found" in res.output


# ---- placement, by hand ----------------------------------------------------------------
def test_pack_stage_hand_computed():
    gpu1 = NodeType("one", "g6e.2xlarge", {"CPU": 8, "GPU": 1, "memory": 40 * GIB, "a": 2}, 0, 5)
    gpu4 = NodeType("four", "g6e.12xlarge", {"CPU": 48, "GPU": 4, "b": 4}, 0, 1)
    head = NodeType("head", "m6i.4xlarge", {"CPU": 0}, 0, 0, head=True)
    actors = Role("sim_actor", "dpo", 5, {"CPU": 3, "GPU": 0.5, "a": 1, "memory": 12 * GIB}, "x")
    learner = Role("learner", "dpo", 1, {"CPU": 1, "GPU": 1, "b": 1}, "y")
    plan, found = pack_stage("dpo", [actors, learner], [head, gpu1, gpu4], max_workers=10)
    assert not found
    assert plan.nodes == {"head": 1, "one": 3, "four": 1}  # 5 actors at 2 per node → 3 nodes
    assert plan.placed == {"learner": {"four": 1}, "sim_actor": {"one": 5}}
    assert plan.gpus == 3.5

    plan, found = pack_stage("dpo", [actors], [head, gpu1], max_workers=2)
    assert plan.nodes["one"] == 3
    assert [f.message for f in found if "max_workers is 2" in f.message]


# ---- the paper-scale config ------------------------------------------------------------
def test_paper_config_is_at_paper_scale():
    cfg = load_config(PAPER)
    m = cfg.model
    assert (m.backbone, m.patch_size, m.dim, m.depth, m.heads) == ("dinov3", 16, 1024, 24, 16)
    assert m.image_size == cfg.data.image_size == cfg.render.width == cfg.render.height == 512
    assert m.max_views == 4 and cfg.pretrain.views[1] == 4 and cfg.data.n_views >= 4
    assert m.dpt_features == 256 and m.physics_hidden == 1024 and m.grad_checkpoint
    assert m.backbone_checkpoint == "checkpoints/dinov3_vitl16.pth"
    assert 100 <= cfg.sim.grid_res <= 200 and cfg.sim.substep_dt is None
    assert cfg.sim.frame_dt == pytest.approx(1 / 25) and cfg.sim.n_frames == 50
    assert cfg.data.video_frames == cfg.sim.n_frames + 1 and cfg.data.max_particles == 100_000
    assert cfg.reward.backend == "sam2_cotracker" and cfg.reward.device == "cuda"
    p = cfg.pretrain
    assert p.use_gpu and p.zero_stage == 2 and p.bf16 and p.num_workers > 1
    assert 8 <= cfg.dpo.k <= 16 and cfg.dpo.n_actors >= 24 and cfg.dpo.actor_gpus > 0


def test_every_paper_value_names_its_source():
    missing = []
    for n, line in enumerate(PAPER.read_text().splitlines(), 1):
        body = line.split("#", 1)[0]
        if re.match(r"^\s*[\w]+:\s*\S", body) and not re.search(r"#\s*\[(paper|D§4|ckpt|ours)\]", line):
            missing.append(f"{n}: {line}")
    assert not missing, "values without a [source] comment:\n" + "\n".join(missing)


# ---- costs ------------------------------------------------------------------------------
def test_simulation_work_matches_the_cfl_formula():
    cfg = load_config(PAPER)
    work = simulation_work(cfg)
    # jelly defaults: E = 1e5 Pa, ν = 0.3, ρ = 1000 kg/m³
    E, nu, rho = 1e5, 0.3, 1000.0
    c = math.sqrt(E * (1 - nu) / ((1 + nu) * (1 - 2 * nu)) / rho) + math.sqrt(2 * 9.8 * 1.0)
    per_frame = math.ceil(0.04 / (0.3 * (1.0 / 128) / c))
    jelly = work["materials"]["jelly"]
    assert jelly["substeps_per_frame"] == per_frame
    assert jelly["particle_substeps"] == per_frame * 50 * 100_000


def test_stage_costs_from_figures_and_tbd_without_them():
    cfg = load_config(PAPER)
    none = stage_costs(cfg, Figures())
    assert all(r["gpu_h"] is None for r in none)
    fig = Figures(sim_pss=1e9, render_s_per_frame=0.01, reward_s_per_video=2.0, pretrain_step_s=3.0)
    rows = {r["stage"]: r for r in stage_costs(cfg, fig)}
    assert rows["pretrain"]["gpu_h"] == pytest.approx(20000 * 3.0 * 16 / 3600)
    d = cfg.dpo
    work = simulation_work(cfg)["mean_particle_substeps"]
    tasks = d.epochs * round(24000 * 0.9)
    actor_s = tasks * d.k * (work / 1e9 + 51 * 0.01) / d.n_actors
    reward_s = tasks * d.k * 2.0 / cfg.reward.replicas
    held = d.n_actors * d.actor_gpus + cfg.reward.replicas * cfg.reward.num_gpus + d.learner_gpus
    assert rows["dpo"]["wall_h"] == pytest.approx(max(actor_s, reward_s) / 3600)
    assert rows["dpo"]["gpu_h"] == pytest.approx(max(actor_s, reward_s) / 3600 * held)
    res = cli("costs", "--config", "configs/paper.yaml")
    assert res.exit_code == 0 and "TBD(measured)" in res.output and "jelly" in res.output
    res = cli("costs", "--step-s", "3", "--json")
    assert json.loads(res.output)["stages"][1]["gpu_h"] == pytest.approx(20000 * 3.0 * 16 / 3600)


def test_unknown_instance_types_and_unpinned_roles(tmp_path):
    def unknown(d):
        d["available_node_types"]["gpu_sim"]["node_config"]["InstanceType"] = "x9.huge"
    report = check_cluster(write_variant(tmp_path, unknown), load_config(PAPER))
    assert report.ok()  # CPU/GPU declared; memory unknown, so not packed against
    assert any("'x9.huge' is not in cluster/instances.py" in f.message for f in report.warnings)

    def undeclared(d):
        unknown(d)
        del d["available_node_types"]["gpu_sim"]["resources"]["CPU"]
    report = check_cluster(write_variant(tmp_path, undeclared), None)
    assert any("declare resources.CPU" in f.message for f in report.errors)

    def no_custom(d):
        for nt in d["available_node_types"].values():
            nt["resources"] = {k: v for k, v in nt["resources"].items() if k in ("CPU", "GPU")}
    report = check_cluster(write_variant(tmp_path, no_custom), load_config(PAPER))
    assert not report.ok()  # the paper config pins roles to resources no node offers now
    never = {f.message.split()[0] for f in report.errors if "would wait forever" in f.message}
    assert {"sim_actor", "learner", "reward_replica", "pretrain_worker"} <= never
    assert any("dpo.actor_resources" in f.message for f in report.errors)
    report = check_cluster(CLUSTER, load_config(None))  # defaults: no role pinned
    unpinned = {f.message.split()[0] for f in report.findings if "is not pinned" in f.message}
    assert {"sim_actor", "learner", "reward_replica"} <= unpinned
