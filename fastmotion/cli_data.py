"""`fastmotion data ...` and `fastmotion render`: build datasets and draw motions. Heavy imports happen inside
the commands so that `--help` stays fast."""
from __future__ import annotations

from pathlib import Path

import click


def _progress(label: str, total: int):
    return click.progressbar(length=total, label=label, file=click.get_text_stream("stderr"), show_pos=True)


@click.group()
def data():
    """Build datasets: the synthetic corpus and 2D-only renderings of 3D datasets."""


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (HumanML3D layout); replaced if it exists.")
@click.option("--num", default=2000, show_default=True, type=click.IntRange(min=1), help="Number of clips.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same corpus.")
def data_synth(out, num, seed):
    """Write a synthetic SMPL-22 motion corpus with captions, in HumanML3D's layout.

    Procedural walks, runs, jumps, turns, waves, kicks, squats, sits, side steps and compositions of two,
    with varied speeds, directions and body sizes; about 2000 clips in a few seconds.

    \b
    Example:
      fastmotion data synth --out data/synth --num 2000 --seed 0
      fastmotion data render --from data/synth --out data/synth2d --views 1 --seed 0
    """
    from fastmotion.data import build_synthetic

    with _progress("synthesising", num) as bar:
        summary = build_synthetic(out, num, seed, progress=bar.update)
    click.echo(f"wrote {summary['clips']} clips ({len(summary['actions'])} action combinations) to {out}")


@data.command("render")
@click.option("--from", "src", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="3D dataset in HumanML3D layout (new_joints/, texts/, train.txt, val.txt, test.txt).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write; replaced if it exists.")
@click.option("--views", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cameras sampled per clip (each view becomes its own 2D clip).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--min-depth", default=3.0, show_default=True, type=click.FloatRange(min=0.0),
              help="The closest joint stays at least this far (metres) in front of the camera.")
@click.option("--focal", default=1000.0, show_default=True, type=click.FloatRange(min=1e-6), help="Focal length in pixels.")
def data_render(src, out, views, seed, min_depth, focal):
    """Turn a 3D dataset into a 2D-only one: keypoints, camera and captions per clip.

    Cameras as VideoMDM samples them: azimuth uniform in [0, 360), elevation in [0, 30] degrees, aimed at the
    motion. The 3D goes only to OUT/eval3d/ (for `fastmotion eval`), which no trainer reads. Unreadable clips
    are skipped and counted.

    \b
    Example:
      fastmotion data render --from data/synth --out data/synth2d --views 2 --seed 0
    """
    from fastmotion.data import humanml3d as hml
    from fastmotion.data import render_2d

    if not src.is_dir():
        raise click.BadParameter(f"{src} is not a folder", param_hint="--from")
    total = sum(len(hml.read_split(src, s)) for s in hml.SPLITS if (src / f"{s}.txt").exists())
    with _progress("rendering", total) as bar:
        summary = render_2d(src, out, views=views, seed=seed, min_depth=min_depth, focal=focal,
                            progress=bar.update)
    clips = ", ".join(f"{n} {s}" for s, n in summary["clips"].items())
    click.echo(f"wrote {clips} 2D clips to {out}; skipped {summary['skipped']} bad clip(s)")
    for reason in summary["skipped_reasons"][:10]:
        click.echo(f"  skipped: {reason}", err=True)


@click.command("render")
@click.argument("motions", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output animation: .gif, or .mp4 when ffmpeg is installed.")
@click.option("--title", "titles", multiple=True, help="A title per motion (repeat in the same order).")
@click.option("--fps", default=20, show_default=True, type=click.IntRange(min=1))
def render(motions, out, titles, fps):
    """Draw motions as stick figures, side by side: .npy files of [T, 22, 3] joints (3D, with a ground grid
    and the root's trace) or [T, 22, 2] keypoints (2D).

    \b
    Example:
      fastmotion render data/synth/new_joints/000001.npy data/synth2d/keypoints/000001_v0.npy \\
          --title 3D --title 2D --out clip.gif
    """
    from fastmotion.render import load_motion, render_frames, save_animation

    if titles and len(titles) != len(motions):
        raise click.BadParameter(f"got {len(titles)} titles for {len(motions)} motions", param_hint="--title")
    try:
        loaded = [load_motion(m) for m in motions]
    except (FileNotFoundError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="MOTIONS") from None
    path = save_animation(render_frames(loaded, list(titles) or None), out, fps=fps)
    click.echo(f"wrote {path} ({max(len(m) for m in loaded)} frames)")
