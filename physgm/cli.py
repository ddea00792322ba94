"""The ``physgm`` command line (Typer). Every command takes ``--config`` and ``--set a.b=c``;
commands that report figures take ``--json``. Heavy imports happen inside the commands so
that ``physgm --help`` stays fast."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.config import ConfigError, RunConfig, dump_config, load_config

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

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="YAML config (see configs/quickstart.yaml, configs/paper.yaml).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value: --set sim.grid_res=64 (repeatable, YAML values).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print figures as one JSON line.")]


def get_config(config: Optional[Path], overrides: Optional[list[str]]) -> RunConfig:
    """Load the config or exit with status 2 and a message that says what to change."""
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def run_benchmark(name: str, argv: list[str]) -> None:
    """Run ``benchmarks/bench_<name>.py``'s ``main(argv)`` (benchmarks live in the repo)."""
    import importlib.util

    path = _repo_root() / "benchmarks" / f"bench_{name}.py"
    if not path.is_file():
        fail(f"benchmark script {path.name} not found: `physgm bench` runs from a source "
             "checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location(f"benchmarks.bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(_repo_root()))
    spec.loader.exec_module(module)
    module.main(argv)


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
    config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False,
) -> None:
    """Simulate a primitive shape of one material with MLS-MPM and save the trajectory."""
    import numpy as np
    from pydantic import ValidationError

    from physgm.materials import PhysParams
    from physgm.sim import sample_shape
    from physgm.sim.report import run_with_progress
    from physgm.sim.validate import ParamRangeWarning

    cfg = get_config(config, set_)
    if frames is not None:
        cfg.sim.n_frames = frames
    given = {"E": E, "nu": nu, "density": density, "yield_stress": yield_stress,
             "friction_angle": friction_angle, "hardening": hardening}
    try:
        params = PhysParams.default(material, **{k: v for k, v in given.items() if v is not None})
        vel = np.array([float(s) for s in velocity.split(",")])
        if vel.shape != (3,):
            raise ValueError("--velocity needs three comma-separated numbers, e.g. 1,0,0")
        dx = cfg.sim.domain_size / cfg.sim.grid_res
        centre = (cfg.sim.domain_size / 2, height, cfg.sim.domain_size / 2)
        x = sample_shape(shape, centre, size, dx / 2)
        with warnings.catch_warnings():  # printed once below, in the CLI's own style
            warnings.simplefilter("ignore", ParamRangeWarning)
            result = run_with_progress(x, params, cfg.sim, velocities=vel, show=not json_)
    except (ValueError, ValidationError) as err:
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
    if out is not None:
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


