"""The zarr (v3) scene store: the one place that knows its layout (docs/data.md).

    <store>/                       root attributes: format, splits {train, val, test: [ids]},
                                   split_fractions, generator (config of `data synth`)
      scenes/<id>/                 attributes: true, label, sim, shape, seed, appearance,
                                   source, complete (written last)
        images     (V, H, W, 3) uint8    input views, RGB
        alpha      (V, H, W)    uint8    their masks (0..255)
        depth      (V, H, W)    float32  their expected camera-frame z [m] (0 where the
                                         mask is under 5 %; synthetic only)
        K          (V, 3, 3)    float32  intrinsics [px]
        c2w        (V, 4, 4)    float32  camera-to-world (OpenCV axes) [m]
        video      (T, H, W, 3) uint8    ground-truth video (T = n_frames + 1)
        video_alpha (T, H, W)   uint8    its masks
        video_K    (3, 3)       float32
        video_c2w  (4, 4)       float32   (the four video arrays: none in an image-only
                                          scene, see ``has_video`` / ``is_image_only``)
        particles  (N, 3)       float32  rest-pose MPM particles [m]  (synthetic only)
        volumes    (N,)         float32  particle volumes [m³]        (synthetic only)
        gaussians/{means (N,3), scales (N,3), quats (N,4), opacities (N,), colors (N,3)}
                                float32  Gaussian i sits on particle i (synthetic only)

Arrays are Blosc-lz4 compressed, one chunk per array (a video is one chunk per scene).
A scene is *complete* once its ``complete`` attribute is True; writers set it last, so a
scene interrupted mid-write is recognised and redone.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from physgm.materials import PhysParams

FORMAT = "physgm-scenes/1"
SCENES = "scenes"
GAUSSIAN_FIELDS = ("means", "scales", "quats", "opacities", "colors")
SPLITS = ("train", "val", "test")
REQUIRED = ("images", "K", "c2w")
VIDEO = ("video", "video_K", "video_c2w")   # all or none (none: an image-only scene)
ARRAYS = REQUIRED + VIDEO + ("alpha", "depth", "video_alpha", "particles", "volumes",
                             "trajectory")


class StoreError(ValueError):
    """A store or scene that is missing or does not follow the layout; says what to do."""


@dataclass
class Scene:
    """One scene in memory (numpy arrays; shapes as in the module docstring).

    ``true``/``label``: PhysParams or None (real data may have neither); ``particles``,
    ``volumes`` and ``gaussians`` (dict of the five Gaussian fields) are None for real data;
    ``video``, ``video_K``, ``video_c2w`` (and ``video_alpha``) are None for an image-only
    scene (``physgm data synth --image-only``); ``trajectory`` (T, N, 3) [m], the GT
    simulation's particle positions at the T video frames (synthetic full scenes; None in
    stores written before it and for real data), spares evaluation a re-simulation.
    """

    images: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    video: Optional[np.ndarray]
    video_K: Optional[np.ndarray]
    video_c2w: Optional[np.ndarray]
    alpha: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    video_alpha: Optional[np.ndarray] = None
    particles: Optional[np.ndarray] = None
    volumes: Optional[np.ndarray] = None
    gaussians: Optional[dict[str, np.ndarray]] = None
    trajectory: Optional[np.ndarray] = None
    true: Optional[PhysParams] = None
    label: Optional[PhysParams] = None
    sim: dict = field(default_factory=dict)
    shape: dict = field(default_factory=dict)
    appearance: dict = field(default_factory=dict)
    seed: Optional[int] = None
    source: str = "synthetic"
    extra: dict = field(default_factory=dict)
    scene_id: str = ""

    def validate(self) -> None:
        """Raise StoreError naming the first array whose shape or dtype breaks the layout."""
        v, h, w = self.images.shape[:3] if self.images.ndim == 4 else (-1, -1, -1)
        absent = [n for n in VIDEO if getattr(self, n) is None]
        if absent and len(absent) < len(VIDEO) or self.video is None and \
                self.video_alpha is not None:
            raise StoreError(f"scene {self.scene_id!r}: video, video_K and video_c2w come "
                             "together, and video_alpha only with them (an image-only "
                             f"scene has none of the four); missing {absent}")
        video = self.video if self.video is not None else np.zeros((0,), np.uint8)
        t = video.shape[0] if video.ndim == 4 else -1
        th, tw = video.shape[1:3] if video.ndim == 4 else (-1, -1)
        checks = [("images", self.images, (v, h, w, 3), np.uint8),
                  ("K", self.K, (v, 3, 3), None), ("c2w", self.c2w, (v, 4, 4), None),
                  ("video", self.video, (t, th, tw, 3), np.uint8),
                  ("video_K", self.video_K, (3, 3), None),
                  ("video_c2w", self.video_c2w, (4, 4), None),
                  ("alpha", self.alpha, (v, h, w), np.uint8),
                  ("depth", self.depth, (v, h, w), None),
                  ("video_alpha", self.video_alpha, (t, th, tw), np.uint8)]
        n = -1 if self.particles is None else len(self.particles)
        checks += [("particles", self.particles, (n, 3), None),
                   ("volumes", self.volumes, (n,), None),
                   ("trajectory", self.trajectory, (t, n, 3), None)]
        if self.gaussians is not None:
            gshape = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
                      "colors": (n, 3)}
            for name in GAUSSIAN_FIELDS:
                if name not in self.gaussians:
                    raise StoreError(f"scene {self.scene_id!r}: gaussians lack '{name}'")
                checks.append((f"gaussians/{name}", self.gaussians[name], gshape[name], None))
        for name, arr, shape, dtype in checks:
            if arr is None:
                continue
            if min(shape) < 0 or tuple(arr.shape) != shape:
                raise StoreError(f"scene {self.scene_id!r}: {name} must have shape {shape} "
                                 f"(see docs/data.md), got {tuple(arr.shape)}")
            if dtype is not None and arr.dtype != dtype:
                raise StoreError(f"scene {self.scene_id!r}: {name} must be {np.dtype(dtype)}, "
                                 f"got {arr.dtype}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise StoreError(f"scene {self.scene_id!r}: {name} has NaN or Inf values")


def _compressors():
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="lz4", clevel=5)]


def open_store(path: str | Path, mode: str = "r"):
    """Open (``"r"``, ``"r+"``, ``"a"``) or create (``"w"``: replaces) a store; returns the
    root ``zarr.Group``. Reading a path that is not a store raises StoreError."""
    import zarr

    path = Path(path)
    if mode not in ("r", "r+", "a", "w"):
        raise ValueError(f"mode must be r, r+, a or w, got {mode!r}")
    if mode in ("r", "r+") and not (path / "zarr.json").is_file():
        raise StoreError(f"no scene store at {path}: create one with `physgm data synth --out "
                         f"{path}` or `physgm data convert FOLDER --out {path}`")
    try:
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as err:  # noqa: BLE001 - zarr raises several types for a bad store
        raise StoreError(f"cannot open {path} as a zarr v3 scene store: {err}") from None
    if mode in ("a", "w"):
        if "format" not in root.attrs:
            root.attrs["format"] = FORMAT
        root.require_group(SCENES)
    elif root.attrs.get("format") != FORMAT:
        raise StoreError(f"{path} is a zarr store but not a physgm scene store (format "
                         f"{root.attrs.get('format')!r}, expected {FORMAT!r})")
    return root


def _params_attr(p: Optional[PhysParams]) -> Optional[dict]:
    return None if p is None else p.model_dump(mode="json", exclude_none=True)


def write_scene(root, scene_id: str, scene: Scene) -> None:
    """Write ``scene`` as ``scenes/<scene_id>`` (replacing an existing one); marks it
    complete last."""
    scene.scene_id = scene_id
    scene.validate()
    scenes = root.require_group(SCENES)
    if scene_id in scenes:
        del scenes[scene_id]
    g = scenes.create_group(scene_id)
    arrays = {"images": scene.images, "alpha": scene.alpha, "depth": scene.depth,
              "K": scene.K, "c2w": scene.c2w,
              "video": scene.video, "video_alpha": scene.video_alpha, "video_K": scene.video_K,
              "video_c2w": scene.video_c2w, "particles": scene.particles,
              "volumes": scene.volumes, "trajectory": scene.trajectory}
    if scene.gaussians is not None:
        arrays.update({f"gaussians/{k}": scene.gaussians[k] for k in GAUSSIAN_FIELDS})
    arrays = {name: np.ascontiguousarray(arr if arr.dtype == np.uint8 else
                                         arr.astype(np.float32))
              for name, arr in arrays.items() if arr is not None}
    for parent in {name.rpartition("/")[0] for name in arrays} - {""}:
        g.require_group(parent)
    _create_arrays(root.store, f"{SCENES}/{scene_id}", arrays)
    g.attrs.update({"true": _params_attr(scene.true), "label": _params_attr(scene.label),
                    "sim": scene.sim, "shape": scene.shape, "appearance": scene.appearance,
                    "seed": scene.seed, "source": scene.source, **scene.extra})
    g.attrs["complete"] = True


def _create_arrays(store, path: str, arrays: dict[str, np.ndarray]) -> None:
    """Create ``path/<name>`` for every array at once, one chunk each: a scene's ~15 small
    writes run concurrently on zarr's event loop (one after the other a scene's writes took
    0.13–0.17 s, the synthesis's bottleneck for image-only scenes; together 0.10–0.11 s)."""
    import asyncio

    import zarr.api.asynchronous as za
    from zarr.core.sync import sync

    async def write() -> None:
        await asyncio.gather(*(za.create_array(store, name=f"{path}/{name}", data=arr,
                                               chunks=arr.shape or (1,),
                                               compressors=_compressors(), zarr_format=3)
                               for name, arr in arrays.items()))

    sync(write())


