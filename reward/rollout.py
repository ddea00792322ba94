"""One parameter set of a stored scene simulated, rendered and scored in-process against the
scene's GT video: what the w/o-vs-w/ DPO evaluation and the reward sweep do per video (the
DPO actors score K videos at once through the reward service instead)."""
from __future__ import annotations

import numpy as np

from physgm.dpo import Candidate, simulate_and_render

from .scorer import RewardResult, RewardScorer


def simulate_and_score(scene, scorer: RewardScorer, material: int, z: np.ndarray, width: int,
                       height: int, backend: str = "auto", keep_positions: bool = False
                       ) -> tuple[Candidate, RewardResult]:
    """(Candidate, RewardResult) of one parameter set on ``scene`` (a
    ``runtime.scenes.RolloutScene``); ``scorer``'s reference for ``scene.scene_id`` must be
    prepared. A failed simulation gets the scorer's failure reward."""
    cand = simulate_and_render(scene, material, z, width, height, backend, keep_positions)
    res = (scorer.failed(cand.status, cand.message) if cand.video is None
           else scorer.score_batch(scene.scene_id, [cand.video])[0])
    return cand, res
