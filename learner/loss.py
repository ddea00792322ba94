"""The DPO loss in TRL's convention, under the name the contracts give it (docs/architecture.md).

It is defined with the rest of the algorithm on one page, ``physgm/dpo.py`` (step 5 there),
so that the actors and the learner share one definition; this module only names it.
"""
from physgm.dpo import LOSS_TYPES, dpo_loss, preference_metrics

__all__ = ["LOSS_TYPES", "dpo_loss", "preference_metrics"]
