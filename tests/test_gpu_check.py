"""scripts/gpu_check.py, the GPU readiness check, on its CPU dry run: every check's code
path runs (toy sizes), so the script does not rot between the rare GPU loans."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_prints_one_json_line_with_every_check():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled",
           "DS_ACCELERATOR": "cpu"}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    out = json.loads(lines[0])
    for name in ("mpm", "render", "learner", "pretrain"):
        assert "error" not in out[name], (name, out[name])
    assert out["mpm"]["jelly_pss"] > 0 and out["mpm"]["batch_k"] == 2
    assert out["render"]["psnr_db"] > 60  # the same rasterizer twice
    assert out["learner"]["step0_margin"] == 0.0 and "bfloat16" in out["learner"]["dtype"]
    assert out["pretrain"]["loss"] > 0
