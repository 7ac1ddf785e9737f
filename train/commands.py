"""Click commands: `fastmotion train prior|mlrq`, `fastmotion lift`, `fastmotion eval lift`. Heavy imports
happen inside the commands so that `--help` stays fast."""
from __future__ import annotations

import json
from pathlib import Path

import click

DATA_HELP = "2D-only dataset folder written by `fastmotion data render` (its 3D in eval3d/ is never trained on)."


def _device(device):
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("no CUDA device is visible to torch", param_hint="--device")
    return torch.device(device)


def training_options(crop_length: bool = True):
    """The options every `fastmotion train` command shares (`--length` where the model trains on crops)."""
    return lambda command: _add_options(command, crop_length)


def _add_options(command, crop_length):
    options = [
        click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path), help=DATA_HELP),
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Run folder: config.json, log.jsonl, last.pt (atomic checkpoint)."),
        click.option("--config", "preset", type=click.Choice(["small", "full"]), default="small", show_default=True,
                     help="Model size: 'small' for CPU, 'full' = Free3D/MoMask sizes (6 x 512 x 512) for a GPU."),
        click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (default per config)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: 64 small, 256 full."),
        *([click.option("--length", type=click.IntRange(min=4), default=None,
                        help="Crop length in frames at 20 fps (default: 32 small, 64 full).")] if crop_length else []),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint."),
        click.option("--ckpt-every", type=click.IntRange(min=1), default=250, show_default=True,
                     help="Checkpoint every this many steps (and at the end)."),
        click.option("--eval-every", type=click.IntRange(min=1), default=500, show_default=True,
                     help="Evaluate on the val split every this many steps (and at the end)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Default: cuda if visible."),
        click.option("--blowup-factor", type=click.FloatRange(min=0), default=10.0, show_default=True,
                     expose_value=False, callback=_keep("blowup_factor"),
                     help="Stop when a step's loss exceeds this many times the median of the last 100 (of the "
                          "same objective); 0: never."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _keep(name):
    """A click callback that keeps an option's value in the context for `_train` (options every command shares
    but none of their functions needs)."""
    def keep(ctx, param, value):
        ctx.meta[f"fastmotion.{name}"] = value
        return value
    return keep


DEFAULTS = {"small": dict(batch_size=64, length=32, lr=1e-3), "full": dict(batch_size=256, length=64, lr=2e-4)}


def _train(run_factory, preset, steps, default_steps, batch_size, length, lr, seed, resume, out, device,
           ckpt_every, eval_every):
    import torch

    from .loop import TrainConfig, Trainer, TrainingError

    d = DEFAULTS[preset]
    config = TrainConfig(steps=steps or default_steps[preset], batch_size=batch_size or d["batch_size"],
                         lr=lr or d["lr"], seed=seed, warmup=50 if preset == "small" else 500,
                         ckpt_every=ckpt_every, eval_every=eval_every,
                         blowup_factor=click.get_current_context().meta.get("fastmotion.blowup_factor", 10.0))
    try:
        torch.manual_seed(seed)  # the initial weights
        run = run_factory(config.batch_size, length or d["length"], _device(device))
        trainer = Trainer(run, config, out, resume=resume)
        last = trainer.fit()
    except TrainingError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"done: step {trainer.step}, " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()) +
               f"; checkpoint {out / 'last.pt'}" + (f"; best {out / 'best.pt'} (step {trainer.best['step']}, "
                                                     f"{trainer.best['metric']} {trainer.best['value']:.4g})"
                                                     if trainer.best else ""))


def _announce(checkpoint) -> str:
    """Say on stderr which checkpoint a command reads (best or last, which step); returns the line."""
    from .loop import describe_checkpoint

    text = describe_checkpoint(checkpoint)
    click.echo(f"checkpoint {text}", err=True)
    return text


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

    from .free3d import prior_run

    cfg = MotionVQConfig.preset(preset, levels=1)
    _train(lambda b, n, dev: prior_run(data, cfg, b, n, dev), preset, steps, {"small": 800, "full": 100_000},
           batch_size, length, lr, seed, resume, out, device, ckpt_every, eval_every)


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
def train_mlrq(data, out, preset, steps, batch_size, length, lr, seed, resume, ckpt_every, eval_every, device,
               prior_path, views, no_rec, no_ori, no_feat, rec_weight, ori_weight, feat_weight, max_yaw,
               rec_through_codebook):
    """Train the Motion-Lifting RQ-VAE from 2D alone: L_2D + L_rec + L_ori + L_feat + commitment.

    \b
    Example:
      fastmotion train mlrq --data data/synth2d --prior runs/prior/last.pt --out runs/mlrq --config small
    """
    from fastmotion.models.mlrq import MotionVQConfig

    from .free3d import mlrq_run

    cfg = MotionVQConfig.preset(preset, levels=6)
    import math

    _train(lambda b, n, dev: mlrq_run(data, prior_path, cfg, b, n, dev, views=views, use_rec=not no_rec,
                                      use_ori=not no_ori, use_feat=not no_feat,
                                      weights=(rec_weight, ori_weight, feat_weight), max_yaw=math.radians(max_yaw),
                                      rec_quantised=rec_through_codebook),
           preset, steps, {"small": 2500, "full": 200_000}, batch_size, length, lr, seed, resume, out, device,
           ckpt_every, eval_every)


