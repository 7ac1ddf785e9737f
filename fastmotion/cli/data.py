"""`fastmotion data ...`: build datasets (the synthetic corpus, 2D renderings of 3D datasets, VideoMDM's
teacher)."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import SKELETON_NAMES, resolve_device, user_errors


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

    with user_errors(), _progress("synthesising", num) as bar:
        summary = build_synthetic(out, num, seed, progress=bar.update)
    click.echo(f"wrote {summary['clips']} clips ({len(summary['actions'])} action combinations) to {out}")


@data.command("bvh")
@click.option("--from", "src", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of .bvh files (CMU, Mixamo or SMPL joint names).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="3D dataset folder to write (HumanML3D layout); replaced if it exists.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="The split every clip goes to.")
@click.option("--units", default="auto", show_default=True,
              help="The files' unit: auto (from the skeleton's size), m, cm, mm, inch, cmu, or metres per unit.")
def data_bvh(src, out, split, units):
    """Turn .bvh files into a 3D dataset (SMPL-22 joints, metres, y up, 20 fps) to render and evaluate on.

    \b
    Example:
      fastmotion data bvh --from ../shared/data/cmu --out data/cmu3d
    """
    from fastmotion.data.build import build_from_bvh
    from fastmotion.data.bvh import UNITS

    if units != "auto" and units not in UNITS:
        try:
            units = float(units)
        except ValueError:
            raise click.BadParameter(f"{units!r}: auto, {', '.join(UNITS)} or metres per file unit",
                                     param_hint="--units") from None

    total = len(list(src.glob("*.bvh"))) if src.is_dir() else 0
    with user_errors(), _progress("reading", total) as bar:
        summary = build_from_bvh(src, out, split, units, progress=bar.update)
    click.echo(f"wrote {summary['clips']} clip(s) to {out} ({split} split); skipped {len(summary['skipped'])}")
    for reason in summary["skipped"][:10]:
        click.echo(f"  skipped: {reason}", err=True)


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
@click.option("--focal", default=1000.0, show_default=True, type=click.FloatRange(min=1e-6),
              help="Focal length in pixels.")
@click.option("--up", type=click.Choice(["y", "z"]), default="y", show_default=True,
              help="The axis the source's bodies stand along: z for z-up data (AMASS, SMPL in Blender); it is "
                   "turned to fastmotion's y up.")
@click.option("--layout", type=click.Choice(["smpl22", "coco17"]), default="smpl22", show_default=True,
              help="coco17: the keypoints a detector gives, [T, 17, 3] with confidences (then `data import` it).")
@click.option("--noise", type=click.Choice(["none", "detector"]), default="none", show_default=True,
              help="detector (with --layout coco17): correlated jitter, dropouts, left-right swaps and missed frames "
                   "(fastmotion/data/detector.py), seeded by --seed.")
@click.option("--no-camera", is_flag=True, help="Write only K: the camera pose goes to eval3d/cameras/ (held out).")
def data_render(src, out, views, seed, min_depth, focal, up, layout, noise, no_camera):
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
    with user_errors():
        total = sum(len(hml.read_split(src, s)) for s in hml.SPLITS if (src / f"{s}.txt").exists())
    with user_errors(), _progress("rendering", total) as bar:
        summary = render_2d(src, out, views=views, seed=seed, min_depth=min_depth, focal=focal,
                            progress=bar.update, up=up, layout=layout, noise=noise, camera=not no_camera)
    clips = ", ".join(f"{n} {s}" for s, n in summary["clips"].items())
    click.echo(f"wrote {clips} 2D clips to {out}; skipped {summary['skipped']} bad clip(s)")
    for reason in summary["skipped_reasons"][:10]:
        click.echo(f"  skipped: {reason}", err=True)
    _warn_about_captions(out)


def _warn_about_captions(root: Path) -> None:
    """Name the caption files the text encoders cannot take (text-to-motion training would refuse them)."""
    from fastmotion.data import humanml3d as hml
    from fastmotion.errors import DatasetError
    from fastmotion.models.text import CONTEXT, Tokenizer, check_captions

    tokenizer, bad = Tokenizer(), []
    for path in sorted((root / "texts").glob("*.txt")):
        try:
            check_captions({path: [c.text for c in hml.parse_captions(path)]}, tokenizer)
        except DatasetError as err:
            bad.append(str(err))
    if bad:
        click.echo(f"warning: {len(bad)} caption file(s) have a caption longer than the text encoders' "
                   f"{CONTEXT - 2} BPE tokens (text-to-motion training will refuse them); first: {bad[0]}", err=True)


@data.command("teacher")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="2D dataset folder (from `fastmotion data render`).")
@click.option("--mlrq", "mlrq_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Lift the 2D with this ML-RQ checkpoint (the project's own 2D-only lifter) ...")
@click.option("--lifted", "lifted_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="... or take NAME.npy [T, 22, 3] lifted motions (metres, y up) from this folder (any lifter).")
@click.option("--cameras", type=click.Choice(["auto", "dataset", "epnp"]), default="auto", show_default=True,
              help="auto: the dataset's camera when there is one, else EPnP + LM on the teacher's first 24 frames.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Teacher folder (default: DATA/teacher).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def data_teacher(data, mlrq_path, lifted_dir, cameras, out, device):
    """Build VideoMDM's noisy 3D teacher for every clip of a 2D dataset: NAME.npy world joints, cameras/NAME.npz,
    and report.json listing every skipped clip with its reason.

    \b
    Examples:
      fastmotion data teacher --data data/synth2d --mlrq runs/mlrq/last.pt
      fastmotion data teacher --data data/video2d --lifted wham_out/ --cameras epnp
    """
    from fastmotion.pipelines.teacher import build_teacher

    out = out or data / "teacher"
    names = sum(len((data / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")
                if (data / f"{s}.txt").exists())
    with user_errors(), _progress("teacher", names) as bar:
        report = build_teacher(data, out, mlrq_path, lifted_dir, cameras, resolve_device(device), bar.update)
    click.echo(f"wrote {report['written']} teacher motion(s) to {out}; skipped {len(report['skipped'])} "
               f"(reasons in {out / 'report.json'})")


@data.command("import")
@click.option("--from", "src", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of keypoint files: NAME.json (COCO-style: frames, a COCO dict or detector results with "
                   "track ids), NAME/ (OpenPose *_keypoints.json per frame) or NAME.npy [T, K, 2|3].")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (the layout of `data render`, cameras without a pose); replaced.")
@click.option("--layout", type=click.Choice(SKELETON_NAMES),
              default=None, help="Joint order of the keypoints (default: coco17 for JSON, from the count otherwise).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Frame rate of the source; clips are resampled to 20 fps.")
@click.option("--focal", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Focal length in pixels (default: the larger image side).")
@click.option("--image-size", default=None, help="W,H in pixels (default: a COCO file's images, else the "
                                                 "keypoints' extent).")
@click.option("--texts", type=click.Path(exists=True, path_type=Path), default=None,
              help="Captions: a folder of VIDEO.txt or a CSV (name,caption); default FROM/texts/ when present.")
@click.option("--max-gap", type=click.IntRange(min=0), default=5, show_default=True,
              help="A track is cut where the person is lost for more than this many frames (at 20 fps).")
@click.option("--min-frames", type=click.IntRange(min=1), default=16, show_default=True,
              help="Shorter pieces are dropped (and reported).")
@click.option("--max-frames", type=click.IntRange(min=1), default=196, show_default=True,
              help="Longer pieces are split at calm frames.")
@click.option("--native", is_flag=True,
              help="Keep the keypoints' own layout (e.g. COCO-17) instead of completing SMPL-22: for MVLift, which "
                   "lifts any skeleton (the ML-RQ and VideoMDM need SMPL-22).")
def data_import(src, out, layout, fps, focal, image_size, texts, max_gap, min_frames, max_frames, native):
    """Turn 2D keypoint tracks from a pose detector into a 2D-only training dataset.

    Joints the detector does not give are completed for the models' input and have confidence 0
    (OUT/confidence/), so no loss trusts them. OUT/report.json lists every cut and dropped piece with its reason.

    \b
    Examples:
      fastmotion data import --from detections/ --out data/video2d --fps 30
      fastmotion data import --from detections/ --out data/video2d-coco --fps 30 --native   # for MVLift
    """
    from fastmotion.data.importer import import_keypoints

    if image_size:
        try:
            image_size = tuple(float(v) for v in image_size.split(","))
            assert len(image_size) == 2 and min(image_size) > 0
        except (ValueError, AssertionError):
            raise click.BadParameter("expected W,H in pixels", param_hint="--image-size") from None
    total = sum(1 for _ in src.iterdir()) if src.is_dir() else 0
    with user_errors(), _progress("importing", total) as bar:
        summary = import_keypoints(src, out, layout, fps, focal, image_size, texts, max_gap, min_frames, max_frames,
                                   progress=bar.update, native=native)
    clips = ", ".join(f"{n} {s}" for s, n in summary["clips"].items())
    click.echo(f"wrote {clips} clips from {summary['tracks']} track(s) to {out}; {summary['cut']} piece(s) cut, "
               f"{summary['dropped']} dropped (reasons in {out / 'report.json'})")


@data.command("mvlift")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="MVLift stage-1 checkpoint (from `fastmotion train mvlift`), frozen.")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="2D dataset folder in the checkpoint's skeleton (`data render` or `data import`).")
@click.option("--split", default="train", show_default=True, help="The split whose clips are lifted.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Multi-view folder to write; an existing one made from the same checkpoint and settings resumes "
                   "(clips done are kept).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many clips of the split.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Every STRIDE-th clip of the split.")
@click.option("--views", type=click.IntRange(min=3), default=4, show_default=True,
              help="Ring cameras of the written data, 360 / views degrees apart (view 0: the observed one).")
@click.option("--distance", type=click.FloatRange(min=0, min_open=True), default=2.8, show_default=True,
              help="Their distance from the first frame's hip centre (the observed camera's is scaled to it).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Windows whose recovered 3D reprojects into the observed view with a larger mean error (in the "
                   "2D normalisation: the first pose spans [-1, 1]) are left out, and listed.")
@click.option("--mvlift-config", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="Stage-2 preset (as `lift --model mvlift`).")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Stage-2 iterations per window (default: the preset's).")
@click.option("--batch-clips", type=click.IntRange(min=1), default=32, show_default=True,
              help="Windows optimised together (whole clips per batch).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds stage 2's draws (per window, with the clip's name and the window's start).")
@click.option("--render", is_flag=True, help="Also write OUT/preview/NAME.gif for the first 3 clips kept: the "
                                            "observed 2D and the views made from its 3D.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Default: cuda if visible.")
def data_mvlift(checkpoint, data, split, out, limit, stride, views, distance, threshold, mvlift_config, iterations,
                batch_clips, seed, render, device):
    """MVLift's stage 3: lift every clip of a split by stage 2 + 3D recovery, then project the 3D into a ring of
    views; the multi-view data that `fastmotion train mvlift-mv` learns from. Killed, it resumes where it stopped.

    OUT/done.jsonl lists every clip done and the windows left out with the reason (a poor stage-2 result).

    \b
    Example:
      fastmotion data mvlift --checkpoint runs/mvlift/last.pt --data data/synth2d --out data/synth-mv
      fastmotion train mvlift-mv --data data/synth-mv --out runs/mvlift-mv
    """
    from dataclasses import asdict

    from fastmotion.checkpoint import load_checkpoint
    from fastmotion.pipelines.lifting import dataset_clips
    from fastmotion.pipelines.mvlift import MVLiftLifter
    from fastmotion.pipelines.mvlift_data import RingSettings, build_multiview_data, clip_batches, file_sha256

    from ._common import announce, lift_with_progress

    with user_errors():
        state = load_checkpoint(checkpoint, "LineDenoiser")
        skeleton = state["model_config"]["skeleton"]
        clips = dataset_clips(data, split, limit, skeleton, stride)
        announce(checkpoint)
        ring = RingSettings(views, distance, threshold)
        lifter = MVLiftLifter.from_checkpoint(checkpoint, resolve_device(device), mvlift_config, seed,
                                              batch_clips=batch_clips, **({"iterations": iterations} if iterations
                                                                          else {}))
        settings = {k: v for k, v in lifter.settings().items() if k != "batch_clips"}
        meta = {"format": "mvlift-multiview", "skeleton": skeleton, "joints": lifter.model.config.joints,
                "window": lifter.length, "ring": asdict(ring), "stage2": settings,
                "source": {"data": str(data.resolve()), "split": split},
                "stage1": {"checkpoint": str(checkpoint.resolve()), "sha256": file_sha256(checkpoint),
                           "step": int(state["step"]), "skeleton": skeleton}}
        from fastmotion.pipelines.mvlift_data import done_clips

        done = done_clips(out)  # a resumed run's bar counts the clips left
        todo = [c for c in clips if c.name not in done]
        total = len(clip_batches(lifter, todo)) * lifter.config.iterations
        report = lift_with_progress(lifter, todo, lambda progress: build_multiview_data(
            lifter, todo, out, meta, ring, progress), total)
    shown = report["this_run"][:10]
    for line in shown:
        click.echo(f"left out: {line}", err=True)
    if len(report["this_run"]) > len(shown):
        click.echo(f"left out: ... and {len(report['this_run']) - len(shown)} more (done.jsonl)", err=True)
    if render:
        _preview(out, 3)
    click.echo(f"{out}: {report['clips']} clips done, {report['windows']} windows kept, {len(report['left_out'])} "
               f"left out (poor stage-2 result), {len(report['skipped'])} clips skipped (reasons in "
               f"{out / 'done.jsonl'})")


def _preview(out: Path, count: int) -> None:
    """GIFs of the first `count` clips kept: each view of their first window."""
    import numpy as np

    from fastmotion.pipelines.mvlift_data import done_clips, read_meta
    from fastmotion.render import render_frames, save_animation

    meta = read_meta(out)
    step = 360 // meta["ring"]["views"]
    names = [n for n, d in done_clips(out).items() if d["windows"]][:count]
    (out / "preview").mkdir(exist_ok=True)
    for name in names:
        with np.load(out / "windows" / f"{name}.npz") as f:
            views, length = f["views"][0], int(f["lengths"][0])
        titles = ["view 0 (observed)"] + [f"view {k} ({k * step} deg)" for k in range(1, len(views))]
        save_animation(render_frames([v[:length] for v in views], titles, meta["skeleton"]),
                       out / "preview" / f"{name}.gif")