def _group(root, scene_id: str):
    scenes = root[SCENES] if SCENES in root else None
    if scenes is None or scene_id not in scenes:
        raise StoreError(f"scene {scene_id!r} not in the store; `physgm data show --help` and "
                         f"list_scenes() list the scenes it holds")
    return scenes[scene_id]


def is_complete(root, scene_id: str) -> bool:
    scenes = root[SCENES] if SCENES in root else None
    return scenes is not None and scene_id in scenes and \
        bool(scenes[scene_id].attrs.get("complete", False))


def read_scene(root, scene_id: str, arrays: Optional[tuple[str, ...]] = None) -> Scene:
    """Read ``scenes/<scene_id>``. ``arrays`` limits what is read (default: everything);
    arrays not read are None, or empty (0,) for images, K, c2w, video, video_K and
    video_c2w; arrays not stored are None (an image-only scene: the video ones)."""
    g = _group(root, scene_id)
    if not g.attrs.get("complete", False):
        raise StoreError(f"scene {scene_id!r} is incomplete (interrupted write): re-run "
                         "`physgm data synth` with the same --out to redo it")

    def get(name: str):
        if arrays is not None and name not in arrays and name.split("/")[0] not in arrays:
            return None
        try:
            return np.asarray(g[name][...])
        except KeyError:
            return None

    gaussians = None
    if "gaussians" in g and (arrays is None or "gaussians" in arrays):
        gaussians = {k: get(f"gaussians/{k}") for k in GAUSSIAN_FIELDS}
    a = {name: get(name) for name in ARRAYS}
    empty = np.zeros((0,), np.float32)
    required = {n: (a[n] if a[n] is not None else empty) for n in REQUIRED}
    # video arrays: empty when not read, None when the scene stores none (image-only)
    video = {n: a[n] if a[n] is not None or arrays is None or n in arrays else empty
             for n in VIDEO}
    attrs = dict(g.attrs)
    known = {"true", "label", "sim", "shape", "appearance", "seed", "source", "complete"}
    return Scene(
        **required, **video, alpha=a["alpha"], depth=a["depth"], video_alpha=a["video_alpha"],
        particles=a["particles"], volumes=a["volumes"], gaussians=gaussians,
        trajectory=a["trajectory"],
        true=PhysParams(**attrs["true"]) if attrs.get("true") else None,
        label=PhysParams(**attrs["label"]) if attrs.get("label") else None,
        sim=attrs.get("sim") or {}, shape=attrs.get("shape") or {},
        appearance=attrs.get("appearance") or {}, seed=attrs.get("seed"),
        source=attrs.get("source", "synthetic"),
        extra={k: v for k, v in attrs.items() if k not in known}, scene_id=scene_id)


