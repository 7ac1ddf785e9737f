"""Free3D's training runs through the CLI: bad input fails before training; the ML-RQ learns 3D from 2D, lifts
and is evaluated (N-MPJPE, PA-MPJPE, tables, GIFs, detector keypoint files)."""
import functools
import json

import numpy as np
import pytest

from fastmotion.data import build_synthetic, render_2d
from fastmotion.motion import SMPL22

from fastmotion.checkpoint import load_checkpoint
from helpers import fastmotion_cli


cli = functools.partial(fastmotion_cli, check=False)


@pytest.fixture(scope="module")
def prior_ckpt(data2d, tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "run"
    cli("train", "prior", "--data", data2d, "--out", out, "--steps", 30, "--batch-size", 16, check=True)
    return out / "last.pt"


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
               tmp_path / "lifted", "--render", "--limit", 2, check=True)  # GIFs cost seconds each
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
    # arms four times their length: unlike anything the model learned from, and said so, naming the clip
    for wrist, elbow, shoulder in ((9, 7, 5), (10, 8, 6)):
        coco[:, elbow, :2] = coco[:, shoulder, :2] + 4 * (coco[:, elbow, :2] - coco[:, shoulder, :2])
        coco[:, wrist, :2] = coco[:, shoulder, :2] + 4 * (coco[:, wrist, :2] - coco[:, shoulder, :2])
    (tmp_path / "odd.json").write_text(json.dumps([{"keypoints": f.flatten().tolist()} for f in coco]))
    done = cli("lift", "--checkpoint", out / "last.pt", "--keypoints", tmp_path / "odd.json", "--out",
               tmp_path / "odd", check=True)
    assert "warning: odd: its 2D is unlike the model's training 2D" in done.stderr
    with np.load(data2d / "cameras" / f"{name}.npz") as cam:  # a held-out clip of the training kind: no warning
        K = cam["K"]
    intrinsics = f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}"
    done = cli("lift", "--checkpoint", out / "last.pt", "--keypoints", data2d / "keypoints" / f"{name}.npy",
               "--intrinsics", intrinsics, "--out", tmp_path / "again", check=True)
    assert "unlike" not in done.stderr
    help_text = cli("train", "mlrq", "--help", check=True).stdout
    assert "Example" in help_text and "--no-rec" in help_text
