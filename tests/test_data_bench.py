"""`physgm bench data`: full and image-only scenes side by side, with their ratio."""
import json
from pathlib import Path

import pytest

from benchmarks import bench_data

TINY = ["sim.grid_res=16", "sim.device=cpu", "data.image_size=32", "data.video_frames=3",
        "data.n_views=2", "data.max_particles=300"]


def test_reports_both_kinds_and_the_image_only_speedup(capsys):
    quickstart = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    out = bench_data.main(["--config", quickstart, "--scenes", "2", "--image-only-scenes", "3",
                           "--workers", "1",
                           *sum((["--set", s] for s in TINY), [])])
    assert json.loads(capsys.readouterr().out.strip()) == out
    rows = {r["kind"]: r for r in out["results"]}
    assert set(rows) == {"full", "image_only"}
    assert rows["full"]["written"] == 2 and rows["image_only"]["written"] == 3
    assert out["scenes"] == {"full": 2, "image_only": 3}
    assert all(r["scenes_per_min"] > 0 for r in rows.values())
    assert rows["image_only"]["sim_s_per_scene"] == 0 < rows["full"]["sim_s_per_scene"]
    assert out["image_only_speedup"]["1"] == pytest.approx(
        rows["image_only"]["scenes_per_min"] / rows["full"]["scenes_per_min"], abs=0.01)
    assert 0 < rows["image_only"]["cpu_s_per_scene"] < rows["full"]["cpu_s_per_scene"]
    assert out["image_only_cpu_speedup"]["1"] > 1


def test_bad_kinds_are_refused():
    with pytest.raises(ValueError, match="kinds"):
        bench_data.run(None, 1, [1], [], kinds=["video"])
    with pytest.raises(ValueError, match="scenes"):
        bench_data.run(None, 1, [1], [], image_only_scenes=0)
    assert bench_data.ratios([{"kind": "full", "workers": 2, "scenes_per_min": 10.0},
                              {"kind": "image_only", "workers": 2,
                               "scenes_per_min": 55.0}]) == {"2": 5.5}
    cost = [{"kind": "full", "workers": 1, "cpu_s_per_scene": 3.0},
            {"kind": "image_only", "workers": 1, "cpu_s_per_scene": 0.5}]
    assert bench_data.ratios(cost, "cpu_s_per_scene") == {"1": 6.0}
