"""VideoMDM through the real CLI: the teacher folder, training in both modes (resumable like every run),
sampling, guided lifting and its evaluation."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_valid_body
from helpers import fastmotion_cli as cli

pytestmark = pytest.mark.slow  # trains models through the CLI (`make test-fast` skips it)
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", 8, "--ckpt-every", 1000, "--eval-every", 1000]


@pytest.fixture(scope="module")
def mdm_runs(tiny_mlrq):
    d2 = tiny_mlrq / "d2"
    cli("data", "teacher", "--data", d2, "--mlrq", tiny_mlrq / "mlrq" / "last.pt")
    cli("train", "mdm", "--data", d2, "--out", tiny_mlrq / "mdm", "--steps", 6, "--warmup-steps", 2, *FAST)
    cli("train", "mdm", "--data", d2, "--out", tiny_mlrq / "mdm-teacher", "--steps", 3, "--mode", "plain-mdm", *FAST)
    return tiny_mlrq


def test_teacher_folder_and_training_logs(mdm_runs):
    d2 = mdm_runs / "d2"
    report = json.loads((d2 / "teacher" / "report.json").read_text())
    names = (d2 / "train.txt").read_text().split()
    assert report["written"] == 40 and report["skipped"] == []
    world = np.load(d2 / "teacher" / f"{names[0]}.npy")
    assert world.shape == np.load(d2 / "keypoints" / f"{names[0]}.npy").shape[:1] + (22, 3)
    log = [json.loads(line) for line in (mdm_runs / "mdm" / "log.jsonl").read_text().splitlines()]
    assert "pos" in [r for r in log if "loss" in r][-1]  # the 2D objective after the warm-up
    cfg = json.loads((mdm_runs / "mdm" / "config.json").read_text())
    assert cfg["videomdm"]["threshold"] == 12 and cfg["videomdm"]["losses"]["depth_weight"] == "joint"
    teacher_log = [json.loads(line) for line in (mdm_runs / "mdm-teacher" / "log.jsonl").read_text().splitlines()]
    last = [r for r in teacher_log if "loss" in r][-1]
    assert "mdm" in last and "pos" not in last  # plain MDM on the teacher throughout


def test_sample_and_lift_with_mdm(mdm_runs, tmp_path):
    ckpt = mdm_runs / "mdm" / "last.pt"
    cli("sample", "--model", "mdm", "--checkpoint", ckpt, "--text", "a person walks forward", "--length", "40",
        "--num", 2, "--out", tmp_path / "s", "--no-gif")
    stems = sorted(json.loads((tmp_path / "s" / "prompts.json").read_text()))
    joints = np.load(tmp_path / "s" / f"{stems[1]}.npy")
    assert joints.shape == (40, 22, 3)
    for stem in stems:
        assert_valid_body(np.load(tmp_path / "s" / f"{stem}.npy"), stem)
    done = cli("sample", "--model", "mdm", "--checkpoint", ckpt, "--text", "a person walks", "--length", "60s",
               "--out", tmp_path / "x", check=False)
    assert done.returncode != 0 and "outside the trained range" in done.stderr
    done = cli("sample", "--model", "mdm", "--text", "a person walks", "--out", tmp_path / "x", check=False)
    assert done.returncode != 0 and "--checkpoint" in done.stderr
    d2 = mdm_runs / "d2"
    cli("lift", "--model", "mdm", "--checkpoint", ckpt, "--data", d2, "--split", "test", "--limit", 2, "--render",
        "--out", tmp_path / "l")
    lifted = sorted((tmp_path / "l").glob("*.npy"))
    assert len(lifted) == 2
    for path in lifted:
        assert_valid_body(np.load(path), path.name, floor=False)  # camera frame: bones only
    assert len(list((tmp_path / "l").glob("*.gif"))) == 2
    out = tmp_path / "eval.json"
    cli("eval", "lift", "--model", "mdm", "--checkpoint", ckpt, "--data", d2, "--limit", 2, "--json", out)
    result = json.loads(out.read_text())
    assert result["clips"] == 2 and np.isfinite(result["model"]["PA-MPJPE"])
    done = cli("lift", "--model", "mdm", "--checkpoint", ckpt, "--keypoints", lifted[0], "--out", tmp_path / "k",
               check=False)
    assert done.returncode != 0 and "--data" in done.stderr


def test_eval_t2m_of_an_mdm(mdm_runs, tmp_path):
    d2 = mdm_runs / "d2"
    cli("train", "evaluator", "--data", d2, "--out", tmp_path / "evaluator", "--steps", 3, *FAST)
    out = tmp_path / "t2m.json"
    cli("eval", "t2m", "--model", "mdm", "--checkpoint", mdm_runs / "mdm" / "last.pt", "--evaluator",
        tmp_path / "evaluator" / "last.pt", "--data", d2, "--repeats", 1, "--mm-prompts", 2, "--mm-samples", 2,
        "--json", out)
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"real", "model", "empty caption", "random other caption"}
    assert np.isfinite(result["metrics"]["model"]["FID"][0])
    # The README's seed table reads these files: a second "seed" 2 mm and 0.1 FID worse moves the means by half.
    lift = tmp_path / "s0" / "videomdm.lift.json"
    lift.parent.mkdir()
    cli("eval", "lift", "--model", "mdm", "--checkpoint", mdm_runs / "mdm" / "last.pt", "--data", d2, "--limit", 2,
        "--json", lift)
    out.rename(tmp_path / "s0" / "videomdm.t2m.json")
    worse = tmp_path / "s1"
    worse.mkdir()
    lifted = json.loads(lift.read_text())
    pa, fid = lifted["model"]["PA-MPJPE"], result["metrics"]["model"]["FID"][0]
    lifted["model"]["PA-MPJPE"] += 2
    (worse / "videomdm.lift.json").write_text(json.dumps(lifted))
    result["metrics"]["model"]["FID"][0] += 0.1
    (worse / "videomdm.t2m.json").write_text(json.dumps(result))
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "videomdm" / "table.py"), "--seeds", tmp_path / "s0",
                           worse, "--", "videomdm"], capture_output=True, text=True, check=True)
    row = done.stdout.splitlines()[-1].split("|")
    assert row[1].strip() == "VideoMDM (anchored)"
    assert row[2].strip() == f"{pa:.1f} / {pa + 2:.1f}" and row[3].strip() == f"{pa + 1:.1f}"
    assert row[4].strip() == f"{fid:.3f} / {fid + 0.1:.3f}" and row[5].strip() == f"{fid + 0.05:.3f}"
    # the FID floor: the teacher's motions and true training motions scored against the test split
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "videomdm" / "diagnose.py"), "floor", "--data", d2,
                           "--evaluator", tmp_path / "evaluator" / "last.pt", "--checkpoints",
                           mdm_runs / "mdm" / "last.pt"], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["teacher, test clips", "teacher, training clips",
                                                     "true motion, training clips",
                                                     f"guided lifts of {mdm_runs / 'mdm' / 'last.pt'}, test clips"]
    assert all(np.isfinite(float(line.split("FID ")[1].split()[0])) for line in lines)


def test_diagnose_grads_reads_the_peak_learning_rate(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"step": 25, "lr": 5e-4, "mdm": 1.0, "grad_norm": 9.0},  # warm-up: ignored
            *({"step": 50 + i, "lr": 1e-3, "multistep": 1.0, "pos": 0.1, "grad_norm": g} for i, g in
              enumerate([1.0, 3.0, 2.0])),
            *({"step": 60 + i, "lr": 1e-3, "multistep": 0.0, "mdm": 0.2, "grad_norm": g} for i, g in
              enumerate([0.1, 0.3])),
            {"step": 90, "lr": 1e-4, "multistep": 1.0, "pos": 0.1, "grad_norm": 7.0},  # after the drop: ignored
            {"step": 90, "steps": 90, "eval": True}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "videomdm" / "diagnose.py"), "grads", log],
                          capture_output=True, text=True, check=True)
    assert "chain batches 2.000 (3 logged), plain MDM batches 0.200 (2 logged)" in done.stdout


def test_multistep_started_above_the_threshold(mdm_runs, tmp_path):
    d2 = mdm_runs / "d2"
    cli("train", "mdm", "--data", d2, "--out", tmp_path / "above", "--steps", 4, "--warmup-steps", 0,
        "--threshold", 40, "--multistep-start", "above", *FAST)
    cfg = json.loads((tmp_path / "above" / "config.json").read_text())
    assert cfg["videomdm"]["multistep_start"] == "above"
    log = [json.loads(line) for line in (tmp_path / "above" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert any(r["multistep"] == 1.0 for r in steps) and all(np.isfinite(r["loss"]) for r in steps)
    done = cli("train", "mdm", "--data", d2, "--out", tmp_path / "bad", "--threshold", 48, "--multistep-start",
               "above", check=False)
    assert done.returncode != 0 and "start 'above'" in done.stderr


def test_teacher_root_and_teacher_loss_above_the_threshold(mdm_runs, tmp_path):
    import torch

    from fastmotion.losses.videomdm import VideoMDMLossConfig
    from fastmotion.models.mdm import MDMConfig
    from fastmotion.train.videomdm import VideoMDMConfig, mdm_run

    d2 = mdm_runs / "d2"
    cli("train", "mdm", "--data", d2, "--out", tmp_path / "anchored", "--steps", 3, "--warmup-steps", 0,
        "--threshold", 24, "--root", "teacher", "--high-noise", "plain-mdm", *FAST)
    cfg = json.loads((tmp_path / "anchored" / "config.json").read_text())
    assert cfg["videomdm"]["high_noise"] == "plain-mdm" and cfg["videomdm"]["losses"]["root"] == "teacher"
    done = cli("train", "mdm", "--data", d2, "--out", tmp_path / "bad", "--high-noise", "plain-mdm", "--no-multistep",
               check=False)
    assert done.returncode != 0 and "high_noise 'plain-mdm'" in done.stderr
    # the step: chains below t* take the 2D objective (with L_root), batches above it the plain MDM loss
    config = VideoMDMConfig(warmup_steps=0, threshold=24, high_noise="plain-mdm", losses=VideoMDMLossConfig(root="teacher"))
    run = mdm_run(d2, d2 / "teacher", MDMConfig.preset("small"), config, 4, torch.device("cpu"))
    outs = [run.step_fn(run.model, 10, torch.Generator().manual_seed(s)) for s in range(12)]
    chains = [o for o in outs if float(o["multistep"]) == 1.0]
    above = [o for o in outs if float(o["multistep"]) == 0.0]
    assert chains and above
    assert all("root" in o and "pos" in o for o in chains) and all("mdm" in o and "pos" not in o for o in above)
    # lambda_2d scales the chains' loss and leaves the MDM batches alone (same weights, same draws)
    light = mdm_run(d2, d2 / "teacher", MDMConfig.preset("small"), replace(config, lambda_2d=0.25), 4,
                    torch.device("cpu"))
    light.model.load_state_dict(run.model.state_dict())
    for s, o in enumerate(outs):
        scaled = light.step_fn(light.model, 10, torch.Generator().manual_seed(s))["loss"]
        assert torch.allclose(scaled, o["loss"] * (0.25 if float(o["multistep"]) == 1.0 else 1.0), rtol=1e-5)
    done = cli("train", "mdm", "--data", d2, "--out", tmp_path / "bad2d", "--lambda-2d", 0, check=False)
    assert done.returncode != 0 and "lambda_2d must be > 0" in done.stderr


def test_diagnose_expert_and_split_sampling(mdm_runs, tmp_path):
    d2 = mdm_runs / "d2"
    base = mdm_runs / "mdm-teacher" / "last.pt"
    evaluator = tmp_path / "evaluator" / "last.pt"
    cli("train", "evaluator", "--data", d2, "--out", evaluator.parent, "--steps", 3, *FAST)
    tool = [sys.executable, str(ROOT / "experiments" / "videomdm" / "diagnose.py")]
    expert = tmp_path / "expert.pt"
    done = subprocess.run([*tool, "expert", "--data", d2, "--base", base, "--objective", "mix", "--steps", "2",
                           "--batch-size", "4", "--out", expert],
                          capture_output=True, text=True, check=True)
    assert f"{expert}: mix fine-tune of {base}, 2 steps below t = 24" in done.stdout
    import torch

    trained, start = (torch.load(p, weights_only=False)["model"] for p in (expert, base))
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    # the same checkpoint on both sides of the switch samples and lifts exactly as the CLI does
    done = subprocess.run([*tool, "hybrid", "--data", d2, "--evaluator", evaluator, "--high", base, "--low", base,
                           "--switch", "24", "--lift"], capture_output=True, text=True, check=True)
    t2m = tmp_path / "t2m.json"
    cli("eval", "t2m", "--model", "mdm", "--checkpoint", base, "--evaluator", evaluator, "--data", d2, "--repeats", 1,
        "--mm-prompts", 0, "--no-baselines", "--json", t2m)
    fid = json.loads(t2m.read_text())["metrics"]["model"]["FID"][0]
    assert f"FID {fid:.3f} ±" in done.stdout, done.stdout
    lifted = cli("eval", "lift", "--model", "mdm", "--checkpoint", base, "--data", d2, "--split", "test")
    row = [line for line in lifted.stdout.splitlines() if line.strip().startswith("model")]
    assert row and row[0] in done.stdout.splitlines()
    same = done.stdout.split("below: ")[1].splitlines()[0]
    # with the fine-tuned expert below the switch the samples change
    done = subprocess.run([*tool, "hybrid", "--data", d2, "--evaluator", evaluator, "--high", base, "--low", expert,
                           "--switch", "24"], capture_output=True, text=True, check=True)
    assert "FID" in same and done.stdout.split("below: ")[1].splitlines()[0] != same
