"""A running Ray head, as on the cluster (`ray start --head`): stages submitted with
`ray job submit` from a clean working directory, and a cluster too small for a stage that
fails fast with what to change instead of waiting silently."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = """\
name: job
out_dir: {out}
data: {{path: {out}/data.zarr, image_size: 32, video_frames: 4, max_particles: 300,
        n_views: 2, workers: 1}}
sim: {{grid_res: 16}}
render: {{width: 32, height: 32}}
"""


def _env(**extra) -> dict:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": path, "PYTHONPATH": str(ROOT), **extra}


class Head:
    """`ray start --head` in its own temp dir (so no other Ray instance finds it)."""

    def __init__(self, cpus: int, dashboard: bool):
        from runtime.distributed import free_port

        self.temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
        self.port, self.dash = free_port(), free_port()
        cmd = [str(BIN / "ray"), "start", "--head", f"--num-cpus={cpus}", f"--port={self.port}",
               f"--temp-dir={self.temp}", "--disable-usage-stats",
               f"--include-dashboard={'true' if dashboard else 'false'}"]
        if dashboard:
            # the agents' default ports are taken when another Ray instance runs on the host
            # (a `make run` or `physgm study` beside the tests): then the job agent never
            # comes up ("No available agent to submit job"); free ports of its own
            cmd += ["--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--dashboard-agent-grpc-port={free_port()}",
                    f"--metrics-export-port={free_port()}",
                    f"--runtime-env-agent-port={free_port()}"]
        subprocess.run(cmd, env=_env(), check=True, capture_output=True, timeout=180)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop this head's processes only: ``ray stop`` stops every Ray instance on the host
        (a `make run` or `physgm study` beside the tests included). Its processes are those
        whose command line names its temp dir (GCS, raylet, dashboard, log monitor) and
        their children (the workers, whose command line Ray renames)."""
        import psutil

        own = [p for p in psutil.process_iter(["cmdline"])
               if self.temp in " ".join(p.info["cmdline"] or [])]
        procs = {p.pid: p for p in own}
        for p in own:
            try:
                procs.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.NoSuchProcess:
                pass
        for p in procs.values():
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(list(procs.values()), timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


def submit_job(head: Head, work: Path, args: list[str],
               timeout: int) -> subprocess.CompletedProcess:
    """`ray job submit` to ``head`` from ``work``; retried while the head's job agent has not
    registered yet ("No available agent": `ray start` returns before it does, and on a
    loaded machine the first submit can come too early), for up to 3 minutes."""
    cmd = [str(BIN / "ray"), "job", "submit", f"--address=http://127.0.0.1:{head.dash}",
           f"--working-dir={work}", "--", *args]
    deadline = time.monotonic() + 180
    while True:
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
        if "No available agent" not in r.stdout + r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(5)


@pytest.fixture()
def small_head():
    head = Head(cpus=2, dashboard=False)
    yield head
    head.stop()


def test_a_cluster_too_small_for_dpo_fails_fast_saying_what_to_change(small_head, tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run([str(BIN / "physgm"), "dpo", "--config", str(ROOT / "configs/quickstart.yaml"),
                        "--set", f"out_dir={tmp_path}"], env=_env(RAY_ADDRESS=small_head.address),
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot host the dpo stage" in r.stderr and "{CPU: 4}" in r.stderr
    assert "dpo.n_actors" in r.stderr and "reward.num_cpus" in r.stderr
    assert time.perf_counter() - t0 < 240  # no 14-minute silent wait


def test_stages_submitted_as_ray_jobs_from_a_clean_working_dir(tmp_path):
    head = Head(cpus=4, dashboard=True)
    try:
        work = tmp_path / "work"  # what a user ships: a config file, nothing else
        work.mkdir()
        out = tmp_path / "out"
        (work / "tiny.yaml").write_text(TINY.format(out=out))
        r = submit_job(head, work, ["physgm", "data", "synth", "--config", "tiny.yaml",
                                    "--scenes", "2", "--json"], timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert '"written": 2' in r.stdout
        from physgm.data.store import list_scenes, open_store

        assert len(list_scenes(open_store(out / "data.zarr", "r"))) == 2
    finally:
        head.stop()


RUN = TINY + """\
seed: 0
model: {{image_size: 32, dim: 32, heads: 2, depth: 1, backbone_depth: 1}}
pretrain: {{steps: 2, num_workers: 1, batch_size: 1, val_every: 2, checkpoint_every: 2,
           log_every: 1}}
dpo: {{k: 2, n_actors: 1, epochs: 1, batch_pairs: 1}}
serve: {{port: {port}}}
"""


@pytest.mark.slow
def test_the_whole_run_as_one_ray_job(tmp_path):
    from runtime.distributed import free_port

    head = Head(cpus=4, dashboard=True)
    try:
        work = tmp_path / "work"
        work.mkdir()
        out = tmp_path / "out"
        text = RUN.format(out=out, port=free_port()).replace(
            "n_views: 2, workers: 1}", "n_views: 2, workers: 1, n_scenes: 8, val_fraction: 0.2, "
            "test_fraction: 0.3}")
        (work / "run.yaml").write_text(text)
        r = submit_job(head, work, ["physgm", "run", "--config", "run.yaml"], timeout=1800)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
        for stage in ("data", "pretrain", "dpo", "eval", "serve"):
            assert (out / "job" / "stages" / f"{stage}.json").is_file(), stage
        assert "w/ DPO" in r.stdout and (out / "job" / "checkpoints" / "dpo" / "model.pt").is_file()
    finally:
        head.stop()
