"""Bring real captures into the scene store (``physgm data convert FOLDER --out data.zarr``).

A capture folder holds (file names other than ``cameras.json``/``labels.json`` are free):

    cameras.json   {"views": [{"image": "images/0.png", "K": 3×3, "c2w": 4×4,
                               "mask": "masks/0.png"?}, …],
                    "video": {"file": "video.mp4", "K": 3×3, "c2w": 4×4, "fps": 25?,
                              "mask": "video_mask.mp4"?},
                    "background": [r, g, b]?,  "sim": {…}?}
    labels.json    optional: a PhysParams mapping {"material": "jelly", "E": …, "nu": …} (the
                   label), or {"label": {…}, "true": {…}}

Cameras follow the conventions of docs/architecture.md (OpenCV axes, K in pixels of that image, c2w in metres). All
views must share one size; the video may have another. Masks (alpha) come, in order of
preference, from a ``mask`` file (non-zero = object), an RGBA image's alpha channel, or the
difference from ``background`` (0..255, threshold 10); failing all three, alpha is 255
everywhere (``alpha_source: none``). Images are stored on black where alpha is known, as
synthetic scenes are. Real scenes have no particles or Gaussians: DPO re-simulation needs
Gaussians predicted by the model (``physgm.gaussians.fill_particles`` turns them into
particles) and the ``sim`` attribute (grid, domain, frame_dt; see docs/data.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import ValidationError

from physgm.camera import Camera
from physgm.materials import PhysParams

FG_THRESHOLD = 10


class ConvertError(ValueError):
    """A capture folder with a missing or malformed file; the message names the file."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConvertError(f"{path}: file not found (see docs/data.md, 'Real data')")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    if not path.is_file():
        raise ConvertError(f"{path}: image file not found")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file
        raise ConvertError(f"{path}: cannot decode image: {err}") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ConvertError(f"{path}: expected an RGB or RGBA image, got shape {img.shape}")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img // 257).astype(np.uint8)
        else:
            raise ConvertError(f"{path}: expected 8- or 16-bit pixels, got {img.dtype}")
    return img


def _read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    m = _read_image(path)[..., 0]
    if m.shape != shape:
        raise ConvertError(f"{path}: mask is {m.shape[1]}×{m.shape[0]} but its image is "
                           f"{shape[1]}×{shape[0]}")
    return np.where(m > 0, 255, 0).astype(np.uint8)


def _camera(entry: dict, where: str, width: int, height: int) -> Camera:
    if not isinstance(entry, dict) or "K" not in entry or "c2w" not in entry:
        raise ConvertError(f"{where}: needs \"K\" (3×3) and \"c2w\" (4×4)")
    try:
        cam = Camera(np.asarray(entry["K"], np.float64), np.asarray(entry["c2w"], np.float64),
                     width, height)
    except (ValueError, TypeError) as err:
        raise ConvertError(f"{where}: {err}") from None
    if not (0 < cam.cx < width and 0 < cam.cy < height):
        raise ConvertError(f"{where}: principal point ({cam.cx:g}, {cam.cy:g}) lies outside the "
                           f"{width}×{height} image: K must be in pixels of this image")
    return cam


def _alpha(rgb: np.ndarray, mask: Optional[np.ndarray], background) -> tuple[np.ndarray, str]:
    """(alpha (…, H, W) uint8, source) for frames (…, H, W, 3|4)."""
    if mask is not None:
        return mask, "mask"
    if rgb.shape[-1] == 4:
        return rgb[..., 3].copy(), "rgba"
    if background is not None:
        diff = np.abs(rgb[..., :3].astype(np.int16) - np.asarray(background, np.int16)).max(-1)
        return np.where(diff > FG_THRESHOLD, 255, 0).astype(np.uint8), "background"
    return np.full(rgb.shape[:-1], 255, np.uint8), "none"


def _on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float32) * (alpha[..., None] / 255.0) + 0.5).astype(np.uint8)


def _params(d, where: str) -> Optional[PhysParams]:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ConvertError(f"{where}: must be a mapping like {{\"material\": \"jelly\", "
                           "\"E\": 1e5, \"nu\": 0.3}}")
    try:
        return PhysParams(**d)
    except ValidationError as err:
        msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                        for e in err.errors())
        raise ConvertError(f"{where}: {msg}") from None


