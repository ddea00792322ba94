"""Pure reward math against hand-computed cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reward.cache import ReferenceCache, ReferenceData, video_digest
from reward.frames import check_candidate, check_video, foreground, is_blank
from reward.metrics import (failure_value, grid_queries, mask_iou_per_frame, mean_iou,
                            reward_value, track_error)


def test_mask_iou_hand_case():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True          # 4 px
    b[0, :2, 1:3] = True         # 4 px, overlap 2 → IoU 2/6
    iou = mask_iou_per_frame(a, b)
    assert iou[0] == pytest.approx(2 / 6)
    assert iou[1] == 1.0         # both empty: agree


def test_mean_iou_counts_missing_frames_as_zero():
    ref = np.ones((4, 3, 3), bool)
    assert mean_iou(ref[:3], ref) == pytest.approx(3 / 4)
    assert mean_iou(ref[:0], ref) == 0.0
    with pytest.raises(ValueError):
        mean_iou(np.ones((5, 3, 3), bool), ref)


def test_track_error_visibility_rules():
    # 2 frames, 2 points, image 3×4 → diagonal 5
    ref = np.zeros((2, 2, 2), np.float32)
    cand = ref.copy()
    cand[1, 0] = [3.0, 4.0]      # 5 px off → 1.0 (clipped at 1 anyway)
    cand[1, 1] = [0.0, 1.0]      # 1 px off → 0.2
    both = np.ones((2, 2), bool)
    assert track_error(cand, both, ref, both, (3, 4)) == pytest.approx((0 + 0 + 1.0 + 0.2) / 4)
    # the reference does not see point 0 in frame 1: left out
    ref_vis = both.copy()
    ref_vis[1, 0] = False
    assert track_error(cand, both, ref, ref_vis, (3, 4)) == pytest.approx((0 + 0 + 0.2) / 3)
    # the candidate lost point 1 in frame 1: counts as the maximum error
    cand_vis = both.copy()
    cand_vis[1, 1] = False
    assert track_error(cand, cand_vis, ref, ref_vis, (3, 4)) == pytest.approx((0 + 0 + 1) / 3)


def test_track_error_missing_frames_are_maximal():
    ref = np.zeros((4, 3, 2), np.float32)
    vis = np.ones((4, 3), bool)
    assert track_error(ref[:1], vis[:1], ref, vis, (10, 10)) == pytest.approx(3 / 4)
    assert track_error(ref, vis, ref, vis, (10, 10)) == 0.0


def test_reward_formula_and_failure_bound():
    assert reward_value(1.0, 0.0, 1.0, 1.0) == 0.0
    assert str(reward_value(1.0, 0.0, 1.0, 1.0)) == "0.0"      # not -0.0
    assert reward_value(0.5, 0.25, 2.0, 4.0) == pytest.approx(-(2 * 0.5 + 4 * 0.25))
    assert failure_value(-2.0, 1.0, 1.0) == -2.0
    assert failure_value(-0.5, 1.0, 1.0) == -2.0               # never above the worst score
    assert failure_value(-5.0, 1.0, 1.0) == -5.0


@settings(max_examples=40, deadline=None)
@given(arrays(bool, (3, 5, 5)), arrays(bool, (3, 5, 5)),
       st.floats(0, 1), st.floats(0, 1), st.floats(0, 5), st.floats(0, 5))
def test_metric_bounds(a, b, miou, terr, wm, wt):
    iou = mask_iou_per_frame(a, b)
    assert np.all((iou >= 0) & (iou <= 1))
    np.testing.assert_allclose(iou, mask_iou_per_frame(b, a))
    assert np.all(mask_iou_per_frame(a, a) == 1.0)
    r = reward_value(miou, terr, wm, wt)
    assert -(wm + wt) - 1e-12 <= r <= 0.0


def test_grid_queries_on_mask():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 4:10] = True
    q = grid_queries(mask, 4)
    assert q.shape[1] == 2 and 1 <= len(q) <= 16
    assert mask[q[:, 1].astype(int), q[:, 0].astype(int)].all()
    thin = np.zeros((20, 20), bool)
    thin[7, 3] = True                                       # one pixel: still one query
    np.testing.assert_array_equal(grid_queries(thin, 5), [[3, 7]])
    with pytest.raises(ValueError, match="empty"):
        grid_queries(np.zeros((5, 5), bool), 3)


def test_input_checks_say_what_to_fix():
    ok = np.zeros((2, 16, 16, 3), np.uint8)
    assert check_video(ok) is ok
    with pytest.raises(ValueError, match="uint8"):
        check_video(ok.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        check_video(ok[..., 0])
    with pytest.raises(ValueError, match="numpy array"):
        check_video([[1, 2]])
    with pytest.raises(ValueError, match="reference resolution"):
        check_candidate(np.zeros((2, 8, 8, 3), np.uint8), (2, 16, 16))
    with pytest.raises(ValueError, match="sim.n_frames"):
        check_candidate(np.zeros((3, 16, 16, 3), np.uint8), (2, 16, 16))
    assert check_candidate(np.zeros((0, 16, 16, 3), np.uint8), (2, 16, 16)).shape[0] == 0


def test_foreground_background_difference():
    v = np.zeros((1, 8, 8, 3), np.uint8)
    v[0, 2, 3] = (0, 11, 0)
    v[0, 4, 4] = (5, 5, 5)       # encoder noise below the threshold
    fg = foreground(v, (0, 0, 0), 10)
    assert fg.sum() == 1 and fg[0, 2, 3]
    white = np.full((1, 8, 8, 3), 255, np.uint8)
    assert is_blank(foreground(white, (255, 255, 255), 10))
    assert not is_blank(fg)


def test_reference_cache_lru_and_digest():
    v = np.zeros((2, 8, 8, 3), np.uint8)
    w = v.copy()
    w[0, 0, 0, 0] = 1
    assert video_digest(v) == video_digest(v.copy()) != video_digest(w)
    cache = ReferenceCache(capacity=2)
    item = ReferenceData(video_digest(v), (2, 8, 8), np.zeros((2, 8, 8), bool),
                         np.zeros((1, 2)), np.zeros((2, 1, 2)), np.ones((2, 1), bool))
    cache.put("a", item)
    assert cache.get("a", video_digest(v)) is item
    assert cache.get("a", video_digest(w)) is None          # same scene, other video
    cache.put("b", item)
    cache.get("a")
    cache.put("c", item)                                    # evicts b (least recent)
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.hits == 2 and cache.misses == 1
    assert cache.has("a", video_digest(v)) and not cache.has("a", video_digest(w))
    assert not cache.has("b") and cache.hits == 2 and cache.misses == 1   # no counting
