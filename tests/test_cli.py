"""The physgm command line: help, simulate, config and error handling."""
import json

import numpy as np
from typer.testing import CliRunner

from physgm.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ["run", "simulate", "bench", "config"]:
        assert cmd in out


def test_simulate_json_and_npz(tmp_path):
    out = tmp_path / "traj.npz"
    res = runner.invoke(app, ["simulate", "--material", "plasticine", "--frames", "3",
                              "--size", "0.1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["frames"] == 3
    data = np.load(out)
    assert data["positions"].shape[0] == 4 and data["deformation"].shape[-2:] == (3, 3)


def test_simulate_renders_a_video(tmp_path):
    from physgm.video import read_video

    out = tmp_path / "drop.mp4"
    res = runner.invoke(app, ["simulate", "--frames", "3", "--size", "0.1", "--out", str(out),
                              "--set", "render.width=32", "--set", "render.height=32"])
    assert res.exit_code == 0, res.output
    video = read_video(out)
    assert video.shape == (4, 32, 32, 3) and video.max() > 0


def test_bad_input_exits_2_with_a_message():
    res = runner.invoke(app, ["simulate", "--nu", "0.7"])
    assert res.exit_code == 2 and "nu" in res.output
    res = runner.invoke(app, ["simulate", "--set", "sim.grid_res=4"])
    assert res.exit_code == 2 and "sim.grid_res" in res.output
    res = runner.invoke(app, ["simulate", "--shape", "blob"])
    assert res.exit_code == 2 and "unknown shape" in res.output
    res = runner.invoke(app, ["eval", "--e-shifts", "0.3"])
    assert res.exit_code == 2 and "--e-shifts" in res.output


def test_config_show_prints_resolved_yaml():
    res = runner.invoke(app, ["config", "show", "--set", "sim.grid_res=40"])
    assert res.exit_code == 0 and "grid_res: 40" in res.output


def test_run_ctrl_c_says_how_to_resume(monkeypatch):
    """Ctrl-C inside a stage (the stage has checkpointed itself) exits 130 with the resume
    command instead of a traceback."""
    import pipeline.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.run, "run_pipeline", interrupted)
    res = runner.invoke(app, ["run", "-c", "configs/quickstart.yaml"])
    assert res.exit_code == 130
    assert "physgm run" in res.output and "resumes" in res.output