def scene_attrs(root, scene_id: str) -> dict:
    """The scene group's attributes (true, label, sim, …) without reading any array."""
    return dict(_group(root, scene_id).attrs)


def has_video(root, scene_id: str) -> bool:
    """Whether the scene stores a GT video (False for an image-only scene)."""
    return "video" in _group(root, scene_id)


def is_image_only(root) -> bool:
    """Whether the store was written by ``physgm data synth --image-only`` (root attribute
    ``generator``: its scenes have no GT video)."""
    generator = root.attrs.get("generator") or {}
    return bool((generator.get("data") or {}).get("image_only", False))


def require_videos(root, path, what: str = "DPO and its evaluation") -> None:
    """Raise StoreError when the store at ``path`` is image-only: ``what`` needs GT videos."""
    if is_image_only(root):
        raise StoreError(f"{path} is an image-only store (`physgm data synth --image-only`, "
                         f"no GT videos, for pretraining): {what} need full scenes with a GT "
                         "video; point data.path (or --data) at a store written without "
                         "--image-only")


def list_scenes(root, complete_only: bool = True) -> list[str]:
    """Sorted ids of the stored scenes (only complete ones by default)."""
    if SCENES not in root:
        return []
    scenes = root[SCENES]
    ids = sorted(scenes.group_keys())
    return [i for i in ids if not complete_only or scenes[i].attrs.get("complete", False)]


