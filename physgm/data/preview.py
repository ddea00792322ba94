"""A contact sheet of a stored scene: input views on top, evenly spaced video frames below,
the true and labelled physics as a caption (for `physgm data show`)."""
from __future__ import annotations

import numpy as np

from physgm.data.store import Scene
from physgm.materials import PhysParams

TILE_PX = 128


def _caption(name: str, p: PhysParams | None) -> str:
    if p is None:
        return f"{name}: -"
    extra = ", ".join(f"{k}={v:.3g}" for k, v in p.values().items() if k not in ("E", "nu"))
    return f"{name}: {p.material.value} E={p.E:.3g} Pa nu={p.nu:.3f} {extra}"


def _row(frames: np.ndarray, tile: int, n: int) -> np.ndarray:
    """n tiles (tile × tile) side by side from (F, H, W, 3) uint8 (nearest-neighbour scaled)."""
    import cv2

    tiles = [cv2.resize(f, (tile, tile), interpolation=cv2.INTER_NEAREST) for f in frames[:n]]
    tiles += [np.zeros((tile, tile, 3), np.uint8)] * (n - len(tiles))
    return np.concatenate(tiles, 1)


def contact_sheet(scene: Scene, max_frames: int = 8, tile: int = TILE_PX) -> np.ndarray:
    """(H, W, 3) uint8: row 1 the input views, row 2 ``max_frames`` video frames evenly
    spaced over the video (none for an image-only scene), then two caption lines (true and
    label)."""
    import cv2

    rows = [scene.images]
    if scene.video is not None:
        idx = np.unique(np.linspace(0, len(scene.video) - 1,
                                    min(max_frames, len(scene.video))).round().astype(int))
        rows.append(scene.video[idx])
    n = max(len(r) for r in rows)
    sheet = np.concatenate([_row(r, tile, n) for r in rows], 0)
    text = np.zeros((44, sheet.shape[1], 3), np.uint8)
    for k, line in enumerate([_caption("true", scene.true), _caption("label", scene.label)]):
        cv2.putText(text, f"{scene.scene_id}  {line}"[:160], (6, 17 + 20 * k),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return np.concatenate([sheet, text], 0)
