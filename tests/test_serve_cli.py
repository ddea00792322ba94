"""`physgm serve`: refusals without Ray (fast), and a real start → /healthz → Ctrl-C (slow)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from physgm.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_serve_is_listed_with_its_options():
    assert "serve" in runner.invoke(app, ["--help"]).output
    out = runner.invoke(app, ["serve", "--help"]).output
    for opt in ("--random-init", "--checkpoint", "--model-uri", "--host", "--port"):
        assert opt in out
    assert "serve" in runner.invoke(app, ["bench", "--help"]).output


def test_serve_refuses_what_it_cannot_serve(tmp_path, monkeypatch):
    monkeypatch.delenv("PHYSGM_API_KEY", raising=False)
    res = runner.invoke(app, ["serve", "--set", f"out_dir={tmp_path}"])
    assert res.exit_code == 2 and "--random-init" in res.output      # no trained model yet
    res = runner.invoke(app, ["serve", "--checkpoint", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no PhysGM checkpoint" in res.output
    res = runner.invoke(app, ["serve", "--random-init", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "PHYSGM_API_KEY" in res.output     # no key, no exposure
    res = runner.invoke(app, ["serve", "--random-init", "--set", "serve.max_batch_size=0"])
    assert res.exit_code == 2 and "max_batch_size" in res.output


@pytest.mark.slow
def test_serve_random_init_starts_answers_and_stops():
    requests = pytest.importorskip("requests")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "physgm", "serve", "--random-init", "--port", str(port),
         "--set", "model.image_size=32", "--set", "model.dim=32", "--set", "model.heads=2",
         "--set", "model.depth=2", "--set", "model.backbone_depth=1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and \
                not any("serving at" in line for line in lines):
            time.sleep(0.5)
        assert any(f"serving at http://127.0.0.1:{port}/" in line for line in lines), lines[-20:]
        body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
        assert body["status"] == "ok" and body["model_version"].startswith("random-init")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines[-40:])
    assert any("stopping" in line for line in lines)
