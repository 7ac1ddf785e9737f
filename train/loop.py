"""The one training loop of fastmotion: every model trains through `Trainer`.

What it does for every model: AdamW; linear warm-up then a step or cosine schedule; an optional moving average of
the weights (EMA); gradient clipping; a progress bar with the losses and steps/s; a JSONL log (and TensorBoard when
installed); periodic evaluation; atomic checkpoints holding model, optimiser, schedule, step and both configs;
exact resume; `best.pt`, the weights with the best validation figure so far (each run names its figure); a stop
with a clear message on a NaN/inf loss or on a blow-up (a loss far above its running level), with the last good
checkpoint kept; DDP under torchrun (gradients averaged across ranks by all-reduce, weights broadcast from rank 0
at the start); bf16 autocast on GPU.

Exact resume rests on statelessness: the batch of step k and every random draw inside it (crops, views,
quantize dropout, code resets) are seeded by (seed, k), so a run resumed at step k sees what an uninterrupted
run would have seen.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import click
import torch
import torch.distributed as dist
from torch.optim import swa_utils

from fastmotion.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_checkpoint
from fastmotion.errors import TrainingError


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100
    milestones: tuple = (0.7, 0.9)  # fractions of `steps` where the learning rate drops by `gamma`
    gamma: float = 0.1
    # "step": the drops at `milestones`; "cosine": from lr to 0 along half a cosine after the warm-up
    # (Loshchilov & Hutter 2017, SGDR, eq. 5 without restarts)
    schedule: str = "step"
    # > 0: also keep an exponential moving average of the weights (torch.optim.swa_utils.AveragedModel) with this
    # decay per step, warmed up as min(ema, (1 + n) / (10 + n)) after n updates (as TensorFlow's
    # ExponentialMovingAverage with num_updates) so that the first weights fade; buffers (VQ codebooks, data
    # statistics) are the trained model's. Evaluations, last.pt's and best.pt's "model" are the averaged
    # weights; last.pt keeps the trained ones under "trained_model" for --resume.
    ema: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 25
    eval_every: int = 500
    ckpt_every: int = 250
    seed: int = 0
    amp: bool = True  # bf16 autocast when training on CUDA
    # A step whose loss exceeds blowup_factor x the median of the last `blowup_window` losses stops the run
    # (0 turns the guard off); checkpoints wait while the loss is above healthy_factor x that median.
    blowup_factor: float = 10.0
    blowup_window: int = 100
    healthy_factor: float = 3.0

    def __post_init__(self):
        if self.blowup_factor < 0 or self.blowup_window < 1 or self.healthy_factor < 1:
            raise ValueError("blowup_factor must be >= 0 (0: off), blowup_window >= 1 and healthy_factor >= 1; got "
                             f"{self.blowup_factor}, {self.blowup_window}, {self.healthy_factor}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0: off), got {self.ema}")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")

    def lr_factor(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, self.warmup))
        if self.schedule == "cosine":
            done = max(0, step - self.warmup) / max(1, self.steps - self.warmup)
            return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        drops = sum(step >= int(m * self.steps) for m in self.milestones)
        return warm * self.gamma ** drops


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2 ** 62)


@dataclass
class Run:
    """What a training run is made of; `step_fn(model, step, generator) -> dict of scalar tensors` with a
    "loss" entry; `eval_fn(model) -> dict of floats` (optional); `best`: (the eval_fn figure that picks
    best.pt, "min" or "max"); `regime(losses) -> str`: which objective a step trained, where a run switches
    between objectives of other scales (the blow-up guard keeps one running level per regime; default: the
    names of the losses the step returned)."""
    kind: str
    model: torch.nn.Module
    model_config: dict
    step_fn: Callable
    eval_fn: Callable | None = None
    extra: dict = field(default_factory=dict)  # saved in the checkpoint (e.g. the prior's path)
    best: tuple[str, str] | None = None
    regime: Callable | None = None


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group under torchrun: gloo for CPU tensors, and nccl for CUDA
    tensors where a GPU is visible (a run may train on the CPU of a machine that has one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class Trainer:
    def __init__(self, run: Run, config: TrainConfig, out_dir, resume: bool = False, progress: bool = True):
        self.run, self.config, self.out = run, config, Path(out_dir)
        self.rank, self.world = distributed()
        self.device = next(run.model.parameters()).device
        self.resume, self.progress = resume, progress and self.rank == 0
        self.optimizer = torch.optim.AdamW(run.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.lr_factor)
        self.averaged = swa_utils.AveragedModel(run.model, multi_avg_fn=self._average) if config.ema else None
        self.step = 0
        self.train_seconds = 0.0  # in steps since this process started (not in evaluations or checkpoints)
        self.last: dict = {}  # the last step's losses
        self.last_eval: dict = {}  # the last evaluation's figures
        self.best: dict | None = None  # {"metric", "value", "step"} of best.pt
        # the blow-up guard's state, saved in checkpoints so that a resumed run decides as an uninterrupted one
        self.recent: dict[str, deque] = {}  # regime -> the last losses
        self.checkpoint_due = False
        self._prepare_output()

    def _prepare_output(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise TrainingError(f"cannot write to the output folder {self.out}: {err.strerror}") from None
        ckpt, best = self.out / CHECKPOINT, self.out / BEST
        if ckpt.exists() and not self.resume:
            raise TrainingError(f"{ckpt} exists: pass --resume to continue that run, or choose another --out")
        if best.exists() and not ckpt.exists() and self.rank == 0:
            best.unlink()  # left by a run that stopped before its first checkpoint: not this run's
        if ckpt.exists():
            state = load_checkpoint(ckpt, self.run.kind, self.run.model_config)
            self._check_same_run(ckpt, state.get("extra") or {})
            self._check_same_schedule(ckpt, state.get("train_config") or {})
            self.run.model.load_state_dict(state.get("trained_model", state["model"]))
            if self.averaged is not None:
                self.averaged.module.load_state_dict(state["model"])
                self.averaged.n_averaged.fill_(state["averaged_steps"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = state["step"]
            self.best = self._best_on_disk(state.get("best"))
            guard = state.get("guard") or {}
            self.recent = {k: deque(v, maxlen=self.config.blowup_window) for k, v in guard.get("recent", {}).items()}
            self.checkpoint_due = bool(guard.get("checkpoint_due", False))
        if self.world > 1:
            for tensor in list(self.run.model.parameters()) + list(self.run.model.buffers()):
                dist.broadcast(tensor.data, src=0)
        if self.rank == 0:
            (self.out / "config.json").write_text(json.dumps(
                {"kind": self.run.kind, "model": self.run.model_config, "train": asdict(self.config),
                 **self.run.extra}, indent=2) + "\n")

    # Options a run's checkpoint may lack (written before they existed), with the value they had then
    LEGACY_EXTRA = {"rec_quantised": True, "max_yaw": 3.141592653589793, "weights": [1.0, 1.0, 1.0],
                    "up_from": "dataset", "pitch": 0.0}  # pitch: imported 2D was seen level before --pitch
    RENAMED_EXTRA = {"pitch": "assumed_pitch"}  # an option's earlier name in a checkpoint

    def _check_same_run(self, ckpt: Path, saved: dict) -> None:
        """Refuse to resume a run with other options (data, prior, losses) than it was trained with: a resumed
        run must be the uninterrupted one."""
        def plain(value):
            return json.loads(json.dumps(value, default=str))

        changed = []
        for key, value in self.run.extra.items():
            old = self.RENAMED_EXTRA.get(key)
            before = saved.get(key, saved.get(old, self.LEGACY_EXTRA.get(key, value)) if old else
                               self.LEGACY_EXTRA.get(key, value))
            if plain(before) != plain(value):
                changed.append(f"{key} {plain(before)!r} -> {plain(value)!r}")
        if changed:
            raise TrainingError(f"{ckpt} was trained with other options ({'; '.join(changed)}): resume with the "
                                "same options, or train into a new --out")

    def _check_same_schedule(self, ckpt: Path, saved: dict) -> None:
        """Refuse to resume with another learning-rate schedule or weight average than the run had: the rate
        would jump and best.pt would mix averaged and trained weights."""
        def plain(value):  # numbers as floats, sequences as lists: 0 == 0.0, (0.7, 0.9) == [0.7, 0.9]
            return [float(v) for v in value] if isinstance(value, (list, tuple)) else \
                value if isinstance(value, str) else float(value)

        defaults = TrainConfig()
        before = {key: plain(saved.get(key, getattr(defaults, key)))
                  for key in ("schedule", "milestones", "gamma", "ema")}
        keys = ("schedule", "ema") + (("milestones", "gamma") if self.config.schedule == "step" else ())
        changed = [f"{key} {before[key]!r} -> {plain(getattr(self.config, key))!r}" for key in keys
                   if before[key] != plain(getattr(self.config, key))]
        if changed:
            raise TrainingError(f"{ckpt} was trained with another schedule or average ({'; '.join(changed)}): "
                                "resume with the same --schedule, --milestones and --ema, or train into a new --out")

    def _average(self, averaged: list, current: list, _count) -> None:
        """AveragedModel's update of the averaged parameters: an EMA whose decay warms up (TrainConfig.ema)."""
        n = int(self.averaged.n_averaged)  # updates so far: reading this CPU count waits for no device
        torch._foreach_lerp_(averaged, current, 1 - min(self.config.ema, (1 + n) / (10 + n)))

    def evaluated_model(self) -> torch.nn.Module:
        """The model that evaluations and checkpoints hold: the weight average when config.ema > 0."""
        return self.run.model if self.averaged is None else self.averaged.module

    def _payload(self, resumable: bool = True) -> dict:
        average = {"trained_model": self.run.model.state_dict(), "averaged_steps": int(self.averaged.n_averaged)} \
            if self.averaged is not None and resumable else {}
        return {"kind": self.run.kind, "model_config": self.run.model_config, "train_config": asdict(self.config),
                "step": self.step, "model": self.evaluated_model().state_dict(), **average,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "extra": self.run.extra, "best": self.best,
                "guard": {"recent": {k: list(v) for k, v in self.recent.items()},
                          "checkpoint_due": self.checkpoint_due}}

    def _best_on_disk(self, recorded: dict | None) -> dict | None:
        """The record of best.pt when resuming at self.step: best.pt's own record when it was written at or
        before the step resumed from (it may be newer than last.pt's copy); a best.pt from steps after it
        belongs to a future that this run replays, so it goes."""
        path = self.out / BEST
        if not path.exists():
            return None
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("best") or recorded
        if record is None or record["step"] > self.step or (
                self.run.best and record["metric"] != self.run.best[0]):
            if self.rank == 0:
                path.unlink()
            return None
        return record

    def checkpoint(self, name: str = CHECKPOINT) -> None:
        if self.rank == 0:
            save_checkpoint(self.out / name, self._payload(resumable=name != BEST))

    def _guard(self, loss: float, losses: dict) -> bool:
        """Stop with a clear message when `loss` is far above the running level of the last losses of its regime;
        else record it and say whether it is healthy (not over healthy_factor x that level)."""
        cfg = self.config
        regime = self.run.regime(losses) if self.run.regime else ",".join(sorted(losses))
        recent = self.recent.setdefault(regime, deque(maxlen=cfg.blowup_window))
        level = statistics.median(recent) if recent else None
        recent.append(loss)
        if level is None or level <= 0:  # nothing to compare with (or a loss that is not positive)
            return True
        if (cfg.blowup_factor > 0 and len(recent) > min(25, cfg.blowup_window)
                and loss > cfg.blowup_factor * level):
            raise TrainingError(
                f"the loss blew up at step {self.step}: {loss:.4g}, over {cfg.blowup_factor:g}x its running level "
                f"{level:.4g} (the median of the last {len(recent)} steps; "
                f"{', '.join(f'{k}={float(v.detach()):.4g}' for k, v in losses.items())}); stopping. "
                + self._kept())
        return loss <= cfg.healthy_factor * level

    def _kept(self) -> str:
        last = self.out / CHECKPOINT
        text = (f"The last good checkpoint is {last} (step {load_checkpoint(last)['step']})" if last.exists()
                else "No checkpoint was written yet")
        if self.best:
            text += f"; the best is {self.out / BEST} (step {self.best['step']}, {self.best['metric']} " \
                    f"{self.best['value']:.4g})"
        return text + (". Train again into a new --out with a lower --lr (a --resume keeps the run's learning "
                       "rate), or turn the guard off with --blowup-factor 0.")

    def _writer(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def fit(self) -> dict:
        """Train to config.steps; -> the last step's losses."""
        for _ in self.steps():
            pass
        return self.last

    def steps(self):
        """Train to config.steps, yielding after every step (evaluation and checkpoint included), so that a
        benchmark can interleave runs. `train_seconds`: the time spent in steps by this process (evaluations and
        checkpoints excluded; a resumed run starts it at 0 again, as the log's train_seconds do);
        `last_eval`: the latest evaluation's figures."""
        cfg, model = self.config, self.run.model
        fault = int(os.environ.get("FASTMOTION_FAULT_AT_STEP", "-1"))  # test hook: die here like a kill -9
        log = open(self.out / "log.jsonl", "a") if self.rank == 0 else None
        writer = self._writer()
        last: dict = {}
        shown = {"text": ""}
        bar = click.progressbar(length=cfg.steps, label=self.run.kind, show_pos=True,
                                file=click.get_text_stream("stderr"),
                                item_show_func=lambda _: shown["text"]) if self.progress else None
        if bar:
            bar.__enter__()
            bar.update(self.step)
        started, done_since = time.time(), 0
        try:
            while self.step < cfg.steps:
                if self.step == fault:
                    os._exit(17)
                step_started = time.perf_counter()
                model.train()
                seed = step_seed(cfg.seed, self.step)
                torch.manual_seed(seed)
                generator = torch.Generator(device="cpu").manual_seed(seed)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda"):
                    losses = self.run.step_fn(model, self.step, generator)
                loss = losses["loss"]
                scalar = loss.detach().clone()
                if self.world > 1:  # every rank decides on the same number, so all stop together or none does
                    dist.all_reduce(scalar, op=dist.ReduceOp.MAX)
                value = float(scalar)  # one host sync per step: the guards below need the number
                if not torch.isfinite(scalar):
                    raise TrainingError(
                        f"loss became {value} at step {self.step} "
                        f"({', '.join(f'{k}={float(v.detach()):.4g}' for k, v in losses.items())}); stopping. "
                        + self._kept())
                healthy = self._guard(value, losses)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.world > 1:
                    for p in model.parameters():
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                            p.grad /= self.world
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                if self.averaged is not None:
                    self.averaged.update_parameters(model)
                self.step += 1
                done_since += 1
                last = {k: float(v.detach()) for k, v in losses.items()}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = done_since / max(time.time() - started, 1e-9)
                    record = {"step": self.step, **last, "grad_norm": float(grad_norm),
                              "lr": self.scheduler.get_last_lr()[0], "steps_per_s": rate}
                    shown["text"] = f"loss {last['loss']:.4f}  {rate:.1f} steps/s"
                    if log:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    if writer:
                        for k, v in record.items():
                            writer.add_scalar(k, v, self.step)
                evaluate = self.run.eval_fn and (self.step % cfg.eval_every == 0 or self.step == cfg.steps)
                if evaluate and self.device.type == "cuda":
                    torch.cuda.synchronize()  # the step's kernels belong to train_seconds, not to the evaluation
                self.train_seconds += time.perf_counter() - step_started
                self.last = last
                if evaluate:
                    self._evaluate(log, writer)
                # A checkpoint falls due every ckpt_every steps; it waits for a healthy loss so that a run that
                # starts to blow up does not overwrite the last good one (the final one is always written).
                self.checkpoint_due = self.checkpoint_due or self.step % cfg.ckpt_every == 0
                if (self.checkpoint_due and healthy) or self.step == cfg.steps:
                    self.checkpoint_due = False
                    self.checkpoint()
                if bar:
                    bar.update(1)
                yield self.step
        finally:
            if bar:
                bar.__exit__(None, None, None)
            if log:
                log.close()
            if writer:
                writer.close()

    def _evaluate(self, log, writer) -> None:
        if self.rank != 0:
            return
        model = self.evaluated_model().eval()
        with torch.no_grad():
            metrics = self.run.eval_fn(model)
        if self.run.best and self.run.best[0] in metrics:
            name, mode = self.run.best
            value = float(metrics[name])
            better = self.best is None or (value < self.best["value"] if mode == "min" else value > self.best["value"])
            if value == value and better:  # NaN is never the best
                self.best = {"metric": name, "value": value, "step": self.step}
                self.checkpoint(BEST)
        self.last_eval = dict(metrics)
        record = {"step": self.step, **{f"eval/{k}": v for k, v in metrics.items()},
                  "train_seconds": round(self.train_seconds, 2)}
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if writer:
            for k, v in metrics.items():
                writer.add_scalar(f"eval/{k}", v, self.step)
        if self.progress:
            click.echo("\n  eval @ %d: %s" % (self.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())),
                       err=True)
