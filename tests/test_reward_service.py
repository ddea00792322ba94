"""Ray Serve RewardService + RewardClient on a local 2-CPU Ray (classical backend)."""
import os

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray")
from ray import serve  # noqa: E402

from reward import RewardScorer  # noqa: E402
from reward.service import RewardClient, reward_app, start_reward_service  # noqa: E402
from reward.synthetic import falling_disc  # noqa: E402

T, S = 16, 64
CFG = {"backend": "classical", "max_batch_size": 4, "replicas": 1, "num_cpus": 1}


@pytest.fixture(scope="module")
def handle():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield start_reward_service(CFG)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def ref():
    return falling_disc(T, S)


def test_scores_a_batch_like_the_local_scorer(handle, ref):
    client = RewardClient(handle, CFG)
    cands = [ref, falling_disc(T, S, shift=(3, 0)), falling_disc(T, S, delay=2), ref[:8]]
    remote = client.score_candidates("scene-0", ref, cands)
    local = RewardScorer(CFG)
    local.prepare_reference("scene-0", ref)
    assert remote == local.score_batch("scene-0", cands)
    assert remote[0].reward == 0.0 and remote[3].status == "short"
    assert client.errors == 0
    stats = client.service_stats()
    assert stats["references"] == 1                   # one reference for the whole scene
    assert stats["batches"] < stats["requests"]       # requests were grouped
    client.score_candidates("scene-0", ref, cands[:2])
    assert client.service_stats()["references"] == 1  # cached across calls


def test_survives_bad_requests(handle, ref):
    client = RewardClient(handle, CFG)
    good = falling_disc(T, S, shift=(2, 0))
    bad = [np.zeros((T, 32, 32, 3), np.uint8), ref.astype(np.float32), "junk", None,
           np.zeros_like(ref)]
    results = client.score_candidates("scene-1", ref, bad + [good])
    assert [r.status for r in results] == ["invalid"] * 4 + ["blank", "ok"]
    assert all(r.reward == client.failure_reward for r in results[:5])
    assert results[-1].reward > client.failure_reward
    assert client.errors == 4
    # a bad reference fails only its own scene
    results = client.score_candidates("scene-2", np.zeros((T, S, S, 3), np.uint8), [good])
    assert results[0].status == "invalid" and "reward.background" in results[0].error
    assert client.errors == 5
    # malformed raw requests batched together with a good one fail alone
    good_req = {"scene_id": "scene-1", "digest": None, "reference": None, "candidate": ref}
    raw = [handle.score.remote(r) for r in ("junk", {"scene_id": None, "candidate": ref},
                                            {"scene_id": "scene-1"}, good_req)]
    replies = [r.result(timeout_s=60) for r in raw]
    assert [d["status"] for d in replies] == ["invalid"] * 3 + ["ok"]
    assert replies[-1]["reward"] == 0.0 and "scene_id" in replies[1]["error"]
    # the replica is still healthy and serving
    assert client.score_candidates("scene-1", ref, [ref])[0].reward == 0.0


def test_lost_request_gets_failure_reward(handle, ref):
    client = RewardClient(handle, CFG, timeout_s=30)

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("replica gone")

    broken = RewardClient(Broken(), CFG)
    res = broken.score_candidates("scene-0", ref, [ref, ref])
    assert [r.status for r in res] == ["error", "error"] and broken.errors == 2
    assert res[0].reward == broken.failure_reward
    assert client.score_candidates("scene-0", ref, [ref])[0].reward == 0.0


def test_live_settings_reach_the_replicas(handle, ref):
    client = RewardClient(handle, CFG)
    cand = falling_disc(T, S, delay=2)
    before = client.score_candidates("scene-3", ref, [cand])[0]
    assert client.service_stats()["settings"]["w_mask"] == 1.0
    handle2 = serve.run(reward_app(CFG, user_config={"w_mask": 3.0, "max_batch_size": 2}),
                        name="reward", route_prefix=None, blocking=False)
    client2 = RewardClient(handle2, {**CFG, "w_mask": 3.0})
    after = client2.score_candidates("scene-3", ref, [cand, ref, cand])
    stats = client2.service_stats()
    assert stats["settings"]["w_mask"] == 3.0 and stats["settings"]["max_batch_size"] == 2
    assert after[0].mask_iou == before.mask_iou
    assert after[0].reward == pytest.approx(-(3.0 * (1 - after[0].mask_iou) + after[0].track_error))
    assert after[1].reward == 0.0
    assert client2.failure_reward == -4.0
    with pytest.raises(ValueError, match="user_config"):
        reward_app(CFG, user_config={"grid_size": 3})   # needs new models: not a live setting


def test_health_check_trips_after_repeated_backend_errors(ref):
    from reward.service import MAX_CONSECUTIVE_ERRORS, RewardService

    replica = RewardService.func_or_class(CFG)         # the class itself, outside Serve
    replica.check_health()
    failed = replica.scorer.failed("error", "RuntimeError: out of memory")
    for _ in range(MAX_CONSECUTIVE_ERRORS):
        replica._count(failed)
    with pytest.raises(RuntimeError, match="in a row"):
        replica.check_health()
    replica._count(replica.scorer.failed("invalid", "bad input"))  # says nothing of the model
    with pytest.raises(RuntimeError):
        replica.check_health()
    replica._count(replica.scorer.score(ref, ref))                  # the backend works again
    replica.check_health()
    assert replica.counters["errors"] == MAX_CONSECUTIVE_ERRORS + 1
    assert replica.counters["invalid"] == 1
