"""The one training loop: exact resume after a kill, stops on a NaN or a blown-up loss keeping the last good
and the best checkpoints, DDP ranks in sync."""
import functools
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch


from fastmotion.checkpoint import load_checkpoint
from fastmotion.errors import TrainingError
from fastmotion.train.loop import Run, TrainConfig, Trainer
from helpers import fastmotion_cli


cli = functools.partial(fastmotion_cli, check=False)


def _weights(path):
    return load_checkpoint(path)["model"]


def _toy_run(losses_at, evaluate=None, seen=None):
    """A linear model whose reported loss is losses_at(step) (with a gradient), an optional eval_fn, and the
    weights each step saw (in `seen`)."""
    model = torch.nn.Linear(3, 1)

    def step(model, step, generator):
        if seen is not None:
            seen[step] = model.weight.detach().clone()
        out = model(torch.ones(1, 3)).sum()
        return {"loss": out - out.detach() + losses_at(step)}

    return Run("Toy", model, {"kind": "Toy"}, step, evaluate, best=("val", "min") if evaluate else None)


def test_killed_run_resumes_to_the_same_weights(data2d, tmp_path):
    args = ["train", "prior", "--data", data2d, "--steps", 6, "--batch-size", 8, "--ckpt-every", 2]
    cli(*args, "--out", tmp_path / "straight", check=True)
    killed = cli(*args, "--out", tmp_path / "killed", env={"FASTMOTION_FAULT_AT_STEP": "5"})
    assert killed.returncode == 17  # died at step 5, after the checkpoint of step 4
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["step"] == 4
    again = cli(*args, "--out", tmp_path / "killed")
    assert again.returncode != 0 and "pass --resume" in again.stderr
    cli(*args, "--out", tmp_path / "killed", "--resume", check=True)
    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "killed" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 6 and "loss" in lines[0]
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["kind"] == "Prior2D" and config["train"]["steps"] == 6


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 1)

    def step(model, step, generator):
        loss = model(torch.ones(1, 3)).sum() ** 2
        return {"loss": loss * float("nan") if step == 3 else loss}

    run = Run("Toy", model, {"kind": "Toy"}, step)
    trainer = Trainer(run, TrainConfig(steps=10, ckpt_every=2, warmup=1), tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"loss became nan at step 3 .*last good checkpoint is .*last.pt"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_blow_up_stops_the_run_keeping_the_last_good_and_the_best_checkpoint(tmp_path):
    # a healthy run near 1.0, then from step 60 a loss that grows 10x per step, like the ML-RQ on real 2D did
    losses_at = lambda step: 1.0 + 0.1 * (step % 3) if step < 60 else 3.0 * 10 ** (step - 60)  # noqa: E731
    val = iter([0.5, 0.3, 0.4, 9.0, 9.0, 9.0])  # best at the second evaluation (step 40)
    seen = {}
    run = _toy_run(losses_at, lambda model: {"val": next(val)}, seen)
    config = TrainConfig(steps=1000, ckpt_every=25, eval_every=20, warmup=1)
    trainer = Trainer(run, config, tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"blew up at step 61: 30, over 10x its running level 1\.1.*"
                                            r"last good checkpoint is .*last\.pt \(step 50\).*best\.pt \(step 40"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 50
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 40 and best["best"] == {"metric": "val", "value": 0.3, "step": 40}
    # the step that blew up was never applied: the weights are those its loss was computed with
    assert trainer.step == 61 and torch.equal(run.model.weight, seen[61])
    # resumed from last.pt (step 50), the run decides as the uninterrupted one did: the guard's history
    # travels in the checkpoint (with only 11 losses of its own it would not judge, and would go on)
    val = iter([0.4, 9.0])
    again = Trainer(run, config, tmp_path, resume=True, progress=False)
    assert again.step == 50 and again.best["step"] == 40
    with pytest.raises(TrainingError, match=r"blew up at step 61: 30, over 10x"):
        again.fit()
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 40
    # a checkpoint that falls due while the loss is unhealthy (3x-10x its level) waits for a healthy step
    losses_at = lambda step: 5.0 if step in (48, 49, 50, 51) else 1.0  # noqa: E731
    trainer = Trainer(_toy_run(losses_at), TrainConfig(steps=60, ckpt_every=50, warmup=1), tmp_path / "b",
                      progress=False)
    saved = []
    trainer.checkpoint = lambda name="last.pt": saved.append(trainer.step)
    trainer.fit()
    assert saved == [53, 60]  # due after step 50; the losses of steps 48-51 are high; written after step 53
    # the guard off: the same blow-up runs to the end
    trainer = Trainer(_toy_run(lambda step: 1.0 if step < 30 else 100.0),
                      TrainConfig(steps=40, warmup=1, blowup_factor=0), tmp_path / "c", progress=False)
    trainer.fit()
    assert trainer.step == 40


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_in_sync(data2d, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from fastmotion.train.loop import Trainer, TrainConfig
        from fastmotion.train.free3d import prior_run
        from fastmotion.models.mlrq import MotionVQConfig
        run = prior_run({str(data2d)!r}, MotionVQConfig(width=16, latent_dim=8, num_levels=1, num_codes=16), 4, 8,
                        "cpu")
        trainer = Trainer(run, TrainConfig(steps=4, warmup=1, eval_every=100), {str(tmp_path / "run")!r},
                          progress=False)
        trainer.fit()
        flat = torch.cat([p.detach().flatten() for p in run.model.parameters()] +
                         [b.flatten().float() for b in run.model.buffers()])
        torch.save(flat, {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
    """))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(a, b)


def test_resume_refuses_other_options(tmp_path):
    run = _toy_run(lambda step: 1.0)
    Trainer(run, TrainConfig(steps=5, warmup=1, ckpt_every=5), tmp_path / "r", progress=False).fit()
    changed = _toy_run(lambda step: 1.0)
    changed.extra = {**changed.extra, "rec_quantised": False}  # the run was trained before the option: True
    with pytest.raises(TrainingError, match=r"other options \(rec_quantised True -> False\)"):
        Trainer(changed, TrainConfig(steps=10, warmup=1), tmp_path / "r", resume=True, progress=False)


def test_resume_reads_an_option_under_its_earlier_name(tmp_path):
    """`train mlrq --assumed-pitch 15` (its earlier name) resumes as `--pitch 15` and refuses another pitch."""
    run = _toy_run(lambda step: 1.0)
    run.extra = {**run.extra, "assumed_pitch": 15.0}
    Trainer(run, TrainConfig(steps=5, warmup=1, ckpt_every=5), tmp_path / "r", progress=False).fit()
    same = _toy_run(lambda step: 1.0)
    same.extra = {**same.extra, "pitch": 15.0}
    Trainer(same, TrainConfig(steps=10, warmup=1), tmp_path / "r", resume=True, progress=False)
    other = _toy_run(lambda step: 1.0)
    other.extra = {**other.extra, "pitch": "horizon"}
    with pytest.raises(TrainingError, match=r"other options \(pitch 15.0 -> 'horizon'\)"):
        Trainer(other, TrainConfig(steps=10, warmup=1), tmp_path / "r", resume=True, progress=False)


def test_cosine_schedule_warms_up_then_follows_half_a_cosine_to_zero():
    config = TrainConfig(steps=110, warmup=10, schedule="cosine")
    assert config.lr_factor(4) == pytest.approx(0.5)
    assert config.lr_factor(10) == pytest.approx(1.0)
    assert config.lr_factor(60) == pytest.approx(0.5)  # halfway through the 100 steps after the warm-up
    assert config.lr_factor(109) == pytest.approx(0.5 * (1 + math.cos(0.99 * math.pi)))
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def _regression_run(seed=0):
    """A linear model fitted to noisy targets by minibatches, evaluated by its first weight."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [2.0], [3.0]]) + 0.5 * torch.randn(64, 1)

    def step(model, step, generator):
        i = torch.randint(0, 64, (8,), generator=generator)
        return {"loss": ((model(x[i]) - y[i]) ** 2).mean()}

    return Run("Toy", model, {"kind": "Toy"}, step, lambda m: {"val": float(m.weight[0, 0])}, best=("val", "min"))


def test_ema_evaluates_and_saves_the_averaged_weights_and_resumes_exactly(tmp_path):
    config = TrainConfig(steps=40, warmup=1, lr=1e-2, ema=0.7, ckpt_every=20, eval_every=20)  # capped from n=20
    run = _regression_run()
    trainer = Trainer(run, config, tmp_path / "straight", progress=False)
    trainer.fit()
    averaged = trainer.averaged.module.weight.detach()
    assert not torch.allclose(averaged, run.model.weight.detach())  # the average is not the last step's weights
    assert trainer.last_eval["val"] == pytest.approx(float(averaged[0, 0]))
    state = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert torch.equal(state["model"]["weight"], averaged)
    assert torch.equal(state["trained_model"]["weight"], run.model.weight.detach())
    assert state["averaged_steps"] == 40
    best = load_checkpoint(tmp_path / "straight" / "best.pt")  # the averaged weights that scored best
    assert float(best["model"]["weight"][0, 0]) == pytest.approx(trainer.best["value"]) and "trained_model" not in best
    # the EMA by hand: the first step's weights, then w <- d w + (1 - d) w_step, d = min(0.7, (1 + n) / (10 + n))
    by_hand, seen = None, []
    run2 = _regression_run()
    trainer2 = Trainer(run2, TrainConfig(steps=40, warmup=1, lr=1e-2, eval_every=100, ckpt_every=100),
                       tmp_path / "plain", progress=False)
    for _ in trainer2.steps():
        seen.append(run2.model.weight.detach().clone())
    for n, w in enumerate(seen):
        decay = min(0.7, (1 + n) / (10 + n))
        by_hand = w if by_hand is None else decay * by_hand + (1 - decay) * w
    torch.testing.assert_close(averaged, by_hand)
    # a run stopped at step 20 and resumed ends with the same averaged and trained weights
    for step in Trainer(_regression_run(), config, tmp_path / "resumed", progress=False).steps():
        if step == 20:  # the checkpoint of step 20 is written: stop here as a killed run would
            break
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 20
    with pytest.raises(TrainingError, match="ema 0.7 -> 0.99"):
        Trainer(_regression_run(), TrainConfig(**{**config.__dict__, "ema": 0.99}), tmp_path / "resumed",
                resume=True, progress=False)
    Trainer(_regression_run(), config, tmp_path / "resumed", resume=True, progress=False).fit()
    again = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert torch.equal(again["model"]["weight"], state["model"]["weight"])
    assert torch.equal(again["trained_model"]["weight"], state["trained_model"]["weight"])


def test_schedule_milestones_and_ema_options_reach_the_run(data2d, tmp_path):
    args = ["train", "prior", "--data", data2d, "--steps", 4, "--batch-size", 8]
    cli(*args, "--out", tmp_path / "r", "--schedule", "cosine", "--milestones", "0.5", "--ema", 0.9, check=True)
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (train["schedule"], train["milestones"], train["ema"]) == ("cosine", [0.5], 0.9)
    assert "trained_model" in load_checkpoint(tmp_path / "r" / "last.pt")
    cli(*args, "--out", tmp_path / "flat", "--milestones", "none", check=True)
    assert json.loads((tmp_path / "flat" / "config.json").read_text())["train"]["milestones"] == []
    bad = cli(*args, "--out", tmp_path / "bad", "--milestones", "0.7,1.5")
    assert bad.returncode != 0 and "--milestones" in bad.stderr and "between 0 and 1" in bad.stderr
