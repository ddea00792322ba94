"""Torch access to a scene store: ``SceneDataset`` (training items), ``collate_views`` and
``load_scene_tensors`` (a whole scene for evaluation and the DPO actors).

An item draws V input views and ``n_targets`` target views from the scene's stored views,
deterministically per (seed, epoch, index): call ``set_epoch(e)`` at the start of each
epoch for fresh draws. Training asks for items as ``dataset[(index, V)]``, V chosen per
batch (``bucket_views``: one V per batch, every V of ``n_views`` equally often; the batch
sampler is ``pretrain.loader.ShardedBatches``); a plain ``dataset[index]`` draws V uniform
in ``n_views`` per item. Targets are views that are not inputs when the scene has enough
stored views (V + n_targets ≤ V_stored); otherwise the missing ones repeat input views.
V is capped at V_stored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from physgm.camera import Camera, plucker_batch
from physgm.gaussians import Gaussians
from physgm.materials import MATERIALS, PARAM_NAMES, PhysParams, normalize

ViewRange = Union[int, tuple[int, int], list]


def _view_range(n_views: ViewRange) -> tuple[int, int]:
    lo, hi = (n_views, n_views) if isinstance(n_views, int) else tuple(n_views)
    if not 1 <= lo <= hi:
        raise ValueError(f"n_views must be an int ≥ 1 or a (min, max) range with "
                         f"1 ≤ min ≤ max, got {n_views!r}")
    return int(lo), int(hi)


def bucket_views(seed: int, batch: int, n_views: ViewRange) -> int:
    """V of the ``batch``-th batch (counted over the whole run, from 0) for a view range
    ``n_views``: each run of k = max − min + 1 consecutive batches holds every V once, in
    an order drawn from (seed, batch // k). Deterministic, the same on every data-parallel
    worker, and exactly balanced over any k·m batches."""
    lo, hi = _view_range(n_views)
    if batch < 0:
        raise ValueError(f"batch must be ≥ 0, got {batch}")
    k = hi - lo + 1
    order = np.random.default_rng([int(seed), batch // k]).permutation(k)
    return lo + int(order[batch % k])


def physics_targets(params: Optional[PhysParams]) -> tuple[int, np.ndarray, np.ndarray]:
    """(material index in ``MATERIALS``, z (P,) float32, mask (P,) bool); (−1, 0, False)
    for None (a real scene without that annotation)."""
    if params is None:
        return -1, np.zeros(len(PARAM_NAMES), np.float32), np.zeros(len(PARAM_NAMES), bool)
    z, mask = normalize(params)
    return MATERIALS.index(params.material), z, mask


def _cameras(K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> list[Camera]:
    return [Camera(torch.from_numpy(np.asarray(k, np.float32)),
                   torch.from_numpy(np.asarray(c, np.float32)), width, height)
            for k, c in zip(K, c2w)]


def _images(pixels: np.ndarray, size: Optional[int]) -> torch.Tensor:
    """(V, H, W, C) uint8 → (V, C, H', W') float32 in [0, 1] (resized to size² if given)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area" if size < x.shape[-1] else "bilinear")
    return x


def _depth(depth: Optional[np.ndarray], views: np.ndarray, shape: tuple[int, int, int],
           size: Optional[int]) -> torch.Tensor:
    """The stored depth (V_stored, H, W) [m] of ``views`` → (V, 1, H', W') float32 (nearest
    neighbour to size², so no pixel mixes object and background); zeros (= unknown) for a
    scene that stores none (real captures)."""
    if depth is None:
        depth = np.zeros(shape, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(depth[views], np.float32))[:, None]
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x


class SceneDataset(torch.utils.data.Dataset):
    """Training items from a scene store.

    Args:
        path: the zarr store.
        split: "train", "val", "test" (root attribute ``splits``) or "all".
        n_views: input views per item: an int or a (min, max) range, drawn uniformly per
            item for ``dataset[index]``; ``dataset[(index, V)]`` takes the batch's V.
        n_targets: target views per item.
        labels: "label" (the annotator's, the training signal) or "true" for
            ``material``/``params_z``/``params_mask`` (every scene of the split must have
            it); ``true_*`` are always the true ones (−1 / all-False when a real scene has
            none).
        seed: base of the per-item draws.
        image_size: resize views to image_size² (intrinsics rescaled); None keeps them.

    Item (a dict): scene_id str; images (V, 3, H, W) float32 in [0, 1]; plucker (V, 6, H, W);
    K (V, 3, 3); c2w (V, 4, 4); depth (V, 1, H, W) expected camera-frame z of the input
    views [m], 0 where unknown; target_images (T, 3, H, W); target_alpha (T, 1, H, W) in
    [0, 1]; target_K (T, 3, 3); target_c2w (T, 4, 4); material long (−1 if unlabelled);
    params_z (P,) float32; params_mask (P,) bool; true_material; true_params_z;
    true_params_mask.
    """

    def __init__(self, path: Union[str, Path], split: str = "train", n_views: ViewRange = (1, 4),
                 n_targets: int = 1, labels: str = "label", seed: int = 0,
                 image_size: Optional[int] = None):
        from physgm.data.store import list_scenes, open_store, scene_attrs, splits

        if labels not in ("label", "true"):
            raise ValueError(f"labels must be 'label' or 'true', got {labels!r}")
        if n_targets < 1:
            raise ValueError(f"n_targets must be ≥ 1, got {n_targets}")
        self.path, self.split, self.labels, self.seed = str(path), split, labels, int(seed)
        self.n_views, self.n_targets = _view_range(n_views), int(n_targets)
        self.image_size = image_size
        self.epoch = 0
        root = open_store(path, "r")
        if split == "all":
            self.ids = list_scenes(root)
        else:
            parts = splits(root)
            if split not in parts:
                raise ValueError(f"split must be one of {', '.join(parts)} or 'all', got {split!r}")
            self.ids = parts[split]
        self._physics = []
        for sid in self.ids:
            attrs = scene_attrs(root, sid)
            true = PhysParams(**attrs["true"]) if attrs.get("true") else None
            label = PhysParams(**attrs["label"]) if attrs.get("label") else None
            if (label if labels == "label" else true) is None:
                raise ValueError(f"scene {sid} in {path} has no '{labels}' attribute: use "
                                 f"labels='{'true' if labels == 'label' else 'label'}' or add "
                                 "labels.json to its capture (docs/data.md, 'Real data')")
            self._physics.append((physics_targets(label if labels == "label" else true),
                                  physics_targets(true)))
        self._root = None

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item draws (call once per epoch, in every DataLoader worker)."""
        self.epoch = int(epoch)

    def __getstate__(self):  # DataLoader workers re-open the store themselves
        state = dict(self.__dict__)
        state["_root"] = None
        return state

    def _open(self):
        if self._root is None:
            from physgm.data.store import open_store

            self._root = open_store(self.path, "r")
        return self._root

    def choose_views(self, index: int, n_stored: int, views: Optional[int] = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(input view indices (V,), target view indices (T,)) for item ``index``; V is
        ``views`` when given (the batch's), else drawn uniform in ``n_views``."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        lo, hi = self.n_views
        drawn = int(rng.integers(lo, hi + 1))
        if views is not None and views < 1:
            raise ValueError(f"views must be ≥ 1, got {views}")
        v = min(drawn if views is None else int(views), n_stored)
        perm = rng.permutation(n_stored)
        inputs, rest = perm[:v], perm[v:]
        if len(rest) >= self.n_targets:
            targets = rest[:self.n_targets]
        else:
            targets = np.concatenate([rest, rng.choice(inputs, self.n_targets - len(rest))])
        return inputs, targets

    def __getitem__(self, key: Union[int, tuple[int, int]]) -> dict:
        """``dataset[index]`` (V drawn per item) or ``dataset[(index, V)]`` (V given)."""
        index, views = (key if isinstance(key, (tuple, list)) else (key, None))
        index = int(index)
        if not 0 <= index < len(self.ids):
            raise IndexError(f"index {index} out of range for {len(self.ids)} scenes")
        from physgm.data.store import read_scene

        sid = self.ids[index]
        s = read_scene(self._open(), sid, arrays=("images", "alpha", "depth", "K", "c2w"))
        h, w = s.images.shape[1:3]
        inputs, targets = self.choose_views(index, s.images.shape[0], views)
        size = self.image_size
        alpha = s.alpha if s.alpha is not None else np.full(s.images.shape[:3], 255, np.uint8)

        def cams(idx):
            cs = _cameras(s.K[idx], s.c2w[idx], w, h)
            return [c.scaled(size, size) for c in cs] if size and (w, h) != (size, size) else cs

        in_cams, tgt_cams = cams(inputs), cams(targets)
        (mat, z, mask), (tmat, tz, tmask) = self._physics[index]
        return {
            "scene_id": sid,
            "images": _images(s.images[inputs], size),
            "plucker": plucker_batch(in_cams),
            "K": torch.stack([c.K for c in in_cams]),
            "c2w": torch.stack([c.c2w for c in in_cams]),
            "depth": _depth(s.depth, inputs, s.images.shape[:3], size),
            "target_images": _images(s.images[targets], size),
            "target_alpha": _images(alpha[targets][..., None], size),
            "target_K": torch.stack([c.K for c in tgt_cams]),
            "target_c2w": torch.stack([c.c2w for c in tgt_cams]),
            "material": torch.tensor(mat, dtype=torch.long),
            "params_z": torch.from_numpy(z), "params_mask": torch.from_numpy(mask),
            "true_material": torch.tensor(tmat, dtype=torch.long),
            "true_params_z": torch.from_numpy(tz), "true_params_mask": torch.from_numpy(tmask),
        }


_PER_VIEW = ("images", "plucker", "K", "c2w", "depth")


def collate_views(batch: list[dict]) -> dict:
    """Stack items of one V into a batch: images (B, V, 3, H, W), plucker (B, V, 6, H, W),
    … ; scene_id a list. Items asked with one V per batch (``dataset[(index, V)]``) share
    it; only where a scene stores fewer views than V (or items drew V each) are all cut to
    the smallest V of the batch."""
    if not batch:
        raise ValueError("collate_views needs at least one item")
    v = min(item["images"].shape[0] for item in batch)
    out = {"scene_id": [item["scene_id"] for item in batch]}
    for key in batch[0]:
        if key == "scene_id":
            continue
        out[key] = torch.stack([item[key][:v] if key in _PER_VIEW else item[key]
                                for item in batch])
    return out


def load_scene_tensors(path: Union[str, Path], scene_id: str) -> dict:
    """Everything stored for one scene, as tensors, for evaluation and the DPO actors.

    Returns a dict: scene_id; images (V, 3, H, W) float32 in [0, 1]; alpha (V, 1, H, W);
    plucker (V, 6, H, W); K (V, 3, 3); c2w (V, 4, 4); cameras [Camera]; video (T, H, W, 3)
    uint8 numpy (the GT video); video_alpha (T, H, W) uint8 numpy or None; video_camera
    Camera; particles (N, 3) float32 tensor [m] or None; volumes (N,) [m³] or None;
    gaussians Gaussians (rest pose, Gaussian i on particle i) or None; velocity (3,) float32
    numpy [m/s]; true, label: PhysParams or None; material, params_z, params_mask (true
    ones, as in SceneDataset); sim: dict (the ``sim`` attribute, see ``scene_mpm_config``).
    """
    from physgm.data.store import StoreError, open_store, read_scene

    s = read_scene(open_store(path, "r"), scene_id)
    if s.video is None:
        raise StoreError(f"scene {scene_id!r} of {path} has no GT video (an image-only scene, "
                         "`physgm data synth --image-only`): evaluation and DPO need full "
                         "scenes")
    v, h, w = s.images.shape[:3]
    th, tw = s.video.shape[1:3]
    cameras = _cameras(s.K, s.c2w, w, h)
    alpha = s.alpha if s.alpha is not None else np.full((v, h, w), 255, np.uint8)
    g = None
    if s.gaussians is not None:
        g = Gaussians(*(torch.from_numpy(np.asarray(s.gaussians[k], np.float32))
                        for k in ("means", "scales", "quats", "opacities", "colors")))
    mat, z, mask = physics_targets(s.true)
    return {
        "scene_id": scene_id, "images": _images(s.images, None),
        "alpha": _images(alpha[..., None], None),
        "plucker": plucker_batch(cameras), "K": torch.from_numpy(s.K.astype(np.float32)),
        "c2w": torch.from_numpy(s.c2w.astype(np.float32)), "cameras": cameras,
        "video": s.video, "video_alpha": s.video_alpha,
        "video_camera": _cameras(s.video_K[None], s.video_c2w[None], tw, th)[0],
        "particles": None if s.particles is None else torch.from_numpy(s.particles),
        "volumes": None if s.volumes is None else torch.from_numpy(s.volumes),
        "gaussians": g,
        "velocity": np.asarray(s.sim.get("initial_velocity", [0.0, 0.0, 0.0]), np.float32),
        "true": s.true, "label": s.label, "material": torch.tensor(mat, dtype=torch.long),
        "params_z": torch.from_numpy(z), "params_mask": torch.from_numpy(mask), "sim": s.sim,
    }


def scene_mpm_config(sim: dict, base=None):
    """The MPMConfig that reproduces a scene's GT video: ``base`` (default MPMConfig())
    with the scene's grid_res, domain_size, frame_dt, n_frames, boundary, friction and
    gravity. The substep stays ``base``'s (None: chosen per parameter set by the CFL bound,
    as for the GT video)."""
    from physgm.config import MPMConfig

    base = base or MPMConfig()
    keys = ("grid_res", "domain_size", "frame_dt", "n_frames", "boundary", "friction", "gravity")
    missing = [k for k in ("grid_res", "domain_size", "frame_dt", "n_frames") if k not in sim]
    if missing:
        raise ValueError(f"scene sim attribute lacks {missing}: a real scene needs them to be "
                         "re-simulated (docs/data.md, 'Real data')")
    return MPMConfig.model_validate({**base.model_dump(), **{k: sim[k] for k in keys if k in sim}})