def read_capture(folder: str | Path):
    """Read a capture folder into a ``Scene`` (source "real"); raises ConvertError naming
    the file at fault."""
    from physgm.data.store import Scene
    from physgm.video import read_video

    folder = Path(folder)
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected a capture folder with cameras.json)")
    cam_path = folder / "cameras.json"
    meta = _read_json(cam_path)
    views, video_entry = meta.get("views"), meta.get("video")
    if not isinstance(views, list) or not views:
        raise ConvertError(f"{cam_path}: needs a non-empty \"views\" list of "
                           "{\"image\", \"K\", \"c2w\"}")
    if not isinstance(video_entry, dict) or "file" not in video_entry:
        raise ConvertError(f"{cam_path}: needs \"video\": {{\"file\", \"K\", \"c2w\"}}")
    background = meta.get("background")
    if background is not None and (np.shape(background) != (3,)):
        raise ConvertError(f"{cam_path}: \"background\" must be [r, g, b] in 0..255")

    images, alphas, Ks, c2ws, sources = [], [], [], [], set()
    for k, entry in enumerate(views):
        where = f"{cam_path}: views[{k}]"
        if not isinstance(entry, dict) or "image" not in entry:
            raise ConvertError(f"{where}: needs \"image\" (a path relative to {folder})")
        img_path = folder / entry["image"]
        img = _read_image(img_path)
        if images and img.shape[:2] != images[0].shape[:2]:
            raise ConvertError(f"{img_path}: is {img.shape[1]}×{img.shape[0]} but the first view "
                               f"is {images[0].shape[1]}×{images[0].shape[0]}: all views must "
                               "share one size")
        mask = _read_mask(folder / entry["mask"], img.shape[:2]) if entry.get("mask") else None
        alpha, source = _alpha(img, mask, background)
        cam = _camera(entry, where, img.shape[1], img.shape[0])
        images.append(_on_black(img, alpha) if source != "none" else img[..., :3])
        alphas.append(alpha)
        Ks.append(cam.K.numpy())
        c2ws.append(cam.c2w.numpy())
        sources.add(source)

    video_path = folder / video_entry["file"]
    if not video_path.is_file():
        raise ConvertError(f"{video_path}: video file not found (named in {cam_path})")
    try:
        video = read_video(video_path)
    except ValueError as err:
        raise ConvertError(f"{video_path}: {err}") from None
    if video.shape[0] < 2:
        raise ConvertError(f"{video_path}: needs at least 2 frames, got {video.shape[0]}")
    vmask = None
    if video_entry.get("mask"):
        mask_path = folder / video_entry["mask"]
        try:
            mv = read_video(mask_path)
        except (ValueError, FileNotFoundError) as err:
            raise ConvertError(f"{mask_path}: {err}") from None
        if mv.shape[:3] != video.shape[:3]:
            raise ConvertError(f"{mask_path}: mask video is {mv.shape[:3]} (T, H, W) but the "
                               f"video is {video.shape[:3]}")
        vmask = np.where(mv[..., 0] > 127, 255, 0).astype(np.uint8)
    video_alpha, vsource = _alpha(video, vmask, background)
    vcam = _camera(video_entry, f"{cam_path}: video", video.shape[2], video.shape[1])
    fps = video_entry.get("fps", 25.0)
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise ConvertError(f"{cam_path}: video.fps must be a positive number, got {fps!r}")
    sim = {"frame_dt": 1.0 / float(fps), "n_frames": int(video.shape[0] - 1)}
    sim.update(meta.get("sim") or {})

    true = label = None
    labels_path = folder / "labels.json"
    if labels_path.exists():
        d = _read_json(labels_path)
        if "label" in d or "true" in d:
            label = _params(d.get("label"), f"{labels_path}: label")
            true = _params(d.get("true"), f"{labels_path}: true")
        else:
            label = _params(d, str(labels_path))

    return Scene(
        images=np.stack(images), alpha=np.stack(alphas), K=np.stack(Ks), c2w=np.stack(c2ws),
        video=_on_black(video, video_alpha) if vsource != "none" else video,
        video_alpha=video_alpha, video_K=vcam.K.numpy(), video_c2w=vcam.c2w.numpy(),
        true=true, label=label, sim=sim, source="real",
        extra={"alpha_source": sorted(sources), "video_alpha_source": vsource,
               "folder": folder.name})


def convert_folder(folder: str | Path, out: str | Path, scene_id: Optional[str] = None,
                   split: str = "test") -> str:
    """Convert one capture folder into the store ``out`` (created if needed) as
    ``scene_id`` (default: the folder's name), listed in ``split``. Returns the id."""
    from physgm.data.store import SPLITS, open_store, set_splits, splits, write_scene

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    scene = read_capture(folder)
    sid = scene_id or Path(folder).resolve().name
    if not sid or "/" in sid or sid.startswith("."):
        raise ValueError(f"scene id {sid!r} must be a plain name: pass --id")
    root = open_store(out, "a")
    write_scene(root, sid, scene)
    current = splits(root) if root.attrs.get("splits") else {s: [] for s in SPLITS}
    updated = {s: [i for i in current[s] if i != sid] for s in SPLITS}
    updated[split] = sorted(updated[split] + [sid])
    set_splits(root, updated)
    return sid
