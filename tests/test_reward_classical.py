"""Classical backend end to end on synthetic falling-disc videos, plus the reward CLI."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import reward
from reward import RewardResult, RewardScorer, score
from reward.cli import app
from reward.synthetic import falling_disc

T, S = 16, 64


@pytest.fixture(scope="module")
def ref():
    return falling_disc(T, S)


@pytest.fixture()
def scorer():
    return RewardScorer({"backend": "classical"})


def test_package_exports():
    assert {"score", "RewardResult", "RewardScorer"} <= set(reward.__all__)


def test_identical_videos_score_exactly_zero(ref):
    res = score(ref, ref.copy(), backend="classical")
    assert isinstance(res, RewardResult)
    assert res.reward == 0.0 and res.mask_iou == 1.0 and res.track_error == 0.0
    assert res.status == "ok" and res.n_frames == T


@pytest.mark.parametrize("kind, levels", [("shift", [0, 2, 4, 8, 14]), ("delay", [0, 1, 2, 4])])
def test_reward_decreases_with_the_difference(ref, kind, levels):
    rewards = []
    for lv in levels:
        cand = falling_disc(T, S, shift=(lv, 0)) if kind == "shift" else falling_disc(T, S, delay=lv)
        rewards.append(score(cand, ref, backend="classical").reward)
    assert rewards[0] == 0.0
    assert all(a > b for a, b in zip(rewards, rewards[1:])), rewards
    assert all(r <= 0 for r in rewards)


def test_other_physics_scores_between_truth_and_failure(ref, scorer):
    scorer.prepare_reference("s", ref)
    bouncy, blank = scorer.score_batch("s", [falling_disc(T, S, restitution=0.95),
                                             np.zeros_like(ref)])
    assert scorer.failure_reward <= blank.reward < bouncy.reward < 0.0
    assert 0.0 < bouncy.mask_iou < 1.0 and bouncy.track_error > 0.0


def test_blank_black_and_short_candidates(ref, scorer):
    scorer.prepare_reference("s", ref)
    worst_valid = min(r.reward for r in scorer.score_batch(
        "s", [falling_disc(T, S, shift=(30, 20)), falling_disc(T, S, delay=8)]))
    black, white_bg, empty, short = scorer.score_batch("s", [
        np.zeros_like(ref),                          # NaN renders come out black
        np.full_like(ref, 3),                        # encoder noise only
        ref[:0],
        ref[: T // 2],                               # simulation stopped half way
    ])
    for res in (black, white_bg, empty):
        assert res.status == "blank" and res.reward == scorer.failure_reward == -2.0
        assert res.reward <= worst_valid
    assert short.status == "short" and short.n_frames == T // 2
    assert short.mask_iou == pytest.approx(0.5) and short.track_error == pytest.approx(0.5)
    assert short.reward == pytest.approx(-1.0)


def test_failure_reward_never_above_a_scored_video(ref):
    s = RewardScorer({"failure_reward": -0.1, "w_mask": 1.0, "w_track": 1.0})
    res = s.score(np.zeros_like(ref), ref)
    assert res.reward == -2.0                        # min(failure_reward, −(w_mask + w_track))


def test_invalid_candidates_raise_or_fail(ref, scorer):
    scorer.prepare_reference("s", ref)
    bad = [falling_disc(T, 32), ref.astype(np.float32) / 255, ref[..., 0],
           np.concatenate([ref, ref[:2]]), "not a video"]
    for cand in bad:
        with pytest.raises(ValueError):
            scorer.score_batch("s", [cand])
    results = scorer.score_batch("s", bad + [ref], strict=False)
    assert [r.status for r in results] == ["invalid"] * 5 + ["ok"]
    assert all(r.reward == scorer.failure_reward and r.error for r in results[:5])
    assert results[-1].reward == 0.0
    with pytest.raises(ValueError, match="render candidates at the reference resolution"):
        score(falling_disc(T, 32), ref)


def test_batched_equals_unbatched_and_reference_is_cached(ref):
    cands = [falling_disc(T, S, shift=(s, 0), delay=d) for s, d in [(0, 0), (3, 0), (0, 2), (5, 1)]]
    s = RewardScorer({"backend": "classical"})
    s.prepare_reference("scene", ref)
    batched = s.score_batch("scene", cands)
    single = [score(c, ref, backend="classical") for c in cands]
    assert batched == single
    assert s.timings["references"] == 1 and s.timings["candidates"] == 4
    again = s.prepare_reference("scene", ref.copy())               # same content: cache hit
    assert s.timings["references"] == 1 and again is s.cache.get("scene")
    s.prepare_reference("scene", falling_disc(T, S, restitution=0.3))  # new video: recomputed
    assert s.timings["references"] == 2
    with pytest.raises(KeyError, match="prepare_reference"):
        s.score_batch("unknown-scene", cands)


def test_alpha_masks_replace_the_background_difference(ref):
    alpha = np.zeros(ref.shape[:3], np.float32)
    alpha[:, 10:30, 10:30] = 1.0
    s = RewardScorer()
    s.prepare_reference("a", ref, alpha=alpha)
    same, other = s.score_batch("a", [ref, ref], alphas=[alpha, np.roll(alpha, 10, axis=2)])
    assert same.reward == 0.0
    assert other.mask_iou == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="alpha"):
        s.prepare_reference("b", ref, alpha=alpha[:, :10])


def test_reference_without_foreground_is_a_clear_error():
    with pytest.raises(ValueError, match="reward.background"):
        score(falling_disc(T, S), np.zeros((T, S, S, 3), np.uint8))


def test_non_black_background(ref):
    grey = ref.copy()
    grey[ref.max(axis=-1) == 0] = 128
    s = RewardScorer({"background": (128, 128, 128)})
    assert s.score(grey, grey).reward == 0.0
    assert s.score(np.full_like(grey, 128), grey).status == "blank"


def test_unknown_backend_is_a_clear_error(ref):
    with pytest.raises(ValueError, match="sam2_cotracker"):
        score(ref, ref, backend="sam3")


def test_cli_score_json_and_errors(tmp_path, ref):
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "cand.npy", falling_disc(T, S, delay=2))
    runner = CliRunner()
    out = runner.invoke(app, ["score", str(tmp_path / "ref.npy"), str(tmp_path / "ref.npy"),
                              "--backend", "classical", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["reward"] == 0.0
    out = runner.invoke(app, ["score", str(tmp_path / "cand.npy"), str(tmp_path / "ref.npy"),
                              "--json", "--set", "reward.w_mask=2"])
    data = json.loads(out.stdout)
    assert data["reward"] == pytest.approx(-(2 * (1 - data["mask_iou"]) + data["track_error"]))
    out = runner.invoke(app, ["score", str(tmp_path / "missing.npy"), str(tmp_path / "ref.npy")])
    assert out.exit_code == 2 and "not found" in out.output
    out = runner.invoke(app, ["score", str(tmp_path / "cand.npy"), str(tmp_path / "ref.npy")])
    assert out.exit_code == 0 and "reward" in out.stdout
