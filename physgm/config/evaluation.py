"""Section ``eval``: the held-out stores of a run and how they are scored.

Three disjoint sets of scenes, each synthesised with its own seed: DPO trains on the train
split of ``data.path``; every choice of a setting is made on the *validation* store; the
*final test* store has a seed used for nothing else and is scored once per reported run.
Both are full scenes (views and a GT video), ``val.zarr`` and ``test.zarr`` beside
``data.path`` (runs/<name>/ for the quickstart).
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from physgm.config.sections import _Section

# added to data.seed for the final test store: a seed no other store of a run uses
TEST_SEED_OFFSET = 7919


class EvalConfig(_Section):
    """Held-out evaluation of the w/o vs w/ DPO comparison (learner/evaluate.py)."""

    val_scenes: int = Field(0, ge=0, description="scenes of the validation store "
                            "(val.zarr beside data.path, data.seed + 1) that `physgm run` scores: "
                            "where settings are chosen")
    test_scenes: int = Field(0, ge=0, description="scenes of the final test store "
                             "(test.zarr beside data.path) that `physgm run` scores once: what "
                             "is reported; chooses nothing")
    val_seed: Optional[int] = Field(None, description="seed of the validation store "
                                    "(None: data.seed + 1)")
    test_seed: Optional[int] = Field(None, description="seed of the final test store "
                                     f"(None: data.seed + {TEST_SEED_OFFSET}, used for "
                                     "nothing else)")
    tie_eps: float = Field(1e-3, ge=0, description="videos whose rewards differ by at most "
                           "this are a tie in the win rate (counted apart)")
    curve_every: int = Field(0, ge=0, description="DPO learner steps between snapshots of the "
                             "physics head (runs/<name>/dpo/curve/, plus step 0 and the last "
                             "step) scored on validation scenes after DPO: the learning curve "
                             "of runs/<name>/plots/dpo_curve.png (0 = none)")
    curve_scenes: int = Field(32, ge=1, description="validation scenes each snapshot is "
                              "scored on (cost: snapshots × curve_scenes simulations)")

    def seeds(self, data_seed: int) -> tuple[int, int]:
        """(validation seed, final test seed)."""
        return (data_seed + 1 if self.val_seed is None else self.val_seed,
                data_seed + TEST_SEED_OFFSET if self.test_seed is None else self.test_seed)
