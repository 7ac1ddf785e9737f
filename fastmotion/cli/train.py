"""`fastmotion train ...`: one command per model, each a thin layer over its run in `fastmotion.train`, trained
through the one loop (`fastmotion.train.loop.Trainer`)."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import run_training, training_options

# default training steps per config
PRIOR_STEPS = {"small": 3000, "full": 100_000}  # small: 3000 (docs/real-data.md: a sharper prior lifts better)
MLRQ_STEPS = {"small": 5000, "full": 200_000}  # small: 5000 (docs/real-data.md: real val 35.2 vs 39.1 at 2500)
MDM_STEPS = {"small": 2000, "full": 600_000}
# small: 8000 (docs/methods/mvlift.md: 12000 steps lift val at 81.2 vs 89.1 for 3000)
MVLIFT_STEPS = {"small": 8000, "full": 200_000}
MVLIFT_MV_STEPS = {"small": 3000, "full": 200_000}


def _pitch(value: str) -> float | str:
    """--pitch: 'horizon' or degrees in [-90, 90]."""
    if value == "horizon":
        return value
    try:
        degrees = float(value)
    except ValueError:
        raise click.BadParameter(f"'horizon' or an angle in degrees, got {value!r}", param_hint="--pitch") from None
    if not -90 <= degrees <= 90:
        raise click.BadParameter(f"an angle within [-90, 90] degrees, got {degrees:g}", param_hint="--pitch")
    return degrees


@click.group()
def train():
    """Train models (each run: a folder with config.json, log.jsonl and an atomic checkpoint last.pt)."""


@train.command("prior")
@training_options()
def train_prior(data, out, preset, steps, batch_size, length, lr, seed, resume, ckpt_every, eval_every, device):
    """Train Free3D's 2D motion prior (a VQ-VAE with one codebook) on the dataset's 2D motions.

    \b
    Example:
      fastmotion train prior --data data/synth2d --out runs/prior --config small
    """
    from fastmotion.models.mlrq import MotionVQConfig
    from fastmotion.train.free3d import prior_run

    cfg = MotionVQConfig.preset(preset, levels=1)
    run_training(lambda b, n, dev: prior_run(data, cfg, b, n, dev), preset, steps, PRIOR_STEPS, batch_size, length,
                 lr, seed, resume, out, device, ckpt_every, eval_every)


@train.command("mlrq")
@training_options()
@click.option("--prior", "prior_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint of the frozen 2D prior (from `fastmotion train prior`).")
@click.option("--views", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random rotated views per motion scored by the prior (L_rec).")
@click.option("--no-rec", is_flag=True, help="Ablation: drop L_rec (the prior on rotated views).")
@click.option("--no-ori", is_flag=True, help="Ablation: drop L_ori (feet vs body orientation hinge).")
@click.option("--no-feat", is_flag=True, help="Ablation: drop L_feat (encoder feature consistency).")
@click.option("--rec-weight", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Weight of L_rec.")
@click.option("--ori-weight", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Weight of L_ori.")
@click.option("--feat-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of L_feat.")
@click.option("--max-yaw", type=click.FloatRange(min=0, max=180, min_open=True), default=180.0, show_default=True,
              help="L_rec's views turn the motion about the vertical by a yaw uniform in [-max, max) degrees.")
@click.option("--rec-through-codebook", is_flag=True,
              help="Score L_rec's views through the prior's codebook (Free3D as published) instead of its "
                   "continuous latent; it blew up with well-trained priors on real 2D (docs/real-data.md).")
@click.option("--up-from", type=click.Choice(["dataset", "lift", "search"]), default="dataset", show_default=True,
              help="The vertical that L_rec turns views about: the dataset's camera (for imported 2D: see --pitch), "
                   "estimated from the lift's torso, or the camera pitch (-10..40 degrees) under which the "
                   "prior finds the lift's views most plausible (experiments for 2D without cameras).")
@click.option("--pitch", default="horizon", show_default=True, callback=lambda ctx, param, value: _pitch(value),
              help="For 2D without camera poses (`data import`): how far down the camera looks, which sets L_rec's "
                   "vertical. 'horizon': estimated per clip from the 2D (the feet's image height against the "
                   "person's image size; clips that do not move in depth take the others' median; no roll "
                   "assumed); or one angle in degrees for every clip (0: level). Ignored where the dataset has "
                   "camera poses.")
def train_mlrq(data, out, preset, steps, batch_size, length, lr, seed, resume, ckpt_every, eval_every, device,
               prior_path, views, no_rec, no_ori, no_feat, rec_weight, ori_weight, feat_weight, max_yaw,
               rec_through_codebook, up_from, pitch):
    """Train the Motion-Lifting RQ-VAE from 2D alone: L_2D + L_rec + L_ori + L_feat + commitment.

    \b
    Example:
      fastmotion train mlrq --data data/synth2d --prior runs/prior/last.pt --out runs/mlrq --config small
    """
    import math

    from fastmotion.models.mlrq import MotionVQConfig
    from fastmotion.train.free3d import mlrq_run

    cfg = MotionVQConfig.preset(preset, levels=6)
    run_training(lambda b, n, dev: mlrq_run(data, prior_path, cfg, b, n, dev, views=views, use_rec=not no_rec,
                                            use_ori=not no_ori, use_feat=not no_feat,
                                            weights=(rec_weight, ori_weight, feat_weight),
                                            max_yaw=math.radians(max_yaw), rec_quantised=rec_through_codebook,
                                            up_from=up_from, pitch=pitch),
                 preset, steps, MLRQ_STEPS, batch_size, length, lr, seed, resume, out, device, ckpt_every, eval_every)


@train.command("mvlift")
@training_options()
@click.option("--line-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of L_line (predicted joints on their lines) against the L1 denoising loss.")
@click.option("--p-ring", type=click.FloatRange(min=0, max=1), default=0.5, show_default=True,
              help="Share of clips whose virtual epipole is another camera of a 30-view ring (else uniform in "
                   "[-3, 3]^2).")
def train_mvlift(data, out, preset, steps, batch_size, length, lr, seed, resume, ckpt_every, eval_every, device,
                 line_weight, p_ring):
    """Train MVLift's stage 1: a 2D motion diffusion model conditioned on one epipolar line per joint and frame
    (lines simulated through a virtual epipole; no second view is needed), L1 on x0 + L_line. Its checkpoint drives
    `fastmotion lift --model mvlift` (multi-view SDS optimisation and 3D recovery).

    \b
    Example:
      fastmotion train mvlift --data data/synth2d --out runs/mvlift --config small
    """
    from fastmotion.losses.mvlift import LineSimulation
    from fastmotion.models.mvlift import LineDenoiserConfig
    from fastmotion.train.mvlift import stage1_run

    cfg = LineDenoiserConfig.preset(preset)
    sim = LineSimulation(p_ring=p_ring)
    run_training(lambda b, n, dev: stage1_run(data, cfg, b, n, dev, sim, line_weight), preset, steps, MVLIFT_STEPS,
                 batch_size, length, lr, seed, resume, out, device, ckpt_every, eval_every)


@train.command("mvlift-mv")
@training_options(crop_length=False)
def train_mvlift_mv(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device):
    """Train MVLift's stage 4: a multi-view diffusion model (per-view temporal attention, a view embedding,
    cross-view attention per frame) that samples the unobserved views of a camera ring from the observed one, on
    the multi-view data of `fastmotion data mvlift`. `fastmotion lift --model mvlift` with its checkpoint lifts in
    one sampling pass (then triangulation), far faster than stage 2's optimisation.

    \b
    Example:
      fastmotion data mvlift --checkpoint runs/mvlift/last.pt --data data/synth2d --out data/synth-mv
      fastmotion train mvlift-mv --data data/synth-mv --out runs/mvlift-mv --config small
      fastmotion lift --model mvlift --checkpoint runs/mvlift-mv/last.pt --data data/synth2d --out lifted
    """
    from fastmotion.models.multiview import MultiViewDenoiserConfig
    from fastmotion.train.mvlift import multiview_run

    cfg = MultiViewDenoiserConfig.preset(preset)
    run_training(lambda b, _, dev: multiview_run(data, cfg, b, dev), preset, steps, MVLIFT_MV_STEPS, batch_size,
                 None, lr, seed, resume, out, device, ckpt_every, eval_every)


T2M_STEPS = {"evaluator": {"small": 600, "full": 50_000}, "mask": {"small": 3000, "full": 100_000},
             "res": {"small": 800, "full": 100_000}}
MLRQ_HELP = "ML-RQ checkpoint (from `fastmotion train mlrq`) whose codes the transformer learns; codes are extracted " \
            "once and cached in codes/ beside it."
CLIP_HELP = "Local CLIP ViT-B/32 weights (OpenAI's ViT-B-32.pt, JIT archive or state dict) for frozen CLIP text " \
            "features. Without it a small text encoder on CLIP's tokenizer trains with the model. " \
            "Nothing is downloaded."


def _t2m_train(kind):
    @training_options(crop_length=False)
    @click.option("--mlrq", "mlrq_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help=MLRQ_HELP)
    @click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help=CLIP_HELP)
    def command(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device, mlrq_path,
                clip_weights):
        from fastmotion.models.t2m import T2MConfig
        from fastmotion.train.t2m import t2m_run

        cfg = T2MConfig.preset(preset)
        run_training(lambda b, _, dev: t2m_run(kind, data, mlrq_path, cfg, b, dev, clip_weights), preset, steps,
                     T2M_STEPS[kind], batch_size, None, lr, seed, resume, out, device, ckpt_every, eval_every)

    return command


train.command("mask", help="""Train the masked transformer on the ML-RQ's first-level codes, conditioned on text
(cosine masking schedule, condition dropped 10% of the time for classifier-free guidance; a length head learns
each caption's motion length).

\b
Example:
  fastmotion train mask --data data/synth2d --mlrq runs/mlrq/last.pt --out runs/mask --config small""")(
    _t2m_train("mask"))

train.command("res", help="""Train the residual transformer: ML-RQ levels 2..L from the levels below and the text.

\b
Example:
  fastmotion train res --data data/synth2d --mlrq runs/mlrq/last.pt --out runs/res --config small""")(
    _t2m_train("res"))


@train.command("evaluator")
@training_options(crop_length=False)
def train_evaluator(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device):
    """Train the text-motion evaluator (contrastive motion and text encoders) behind `fastmotion eval t2m`.

    It trains on the held-out 3D (eval3d/) of the train split, which no generator ever reads; its checkpoint
    must never be used to train a generator.

    \b
    Example:
      fastmotion train evaluator --data data/synth2d --out runs/evaluator --config small
    """
    from fastmotion.metrics.evaluator import EvaluatorConfig
    from fastmotion.train.t2m import evaluator_run

    cfg = EvaluatorConfig.preset(preset)
    run_training(lambda b, _, dev: evaluator_run(data, cfg, b, dev), preset, steps, T2M_STEPS["evaluator"],
                 batch_size, None, lr, seed, resume, out, device, ckpt_every, eval_every)


@train.command("mdm")
@training_options(crop_length=False)
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Teacher folder from `fastmotion data teacher` (default: DATA/teacher).")
@click.option("--mode", type=click.Choice(["videomdm", "plain-mdm"]), default="videomdm", show_default=True,
              help="videomdm: the 2D objective after a warm-up; plain-mdm: the baseline, plain MDM on the teacher's "
                   "3D.")
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
@click.option("--high-noise", type=click.Choice(["2d", "plain-mdm"]), default="2d", show_default=True,
              help="2d (the paper): batches above t* take the 2D objective too; plain-mdm: they take the plain MDM "
                   "loss on the teacher's 3D, and the 2D objective trains only the multistep chains below t*.")
@click.option("--lambda-2d", type=float, default=1.0, show_default=True,
              help="Weight of the whole 2D objective against the plain MDM loss on the teacher (warm-up, and with "
                   "--high-noise plain-mdm the batches above t*). Adam's second moments are shared, so where the two "
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
      fastmotion train mdm --data data/synth2d --out runs/mdm-baseline --mode plain-mdm
      fastmotion train mdm --data data/synth2d --out runs/mdm-nodepth --depth-weight none
    """
    from fastmotion.losses.videomdm import VideoMDMLossConfig
    from fastmotion.models.mdm import MDMConfig
    from fastmotion.train.videomdm import VideoMDMConfig, mdm_run

    total = steps or MDM_STEPS[preset]
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
    run_training(lambda b, _, dev: mdm_run(data, teacher or data / "teacher", cfg, config, b, dev, clip_weights),
                 preset, steps, MDM_STEPS, batch_size, None, lr, seed, resume, out, device, ckpt_every, eval_every)

