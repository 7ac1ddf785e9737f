"""`fastmotion data ...`: build datasets (the synthetic corpus, 2D renderings of 3D datasets, VideoMDM's
teacher)."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import resolve_device, user_errors


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
def data_render(src, out, views, seed, min_depth, focal, up):
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
    with user_errors(), _progress("rendering", total) as bar:
        summary = render_2d(src, out, views=views, seed=seed, min_depth=min_depth, focal=focal,
                            progress=bar.update, up=up)
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
