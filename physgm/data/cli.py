"""`physgm data ...`: synth (generate the synthetic dataset), show (preview a scene),
convert (bring a real capture folder in), list (scenes and splits)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.cli_common import ConfigOpt, JsonOpt, SetOpt, fail, get_config

app = typer.Typer(no_args_is_help=True, help="Scene datasets: synthesise, inspect, convert.")


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm data {synth,show,convert,list}``."""
    root.add_typer(app, name="data")

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="scene store (default: "
                                                 "data.path of the config)")]


@app.command()
def synth(
    scenes: Annotated[Optional[int], typer.Option("--scenes", "-n", help="number of scenes "
                                                  "(default data.n_scenes)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="zarr store to write (default "
                                                "data.path); re-running resumes it")] = None,
    workers: Annotated[Optional[int], typer.Option(help="processes (default data.workers)")] = None,
    image_only: Annotated[bool, typer.Option(
        "--image-only", help="image-only scenes (views, cameras, object, true physics, "
        "labels; no simulation, no GT video): for pretraining, many times faster; DPO and "
        "evaluation refuse such a store (sets data.image_only)")] = False,
    pretrain: Annotated[bool, typer.Option(
        "--pretrain", help="the config's pretraining store: data.pretrain_scenes image-only "
        "scenes with the pretraining seed at data.pretrain_path (what `physgm run` makes); "
        "--scenes and --out still override")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False,
) -> None:
    """Generate synthetic scenes (views, GT video, true physics, noisy labels) in parallel.
    Scenes already complete in --out are skipped; interrupted ones are redone."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from physgm.config import pretrain_store_config
    from physgm.data.build import synthesize
    from physgm.data.store import StoreError

    cfg = get_config(config, set_)
    if pretrain:
        cfg = pretrain_store_config(cfg)
        if cfg is None:
            fail("--pretrain makes the pretraining store of data.pretrain_scenes, which is 0: "
                 "set it (e.g. --set data.pretrain_scenes=640)")
    if image_only:
        cfg.data.image_only = True
    path = out or Path(cfg.data.path)
    try:
        if json_:
            report = synthesize(path, cfg, scenes, workers)
        else:
            columns = [TextColumn("[bold]scenes"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn()]
            with Progress(*columns) as bar:
                task = bar.add_task("synth", total=scenes or cfg.data.n_scenes)
                report = synthesize(path, cfg, scenes, workers,
                                    on_progress=lambda done, total: bar.update(
                                        task, completed=done, total=total))
    except (StoreError, ValueError) as err:
        fail(str(err))
    summary = report.summary()
    if json_:
        typer.echo(json.dumps(summary))
    else:
        kind = "image-only scenes" if report.image_only else "scenes"
        typer.echo(f"{summary['written']} {kind} written, {summary['skipped']} already there, "
                   f"{summary['resampled']} resampled (unstable/escaped), {summary['failed']} "
                   f"failed · {summary['wall_s']} s · {summary['scenes_per_min']} scenes/min "
                   f"({report.workers} workers) → {path}")
    for sid, message in report.failed.items():
        typer.secho(f"warning: scene {sid}: {message}", fg="yellow", err=True)


@app.command()
def show(
    scene: Annotated[str, typer.Argument(help="scene id (see `physgm data list`)")],
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="folder for <id>_sheet.png and <id>_video.mp4")
                   ] = Path("."),
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """Write a contact sheet (input views + video frames + physics) and the GT video (an
    image-only scene: the views only)."""
    import imageio.v3 as iio

    from physgm.data.preview import contact_sheet
    from physgm.data.store import StoreError, open_store, read_scene
    from physgm.video import write_video

    path = data or Path(get_config(config, set_).data.path)
    try:
        s = read_scene(open_store(path, "r"), scene)
    except StoreError as err:
        fail(str(err))
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / f"{scene}_sheet.png"
    iio.imwrite(sheet, contact_sheet(s))
    if s.video is None:
        typer.echo(f"{sheet}\n(an image-only scene: no GT video)")
        return
    fps = 1.0 / s.sim["frame_dt"] if s.sim.get("frame_dt") else 25.0
    video = write_video(out / f"{scene}_video.mp4", s.video, fps=fps)
    typer.echo(f"{sheet}\n{video}")


@app.command()
def convert(
    folders: Annotated[list[Path], typer.Argument(help="capture folder(s): cameras.json, "
                                                  "images, video (docs/data.md)")],
    out: Annotated[Path, typer.Option(help="zarr store to add the scenes to")],
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    id_: Annotated[Optional[str], typer.Option("--id", help="scene id (one folder only; "
                                               "default: the folder name)")] = None,
) -> None:
    """Convert real captures (images + cameras.json + video [+ labels.json]) into a store."""
    from physgm.data.convert import ConvertError, convert_folder
    from physgm.data.store import StoreError

    if id_ is not None and len(folders) > 1:
        fail("--id names one scene: pass one folder with it")
    for folder in folders:
        try:
            sid = convert_folder(folder, out, id_, split)
        except (ConvertError, StoreError, ValueError) as err:
            fail(str(err))
        typer.echo(f"{folder} → {out} scene {sid} ({split})")


@app.command("list")
def list_(data: DataOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
          json_: JsonOpt = False) -> None:
    """List the complete scenes per split with their true and labelled material."""
    from physgm.data.store import StoreError, open_store, scene_attrs, splits

    path = data or Path(get_config(config, set_).data.path)
    try:
        root = open_store(path, "r")
    except StoreError as err:
        fail(str(err))
    parts = splits(root)
    rows = [{"scene": sid, "split": name,
             "true": (scene_attrs(root, sid).get("true") or {}).get("material"),
             "label": (scene_attrs(root, sid).get("label") or {}).get("material")}
            for name, ids in parts.items() for sid in ids]
    if json_:
        typer.echo(json.dumps({"path": str(path), "scenes": rows}))
        return
    for r in rows:
        typer.echo(f"{r['scene']}\t{r['split']}\ttrue={r['true']}\tlabel={r['label']}")
    typer.echo(f"{len(rows)} scenes: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))
