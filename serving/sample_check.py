"""What a user sees first: the demo page's bundled samples through a checkpoint.

    python -m serving.sample_check --checkpoint runs/quickstart/checkpoints/dpo

For each sample of ``serving/static/samples/samples.json`` (with the cameras it was rendered
from): the material the model names and its probabilities, whether that is the sample's own
material (the first word of its name: jelly_cube → jelly), and whether the Gaussians it
predicts form one object, as the demo's simulation would see them: the object's Gaussians
(``serving.scene.select_object``) placed in the simulation domain (``place_in_domain``, with
the interior filled), their grid cells (dx of ``serve.sim``) split into 26-connected
components. One component means the object falls as one body; the per-view centroid gap [m]
(before placing) says how far apart the views' back-projected points land. One JSON line per
sample.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from physgm.config import RunConfig, load_config
from physgm.materials import MATERIALS
from physgm.model import PhysGM, distribution, pixels_to_gaussians
from serving.inputs import Limits, parse_views
from serving.scene import foreground, place_in_domain, select_object

SAMPLES = Path(__file__).resolve().parent / "static" / "samples" / "samples.json"


def grid_components(points: np.ndarray, dx: float) -> tuple[int, float]:
    """points (N, 3) [m] → (number of 26-connected components of the occupied dx-cells, the
    largest component's share of the points)."""
    from scipy import ndimage

    if len(points) == 0:
        raise ValueError("no points to split into components")
    idx = np.floor(np.asarray(points) / dx).astype(np.int64)
    idx -= idx.min(0)
    occupied = np.zeros(idx.max(0) + 1, bool)
    occupied[tuple(idx.T)] = True
    labels, n = ndimage.label(occupied, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels[tuple(idx.T)])[1:]
    return int(n), float(sizes.max() / sizes.sum())


def check_sample(model: PhysGM, entry: dict, cfg: RunConfig, root: Path) -> dict:
    """One bundled sample (an entry of samples.json; image paths relative to ``root``)."""
    files = [(f, (root / f).read_bytes()) for f in entry["files"]]
    mi = parse_views(files, json.dumps(entry["cameras"]), Limits(), model.cfg.image_size)
    with torch.inference_mode():
        out = model(torch.from_numpy(mi.images)[None], torch.from_numpy(mi.plucker)[None])
        g = pixels_to_gaussians(out.gaussians, torch.from_numpy(mi.origins),
                                torch.from_numpy(mi.directions)).to("cpu")
        stats = distribution(out.physics).param_stats()[0]
    rgb = mi.images.transpose(0, 2, 3, 1).reshape(-1, 3)
    obj, appearance = select_object(g, rgb, cfg.serve.min_opacity, cfg.serve.max_particles // 2)
    placed = place_in_domain(obj, cfg.serve, cfg.serve.max_particles)
    n_comp, largest = grid_components(placed.particles,
                                      cfg.serve.sim.domain_size / cfg.serve.sim.grid_res)
    s2 = mi.images.shape[-1] * mi.images.shape[-2]
    view = np.repeat(np.arange(mi.n_views), s2)
    fg = foreground(rgb)
    means = g.means.numpy()
    cents = [means[fg & (view == v)].mean(0) for v in range(mi.n_views) if (fg & (view == v)).any()]
    gap = max((float(np.linalg.norm(a - b)) for i, a in enumerate(cents) for b in cents[i + 1:]),
              default=0.0)
    true = entry["name"].split("_")[0]
    name = stats["material"]["name"]
    return {"sample": entry["title"], "true_material": true if true in
            [m.value for m in MATERIALS] else None, "material": name,
            "correct": name == true, "probs": {k: round(v, 3) for k, v in
                                               stats["material"]["probs"].items()},
            "appearance": appearance, "components": n_comp,
            "largest_component_frac": round(largest, 3), "view_centroid_gap_m": round(gap, 4)}


def check_samples(checkpoint: str | Path, cfg: RunConfig,
                  samples: Optional[Path] = None) -> list[dict]:
    """Every bundled sample through the model at ``checkpoint`` (see module docstring)."""
    from physgm.model.checkpoint import load_model

    samples = Path(samples or SAMPLES)
    model, _ = load_model(checkpoint)
    return [check_sample(model, e, cfg, samples.parent.parent)
            for e in json.loads(samples.read_text())]


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory or .pt file")
    ap.add_argument("--config", "-c", default="configs/quickstart.yaml",
                    help="config whose serve section (min_opacity, max_particles, sim) applies")
    args = ap.parse_args(argv)
    for row in check_samples(args.checkpoint, load_config(args.config)):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
