"""`fastmotion render`: draw motion files as an animation."""
from __future__ import annotations

from pathlib import Path

import click


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
