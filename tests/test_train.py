"""The training loop, Free3D's runs and commands: exact resume after a kill, NaN stop, bad input, DDP sync,
that the ML-RQ learns, lifting and evaluation through the CLI."""
import functools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from fastmotion.data import build_synthetic, render_2d
from fastmotion.losses.free3d import vertical_rotations
from fastmotion.metrics.lifting import lifting_metrics, procrustes
from fastmotion.motion import SMPL22

from fastmotion.checkpoint import load_checkpoint
from fastmotion.errors import TrainingError
from fastmotion.train.loop import Run, TrainConfig, Trainer
from helpers import fastmotion_cli

cli = functools.partial(fastmotion_cli, check=False)




@pytest.fixture(scope="module")
def data2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("free3d")
    build_synthetic(root / "synth", num=40, seed=0)
    render_2d(root / "synth", root / "d2", views=1, seed=0)
    return root / "d2"


@pytest.fixture(scope="module")
def prior_ckpt(data2d, tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "run"
    cli("train", "prior", "--data", data2d, "--out", out, "--steps", 30, "--batch-size", 16, check=True)
    return out / "last.pt"


def _weights(path):
    return load_checkpoint(path)["model"]


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


def test_bad_input_fails_before_training(data2d, prior_ckpt, tmp_path):
    done = cli("train", "mlrq", "--data", data2d, "--prior", tmp_path / "none.pt", "--out", tmp_path / "a")
    assert done.returncode != 0 and "none.pt does not exist" in done.stderr
    bad = tmp_path / "wrong"
    (bad / "keypoints").mkdir(parents=True)
    (bad / "cameras").mkdir()
    np.save(bad / "keypoints" / "x.npy", np.zeros((10, 17, 2), np.float32))
    np.savez(bad / "cameras" / "x.npz", K=np.eye(3), R=np.eye(3), t=np.zeros(3))
    (bad / "train.txt").write_text("x\n")
    done = cli("train", "prior", "--data", bad, "--out", tmp_path / "b")
    assert done.returncode != 0 and "expected SMPL-22 keypoints [T, 22, 2], got [10, 17, 2]" in done.stderr
    (bad / "train.txt").write_text("")
    done = cli("train", "prior", "--data", bad, "--out", tmp_path / "c")
    assert done.returncode != 0 and "split is empty" in done.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = cli("train", "prior", "--data", data2d, "--out", blocker / "run")
    assert done.returncode != 0 and "cannot write to the output folder" in done.stderr
    # a prior checkpoint where the ML-RQ's is expected, and a resume with another configuration
    done = cli("lift", "--checkpoint", prior_ckpt, "--data", data2d, "--out", tmp_path / "l")
    assert done.returncode != 0 and "holds a Prior2D model, expected MLRQ" in done.stderr
    done = cli("train", "prior", "--data", data2d, "--out", prior_ckpt.parent, "--resume", "--config", "full",
               "--steps", 31)
    assert done.returncode != 0 and "another model configuration" in done.stderr
    assert not (tmp_path / "b").exists() or not (tmp_path / "b" / "last.pt").exists()


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


def test_vertical_rotations_turn_about_the_camera_up_axis():
    up = torch.nn.functional.normalize(torch.tensor([[0.0, -1.0, 0.3], [0.0, -1.0, 0.0]]), dim=-1)
    R = vertical_rotations(up, 5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(R @ up[:, None, :, None], up[:, None, :, None].expand(2, 5, 3, 1))
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(2, 5, 3, 3), atol=1e-6, rtol=0)


def test_vertical_rotations_keep_their_yaw_within_max_yaw():
    up = torch.tensor([[0.0, -1.0, 0.0]]).expand(500, 3)
    for max_yaw in (0.3, 3.0):
        R = vertical_rotations(up, 4, torch.Generator().manual_seed(0), max_yaw=max_yaw)
        yaw = torch.atan2(R[..., 0, 2], R[..., 0, 0]).abs()  # a level camera: a turn about y
        assert yaw.max() <= max_yaw + 1e-5 and yaw.max() > 0.9 * max_yaw


def test_metrics_against_hand_computed_cases():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(2, 5, 22, 3, generator=g, dtype=torch.float64)
    angle = torch.tensor(0.7)
    R = torch.tensor([[torch.cos(angle), 0, torch.sin(angle)], [0, 1, 0], [-torch.sin(angle), 0, torch.cos(angle)]],
                     dtype=torch.float64)
    moved = 2.5 * true @ R.T + 1.0
    torch.testing.assert_close(procrustes(moved, true), true)
    m = lifting_metrics(moved, true)
    assert m["PA-MPJPE"] < 1e-3 and m["PCK@50"] == 100.0  # millimetres
    m = lifting_metrics(true * 3.0, true)  # a pure scale: N-MPJPE forgives it
    assert m["N-MPJPE"] < 1e-3 and m["root"] < 1e-3 and m["accel"] < 1e-3 and "MPJPE" not in m
    rel = (true - true[:, :, :1]).norm(dim=-1).mean() * 1000  # a metric lifter is not forgiven the scale
    assert lifting_metrics(true * 3.0, true, metric=True)["MPJPE"] == pytest.approx(2 * float(rel))
    shifted = true.clone()
    shifted[..., 1:, :] += torch.tensor([0.01, 0, 0], dtype=torch.float64)
    assert abs(lifting_metrics(shifted, true)["N-MPJPE"] - 10.0 * 21 / 22) < 1.0


@pytest.mark.slow
def test_mlrq_learns_3d_from_2d_lifts_and_evaluates(tmp_path):
    """A CI-sized run: 300 clips, 250 prior steps, 400 ML-RQ steps. The 2D loss falls and the lifted 3D beats
    the zero-depth baseline on held-out clips (the full-size claim, 40% better, is `make demo`'s)."""
    build_synthetic(tmp_path / "synth", num=300, seed=1)
    render_2d(tmp_path / "synth", tmp_path / "d2", views=1, seed=1)
    data2d = tmp_path / "d2"
    cli("train", "prior", "--data", data2d, "--out", tmp_path / "prior", "--steps", 250, "--batch-size", 32,
        check=True)
    out = tmp_path / "mlrq"
    cli("train", "mlrq", "--data", data2d, "--prior", tmp_path / "prior" / "last.pt", "--out", out, "--steps", 400,
        "--batch-size", 32, "--eval-every", 400, "--max-yaw", 90, "--ori-weight", 0.5, check=True)
    config = json.loads((out / "config.json").read_text())
    assert config["max_yaw"] == pytest.approx(np.pi / 2) and config["weights"] == [1.0, 0.5, 1.0]
    assert config["rec_quantised"] is False
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["l2d"] for r in log if "l2d" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses  # it learns to reproduce its 2D input
    assert any("eval/PA-MPJPE" in r for r in log)
    done = cli("eval", "lift", "--checkpoint", out / "last.pt", "--data", data2d, "--split", "test", "--json",
               tmp_path / "eval.json", check=True)
    assert "zero_depth" in done.stdout and "PA-MPJPE" in done.stdout
    assert f"{out / 'last.pt'}: MLRQ at step 400 of 400, the run's last checkpoint (its best, by val_loss" in done.stderr
    best = load_checkpoint(out / "best.pt")
    assert best["best"]["metric"] == "val_loss" and best["step"] == best["best"]["step"] == 400  # one evaluation
    done = cli("eval", "lift", "--checkpoint", out / "best.pt", "--data", data2d, "--limit", 3, check=True)
    assert f"{out / 'best.pt'}: MLRQ at step 400 of 400, the run's best by val_loss" in done.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    table = cli("eval", "table", tmp_path / "eval.json", "--name", "ML-RQ", check=True).stdout.splitlines()
    assert table[2].startswith("| zero depth | 30 |") and f"| {result['zero_depth']['PA-MPJPE']:.1f} |" in table[2]
    assert table[3].startswith("| ML-RQ | 30 |") and f"| {result['model']['PA-MPJPE']:.1f} |" in table[3]
    assert result["clips"] == 30 and set(result["model"]) == set(result["zero_depth"])
    assert result["model"]["PA-MPJPE"] < result["zero_depth"]["PA-MPJPE"], result
    done = cli("lift", "--checkpoint", out / "last.pt", "--data", data2d, "--split", "test", "--out",
               tmp_path / "lifted", "--render", check=True)
    name = (data2d / "test.txt").read_text().split()[0]
    lifted = np.load(tmp_path / "lifted" / f"{name}.npy")
    assert lifted.shape == (len(np.load(data2d / "keypoints" / f"{name}.npy")), 22, 3)
    assert (tmp_path / "lifted" / f"{name}.gif").exists()
    # one COCO-style JSON file (17 keypoints with confidences): the missing SMPL joints are completed
    pixels = np.load(data2d / "keypoints" / f"{name}.npy")
    coco = np.zeros((len(pixels), 17, 3))
    for i, smpl in enumerate(("head", None, None, None, None, "left_shoulder", "right_shoulder", "left_elbow",
                              "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                              "right_knee", "left_ankle", "right_ankle")):
        if smpl:
            coco[:, i, :2] = pixels[:, SMPL22.index(smpl)]
            coco[:, i, 2] = 0.9
    (tmp_path / "clip.json").write_text(json.dumps([{"keypoints": f.flatten().tolist()} for f in coco]))
    cli("lift", "--checkpoint", out / "last.pt", "--keypoints", tmp_path / "clip.json", "--intrinsics",
        "1000,1000,500,500", "--out", tmp_path / "from_json", check=True)
    assert np.isfinite(np.load(tmp_path / "from_json" / "clip.npy")).all()
    help_text = cli("train", "mlrq", "--help", check=True).stdout
    assert "Example" in help_text and "--no-rec" in help_text
