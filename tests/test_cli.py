"""The `fastmotion` command, run as a real subprocess."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import fastmotion_cli as fastmotion
from hypothesis import given, settings
from hypothesis import strategies as st


def test_help_teaches():
    out = fastmotion("--help").stdout
    assert "backends" in out and "bench" in out
    rvq_help = fastmotion("bench", "rvq", "--help").stdout
    assert "Example:" in rvq_help and "fastmotion bench rvq --n 4096" in rvq_help


def test_backends_lists_every_backend_with_a_reason():
    lines = fastmotion("backends").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["torch", "cpp", "triton", "cuda"]
    assert all(len(line.split()) > 2 for line in lines)  # yes/no followed by why


def test_bench_rvq_writes_json(tmp_path):
    path = tmp_path / "rvq.json"
    done = fastmotion("bench", "rvq", "--n", "64", "--backend", "torch", "--device", "cpu", "--json", str(path))
    assert "median ms" in done.stdout
    figures = json.loads(path.read_text())
    assert figures["L"] == 6 and figures["K"] == 512 and figures["D"] == 512
    (row,) = figures["rows"]
    assert row["backend"] == "torch" and row["case"] == "N=64" and row["median_ms"] > 0
    assert row["speedup_vs_torch"] == 1.0
    assert figures["environment"]["torch"]


def test_bench_rejects_bad_options():
    done = fastmotion("bench", "rvq", "--n", "0", check=False)
    assert done.returncode != 0 and "--n" in done.stderr
    done = fastmotion("bench", "rvq", "--backend", "nope", check=False)
    assert done.returncode != 0 and "nope" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlrq", "mdm"])
def test_bench_train_times_fused_against_torch(model):
    from fastmotion.bench import train as train_bench

    rows = train_bench.run("small", batch=4, length=8, progress=lambda _: None, min_seconds=0.1, model=model)
    assert [r.backend for r in rows] == ["torch", "fused"] and rows[0].op == f"train {model}"
    assert all(r.median_ms > 0 and float(r.extra["steps/s"]) > 0 for r in rows)
    assert rows[0].speedup_vs_torch == 1.0


def test_bench_train_to_pa_mpjpe(tiny_mlrq, tmp_path):
    """Time to accuracy: both arms train the same run (same weights and batches, so nearly the same figures),
    evaluated every --eval-every steps; the default target is the first arm's final figure, which it reaches."""
    out = tmp_path / "tta.json"
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tiny_mlrq / "d2", "--prior",
                      tiny_mlrq / "prior" / "last.pt", "--steps", 20, "--eval-every", 10, "--json", out)
    report = json.loads(out.read_text())
    fused, torch_arm = report["arms"]["fused"], report["arms"]["torch"]
    assert [h[0] for h in fused["history"]] == [10, 20] == [h[0] for h in torch_arm["history"]]
    assert report["target"] == fused["final"] and fused["reached"][0] <= 20
    assert abs(fused["final"] - torch_arm["final"]) < 0.05 * fused["final"]
    assert fused["history"][0][1] < fused["history"][1][1] and fused["steps_per_s"] > 0
    assert "target: val PA-MPJPE <=" in done.stdout
    fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tiny_mlrq / "d2", "--prior",
               tiny_mlrq / "prior" / "last.pt", "--steps", 10, "--eval-every", 5, "--arm", "fused", "--target", 1e4,
               "--batch-size", 8, "--json", out)
    report = json.loads(out.read_text())
    assert list(report["arms"]) == ["fused"] and report["target"] == 1e4 and report["config"]["batch_size"] == 8
    assert report["arms"]["fused"]["reached"][0] == 5  # the first evaluation is under so lax a target
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tiny_mlrq / "d2", "--prior",
                      tiny_mlrq / "prior" / "last.pt", "--steps", 10, "--eval-every", 5, "--arm", "fused",
                      "--target", 1e-3)
    assert "fused: not reached" in done.stdout
    (tmp_path / "only2d").mkdir()
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tmp_path / "only2d", "--prior",
                      tiny_mlrq / "prior" / "last.pt", check=False)
    assert done.returncode != 0 and "needs the 3D of the val clips" in done.stderr
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tiny_mlrq / "d2", check=False)
    assert done.returncode != 0 and "--prior" in done.stderr
    done = fastmotion("bench", "train", "--target", "30", check=False)
    assert done.returncode != 0 and "only with --to PA-MPJPE" in done.stderr
    for option in (["--milestones", "0.5"], ["--schedule", "cosine"], ["--ema", 0.5], ["--seed", 1],
                   ["--test-split"]):
        done = fastmotion("bench", "train", *option, check=False)
        assert done.returncode != 0 and "only with --to PA-MPJPE" in done.stderr and option[0] in done.stderr