@bench_app.command("mpm", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_mpm(ctx: typer.Context) -> None:
    """MPM throughput (particle-substeps/s) vs size, side by side with Taichi's MLS-MPM.
    Options: --sizes 5000:32,50000:64 --substeps N --threads N --no-taichi --json."""
    run_benchmark("mpm", list(ctx.args))


@bench_app.command("render", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
def bench_render(ctx: typer.Context) -> None:
    """Renderer throughput (Gaussians × pixels / s): tiled torch backend vs the dense
    reference. Options: --sizes 64x1000,96x2000 --repeats N --json."""
    run_benchmark("render", list(ctx.args))


@bench_app.command("pretrain", context_settings={"allow_extra_args": True,
                                                 "ignore_unknown_options": True})
def bench_pretrain(ctx: typer.Context) -> None:
    """Training samples/s and peak memory: DeepSpeed engine vs a plain PyTorch loop.

    Same model and batches. Options: --steps N --batch-size N --views N --size PX --json."""
    run_benchmark("pretrain", list(ctx.args))


@bench_app.command("data", context_settings={"allow_extra_args": True,
                                             "ignore_unknown_options": True})
def bench_data(ctx: typer.Context) -> None:
    """Scenes per minute of `physgm data synth` per worker count (one JSON line)."""
    run_benchmark("data", list(ctx.args))


@bench_app.command("reward", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
def bench_reward(ctx: typer.Context) -> None:
    """Videos scored per second per reward backend, batched vs unbatched, reference vs
    candidate cost. Options: --backends classical,sam2_cotracker --k 8 --json."""
    run_benchmark("reward", list(ctx.args))


@bench_app.command("dpo", context_settings={"allow_extra_args": True,
                                            "ignore_unknown_options": True})
def bench_dpo(ctx: typer.Context) -> None:
    """DPO pairs/hour with 1 and 2 actors side by side, time shares, weight size.
    Options: --actors 1,2 --scenes 8 --epochs 1 --data PATH --checkpoint PATH --json."""
    run_benchmark("dpo", list(ctx.args))


class _Say:
    """Stage messages for `physgm run`; transient ones (progress counters) overwrite one
    line in place."""

    def __init__(self, quiet: bool):
        self.quiet, self.open_line = quiet, False

    def __call__(self, message: str, transient: bool = False) -> None:
        if self.quiet:
            return
        if transient:
            sys.stdout.write("\r" + message)
            sys.stdout.flush()
            self.open_line = True
            return
        if self.open_line:
            sys.stdout.write("\n")
            self.open_line = False
        typer.echo(message)


@app.command()
def run(config: ConfigOpt = Path("configs/quickstart.yaml"), set_: SetOpt = None,
        redo: Annotated[Optional[list[str]], typer.Option(
            help="stage to run again even if finished: data, pretrain, dpo, eval, serve")] = None,
        json_: JsonOpt = False) -> None:
    """Run the whole pipeline on this machine: synth data → pretrain → DPO → eval table
    (w/o vs w/ DPO) → Ray Serve → one prediction. Output under runs/<name>/; a second run
    reuses finished stages and resumes an interrupted one."""
    from learner.pipeline import STAGES, run_pipeline

    cfg = get_config(config, set_)
    bad = [s for s in (redo or []) if s not in STAGES]
    if bad:
        fail(f"--redo takes stages among {', '.join(STAGES)}; got {', '.join(bad)}")
    try:
        results = run_pipeline(cfg, say=_Say(quiet=json_), redo=tuple(redo or ()))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished stages are kept and the running one checkpointed; "
                   "the same `physgm run` command resumes", err=True)
        raise typer.Exit(130)
    if json_:
        typer.echo(json.dumps(results, default=str))
        return
    from pretrain.tracking import tracking_uri

    typer.echo(f"\nall stages done in {results['wall_s']:.0f} s; outputs under {cfg.run_dir}/")
    typer.echo(f"  MLflow UI:  mlflow ui --backend-store-uri {tracking_uri(cfg)} "
               "--host 127.0.0.1   (then open http://127.0.0.1:5000)")
    typer.echo(f"  demo page:  physgm serve --checkpoint {cfg.run_dir}/checkpoints/dpo   "
               f"(then open http://127.0.0.1:{cfg.serve.port}/)")


# ---- stage commands: each stage module owns its Typer command(s) and keeps heavy imports
# (ray, deepspeed, mlflow) inside the command functions. One block per stage. ----
# [data]
from physgm.data.cli import app as _data_app  # noqa: E402

app.add_typer(_data_app, name="data")
# [pretrain]
from pretrain.cli import evaluate as _evaluate  # noqa: E402
from pretrain.cli import pretrain as _pretrain  # noqa: E402

app.command("pretrain")(_pretrain)
# [eval]
app.command("eval")(_evaluate)
# [reward]
from reward.cli import app as _reward_app  # noqa: E402

app.add_typer(_reward_app, name="reward")
# [dpo]
from learner.cli import dpo as _dpo  # noqa: E402

app.command("dpo")(_dpo)
# [serve]
from serving.cli import bench_serve_command as _bench_serve  # noqa: E402
from serving.cli import serve_command as _serve  # noqa: E402

app.command("serve")(_serve)
bench_app.command("serve", context_settings={"allow_extra_args": True,
                                             "ignore_unknown_options": True})(_bench_serve)
# [cluster]
from cluster.cli import app as _cluster_app  # noqa: E402

app.add_typer(_cluster_app, name="cluster")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
