"""sam2_cotracker backend end to end on CPU with randomly initialised SAM-2 and CoTracker3.

Random weights give meaningless masks and tracks, but they run the real code path:
model construction, in-memory SAM-2 state, box and mask prompts, propagation, CoTracker
queries/support grid/rescaling, caching and the reward formula.
"""
import numpy as np
import pytest

from reward import RewardScorer
from reward.sam2_cotracker import COTRACKER_URL, SAM2_URL, build_cotracker, build_sam2
from reward.scorer import reward_config
from reward.synthetic import falling_disc

T, S = 8, 64
SMALL = dict(backend="sam2_cotracker", random_init=True, device="cpu", sam2_image_size=128,
             cotracker_resolution=(64, 64), cotracker_iters=2, grid_size=4,
             visibility_threshold=0.5)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core machine, OpenMP threads spinning on a busy core make the models
    10-40× slower; one thread keeps this file at seconds."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scorer():
    return RewardScorer(SMALL)


@pytest.fixture(scope="module")
def ref():
    return falling_disc(T, S)


@pytest.fixture(scope="module")
def batch(scorer, ref):
    """Reference prepared once, four candidates scored in one batch."""
    data = scorer.prepare_reference("scene", ref)
    cands = [ref.copy(), falling_disc(T, S, shift=(12, 6)), np.zeros_like(ref), ref[:5]]
    return data, cands, scorer.score_batch("scene", cands)


def test_reference_side(batch):
    data, _, _ = batch
    assert data.masks.shape == (T, S, S) and data.masks.dtype == bool
    assert data.masks[0].any()
    assert data.tracks.shape == (T, len(data.queries), 2)
    assert data.visible.shape == data.tracks.shape[:2]
    np.testing.assert_allclose(data.tracks[0], data.queries, atol=1e-3)   # frame 0 = queries
    assert np.isfinite(data.tracks).all()


def test_candidates_end_to_end(scorer, batch):
    _, _, (same, shifted, blank, short) = batch
    assert same.reward == 0.0 and same.mask_iou == 1.0 and same.track_error == 0.0
    assert shifted.status == "ok" and shifted.reward < 0.0
    assert 0.0 <= shifted.mask_iou <= 1.0 and 0.0 <= shifted.track_error <= 1.0
    assert shifted.reward == pytest.approx(-((1 - shifted.mask_iou) + shifted.track_error))
    assert blank.status == "blank" and blank.reward == scorer.failure_reward
    assert short.status == "short" and short.mask_iou <= 5 / 8
    assert scorer.failure_reward <= short.reward < 0.0
    assert scorer.timings["references"] == 1 and scorer.timings["candidates"] == 4


def test_batched_equals_unbatched(scorer, ref, batch):
    _, cands, results = batch
    single = scorer.score(cands[1], ref)          # reference recomputed under its content key
    assert single.reward == pytest.approx(results[1].reward, abs=1e-9)
    assert single.track_error == pytest.approx(results[1].track_error, abs=1e-9)


def test_mask_prompt_from_alpha(scorer, ref):
    alpha = ref.max(axis=-1) > 0
    masks = scorer.backend.masks(ref, alpha)
    assert masks.shape == (T, S, S) and masks[0].any()
    assert not scorer.backend.masks(np.zeros_like(ref)).any()            # nothing to prompt


def test_wrong_size_is_rejected(scorer, ref):
    scorer.prepare_reference("scene", ref)
    with pytest.raises(ValueError, match="reference resolution"):
        scorer.score_batch("scene", [falling_disc(T, 32)])


def test_missing_checkpoints_name_the_download(tmp_path):
    cfg = reward_config(SMALL, random_init=False, sam2_checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError) as err:
        build_sam2(cfg, "cpu")
    assert SAM2_URL.format(name="sam2.1_hiera_tiny.pt") in str(err.value)
    assert "nope.pt" in str(err.value)
    with pytest.raises(FileNotFoundError, match="cotracker_checkpoint") as err:
        build_cotracker(reward_config(SMALL, random_init=False), "cpu")
    assert COTRACKER_URL in str(err.value)


def test_cotracker_checkpoint_loads_from_a_file(tmp_path):
    import torch
    model = build_cotracker(reward_config(SMALL), "cpu")
    path = tmp_path / "scaled_offline.pth"
    torch.save({"model": model.state_dict()}, path)
    loaded = build_cotracker(reward_config(SMALL, random_init=False,
                                           cotracker_checkpoint=str(path)), "cpu")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_bad_cotracker_resolution():
    with pytest.raises(ValueError, match="multiples of 4"):
        build_cotracker(reward_config(SMALL, cotracker_resolution=(66, 64)), "cpu")
