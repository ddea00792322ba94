"""Resumable, sharded batches of scenes for data-parallel training.

Epoch e's order is a permutation of the N scenes drawn from ``seed + e``; worker r of W
takes ``perm[r::W]`` cut to ⌊N/W⌋ (every worker gets the same number of batches), split
into ⌊⌊N/W⌋ / B⌋ batches of B. The position (epoch, index) therefore names the next batch
exactly, and a resumed run restarts there without reading the skipped scenes.

With ``views`` (min, max), each batch has one input view count V
(``physgm.data.dataset.bucket_views`` of the batch's number e·per_epoch + index): every
worker uses the same V at the same step, and every V of the range comes equally often
(exactly, over each run of max − min + 1 batches). Its items are then ``(scene, V)``
keys, which ``SceneDataset`` reads with that V.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader


class ShardedBatches:
    """Batches of scene indices for worker ``rank`` of ``world`` (see the module docstring)."""

    def __init__(self, n_items: int, batch_size: int, rank: int = 0, world: int = 1,
                 seed: int = 0, views: Optional[tuple[int, int]] = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        if views is not None and not 1 <= views[0] <= views[1]:
            raise ValueError(f"views must be (min, max) with 1 ≤ min ≤ max, got {views}")
        self.n_items, self.batch_size = int(n_items), int(batch_size)
        self.rank, self.world, self.seed = rank, world, int(seed)
        self.views = None if views is None else (int(views[0]), int(views[1]))
        if self.per_epoch < 1:
            raise ValueError(f"{n_items} training scenes cannot fill one batch of {batch_size} "
                             f"on each of {world} worker(s): lower pretrain.batch_size or "
                             "pretrain.num_workers, or synthesise more scenes (data.n_scenes)")

    @property
    def per_epoch(self) -> int:
        """Batches per epoch of this worker."""
        return (self.n_items // self.world) // self.batch_size

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of this worker in ``epoch``, in order."""
        gen = torch.Generator().manual_seed(self.seed + int(epoch))
        perm = torch.randperm(self.n_items, generator=gen).tolist()
        shard = perm[self.rank::self.world][: self.n_items // self.world]
        b = self.batch_size
        return [shard[i * b:(i + 1) * b] for i in range(self.per_epoch)]

    def batch_views(self, epoch: int, index: int) -> Optional[int]:
        """V of batch ``index`` of ``epoch`` (None without ``views``)."""
        if self.views is None:
            return None
        from physgm.data.dataset import bucket_views

        return bucket_views(self.seed, int(epoch) * self.per_epoch + int(index), self.views)

    def keyed_batches(self, epoch: int) -> list[list]:
        """``epoch_batches`` with each scene index keyed by its batch's V, ``(index, V)``
        (plain indices without ``views``)."""
        batches = self.epoch_batches(epoch)
        if self.views is None:
            return batches
        return [[(i, self.batch_views(epoch, j)) for i in batch]
                for j, batch in enumerate(batches)]

    def advance(self, epoch: int, index: int) -> tuple[int, int]:
        """The position after consuming batch ``index`` of ``epoch``."""
        return (epoch, index + 1) if index + 1 < self.per_epoch else (epoch + 1, 0)


def stream(dataset, batches: ShardedBatches, epoch: int = 0, index: int = 0,
           collate: Optional[Callable] = None, workers: int = 0
           ) -> Iterator[tuple[int, int, dict]]:
    """Endless (epoch, index, batch) from position (epoch, index) on. ``dataset`` is
    map-style (with ``batches.views``, indexed by ``(scene, V)``); its ``set_epoch(e)`` (if
    any) is called before each epoch's first batch so per-item randomness (views drawn)
    depends on the epoch, not on the order of reading."""
    while True:
        order = batches.keyed_batches(epoch)[index:]
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_sampler=order, collate_fn=collate,
                            num_workers=workers, persistent_workers=False)
        for i, batch in enumerate(loader, start=index):
            yield epoch, i, batch
        epoch, index = epoch + 1, 0


def open_scenes(path: str | Path, split: str, n_views: tuple[int, int], n_targets: int,
                seed: int, labels: str = "label", image_size: Optional[int] = None):
    """``physgm.data.dataset.SceneDataset`` (views resized to ``image_size``², the model's
    input size) with a message that says what to run when the store is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no scene store at {path}: `physgm run` makes it (its data "
                                "stage), or `physgm data synth` (`physgm data synth "
                                "--pretrain` for the image-only pretraining store of "
                                "data.pretrain_scenes)")
    from physgm.data.dataset import SceneDataset

    ds = SceneDataset(str(path), split=split, n_views=tuple(n_views), n_targets=n_targets,
                      labels=labels, seed=seed, image_size=image_size)
    if len(ds) == 0:
        raise ValueError(f"split '{split}' of {path} has no scenes; synthesise more scenes or "
                         "change data.val_fraction / data.test_fraction")
    return ds


def collate_fn():
    """The data package's collate function for batches of scenes."""
    from physgm.data.dataset import collate_views

    return collate_views