@click.command("lift")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ML-RQ checkpoint (from `fastmotion train mlrq`), or with --model mdm a VideoMDM checkpoint.")
@click.option("--model", "model_kind", type=click.Choice(["mlrq", "mdm"]), default="mlrq", show_default=True,
              help="mdm: VideoMDM's guided lifting (DDPM, each predicted motion projected onto the keypoints' "
                   "camera rays); needs --data with cameras and a teacher folder.")
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --model mdm: the teacher folder giving each clip's camera in the model's frame "
                   "(default: DATA/teacher).")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Lift every clip of this 2D dataset's --split ...")
@click.option("--split", default="test", show_default=True)
@click.option("--keypoints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="... or one keypoint file: .npy [T, 22|17, 2|3] or COCO-style .json (pixels).")
@click.option("--intrinsics", default=None, help="fx,fy,cx,cy of the camera for --keypoints (pixels); default: "
                                                 "focal 1000 at the keypoints' bounding-box centre.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.npy 3D joints [T, 22, 3] (camera frame, in units of the subject's depth).")
@click.option("--render", is_flag=True, help="Also write NAME.gif: the input 2D beside the lifted 3D (and, for "
                                            "--data, the held-out true 3D from eval3d/ when it is there).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Lift at most this many clips of --data.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def lift(checkpoint, model_kind, teacher, data, split, keypoints, intrinsics, out, render, limit, device):
    """Lift 2D keypoint sequences to 3D motion with a trained ML-RQ (or a VideoMDM, --model mdm).

    \b
    Examples:
      fastmotion lift --checkpoint runs/mlrq/last.pt --data data/synth2d --split test --out lifted --render
      fastmotion lift --checkpoint runs/mlrq/last.pt --keypoints video.json --out lifted
      fastmotion lift --model mdm --checkpoint runs/mdm/last.pt --data data/synth2d --out lifted-mdm
    """
    import numpy as np

    from fastmotion.motion.free3d import upright
    from fastmotion.ops.reference import normalized_keypoints

    from .free3d import ClipBank, lift as lift_clip, load_mlrq
    from .loop import TrainingError

    if (data is None) == (keypoints is None):
        raise click.UsageError("give exactly one of --data or --keypoints")
    if model_kind == "mdm" and data is None:
        raise click.UsageError("--model mdm lifts the clips of a dataset (--data): it needs their cameras and teacher")
    try:
        _announce(checkpoint)
        if data is not None:
            bank = ClipBank(data, split)
            items = list(zip(bank.names, bank.clips, bank.cameras))[:limit]
        else:
            items = [(keypoints.stem, _read_keypoints(keypoints, intrinsics, normalized_keypoints), None)]
        if model_kind == "mdm":
            from .videomdm_commands import mdm_lifted

            lifted = mdm_lifted(checkpoint, data, split, teacher, _device(device), [n for n, _, _ in items])
            items = [item for item in items if item[0] in lifted]
            lift_one = lambda name, clip: lifted.get(name)  # noqa: E731
        else:
            model = load_mlrq(checkpoint, _device(device))
            lift_one = lambda name, clip: lift_clip(model, clip)  # noqa: E731
    except (TrainingError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    with click.progressbar(items, label="lifting", file=click.get_text_stream("stderr")) as bar:
        for name, clip, camera in bar:
            joints = lift_one(name, clip)
            np.save(out / f"{name}.npy", joints.numpy().astype(np.float32))
            if render:
                from fastmotion.render import render_frames, save_animation

                shown = upright(joints, camera[1] if camera is not None else None)
                panels, titles = [clip.numpy(), shown.numpy()], ["input 2D", "lifted 3D"]
                truth = data / "eval3d" / "new_joints" / f"{name}.npy" if data is not None else None
                if truth is not None and truth.exists():  # shown, never used for anything else
                    panels.append(np.load(truth))
                    titles.append("hidden true 3D")
                save_animation(render_frames(panels, titles), out / f"{name}.gif")
    click.echo(f"lifted {len(items)} clip(s) into {out}")


def _read_keypoints(path, intrinsics, normalized_keypoints):
    import numpy as np
    import torch

    from fastmotion.data.keypoints import complete_smpl22, read_coco_json, read_keypoints_npy

    k, mask = read_coco_json(path) if path.suffix.lower() == ".json" else read_keypoints_npy(path)
    if not mask.any():
        raise ValueError(f"{path}: no keypoint is visible")
    k, _ = complete_smpl22(k, mask)  # joints a detector does not give, estimated from those it does
    if intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in intrinsics.split(","))
        except ValueError:
            raise click.BadParameter("expected fx,fy,cx,cy", param_hint="--intrinsics") from None
    else:
        lo, hi = np.nanmin(k.reshape(-1, 2), 0), np.nanmax(k.reshape(-1, 2), 0)
        fx = fy = 1000.0
        cx, cy = (lo + hi) / 2
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
    return normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0]


@click.group("eval")
def evaluate():
    """Evaluate trained models on held-out data."""


@evaluate.command("lift")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_kind", type=click.Choice(["mlrq", "mdm"]), default="mlrq", show_default=True,
              help="mdm: a VideoMDM checkpoint, lifting by guided DDPM sampling (needs the teacher folder).")
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --model mdm: the teacher folder (default: DATA/teacher).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate at most this many clips.")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path), help=DATA_HELP)
@click.option("--split", default="test", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures to this JSON file.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def eval_lift(checkpoint, model_kind, teacher, limit, data, split, json_path, device):
    """Lifting accuracy against the held-out 3D (eval3d/), beside the 3D-free zero-depth baseline.

    MPJPE (one scale per clip), PA-MPJPE (per-frame Procrustes with scale), PCK@50/100 mm (after Procrustes),
    acceleration error, root trajectory error; millimetres.

    \b
    Example:
      fastmotion eval lift --checkpoint runs/mlrq/last.pt --data data/synth2d --split test --json eval.json
      fastmotion eval lift --model mdm --checkpoint runs/mdm/last.pt --data data/synth2d --json eval-mdm.json
    """
    from .free3d import ClipBank, evaluate_lifting, load_mlrq
    from .loop import TrainingError

    try:
        read = _announce(checkpoint)
        if model_kind == "mdm":
            from .videomdm_commands import mdm_lifted

            names = ClipBank(data, split).names[:limit]
            lifted = mdm_lifted(checkpoint, data, split, teacher, _device(device), names)
            lifter = lambda name, clip: lifted.get(name)  # noqa: E731
        else:
            lifter = load_mlrq(checkpoint, _device(device))
        result = evaluate_lifting(lifter, data, split, limit)
    except (TrainingError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    keys = list(result["model"])
    click.echo(f"{'':>12}" + "".join(f"{k:>10}" for k in keys))
    for name in ("model", "zero_depth"):
        click.echo(f"{name:>12}" + "".join(f"{result[name][k]:>10.1f}" for k in keys))
    gain = 1 - result["model"]["PA-MPJPE"] / result["zero_depth"]["PA-MPJPE"]
    click.echo(f"{result['clips']} clips; PA-MPJPE {100 * abs(gain):.0f}% {'below' if gain >= 0 else 'above'} the "
               "zero-depth baseline")
    if json_path:
        json_path.write_text(json.dumps({**result, "pa_mpjpe_gain": gain, "checkpoint": str(checkpoint),
                                         "checkpoint_read": read,
                                         "data": str(data), "split": split}, indent=2) + "\n")


@evaluate.command("table")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "names", multiple=True, help="A row name per result file (default: the file's stem).")
def eval_table(results, names):
    """One Markdown table from `eval lift --json` files of the same clips: zero depth (from the first file),
    then one row per file. Lengths in mm; MPJPE is N-MPJPE (one scale per clip).

    \b
    Example:
      fastmotion eval table real/eval-mlrq.json real/eval-videomdm.json --name ML-RQ --name VideoMDM
    """
    if names and len(names) != len(results):
        raise click.BadParameter(f"give one --name per result file ({len(results)}), got {len(names)}",
                                 param_hint="--name")
    columns = ("MPJPE", "PA-MPJPE", "PCK@50", "accel", "root")
    rows = []
    for i, path in enumerate(results):
        try:
            result = json.loads(path.read_text())
            figures, base, clips = result["model"], result["zero_depth"], result["clips"]
            values, zero = [f"{figures[c]:.1f}" for c in columns], [f"{base[c]:.1f}" for c in columns]
            # each row against the zero depth of its own clips (a lifter may skip some)
            change = f"{100 * (figures['PA-MPJPE'] / base['PA-MPJPE'] - 1):+.0f}%"
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as err:
            raise click.BadParameter(f"{path} is not a file of `fastmotion eval lift --json` ({err!r})",
                                     param_hint="RESULTS") from None
        if i == 0:
            rows.append(("zero depth", clips, zero, ""))
            first = (result.get("data"), result.get("split"), clips)
        elif (result.get("data"), result.get("split"), clips) != first:
            click.echo(f"warning: {path} was measured on other clips ({result.get('data')}, {result.get('split')}, "
                       f"{clips} clips) than {results[0]}; its change is against its own clips' zero depth", err=True)
        rows.append((names[i] if names else path.stem, clips, values, change))
    click.echo("| | clips | N-MPJPE | PA-MPJPE | vs zero depth | PCK@50 (%) | accel | root |")
    click.echo("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, clips, values, change in rows:
        click.echo(f"| {name} | {clips} | {values[0]} | {values[1]} | {change} | " + " | ".join(values[2:]) + " |")
