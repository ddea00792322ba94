"""Reference cache: the ground-truth side of the reward (masks, query points, tracks) is
computed once per scene and reused for all K candidates of that scene.

Entries are keyed by the scene id (or, without one, by the video's content hash) and carry
the content hash, so a scene id that comes back with a different video is recomputed
rather than served stale. Least-recently-used entries are evicted beyond ``capacity``.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


def video_digest(video: np.ndarray, alpha: np.ndarray | None = None) -> str:
    """Content hash of a ``(T, H, W, 3) uint8`` video (and its optional ``(T, H, W)`` alpha)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((video.shape, str(video.dtype))).encode())
    h.update(np.ascontiguousarray(video).data)
    if alpha is not None:
        h.update(np.ascontiguousarray(alpha, dtype=bool).data)
    return h.hexdigest()


@dataclass(frozen=True)
class ReferenceData:
    """Everything the reward needs from a ground-truth video.

    shape: (T, H, W) of the video; masks ``(T, H, W)`` bool; queries ``(N, 2)`` (x, y) px on
    the first-frame object; tracks ``(T, N, 2)`` px; visible ``(T, N)`` bool.
    """

    digest: str
    shape: tuple[int, int, int]
    masks: np.ndarray
    queries: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray


class ReferenceCache:
    """LRU map ``key → ReferenceData`` with hit/miss counters."""

    def __init__(self, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"cache capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, ReferenceData] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, digest: str | None = None) -> ReferenceData | None:
        """The entry for ``key`` (if ``digest`` is given, only when it matches)."""
        item = self._items.get(key)
        if item is None or (digest is not None and item.digest != digest):
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def has(self, key: str, digest: str | None = None) -> bool:
        """Like ``get`` but without touching the counters or the LRU order."""
        item = self._items.get(key)
        return item is not None and (digest is None or item.digest == digest)

    def put(self, key: str, item: ReferenceData) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
