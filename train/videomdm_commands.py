"""Click commands for VideoMDM: `fastmotion data teacher`, `fastmotion train mdm`, and the MDM paths of
`fastmotion sample --model mdm` and `fastmotion lift --model mdm` (helpers called from those commands)."""
from __future__ import annotations

from pathlib import Path

import click

from .commands import _announce, _device, _train, train, training_options


@click.command("teacher")
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
    from .loop import TrainingError
    from .teacher import build_teacher

    out = out or data / "teacher"
    names = sum(len((data / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")
                if (data / f"{s}.txt").exists())
    try:
        with click.progressbar(length=names, label="teacher", file=click.get_text_stream("stderr")) as bar:
            report = build_teacher(data, out, mlrq_path, lifted_dir, cameras, _device(device), bar.update)
    except (TrainingError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {report['written']} teacher motion(s) to {out}; skipped {len(report['skipped'])} "
               f"(reasons in {out / 'report.json'})")


@train.command("mdm")
@training_options(crop_length=False)
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Teacher folder from `fastmotion data teacher` (default: DATA/teacher).")
@click.option("--mode", type=click.Choice(["videomdm", "teacher"]), default="videomdm", show_default=True,
              help="videomdm: the 2D objective after a warm-up; teacher: the baseline, plain MDM on the teacher's 3D.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Steps of plain MDM on the teacher before the 2D objective (default: 20% of --steps).")
@click.option("--diffusion-steps", type=click.IntRange(min=2), default=50, show_default=True)
@click.option("--threshold", type=click.IntRange(min=0), default=12, show_default=True,
              help="t*: timesteps below it are trained by the multistep DDIM path.")
@click.option("--buckets", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--multistep-start", type=click.Choice(["inside", "above"]), default="inside", show_default=True,
              help="inside: the chain starts from the noised teacher in the top bucket below t*; above: one bucket "
                   "above t*, stepped from without a loss (LIS's 'further diffused to a higher level').")
@click.option("--lambda-cam", type=float, default=7.0, show_default=True)
@click.option("--lambda-vel", type=float, default=50.0, show_default=True, help="Relative to L_pos.")
@click.option("--lambda-repr", type=float, default=1.0, show_default=True)
@click.option("--depth-weight", type=click.Choice(["joint", "sample", "none"]), default="joint", show_default=True,
              help="joint: the paper's per-joint depth; sample: the released code's per-sample mean depth.")
@click.option("--min-depth", type=float, default=0.1, show_default=True)
@click.option("--root", type=click.Choice(["predicted", "teacher"]), default="predicted", show_default=True,
              help="predicted (the paper): the 2D losses see joints integrated from the predicted root velocities; "
                   "teacher: they see the teacher's root with the predicted pose, and the root channels regress "
                   "onto the teacher's (integrated root velocities drift by metres on a small model).")
@click.option("--lambda-root", type=float, default=1.0, show_default=True, help="With --root teacher.")
@click.option("--high-noise", type=click.Choice(["2d", "teacher"]), default="2d", show_default=True,
              help="2d (the paper): batches above t* take the 2D objective too; teacher: they take the plain MDM "
                   "loss on the teacher's 3D, and the 2D objective trains only the multistep chains below t*.")
@click.option("--lambda-2d", type=float, default=1.0, show_default=True,
              help="Weight of the whole 2D objective against the plain MDM loss on the teacher (warm-up, and with "
                   "--high-noise teacher the batches above t*). Adam's second moments are shared, so where the two "
                   "alternate the larger gradients set the step size of both.")
@click.option("--no-multistep", is_flag=True, help="Ablation: every batch draws t uniformly, loss once.")
@click.option("--no-ray", is_flag=True, help="Ablation: L_repr targets from the predicted joints, not their ray "
                                             "projections.")
@click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Local CLIP ViT-B/32 weights for frozen text features (default: a small trainable encoder).")
def train_mdm(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device, teacher, mode,
              warmup_steps, diffusion_steps, threshold, buckets, multistep_start, lambda_cam, lambda_vel, lambda_repr,
              depth_weight, min_depth, root, lambda_root, high_noise, lambda_2d, no_multistep, no_ray, clip_weights):
    """Train VideoMDM: an MDM denoising the teacher's 3D, supervised in 2D (depth-weighted reprojection, 2D
    velocity, ray-projection alignment of the redundant channels), multistep DDIM training below t*.

    \b
    Examples:
      fastmotion train mdm --data data/synth2d --out runs/mdm --config small
      fastmotion train mdm --data data/synth2d --out runs/mdm-baseline --mode teacher
      fastmotion train mdm --data data/synth2d --out runs/mdm-nodepth --depth-weight none
    """
    from fastmotion.losses.videomdm import VideoMDMLossConfig
    from fastmotion.models.mdm import MDMConfig

    from .videomdm import VideoMDMConfig, mdm_run

    total = steps or STEPS[preset]
    try:
        losses = VideoMDMLossConfig(lambda_cam=lambda_cam, lambda_vel=lambda_vel, lambda_repr=lambda_repr,
                                    depth_weight=depth_weight, min_depth=min_depth, ray_targets=not no_ray,
                                    root=root, lambda_root=lambda_root)
        config = VideoMDMConfig(mode=mode, warmup_steps=total // 5 if warmup_steps is None else warmup_steps,
                                diffusion_steps=diffusion_steps, multistep=not no_multistep, threshold=threshold,
                                buckets=buckets, multistep_start=multistep_start, high_noise=high_noise,
                                lambda_2d=lambda_2d,
                                losses=losses)
        config.multistep_config()
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    cfg = MDMConfig.preset(preset)
    _train(lambda b, _, dev: mdm_run(data, teacher or data / "teacher", cfg, config, b, dev, clip_weights), preset,
           steps, STEPS, batch_size, None, lr, seed, resume, out, device, ckpt_every, eval_every)


STEPS = {"small": 2000, "full": 600_000}


def mdm_lifted(checkpoint, data, split, teacher, device, names=None, seed=0, guidance=2.5) -> dict:
    """Guided lifting of the clips `names` (default all) of a split -> {name: camera-frame joints [T', 22, 3]}."""
    import torch

    from .t2m import _clip
    from .videomdm import TeacherBank, lift_clips, load_mdm

    model, extra = load_mdm(checkpoint, device)
    clip = _clip(extra.get("clip_weights"), device) if model.text is None else None
    bank = TeacherBank(data, teacher or Path(data) / "teacher", split, model.mdm.config.max_frames)
    if names is not None:
        wanted = set(names)
        bank.windows = [w for w in bank.windows if w.name in wanted]
    with click.progressbar(length=len(bank.windows), label="guided lifting",
                           file=click.get_text_stream("stderr")) as bar:
        return lift_clips(model, bank, torch.Generator().manual_seed(seed), guidance, clip,
                          diffusion_steps=extra["videomdm"]["diffusion_steps"], progress=bar.update)


def sample_with_mdm(checkpoint, prompts: list[str], frames: int | None, generator, clip_weights, device) -> list:
    """Motions [T, 22, 3] (metres, y up, canonical frame) for each prompt, from a VideoMDM checkpoint."""
    from .loop import TrainingError
    from .t2m import _clip
    from .videomdm import features_to_world, load_mdm, sample_mdm

    if checkpoint is None:
        raise click.BadParameter("--model mdm needs the checkpoint of `fastmotion train mdm`", param_hint="--checkpoint")
    try:
        _announce(checkpoint)
        model, extra = load_mdm(checkpoint, device)
        clip = _clip(clip_weights or extra.get("clip_weights"), device) if model.text is None else None
    except TrainingError as err:
        raise click.ClickException(str(err)) from None
    lo, hi = extra["frame_range"]
    length = frames if frames is not None else (lo + hi) // 2
    if not lo <= length <= hi:
        raise click.BadParameter(f"length {length} frames ({length / 20:.2f} s) is outside the trained range "
                                 f"{lo}..{hi} frames", param_hint="--length")
    x = sample_mdm(model, prompts, [length] * len(prompts), generator, clip=clip,
                   diffusion_steps=extra["videomdm"]["diffusion_steps"])
    return list(features_to_world(model, x).cpu())
