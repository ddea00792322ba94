"""One worker pool for several stores (`physgm run`'s data stage makes four stores one after
another and starts its workers once): the scenes are those each store gets on its own."""
import numpy as np
import pytest

from physgm.config import build_config
from physgm.data.build import synthesize, worker_pool
from physgm.data.store import list_scenes, open_store, read_scene

DATA = {"image_size": 32, "video_frames": 3, "n_views": 2, "max_particles": 300,
        "val_fraction": 0.0, "test_fraction": 0.0, "workers": 1}


def tiny(**data):
    return build_config({"sim": {"grid_res": 16, "device": "cpu"}, "data": {**DATA, **data}})


def test_stores_made_in_one_pool_equal_those_made_in_process(tmp_path):
    configs = {"full": tiny(seed=3), "image": tiny(seed=4, image_only=True)}
    with worker_pool(2) as pool:
        shared = {k: synthesize(tmp_path / f"{k}-pool.zarr", c, n_scenes=3, pool=pool)
                  for k, c in configs.items()}
        again = synthesize(tmp_path / "full-pool.zarr", configs["full"], n_scenes=3, pool=pool)
    assert again.skipped == list_scenes(open_store(tmp_path / "full-pool.zarr", "r"))
    for key, cfg in configs.items():
        assert len(shared[key].written) == 3 and not shared[key].failed
        synthesize(tmp_path / f"{key}-own.zarr", cfg, n_scenes=3, workers=1)
        a, b = (open_store(tmp_path / f"{key}-{w}.zarr", "r") for w in ("pool", "own"))
        for sid in list_scenes(b):
            x, y = read_scene(a, sid), read_scene(b, sid)
            np.testing.assert_array_equal(x.images, y.images)
            assert (x.video is None) == (key == "image") == (y.video is None)
            if x.video is not None:
                np.testing.assert_array_equal(x.video, y.video)


def test_worker_pool_refuses_no_workers():
    with pytest.raises(ValueError, match="workers"):
        worker_pool(0)
