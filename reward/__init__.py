"""Reward service: score simulated videos against the ground-truth video.

    reward = −(w_mask · (1 − mIoU) + w_track · track_error)   (≤ 0, 0 = identical)

Backends "classical" (background difference + Lucas–Kanade, CPU) and "sam2_cotracker"
(SAM-2 masks + CoTracker3 tracks). ``reward.service`` holds the Ray Serve deployment;
importing this package does not import Ray.
"""
from .scorer import RewardResult, RewardScorer, reward_config, score

__all__ = ["RewardResult", "RewardScorer", "reward_config", "score"]
