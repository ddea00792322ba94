"""Parameter sets of a stored scene simulated together, rendered and scored in-process against
the scene's GT video: what the w/o-vs-w/ DPO evaluation and the reward sweep do (the DPO
actors score their K videos through the reward service instead)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from physgm.dpo import Candidate, simulate_and_render
from physgm.materials import PhysParams

if TYPE_CHECKING:
    from physgm.sim import SimResult

from .scorer import RewardResult, RewardScorer


def simulate_and_score(scene, scorer: RewardScorer, materials, zs, width: int, height: int,
                       backend: str = "auto", keep_positions: bool = False,
                       reference: Optional[PhysParams] = None
                       ) -> tuple[list[tuple[Candidate, RewardResult]], Optional[SimResult]]:
    """[(Candidate, RewardResult)] of K parameter sets (materials (K,), zs (K, P)) on
    ``scene`` (a ``runtime.scenes.RolloutScene``), simulated in one batch (with
    ``reference`` physics beside them, whose ``SimResult`` is returned) and scored together;
    ``scorer``'s reference video for ``scene.scene_id`` must be prepared. A failed
    simulation gets the scorer's failure reward."""
    cands, ref = simulate_and_render(scene, materials, zs, width, height, backend,
                                     keep_positions, reference)
    ok = [c for c in cands if c.video is not None]
    scored = iter(scorer.score_batch(scene.scene_id, [c.video for c in ok]) if ok else [])
    return [(c, scorer.failed(c.status, c.message) if c.video is None else next(scored))
            for c in cands], ref
