"""The ``physgm`` command line (Typer). Every command takes ``--config`` and ``--set a.b=c``;
commands that report figures take ``--json``. Heavy imports happen inside the commands so
that ``physgm --help`` stays fast."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.cli_common import (PASS_THROUGH, ConfigOpt, JsonOpt, SetOpt, fail, get_config,
                               run_benchmark)
from physgm.config import dump_config

app = typer.Typer(
    name="physgm", no_args_is_help=True, rich_markup_mode="rich", add_completion=False,
    help="PhysGM: physics from images with preference optimisation.\n\n"
    "Quick start: [bold]physgm run --config configs/quickstart.yaml[/bold] runs the whole "
    "pipeline on this machine. Every command takes --config FILE and --set a.b=c overrides "
    "(e.g. --set sim.grid_res=64).")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks; each prints one JSON line.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect and validate configs.")
app.add_typer(bench_app, name="bench")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults + file + overrides) as YAML."""
    typer.echo(dump_config(get_config(config, set_)), nl=False)


@app.command()
def simulate(
    material: Annotated[str, typer.Option(help="jelly | metal | plasticine | sand | snow")] = "jelly",
    E: Annotated[Optional[float], typer.Option("--E", help="Young's modulus [Pa] (default: the "
                                               "material's)")] = None,
    nu: Annotated[Optional[float], typer.Option("--nu", help="Poisson's ratio in (0, 0.5)")] = None,
    density: Annotated[Optional[float], typer.Option(help="[kg/m³]")] = None,
    yield_stress: Annotated[Optional[float], typer.Option(help="[Pa], metal/plasticine")] = None,
    friction_angle: Annotated[Optional[float], typer.Option(help="[deg], sand")] = None,
    hardening: Annotated[Optional[float], typer.Option(help="plasticine h / snow ξ")] = None,
    shape: Annotated[str, typer.Option(help="cube | sphere | cylinder | cone | torus | capsule")] = "cube",
    size: Annotated[float, typer.Option(help="object extent [m]")] = 0.2,
    height: Annotated[float, typer.Option(help="initial height of the object's centre [m]")] = 0.4,
    velocity: Annotated[str, typer.Option(help="initial velocity vx,vy,vz [m/s]")] = "0,0,0",
    frames: Annotated[Optional[int], typer.Option(help="frames to simulate (sim.n_frames)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the trajectory: .npz (positions, "
                                                "deformation, times) or .mp4/.gif video")] = None,
    ply: Annotated[Optional[Path], typer.Option(help="a 3DGS scene (.ply, original layout) to "
                                                "simulate instead of --shape; --size and "
                                                "--height place it", rich_help_panel="Own "
                                                "Gaussians (--ply)")] = None,
    up: Annotated[str, typer.Option(help="the scene's up axis (+x … -z; COLMAP scenes: -y)",
                                    rich_help_panel="Own Gaussians (--ply)")] = "+y",
    transform: Annotated[Optional[str], typer.Option(help="4×4 similarity scene → domain "
                                                     "[m] (JSON or .json file) instead of "
                                                     "--size/--height/--up",
                                                     rich_help_panel="Own Gaussians (--ply)")] = None,
    crop: Annotated[Optional[str], typer.Option(help="x0,x1,y0,y1,z0,z1: simulate only this "
                                                "box (scene units)", rich_help_panel="Own "
                                                "Gaussians (--ply)")] = None,
    min_opacity: Annotated[float, typer.Option(help="drop fainter Gaussians",
                                               rich_help_panel="Own Gaussians (--ply)")] = 0.1,
    max_particles: Annotated[int, typer.Option(help="particle budget (filled interior "
                                               "included)", rich_help_panel="Own Gaussians "
                                               "(--ply)")] = 20000,
    camera: Annotated[Optional[str], typer.Option(help="render from this camera (scene "
                                                  "frame): {K, c2w} JSON or a 3DGS "
                                                  "cameras.json[#i]; default an orbit",
                                                  rich_help_panel="Own Gaussians (--ply)")] = None,
    orbit_deg: Annotated[float, typer.Option(help="azimuth the orbit camera sweeps [deg]",
                                             rich_help_panel="Own Gaussians (--ply)")] = 60.0,
    config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False,
) -> None:
    """Simulate a primitive shape, or your own 3DGS scene (--ply), as one material with
    MLS-MPM and save the trajectory or a video."""
    import numpy as np
    from pydantic import ValidationError

    from physgm.materials import PhysParams
    from physgm.sim import sample_shape
    from physgm.sim.report import run_with_progress
    from physgm.sim.validate import ParamRangeWarning

    cfg = get_config(config, set_)
    if frames is not None:
        cfg.sim.n_frames = frames
    if out is not None and out.suffix.lower() not in (".npz", ".mp4", ".gif"):
        fail(f"--out must end in .npz, .mp4 or .gif, got '{out.name}'")
    given = {"E": E, "nu": nu, "density": density, "yield_stress": yield_stress,
             "friction_angle": friction_angle, "hardening": hardening}
    try:
        params = PhysParams.default(material, **{k: v for k, v in given.items() if v is not None})
        vel = np.array([float(s) for s in velocity.split(",")])
        if vel.shape != (3,):
            raise ValueError("--velocity needs three comma-separated numbers, e.g. 1,0,0")
        with warnings.catch_warnings():  # printed once below, in the CLI's own style
            warnings.simplefilter("ignore", ParamRangeWarning)
            if ply is not None:
                from physgm.ply_sim import PlyOptions, simulate_ply

                box = None if crop is None else tuple(float(c) for c in crop.split(","))
                run = simulate_ply(ply, params, cfg, PlyOptions(
                    size, height, up, transform, box, min_opacity, max_particles, camera,
                    orbit_deg), velocity=vel, show=not json_)
                result, x = run.result, run.scene.particles
            else:
                dx = cfg.sim.domain_size / cfg.sim.grid_res
                centre = (cfg.sim.domain_size / 2, height, cfg.sim.domain_size / 2)
                x = sample_shape(shape, centre, size, dx / 2)
                result = run_with_progress(x, params, cfg.sim, velocities=vel, show=not json_)
    except (ValueError, ValidationError, FileNotFoundError) as err:
        fail(str(err))
    for warning in params.out_of_range():
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    summary = {
        "material": params.material.value, "params": params.values(), "status": result.status,
        "message": result.message, "n_particles": int(x.shape[0]), "frames": result.n_frames,
        "substep_dt": result.substep_dt, "substeps_per_frame": result.substeps_per_frame,
        "wall_s": round(result.wall_s, 3),
        "particle_substeps_per_s": round(result.particle_substeps / max(result.wall_s, 1e-9)),
    }
    if ply is not None:
        from physgm.ply_sim import summary as ply_summary
        from physgm.ply_sim import write_outputs

        summary.update(ply_summary(run))
        if out is not None:
            summary["out"] = str(write_outputs(run, out, cfg))
    elif out is not None:
        suffix = out.suffix.lower()
        if suffix == ".npz":
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, positions=result.positions, deformation=result.deformation,
                                times=result.times, status=result.status,
                                params=json.dumps(params.model_dump(mode="json")))
        elif suffix in (".mp4", ".gif"):
            from physgm.sim.report import write_particle_video

            write_particle_video(out, result, cfg)
        else:
            fail(f"--out must end in .npz, .mp4 or .gif, got '{out.name}'")
        summary["out"] = str(out)
    if json_:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{summary['material']}: {result.status} · {summary['n_particles']} particles · "
                   f"{result.n_frames} frames × {result.substeps_per_frame} substeps · "
                   f"{result.wall_s:.2f} s · {summary['particle_substeps_per_s'] / 1e6:.2f} M "
                   f"particle-substeps/s" + (f" → {out}" if out else ""))
        if result.message:
            typer.echo(f"  {result.message}")


