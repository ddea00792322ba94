"""Video encode/decode: the one place that writes or reads mp4 and gif.

Videos are numpy ``(T, H, W, 3) uint8`` arrays (RGB). mp4 uses H.264 (yuv420p) through the
ffmpeg that ships in the ``imageio-ffmpeg`` wheel; odd sizes are padded by one pixel of edge
replication for the encoder and cropped back when read with ``read_video(..., size=...)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _check_video(frames) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("video has no frames")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"video must be uint8 (or float in 0..1), got {arr.dtype}")
    return arr


def to_uint8(frames) -> np.ndarray:
    """float 0..1 or uint8 ``(T,H,W,3)`` → uint8, NaN → 0."""
    return _check_video(frames)


def write_video(path: str | Path, frames, fps: float = 25.0) -> Path:
    """Write ``(T,H,W,3)`` frames to ``.mp4`` or ``.gif`` (chosen by the suffix)."""
    import imageio.v3 as iio

    path = Path(path)
    arr = _check_video(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        iio.imwrite(path, arr, extension=".gif", duration=1000.0 / fps, loop=0)
    elif suffix == ".mp4":
        h, w = arr.shape[1:3]
        pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
        if h % 2 or w % 2:
            arr = np.pad(arr, pad, mode="edge")
        iio.imwrite(path, arr, extension=".mp4", plugin="pyav", codec="libx264", fps=fps,
                    out_pixel_format="yuv420p")
    else:
        raise ValueError(f"unsupported video type '{suffix}': use .mp4 or .gif")
    return path


def encode_video(frames, fmt: str = "mp4", fps: float = 25.0) -> bytes:
    """Frames → bytes of an mp4 or gif file (for HTTP responses)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = write_video(Path(tmp) / f"video.{fmt}", frames, fps=fps)
        return p.read_bytes()


def read_video(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an mp4/gif into ``(T,H,W,3) uint8``; ``size=(H, W)`` crops encoder padding."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        arr = iio.imread(path, index=None)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ValueError(f"cannot decode video {path}: {err}") from None
    arr = np.asarray(arr)
    if arr.ndim == 3:  # single frame
        arr = arr[None]
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if size is not None:
        arr = arr[:, : size[0], : size[1]]
    return np.ascontiguousarray(arr.astype(np.uint8))
