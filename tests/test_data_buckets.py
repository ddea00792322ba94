"""One input view count V per batch: ``bucket_views`` (every V equally often, deterministic,
the same on every worker), items asked as ``dataset[(index, V)]``, batches of one V."""
from collections import Counter

import pytest
import torch

from physgm.config import build_config
from physgm.data.build import synthesize
from physgm.data.dataset import SceneDataset, bucket_views, collate_views


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("buckets") / "pre.zarr"
    cfg = build_config({"sim": {"grid_res": 16, "device": "cpu"},
                        "data": {"image_size": 32, "n_views": 5, "max_particles": 300,
                                 "val_fraction": 0.0, "test_fraction": 0.0,
                                 "image_only": True, "workers": 1}})
    assert len(synthesize(path, cfg, n_scenes=4).written) == 4
    return path


def test_every_view_count_equally_often_in_every_block():
    for seed in (0, 7):
        vs = [bucket_views(seed, b, (1, 4)) for b in range(4 * 25)]
        assert Counter(vs) == {1: 25, 2: 25, 3: 25, 4: 25}
        for start in range(0, len(vs), 4):  # each block of 4 batches holds each V once
            assert sorted(vs[start:start + 4]) == [1, 2, 3, 4]
        assert vs == [bucket_views(seed, b, (1, 4)) for b in range(100)]  # deterministic
    assert [bucket_views(0, b, (1, 4)) for b in range(40)] != \
        [bucket_views(1, b, (1, 4)) for b in range(40)]
    assert {bucket_views(3, b, 2) for b in range(10)} == {2}
    assert {bucket_views(3, b, (2, 3)) for b in range(10)} == {2, 3}
    with pytest.raises(ValueError, match="batch"):
        bucket_views(0, -1, (1, 4))
    with pytest.raises(ValueError, match="n_views"):
        bucket_views(0, 0, (3, 1))


def test_items_take_the_batch_view_count_and_a_batch_has_one(store):
    ds = SceneDataset(store, split="all", n_views=(1, 4), n_targets=1, seed=3)
    for v in (1, 2, 3, 4):
        batch = collate_views([ds[(i, v)] for i in range(4)])
        assert batch["images"].shape == (4, v, 3, 32, 32)
        assert batch["plucker"].shape == (4, v, 6, 32, 32) and batch["K"].shape == (4, v, 3, 3)
        assert batch["target_images"].shape == (4, 1, 3, 32, 32)
    # the same draws as a plain item when V agrees; targets stay outside the inputs
    inputs, targets = ds.choose_views(2, 5, views=3)
    assert len(inputs) == 3 and not set(targets.tolist()) & set(inputs.tolist())
    plain_in, _ = ds.choose_views(2, 5)
    assert len(ds[2]["images"]) == len(plain_in)
    torch.testing.assert_close(ds[(2, len(plain_in))]["images"], ds[2]["images"])
    # V beyond the stored views is capped at them
    assert ds[(0, 9)]["images"].shape[0] == 5
    with pytest.raises(ValueError, match="views"):
        ds.choose_views(0, 5, views=0)


def test_a_loader_with_a_view_bucketing_batch_sampler(store):
    ds = SceneDataset(store, split="all", n_views=(1, 4), n_targets=1)
    sampler = [[(i, bucket_views(0, b, (1, 4))) for i in (b % 4, (b + 1) % 4)]
               for b in range(8)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_views)
    seen = [batch["images"].shape[1] for batch in loader]
    assert seen == [bucket_views(0, b, (1, 4)) for b in range(8)]
    assert sorted(seen) == [1, 1, 2, 2, 3, 3, 4, 4]