def test_bench_train_to_pa_mpjpe_takes_the_training_recipe_and_scores_the_test_split(tiny_mlrq, tmp_path):
    """--seed, --milestones and --ema reach the bench's run as they reach `fastmotion train mlrq`'s, and
    --test-split scores the final weights as `fastmotion eval lift --split test` scores that run's last.pt."""
    recipe = ["--steps", 10, "--batch-size", 8, "--lr", 2e-3, "--milestones", "0.5", "--ema", 0.5, "--seed", 1,
              "--eval-every", 5]
    out = tmp_path / "tta.json"
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tiny_mlrq / "d2", "--prior",
                      tiny_mlrq / "prior" / "last.pt", "--arm", "fused", "--test-split", *recipe, "--json", out)
    report = json.loads(out.read_text())
    config, arm = report["config"], report["arms"]["fused"]
    assert (config["seed"], config["milestones"], config["ema"], config["schedule"]) == (1, [0.5], 0.5, "step")
    assert f"test {arm['test PA-MPJPE']:.2f} mm" in done.stdout
    fastmotion("train", "mlrq", "--data", tiny_mlrq / "d2", "--prior", tiny_mlrq / "prior" / "last.pt", "--out",
               tmp_path / "run", *recipe)
    fastmotion("eval", "lift", "--checkpoint", tmp_path / "run" / "last.pt", "--data", tiny_mlrq / "d2",
               "--split", "test", "--json", tmp_path / "test.json")
    scored = json.loads((tmp_path / "test.json").read_text())["model"]["PA-MPJPE"]
    assert arm["test PA-MPJPE"] == pytest.approx(scored, abs=0.01)
    assert arm["final"] != pytest.approx(arm["test PA-MPJPE"], abs=1e-6)  # val and test are other clips
    shutil.copytree(tiny_mlrq / "d2", tmp_path / "no_test")
    (tmp_path / "no_test" / "test.txt").write_text("")
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tmp_path / "no_test", "--prior",
                      tiny_mlrq / "prior" / "last.pt", "--arm", "fused", "--test-split", *recipe, check=False)
    assert done.returncode != 0 and "test.txt: the split is empty" in done.stderr
    assert "step 5" not in done.stderr  # refused before any training
    test_names = (tiny_mlrq / "d2" / "test.txt").read_text().split()
    (tmp_path / "no_test" / "test.txt").write_text("\n".join(test_names))
    (tmp_path / "no_test" / "eval3d" / "new_joints" / f"{test_names[0]}.npy").unlink()
    done = fastmotion("bench", "train", "--to", "PA-MPJPE", "--data", tmp_path / "no_test", "--prior",
                      tiny_mlrq / "prior" / "last.pt", "--arm", "fused", "--test-split", *recipe, check=False)
    assert done.returncode != 0 and f"1 of {len(test_names)} have none, e.g. {test_names[0]}" in done.stderr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12))
def test_every_motion_sample_writes_gets_its_own_file_name(prompts):
    from fastmotion.cli.sample import output_stems

    stems = output_stems(prompts)
    assert len(set(stems)) == len(prompts)  # the same prompt twice: two samples, two names
    assert all(re.fullmatch(r"[a-z0-9_]+", s) for s in stems)  # safe on every file system
    for a, b in zip(prompts, stems):  # distinct prompts never share a stem (without the sample index)
        for c, d in zip(prompts, stems):
            if a != c:
                assert b.rsplit("_", 1)[0] != d.rsplit("_", 1)[0]


def test_the_cases_prompts_give_four_file_names():
    from fastmotion.cli.sample import output_stems

    prompts = (Path(__file__).parent / "data" / "cases" / "prompts.txt").read_text().splitlines()
    assert len(prompts) == 4 and len(set(output_stems(prompts))) == 4  # once 2 names for 4 prompts


def test_a_keypoint_file_of_unknown_layout_names_the_option(tmp_path):
    np.save(tmp_path / "k9.npy", np.random.default_rng(0).random((10, 9, 3)))
    done = fastmotion("lift", "--checkpoint", tmp_path / "none.pt", "--keypoints", tmp_path / "k9.npy", "--out",
                      tmp_path / "o", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "k9.npy: cannot tell the layout of 9 keypoints" in done.stderr and "--layout" in done.stderr
