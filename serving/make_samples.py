"""Render the demo page's bundled sample views with the project's own renderer.

    python -m serving.make_samples            # writes serving/static/samples/

Each sample is a primitive (``physgm.sim.sample_shape``) made of Gaussians that look like
its material does in the training data (``physgm.data.appearance.sample_appearance``: the
material's palette, shading and texture; saturation, value and opacity at the middle of the
palette, a typical object of the material; a fixed seed for the texture, the hue fixed where
the title names a colour; Gaussians as dense as the training objects'), seen from the
server's default cameras (``serving.inputs.CameraDefaults``), so the page can send the
views without cameras.
``samples.json`` lists them with the cameras used.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from physgm.config import load_config
from physgm.data.appearance import sample_appearance
from physgm.data.synth import particle_spacing
from physgm.gaussians import Gaussians
from physgm.materials import Material
from physgm.render import rasterize
from physgm.sim import sample_shape
from serving.inputs import CameraDefaults

OUT = Path(__file__).resolve().parent / "static" / "samples"
QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
# Sizes as the training objects' (their largest extent: median 0.125 m, 90 % within
# 0.09-0.19 m): a cube fills its box, so an 18 cm one covered more of the view than 95 % of
# the training objects do.
SAMPLES = {  # name (<material>_<shape>): (shape, size [m], hue or None, views, title)
    "jelly_cube": ("cube", 0.12, 0.97, 2, "red jelly cube, 2 views"),
    "snow_ball": ("sphere", 0.13, None, 3, "snow ball, 3 views"),
}
SEED = 0
SIZE = 128


def sample_gaussians(name: str, centre) -> Gaussians:
    """Sample ``name``'s shape as Gaussians with its material's look (module docstring), as
    dense as the quickstart's training objects (``physgm.data.synth.particle_spacing``): a
    translucent material's look depends on how many Gaussians overlap along a ray (a cube of
    14 Gaussians a side, twice as dense, looked as opaque as plasticine to the model)."""
    shape, size, hue, _, _ = SAMPLES[name]
    spacing = particle_spacing(load_config(QUICKSTART))
    pts = sample_shape(shape, centre, size, spacing).astype(np.float32)
    look = sample_appearance(Material(name.split("_")[0]), pts, np.random.default_rng(SEED),
                             mix_probability=0.0, hue=hue, typical=True)
    g = Gaussians.from_points(pts, look.colors, scale=look.scale_factor * spacing)
    g.opacities = torch.from_numpy(look.opacities)
    return g


def render_sample(name: str, out_dir: Path = OUT, defaults: CameraDefaults = CameraDefaults()
                  ) -> dict:
    """Write ``<name>_v<i>.png`` for each view; returns the samples.json entry."""
    from PIL import Image

    views, title = SAMPLES[name][3:]
    g = sample_gaussians(name, defaults.target)
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