def delete_scene(root, scene_id: str) -> None:
    scenes = root[SCENES]
    if scene_id in scenes:
        del scenes[scene_id]


def assign_splits(ids: list[str], val_fraction: float, test_fraction: float,
                  seed: int = 0) -> dict[str, list[str]]:
    """Split ``ids`` into train/val/test: rank ids by a seeded hash, the first
    round(n·test_fraction) go to test, the next round(n·val_fraction) to val (at least one
    each when the fraction is > 0 and there are ≥ 3 ids), the rest to train. Disjoint and
    complete; an id keeps its split when more scenes are added unless it sits on a boundary."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got "
                         f"{val_fraction} + {test_fraction}")
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n = len(ranked)

    def count(frac: float) -> int:
        k = int(round(n * frac))
        return max(k, 1) if frac > 0 and n >= 3 else k

    n_test, n_val = count(test_fraction), count(val_fraction)
    return {"train": sorted(ranked[n_test + n_val:]), "val": sorted(ranked[n_test:n_test + n_val]),
            "test": sorted(ranked[:n_test])}


def set_splits(root, splits_: dict[str, list[str]]) -> None:
    missing = [s for s in SPLITS if s not in splits_]
    if missing:
        raise ValueError(f"splits need keys {SPLITS}, missing {missing}")
    root.attrs["splits"] = {s: list(splits_[s]) for s in SPLITS}


def splits(root) -> dict[str, list[str]]:
    """Root attribute ``splits`` {train, val, test: [ids]}, restricted to complete scenes;
    without the attribute every complete scene is in train."""
    complete = set(list_scenes(root))
    stored = root.attrs.get("splits")
    if not stored:
        return {"train": sorted(complete), "val": [], "test": []}
    return {s: [i for i in stored.get(s, []) if i in complete] for s in SPLITS}
