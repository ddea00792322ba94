"""`physgm data synth/show/list/convert` through typer's CliRunner: parallel generation,
resume, an interrupted scene redone, a mismatched config refused."""
import json

import imageio.v3 as iio
import pytest
from typer.testing import CliRunner

from physgm.cli import app
from physgm.data.store import list_scenes, open_store, read_scene, splits

TINY = ["--set", "sim.grid_res=16", "--set", "sim.device=cpu", "--set", "data.image_size=32",
        "--set", "data.video_frames=3", "--set", "data.n_views=2",
        "--set", "data.max_particles=300"]

runner = CliRunner()


def _synth(out, *extra):
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--json", *TINY, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data.zarr"
    first = _synth(out, "--scenes", "2", "--workers", "2")  # the process-pool path
    assert first["written"] == 2 and first["skipped"] == 0 and first["workers"] == 2
    assert first["scenes_per_min"] > 0
    return out


def test_synth_writes_complete_scenes(store):
    root = open_store(store)
    assert list_scenes(root) == ["000000", "000001"]
    parts = splits(root)
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == ["000000", "000001"]
    assert read_scene(root, "000001").video.shape == (3, 32, 32, 3)


def test_resume_skips_complete_and_redoes_interrupted(store):
    again = _synth(store, "--scenes", "2", "--workers", "1")
    assert again["written"] == 0 and again["skipped"] == 2
    before = read_scene(open_store(store), "000001").video
    open_store(store, "a")["scenes/000001"].attrs["complete"] = False  # as if interrupted
    more = _synth(store, "--scenes", "3", "--workers", "1")
    assert more["skipped"] == 1 and more["redone"] == 1 and more["written"] == 2
    root = open_store(store)
    assert list_scenes(root) == ["000000", "000001", "000002"]
    assert (read_scene(root, "000001").video == before).all()  # same seed, same scene


def test_other_settings_are_refused(store):
    result = runner.invoke(app, ["data", "synth", "--out", str(store), "--scenes", "1", *TINY,
                                 "--set", "data.label_noise=0"])
    assert result.exit_code == 2
    assert "data.label_noise" in result.output and "new --out" in result.output


def test_show_writes_sheet_and_video(store, tmp_path):
    result = runner.invoke(app, ["data", "show", "000000", "--data", str(store),
                                 "--out", str(tmp_path / "prev")])
    assert result.exit_code == 0, result.output
    sheet = iio.imread(tmp_path / "prev" / "000000_sheet.png")
    assert sheet.ndim == 3 and sheet.shape[0] > 2 * 128 and sheet.max() > 0
    from physgm.video import read_video

    assert read_video(tmp_path / "prev" / "000000_video.mp4").shape[0] == 3
    missing = runner.invoke(app, ["data", "show", "999", "--data", str(store)])
    assert missing.exit_code == 2 and "not in the store" in missing.output


def test_list_json(store):
    result = runner.invoke(app, ["data", "list", "--data", str(store), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["scenes"]
    assert {r["scene"] for r in rows} >= {"000000", "000001"}
    assert all(r["true"] in ("jelly", "metal", "plasticine", "sand", "snow") for r in rows)


def test_convert_reports_bad_folder(tmp_path):
    (tmp_path / "cap").mkdir()
    result = runner.invoke(app, ["data", "convert", str(tmp_path / "cap"), "--out",
                                 str(tmp_path / "r.zarr")])
    assert result.exit_code == 2 and "cameras.json: file not found" in result.output


def test_missing_store_message(tmp_path):
    result = runner.invoke(app, ["data", "list", "--data", str(tmp_path / "none.zarr")])
    assert result.exit_code == 2 and "physgm data synth" in result.output
