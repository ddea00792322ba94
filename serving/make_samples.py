"""Render the demo page's bundled sample views with the project's own renderer.

    python -m serving.make_samples            # writes serving/static/samples/

Each sample is a primitive (``physgm.sim.sample_shape``) made of Gaussians, shaded with a
simple light so its 3D form shows, seen from the server's default cameras
(``serving.inputs.CameraDefaults``), so the page can send the views without cameras.
``samples.json`` lists them with the cameras used.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from physgm.gaussians import Gaussians
from physgm.render import rasterize
from physgm.sim import sample_shape
from serving.inputs import CameraDefaults

OUT = Path(__file__).resolve().parent / "static" / "samples"
SAMPLES = {  # name: (shape, size [m], RGB, views, title)
    "jelly_cube": ("cube", 0.18, (0.85, 0.2, 0.3), 2, "red jelly cube, 2 views"),
    "snow_ball": ("sphere", 0.2, (0.92, 0.94, 0.97), 3, "snow ball, 3 views"),
}
SIZE = 128


def sample_gaussians(shape: str, size: float, rgb, centre) -> Gaussians:
    """The shape's particles as Gaussians, coloured rgb with Lambert shading from above."""
    spacing = size / 14
    pts = sample_shape(shape, centre, size, spacing)
    normal = pts - np.asarray(centre)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    light = np.array([0.3, 0.9, 0.3]) / np.linalg.norm([0.3, 0.9, 0.3])
    shade = 0.55 + 0.45 * np.clip(normal @ light, 0, 1)
    colors = np.clip(np.asarray(rgb)[None] * shade[:, None], 0, 1)
    return Gaussians.from_points(pts.astype(np.float32), colors.astype(np.float32),
                                 scale=spacing * 0.7, opacity=0.95)


def render_sample(name: str, out_dir: Path = OUT, defaults: CameraDefaults = CameraDefaults()
                  ) -> dict:
    """Write ``<name>_v<i>.png`` for each view; returns the samples.json entry."""
    from PIL import Image

    shape, size, rgb, views, title = SAMPLES[name]
    g = sample_gaussians(shape, size, rgb, defaults.target)
    cams = defaults.cameras(views, SIZE, SIZE)
    files = []
    for i, cam in enumerate(cams):
        with torch.no_grad():
            img = rasterize(g, cam, backend="torch").rgb.clamp(0, 1).numpy()
        path = out_dir / f"{name}_v{i}.png"
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(path, optimize=True)
        files.append(f"samples/{path.name}")
    return {"name": name, "title": title, "files": files,
            "cameras": [{"K": c.to_dict()["K"], "c2w": c.to_dict()["c2w"]} for c in cams]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    entries = [render_sample(n) for n in SAMPLES]
    (OUT / "samples.json").write_text(json.dumps(entries, indent=1))
    print(f"wrote {sum(len(e['files']) for e in entries)} views to {OUT}")


if __name__ == "__main__":
    main()
