"""`fastmotion lift`: 2D keypoints to 3D motion with any method's `Lifter` (fastmotion.pipelines.lifting)."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import (SKELETON_NAMES, announce, lift_with_progress, lifter_settings, mvlift_options,
                      resolve_device, user_errors)


@click.command("lift")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ML-RQ checkpoint (from `fastmotion train mlrq`), or with --model mdm a VideoMDM checkpoint, or "
                   "with --model mvlift a `train mvlift` (stage 2) or `train mvlift-mv` (feed-forward) checkpoint.")
@click.option("--model", "model_kind", type=click.Choice(["mlrq", "mdm", "mvlift"]), default="mlrq",
              show_default=True,
              help="mdm: VideoMDM's guided lifting (DDPM, each predicted motion projected onto the keypoints' "
                   "camera rays); needs --data with cameras and a teacher folder. mvlift: MVLift's multi-view SDS "
                   "optimisation and 3D recovery with a `train mvlift` checkpoint, or its feed-forward lifting "
                   "(the other views sampled in one pass, then triangulated) with a `train mvlift-mv` checkpoint.")
@mvlift_options
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --model mdm: the teacher folder giving each clip's camera in the model's frame "
                   "(default: DATA/teacher).")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Lift every clip of this 2D dataset's --split ...")
@click.option("--split", default="test", show_default=True)
@click.option("--keypoints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="... or one keypoint file: .npy [T, J, 2|3] or COCO-style .json (pixels), J of a --layout below.")
@click.option("--layout", default=None,
              type=click.Choice(SKELETON_NAMES),
              help="Joint order of --keypoints (default: coco17 for .json; from the joint count for .npy: 22 "
                   "smpl22, 17 coco17, 18 openpose18, 25 openpose25). A file whose skeleton does not fit it is "
                   "refused.")
@click.option("--track", default=None, help="The person (track_id) of a --keypoints .json with several (default: "
                                            "the one seen in the most frames).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Frame rate of --keypoints (resampled to the models' 20 fps).")
@click.option("--intrinsics", default=None, help="fx,fy,cx,cy of the camera for --keypoints (pixels); default: "
                                                 "the image centred on the keypoints, focal its larger side.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.npy 3D joints [T, J, 3] (camera frame, in units of the subject's depth; J = 22, "
                   "or for MVLift the skeleton its stage 1 was trained on), each clip's bones held at one skeleton (on "
                   "SMPL-22 near an adult's proportions).")
@click.option("--render", is_flag=True, help="Also write NAME.gif: the input 2D beside the lifted 3D (and, for "
                                            "--data, the held-out true 3D from eval3d/ when it is there), the 3D "
                                            "panels through one camera, the lift at the truth's height (else "
                                            "1.7 m), a legend (left/right colours, the grid's 0.5 m).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Lift at most this many clips of --data.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Lift every STRIDE-th clip of --data's split.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def lift(checkpoint, model_kind, mvlift_config, iterations, mvlift_mode, teacher, data, split, keypoints, layout,
         track, fps, intrinsics, out, render, limit, stride, device):
    """Lift 2D keypoint sequences to 3D motion with a trained ML-RQ (or a VideoMDM, --model mdm, or MVLift's
    optimisation, --model mvlift).

    \b
    Examples:
      fastmotion lift --checkpoint runs/mlrq/last.pt --data data/synth2d --split test --out lifted --render
      fastmotion lift --checkpoint runs/mlrq/last.pt --keypoints video.json --out lifted
      fastmotion lift --model mdm --checkpoint runs/mdm/last.pt --data data/synth2d --out lifted-mdm
      fastmotion lift --model mvlift --checkpoint runs/mvlift/last.pt --keypoints video.json --out lifted-mvlift
      fastmotion lift --model mvlift --checkpoint runs/mvlift-mv/last.pt --data data/synth2d --out lifted-mv
    """
    import numpy as np

    from fastmotion.motion.free3d import upright
    from fastmotion.pipelines.lifting import (dataset_clips, lift_bodies, lifter_skeleton, load_lifter,
                                              read_keypoint_file)

    if (data is None) == (keypoints is None):
        raise click.UsageError("give exactly one of --data or --keypoints")
    if model_kind == "mdm" and data is None:
        raise click.UsageError("--model mdm lifts the clips of a dataset (--data): it needs their cameras and teacher")
    if intrinsics:
        try:
            intrinsics = tuple(float(v) for v in intrinsics.split(","))
            assert len(intrinsics) == 4
        except (ValueError, AssertionError):
            raise click.BadParameter("expected fx,fy,cx,cy", param_hint="--intrinsics") from None
    with user_errors():
        skeleton = lifter_skeleton(model_kind, checkpoint)
        clips = (dataset_clips(data, split, limit, skeleton, stride) if data is not None else  # the input: checked up front
                 [read_keypoint_file(keypoints, intrinsics, layout, _track_id(track), fps, skeleton)])
        announce(checkpoint)
        options = lifter_settings(model_kind, mvlift_config, iterations, mvlift_mode, data=data, split=split,
                                  teacher=teacher)
        lifter = load_lifter(model_kind, checkpoint, resolve_device(device),
                             **({"input_check": True} if model_kind == "mlrq" else options))
        left_out = []
        lifted = lift_with_progress(lifter, clips,
                                    lambda progress: lift_bodies(lifter, clips, progress, left_out=left_out))
    for line in getattr(lifter, "unlike_training", []) + getattr(lifter, "skipped", []) + left_out:
        click.echo(f"warning: {line}", err=True)
    out.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        joints = lifted.get(clip.name)
        if joints is None:
            click.echo(f"{clip.name}: not lifted ({lifter.name} left it out)", err=True)
            continue
        np.save(out / f"{clip.name}.npy", joints.numpy().astype(np.float32))
        if render:
            from fastmotion.render import render_frames, save_animation

            truth = data / "eval3d" / "new_joints" / f"{clip.name}.npy" if data is not None else None
            truth = np.load(truth) if truth is not None and truth.exists() else None  # shown, never used otherwise
            # a lift has no metric scale: drawn at the truth's height where there is one (else 1.7 m tall)
            height = float(np.median(truth[..., 1].max(-1) - truth[..., 1].min(-1))) if truth is not None else 1.7
            shown = upright(joints, clip.camera[1] if clip.camera is not None else None, height=height)
            panels, titles = [clip.keypoints.numpy()], ["input 2D"]
            views = getattr(lifter, "views", {}).get(clip.name)  # MVLift: the optimised views of the first window
            if views is not None:
                step = 360 // len(views)
                panels += [v.numpy() for v in views[1:]]
                titles += [f"view {k} ({k * step} deg)" for k in range(1, len(views))]
            panels.append(shown.numpy())
            titles.append("lifted 3D")
            if truth is not None:
                panels.append(truth)
                titles.append("hidden true 3D")
            save_animation(render_frames(panels, titles, skeleton), out / f"{clip.name}.gif")
    click.echo(f"lifted {len(lifted)} clip(s) into {out}")


def _track_id(text: str | None):
    """--track as the file has it: a number when it reads as one, else a name; default the longest track."""
    from fastmotion.data.keypoints import AUTO

    if text is None:
        return AUTO
    return int(text) if text.lstrip("-").isdigit() else text
