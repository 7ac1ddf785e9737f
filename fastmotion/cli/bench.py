"""`fastmotion bench ...`: time the fused ops and training steps against the PyTorch reference."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import device_and_json_options, resolve_device, schedule_fields, schedule_options


@click.group()
def bench():
    """Benchmark the fused ops against their PyTorch reference."""


@bench.command("rvq")
@click.option("--n", "sizes", type=click.IntRange(min=1), multiple=True, default=(1024, 4096, 16384),
              show_default=True, help="Number of vectors N (repeat the option for several).")
@click.option("--backend", "names", multiple=True,
              type=click.Choice(["torch", "cpp", "triton", "cuda", "faiss"]),
              help="Backends to time (repeatable). Default: every one available on the device.")
@device_and_json_options
def bench_rvq(sizes, names, device, json_path):
    """Time residual-VQ search (L=6 levels, K=512 codes, D=512, float32).

    Prints per backend and N the median time, the speed-up over the torch reference, and the peak memory
    needed beyond inputs and outputs. FAISS's exact flat L2 search running the same six levels is included
    on CPU when faiss-cpu is installed (pip install -e .[bench]).

    \b
    Example:
      fastmotion bench rvq --n 4096 --json rvq.json
    """
    from fastmotion.bench import rvq

    device = resolve_device(device).type
    chosen = list(names) or rvq.available_backends(device)
    if "faiss" in chosen and not rvq.faiss_available():
        raise click.BadParameter("faiss is not installed (pip install -e .[bench])", param_hint="--backend")
    rows = rvq.run(sizes, chosen, device, progress=lambda msg: click.echo(msg, err=True))
    _report(rows, device, json_path, rvq.META)


@bench.command("geometry")
@click.option("--op", "ops", multiple=True,
              type=click.Choice(["project_weak_perspective", "reprojection_loss", "ray_project",
                                 "sampson_consistency"]),
              help="Ops to time (repeatable). Default: all four.")
@click.option("--backend", "names", multiple=True, type=click.Choice(["cpp", "triton", "cuda"]),
              help="Fused backends to time besides the torch reference (repeatable). Default: all implemented.")
@device_and_json_options
def bench_geometry(ops, names, device, json_path):
    """Time the geometry ops, forward and forward+backward, at training sizes.

    project_weak_perspective: B=256 motions, T=196 frames, J=22 joints, V=8 views; reprojection_loss and
    ray_project: B=64, T=196, J=22; float32. Prints median time, speed-up over the torch reference, peak
    memory beyond inputs and outputs, and the bandwidth the op reaches on the bytes it must move.

    \b
    Example:
      fastmotion bench geometry --op project_weak_perspective --json geometry.json
    """
    from fastmotion.bench import geometry

    device = resolve_device(device).type
    rows = geometry.run(ops or geometry.OPS, names, device, progress=lambda msg: click.echo(msg, err=True))
    _report(rows, device, json_path, geometry.META)


@bench.command("train")
@click.option("--model", type=click.Choice(["mlrq", "mdm"]), default="mlrq", show_default=True,
              help="mlrq: the Free3D ML-RQ; mdm: VideoMDM past its warm-up (the 2D objective, multistep batches).")
@click.option("--config", "preset", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="Model size ('full': Free3D sizes, batch 256: for a GPU).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: 64 small, 256 full.")
@click.option("--to", "to_metric", type=click.Choice(["PA-MPJPE"]), default=None,
              help="Time to accuracy instead of steps/s: train the ML-RQ as `fastmotion train mlrq` does (on --data "
                   "with --prior) with the fused ops and with the torch reference, interleaved, and report the "
                   "training time each takes to first reach --target on the val split.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="With --to: the 2D dataset (`make demo`: demo/synth2d).")
@click.option("--prior", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --to: the 2D prior checkpoint (`make demo`: demo/prior/last.pt).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="With --to: training steps (default: train mlrq's, 5000 small).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --to: peak learning rate (default: train mlrq's).")
@click.option("--target", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --to: the val PA-MPJPE (mm) to reach. Default: the first arm's final figure.")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="With --to: evaluate every this many steps (the time to accuracy's resolution; default 250).")
@click.option("--views", type=click.IntRange(min=1), default=None,
              help="With --to: L_rec's rotated views per motion (default: train mlrq's, 4).")
@click.option("--arm", "arms", multiple=True, type=click.Choice(["fused", "torch"]),
              help="With --to: the arms to train (repeatable; default: fused, then torch).")
@click.option("--seed", type=int, default=None, help="With --to: the initial weights and batches (default 0).")
@click.option("--test-split", is_flag=True,
              help="With --to: also score each arm's final weights on the test split (PA-MPJPE, mm), the accuracy a "
                   "faster recipe must keep.")
@schedule_options
@device_and_json_options
def bench_train(model, preset, batch_size, to_metric, data, prior, steps, lr, target, eval_every, views, arms, seed,
                test_split, device, json_path):
    """Training steps per second with the fused ops vs with every op on the torch reference, in one run; with --to,
    the training time to reach a val PA-MPJPE.

    \b
    Examples:
      fastmotion bench train --model mlrq --config small
      fastmotion bench train --model mdm --config small --batch-size 32
      fastmotion bench train --to PA-MPJPE --data demo/synth2d --prior demo/prior/last.pt --json tta.json
      fastmotion bench train --to PA-MPJPE --data demo/synth2d --prior demo/prior/last.pt --arm fused \
          --batch-size 32 --lr 2e-3 --steps 4400 --milestones 0.85,0.95 --target 35.1 --test-split
    """
    from fastmotion.bench import train as train_bench

    device = resolve_device(device).type
    if to_metric:
        _time_to_accuracy(model, batch_size, data, prior, preset, steps, lr, target, eval_every, views, arms, seed,
                          test_split, device, json_path)
        return
    for name, value in (("--data", data), ("--prior", prior), ("--steps", steps), ("--lr", lr), ("--target", target),
                        ("--eval-every", eval_every), ("--views", views), ("--arm", arms or None), ("--seed", seed),
                        ("--test-split", test_split or None)):
        if value is not None:
            raise click.BadParameter("only with --to PA-MPJPE", param_hint=name)
    ctx = click.get_current_context()
    for name in ("schedule", "milestones", "ema"):
        if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
            raise click.BadParameter("only with --to PA-MPJPE", param_hint=f"--{name}")
    rows = train_bench.run(preset, batch_size, None, device, progress=lambda msg: click.echo(msg, err=True),
                           model=model)
    _report(rows, device, json_path, {**train_bench.META, "model": model, "config": preset})


def _time_to_accuracy(model, batch_size, data, prior, preset, steps, lr, target, eval_every, views, arms, seed,
                      test_split, device, json_path):
    import json

    from fastmotion.bench import train as train_bench
    from fastmotion.bench.harness import environment

    if model != "mlrq":
        raise click.BadParameter("--to PA-MPJPE trains the ML-RQ: use --model mlrq", param_hint="--model")
    for name, value in (("--data", data), ("--prior", prior)):
        if value is None:
            raise click.BadParameter("required with --to PA-MPJPE", param_hint=name)
    from fastmotion.train.loop import TrainConfig

    from ._common import DEFAULTS
    from .train import MLRQ_STEPS

    d = DEFAULTS[preset]  # `fastmotion train mlrq`'s recipe (run_training), checkpoints only at the end
    config = TrainConfig(steps=steps or MLRQ_STEPS[preset], batch_size=batch_size or d["batch_size"],
                         lr=lr or d["lr"], seed=seed or 0,
                         warmup=50 if preset == "small" else 500, eval_every=eval_every or 250,
                         ckpt_every=steps or MLRQ_STEPS[preset], **schedule_fields())
    try:
        report = train_bench.time_to_accuracy(data, prior, config, d["length"], preset, target,
                                              arms or ("fused", "torch"), device, views=views or 4,
                                              test_split=test_split, progress=lambda msg: click.echo(msg, err=True))
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--data") from None
    click.echo(f"target: val PA-MPJPE <= {report['target']:.2f} mm")
    for arm, result in report["arms"].items():
        reached = (f"reached at step {result['reached'][0]} after {result['reached'][1]:.0f} s" if result["reached"]
                   else "not reached")
        test = f"; test {result['test PA-MPJPE']:.2f} mm" if "test PA-MPJPE" in result else ""
        click.echo(f"{arm:>6}: {reached}; final {result['final']:.2f} mm{test}; {result['steps_per_s']:.2f} steps/s")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({**report, "data": str(data), "prior": str(prior), "environment": environment(device)}, f,
                      indent=2)
        click.echo(f"wrote {json_path}", err=True)


@bench.command("overhead")
@click.option("--op", "ops", multiple=True,
              type=click.Choice(["rvq_search", "project_weak_perspective", "reprojection_loss", "ray_project",
                                 "sampson_consistency"]),
              help="Ops to time (repeatable). Default: all five.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch's CPU threads while timing (tiny inputs: one thread is what a training step sees).")
@click.option("--calls", type=click.IntRange(min=1), default=500, show_default=True,
              help="Calls per timed round (the figure: the best round's mean).")
@device_and_json_options
def bench_overhead(ops, threads, calls, device, json_path):
    """Per-call cost of every public op on tiny inputs (B=1, T=8, J=22; RVQ: 64 x 32 against 2 x 16 x 32), with
    each backend available on the device, forward and forward+backward, beside one ATen add of the same size.

    What a call costs besides its kernel (checks, dispatch, autograd) is what a training step pays many times.
    Value checks follow `fastmotion.ops.set_checks` (FASTMOTION_VALUE_CHECKS): on by default for CPU tensors.

    \b
    Example:
      fastmotion bench overhead --json overhead.json
      FASTMOTION_VALUE_CHECKS=0 fastmotion bench overhead --op reprojection_loss
    """
    import os

    import torch

    from fastmotion.bench import overhead
    from fastmotion.bench.harness import to_json

    device = resolve_device(device).type
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = overhead.run(ops or overhead.OPS, device, calls=calls, progress=lambda msg: click.echo(msg, err=True))
    finally:
        torch.set_num_threads(previous)
    click.echo(overhead.format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            f.write(to_json(rows, device, **overhead.META, threads=threads, calls=calls,
                            value_checks=os.environ.get("FASTMOTION_VALUE_CHECKS", "auto")))
        click.echo(f"wrote {json_path}", err=True)


@bench.command("lift")
@click.option("--model", type=click.Choice(["mvlift"]), default="mvlift", show_default=True,
              help="mvlift: MVLift's stage-2 optimisation and 3D recovery.")
@click.option("--clips", type=click.IntRange(min=1), default=16, show_default=True, help="Windows lifted together.")
@click.option("--frames", type=click.IntRange(min=2), default=32, show_default=True, help="Frames per window.")
@click.option("--iterations", type=click.IntRange(min=1), default=20, show_default=True,
              help="Stage-2 iterations per window (time grows linearly with them; the small preset runs 400).")
@device_and_json_options
def bench_lift(model, clips, frames, iterations, device, json_path):
    """Lifting throughput: one iteration of MVLift's stage 2, batched over windows and views against one window at a
    time ("vs torch" reads: against one window at a time), windows per minute at the small preset (its 400
    iterations, then the 3D recovery), and the parts of an iteration timed alone (denoiser, epipolar lines,
    consistency term forward and backward) with the share of the geometry.

    \b
    Example:
      fastmotion bench lift --model mvlift --clips 16 --iterations 20 --json lift.json
    """
    from fastmotion.bench import lift as lift_bench

    device = resolve_device(device).type
    rows = lift_bench.run(device, clips, frames, iterations, progress=lambda msg: click.echo(msg, err=True))
    _report(rows, device, json_path, lift_bench.META)


def _report(rows, device, json_path, meta):
    from fastmotion.bench.harness import format_table, to_json

    click.echo(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            f.write(to_json(rows, device, **meta))
        click.echo(f"wrote {json_path}", err=True)
