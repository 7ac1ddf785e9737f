"""Options and helpers shared by the command groups. Heavy imports happen inside functions so that `--help`
stays fast."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

DATA_HELP = "2D-only dataset folder written by `fastmotion data render` (its 3D in eval3d/ is never trained on)."
# The keys of fastmotion.motion.skeleton.SKELETONS, spelled out so that `--help` need not import torch (a test
# keeps the two equal).
SKELETON_NAMES = ["smpl22", "coco17", "h36m17", "openpose18", "openpose25"]


def resolve_device(device):
    """--device (None: cuda when a GPU is visible, else cpu) -> torch.device; BadParameter for cuda without one."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("no CUDA device is visible to torch", param_hint="--device")
    return torch.device(device)


@contextmanager
def user_errors():
    """Turn the library's errors about the user's input (files, checkpoints, datasets, values) into one-line
    command-line errors instead of tracebacks."""
    from fastmotion.errors import FastmotionError

    try:
        yield
    except (FastmotionError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


def announce(checkpoint) -> str:
    """Say on stderr which checkpoint a command reads (best or last, which step); returns the line."""
    from fastmotion.checkpoint import describe_checkpoint

    text = describe_checkpoint(checkpoint)
    click.echo(f"checkpoint {text}", err=True)
    return text


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
        *_schedule_options(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def schedule_options(command):
    """--schedule, --milestones and --ema for `fastmotion bench train --to` (help prefixed "With --to:");
    `schedule_fields()` reads them back as TrainConfig fields."""
    for option in reversed(_schedule_options("With --to: ", "")):
        command = option(command)
    return command


def _schedule_options(prefix: str = "",
                      ema_use: str = " Evaluations, checkpoints and so lift/sample/eval then use the average (buffers "
                                     "such as VQ codebooks stay the trained ones); --resume needs the same value."):
    """The learning rate schedule and the weight average, every `fastmotion train` command's options."""
    return [
        click.option("--schedule", type=click.Choice(["step", "cosine"]), default="step", show_default=True,
                     expose_value=False, callback=_keep("schedule"),
                     help=f"{prefix}Learning rate after the warm-up: 'step' drops it x0.1 at each of --milestones; "
                          "'cosine' lowers it to 0 at --steps along half a cosine."),
        click.option("--milestones", default="0.7,0.9", show_default=True, expose_value=False,
                     callback=_milestones,
                     help=f"{prefix}Fractions of --steps where the step schedule drops the rate; 'none': a constant "
                          "rate (ignored with --schedule cosine)."),
        click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                     expose_value=False, callback=_keep("ema"),
                     help=f"{prefix}Keep an exponential moving average of the weights with this decay per step "
                          "(e.g. 0.995: about the last 200 steps; keep 1/(1-decay) well under --steps); 0: off."
                          + ema_use),
    ]


def schedule_fields() -> dict:
    """The TrainConfig fields that options without a function argument keep in the click context: --schedule,
    --milestones, --ema and (train commands) --blowup-factor."""
    meta = click.get_current_context().meta
    return {k: meta[f"fastmotion.{k}"] for k in ("blowup_factor", "schedule", "milestones", "ema")
            if f"fastmotion.{k}" in meta}


def _keep(name):
    """A click callback that keeps an option's value in the context for `run_training` (options every command shares
    but none of their functions needs)."""
    def keep(ctx, param, value):
        ctx.meta[f"fastmotion.{name}"] = value
        return value
    return keep


def _milestones(ctx, param, value):
    if value.strip().lower() == "none":
        ctx.meta["fastmotion.milestones"] = ()
        return ()
    try:
        fractions = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        fractions = None
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise click.BadParameter(f"{value!r}: comma-separated fractions of --steps between 0 and 1, e.g. 0.7,0.9 "
                                 "(or 'none': a constant rate)")
    ctx.meta["fastmotion.milestones"] = fractions
    return fractions


DEFAULTS = {"small": dict(batch_size=64, length=32, lr=1e-3), "full": dict(batch_size=256, length=64, lr=2e-4)}


def run_training(run_factory, preset, steps, default_steps, batch_size, length, lr, seed, resume, out, device,
                 ckpt_every, eval_every):
    """Build a run with `run_factory(batch_size, crop_length, device)` and train it through the one loop with the
    shared options (defaults per config); prints where the checkpoints are."""
    import torch

    from fastmotion.errors import FastmotionError
    from fastmotion.train.loop import TrainConfig, Trainer

    d = DEFAULTS[preset]
    config = TrainConfig(steps=steps or default_steps[preset], batch_size=batch_size or d["batch_size"],
                         lr=lr or d["lr"], seed=seed, warmup=50 if preset == "small" else 500,
                         ckpt_every=ckpt_every, eval_every=eval_every, **schedule_fields())
    torch.manual_seed(seed)  # the initial weights
    with user_errors():  # the data, a checkpoint, CLIP weights
        run = run_factory(config.batch_size, length or d["length"], resolve_device(device))
    try:
        trainer = Trainer(run, config, out, resume=resume)
        last = trainer.fit()
    except FastmotionError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"done: step {trainer.step}, " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()) +
               f"; checkpoint {out / 'last.pt'}" + (f"; best {out / 'best.pt'} (step {trainer.best['step']}, "
                                                     f"{trainer.best['metric']} {trainer.best['value']:.4g})"
                                                     if trainer.best else ""))


