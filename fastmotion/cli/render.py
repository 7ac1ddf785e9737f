"""`fastmotion render`: draw motion files as an animation."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import SKELETON_NAMES


@click.command("render")
@click.argument("motions", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output animation: .gif, or .mp4 when ffmpeg is installed.")
@click.option("--title", "titles", multiple=True, help="A title per motion (repeat in the same order).")
@click.option("--fps", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--skeleton", type=click.Choice(SKELETON_NAMES), default=None,
              help="The layout to draw a motion with when its joint count fits it; default: by joint count (22: "
                   "SMPL-22, 17: COCO-17, 18: OpenPose-18, 25: OpenPose BODY_25).")
def render(motions, out, titles, fps, skeleton):
    """Draw motions as stick figures, side by side: .npy files of [T, J, 3] joints (3D, with a ground grid
    and the root's trace) or [T, J, 2] keypoints (2D), J the joint count of a known skeleton (SMPL-22 by default).

    \b
    Example:
      fastmotion render data/synth/new_joints/000001.npy data/synth2d/keypoints/000001_v0.npy \\
          --title 3D --title 2D --out clip.gif
    """
    from fastmotion.render import load_motion, render_frames, save_animation

    if titles and len(titles) != len(motions):
        raise click.BadParameter(f"got {len(titles)} titles for {len(motions)} motions", param_hint="--title")
    try:
        loaded = [load_motion(m, skeleton) for m in motions]
    except (FileNotFoundError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="MOTIONS") from None
    path = save_animation(render_frames(loaded, list(titles) or None, skeleton=skeleton), out, fps=fps)
    click.echo(f"wrote {path} ({max(len(m) for m in loaded)} frames)")
