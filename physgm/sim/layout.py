"""Where each particle of a batch lives in the flat device arrays (pure numpy, no warp).

A batch of B objects runs on T CPU threads, thread t owning P2G buffer t. Object b's
particles are cut into ``min(T, N_b // 256)`` contiguous chunks exactly as a run of that
object alone would cut them, and chunk c goes to a buffer of increasing index (the
buffers are summed in index order, and the other buffers hold exact zeros for the object),
so the sums of every grid node, and thus the whole trajectory, are those of the object
alone. Objects with fewer chunks than threads go to the least loaded buffers.

Grid blocks and segments are ordered by substeps per frame, most first: at substep s of a
frame the objects still moving are a prefix of the blocks, and within each thread's range
of particles their segments are a prefix too, so a launch covers only what moves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTICLES_PER_THREAD = 256  # an object gets one more chunk (thread) per this many particles


def chunk_edges(n: int, threads: int) -> np.ndarray:
    """Edges (T_b + 1,) of the contiguous chunks that ``threads`` threads cut n particles into."""
    t = min(threads, max(1, n // PARTICLES_PER_THREAD))
    return np.linspace(0, n, t + 1).astype(int)


@dataclass
class Layout:
    """order: (B,) object index of each grid block (block b holds object order[b]);
    n_sub: (B,) substeps per frame of each block, non-increasing;
    perm: per object, (N_i,) flat index of each of its particles, in its own order;
    pobj: (N,) grid block of each flat particle; starts: (T + 1,) each thread's flat range;
    seg_end: per thread, flat end of each of its segments (increasing);
    seg_nsub: per thread, substeps per frame of each segment's object (non-increasing)."""

    order: np.ndarray
    n_sub: np.ndarray
    perm: list[np.ndarray]
    pobj: np.ndarray
    starts: np.ndarray
    seg_end: list[np.ndarray]
    seg_nsub: list[np.ndarray]

    @property
    def threads(self) -> int:
        return len(self.starts) - 1

    def moving_blocks(self, s: int) -> int:
        """How many grid blocks (a prefix) take substep s."""
        return int(np.count_nonzero(self.n_sub > s))

    def moving_range(self, t: int, s: int) -> int:
        """Length of thread t's prefix of particles whose objects take substep s."""
        k = int(np.count_nonzero(self.seg_nsub[t] > s))
        return int(self.seg_end[t][k - 1] - self.starts[t]) if k else 0


def plan(sizes: list[int], n_sub: list[int], threads: int) -> Layout:
    """The layout of objects of ``sizes`` particles taking ``n_sub`` substeps per frame on
    ``threads`` threads (each object is cut as it would be alone with ``threads``)."""
    sizes = [int(n) for n in sizes]
    order = np.array(sorted(range(len(sizes)), key=lambda i: -int(n_sub[i])), dtype=int)
    load = np.zeros(threads, np.int64)
    segments: list[list[tuple[int, int, int]]] = [[] for _ in range(threads)]  # (block, a, b)
    for block, obj in enumerate(order):
        edges = chunk_edges(sizes[obj], threads)
        k = len(edges) - 1
        # buffers first .. first + k - 1: the window with the least load
        first = min(range(threads - k + 1), key=lambda f: (load[f:f + k].max(), f))
        for c in range(k):
            segments[first + c].append((block, int(edges[c]), int(edges[c + 1])))
            load[first + c] += edges[c + 1] - edges[c]
    perm = [np.empty(n, np.int64) for n in sizes]
    pobj, starts, seg_end, seg_nsub = [], [0], [], []
    offset = 0
    for t in range(threads):
        ends, nsubs = [], []
        for block, a, b in segments[t]:
            perm[order[block]][a:b] = np.arange(offset, offset + b - a)
            pobj.append(np.full(b - a, block, np.int32))
            offset += b - a
            ends.append(offset)
            nsubs.append(int(n_sub[order[block]]))
        starts.append(offset)
        seg_end.append(np.array(ends, np.int64))
        seg_nsub.append(np.array(nsubs, np.int64))
    return Layout(order=order, n_sub=np.array([int(n_sub[i]) for i in order], np.int64),
                  perm=perm, pobj=np.concatenate(pobj) if pobj else np.zeros(0, np.int32),
                  starts=np.array(starts, np.int64), seg_end=seg_end, seg_nsub=seg_nsub)