def device_and_json_options(command):
    """--json and --device, for the benchmarks."""
    command = click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
                           help="Also write the figures (and the machine, torch version and commit) to this "
                                "JSON file.")(command)
    return click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                        help="Where to run. Default: cuda when a GPU is visible, else cpu.")(command)


def mvlift_options(command):
    """--mvlift-config, --iterations and --mvlift-mode: MVLift's stage-2 settings for `lift` and `eval lift`."""
    options = [
        click.option("--mvlift-config", type=click.Choice(["small", "full"]), default=None,
                     help="With --model mvlift: stage-2 preset, small (400 iterations at lr 1e-2, lines from the "
                          "observed view, for a CPU; the default) or full (the paper's 5000 at lr 1e-3); with a "
                          "`train mvlift-mv` checkpoint: small samples by 20 DDIM steps, full by every diffusion step "
                          "(DDPM, the paper's 1000)."),
        click.option("--iterations", type=click.IntRange(min=1), default=None,
                     help="With --model mvlift: stage-2 iterations per window (default: the preset's); with a "
                          "`train mvlift-mv` checkpoint, the DDIM sampling steps."),
        click.option("--mvlift-mode", type=click.Choice(["stage2", "stage1", "sds3d"]), default=None,
                     help="With --model mvlift, the paper's ablations: stage1 (each view sampled alone from view 0's "
                          "epipolar lines, no joint optimisation), sds3d (3D joints optimised directly by SDS on "
                          "their projections, without line conditions). Default: stage2, the method."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def lifter_settings(model_kind, mvlift_config, iterations, mvlift_mode, **mdm) -> dict:
    """The `load_lifter` options of a command's lifting flags; UsageError for MVLift's flags on another model."""
    given = [f for f, v in (("--mvlift-config", mvlift_config), ("--iterations", iterations),
                            ("--mvlift-mode", mvlift_mode)) if v is not None]
    if model_kind != "mvlift":
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply to --model mvlift")
        return mdm if model_kind == "mdm" else {}
    return {"preset": mvlift_config or "small", **({"iterations": iterations} if iterations else {}),
            **({"mode": mvlift_mode} if mvlift_mode else {})}


def lift_with_progress(lifter, clips, run, total: int | None = None):
    """run(progress) under a progress bar on stderr: over clips; for a lifter that counts its iterations (MVLift's
    `iterations(clips)`, or `total` when given, and `iteration_progress`), over iterations, with the clips done in
    its label."""
    stream = click.get_text_stream("stderr")
    if not hasattr(lifter, "iterations"):
        with click.progressbar(length=len(clips), label="lifting", file=stream) as bar:
            return run(bar.update)
    done = 0
    total = lifter.iterations(clips) if total is None else total
    with click.progressbar(length=max(1, total), label=f"lifting (0/{len(clips)} clips)",
                           file=stream) as bar:
        lifter.iteration_progress = bar.update

        def clip_done(n):
            nonlocal done
            done += n
            bar.label = f"lifting ({done}/{len(clips)} clips)"

        return run(clip_done)