@bench_app.command("mpm", context_settings=PASS_THROUGH)
def bench_mpm(ctx: typer.Context) -> None:
    """MPM throughput (particle-substeps/s) vs size, side by side with Taichi's MLS-MPM, and
    K objects batched (simulate_batch) vs one after another. Options: --sizes 5000:32,50000:64
    --batch-sizes 500:32,2500:32 (or none) --k 8 --substeps N --threads N --no-taichi --json."""
    run_benchmark("mpm", list(ctx.args))


@bench_app.command("render", context_settings=PASS_THROUGH)
def bench_render(ctx: typer.Context) -> None:
    """Renderer throughput (Gaussians × pixels / s): tiled torch backend vs the dense
    reference. Options: --sizes 64x1000,96x2000 --repeats N --json."""
    run_benchmark("render", list(ctx.args))


@bench_app.command("data", context_settings=PASS_THROUGH)
def bench_data(ctx: typer.Context) -> None:
    """Scenes per minute of `physgm data synth` per worker count, full scenes beside
    image-only ones, and their ratio. Options: --scenes N --workers 1,2
    --kinds full,image_only --config FILE --set … (one JSON line)."""
    run_benchmark("data", list(ctx.args))


# ---- the stages' commands: each stage's cli.py registers its own (physgm/cli_common.py
# says how); this module and pipeline/ are the only ones that import every stage. ----
def _register_stages() -> None:
    from cluster import cli as cluster_cli
    from learner import cli as learner_cli
    from physgm.data import cli as data_cli
    from pipeline import cli as pipeline_cli
    from pretrain import cli as pretrain_cli
    from reward import cli as reward_cli
    from serving import cli as serving_cli

    for stage in (pipeline_cli, data_cli, pretrain_cli, learner_cli, reward_cli, serving_cli,
                  cluster_cli):
        stage.register(app, bench_app)


_register_stages()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
