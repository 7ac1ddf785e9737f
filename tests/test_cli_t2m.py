"""Text-to-motion end to end through the real CLI (subprocesses, real files): train the evaluator and both
transformers on ML-RQ codes, sample from text (npy, bvh, gif), evaluate with the baselines, refuse bad input."""
import json

import numpy as np
import pytest
import torch

from fastmotion.checkpoint import save_checkpoint
from fastmotion.data.bvh import read_bvh
from fastmotion.models.mlrq import MLRQ, MotionVQConfig
from helpers import assert_valid_body
from helpers import fastmotion_cli as cli

pytestmark = pytest.mark.slow  # trains models through the CLI (`make test-fast` skips it)
FAST = ["--batch-size", 16, "--ckpt-every", 1000, "--eval-every", 1000]




@pytest.fixture(scope="module")
def runs(tiny_mlrq):
    """The evaluator and both transformers, trained briefly on the tiny corpus's ML-RQ codes."""
    d2, mlrq = tiny_mlrq / "d2", tiny_mlrq / "mlrq" / "last.pt"
    cli("train", "evaluator", "--data", d2, "--out", tiny_mlrq / "evaluator", "--steps", 15, *FAST)
    for kind in ("mask", "res"):
        cli("train", kind, "--data", d2, "--mlrq", mlrq, "--out", tiny_mlrq / kind, "--steps", 15, *FAST)
    return tiny_mlrq


def test_training_writes_checkpoints_and_caches_codes(runs):
    for kind in ("mask", "res", "evaluator"):
        cfg = json.loads((runs / kind / "config.json").read_text())
        assert (runs / kind / "last.pt").exists() and cfg["train"]["steps"] == 15
    assert len(list((runs / "mlrq" / "codes").glob("train-*.pt"))) == 1  # extracted once, shared by both runs
    assert json.loads((runs / "mask" / "config.json").read_text())["token_range"][0] >= 1


def test_clips_longer_than_max_tokens_train_on_crops(runs):
    """Bandai-2 has clips of 78 tokens: they train on random crops, and generated lengths stop at max_tokens."""
    from dataclasses import replace

    from fastmotion.models.t2m import T2MConfig
    from fastmotion.train.t2m import t2m_run

    config = replace(T2MConfig.preset("small"), max_tokens=4)
    run = t2m_run("mask", runs / "d2", runs / "mlrq" / "last.pt", config, 8, torch.device("cpu"))
    longest = json.loads((runs / "mask" / "config.json").read_text())["token_range"][1]
    assert longest > 4 and run.extra["token_range"][1] == 4
    out = run.step_fn(run.model, 0, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


def test_sample_writes_npy_bvh_gif(runs, tmp_path):
    out = tmp_path / "samples"
    done = cli("sample", "--models", runs, "--text", "a person jumps forward", "--length", "2s", "--num", 2,
               "--seed", 0, "--out", out)
    assert "wrote 2 motion(s)" in done.stdout
    stems = sorted(json.loads((out / "prompts.json").read_text()))
    assert len(stems) == 2 and all(s.startswith("a_person_jumps_forward_") for s in stems)
    for stem in stems:
        joints = np.load(out / f"{stem}.npy")
        assert joints.shape == (40, 22, 3) and np.isfinite(joints).all()
        assert joints[..., 1].min() > -1e-4  # nothing under the floor, y up
        np.testing.assert_allclose(read_bvh(out / f"{stem}.bvh", fps=20), joints, atol=1e-3)  # one motion
        assert (out / f"{stem}.gif").stat().st_size > 0
    again = tmp_path / "again"
    cli("sample", "--models", runs, "--text", "a person jumps forward", "--length", "2s", "--num", 2, "--seed", 0,
        "--out", again, "--no-gif", "--no-bvh")
    assert np.array_equal(np.load(again / f"{stems[1]}.npy"), np.load(out / f"{stems[1]}.npy"))
    assert not list(again.glob("*.gif")) and not list(again.glob("*.bvh"))


def test_sampled_bodies_are_valid_for_many_prompts_and_seeds(runs, tmp_path):
    """Barely trained transformers decode garbage limbs; what `sample` writes is still a valid body (issue 28)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks forward\nsomeone waves hello\na person jumps up\na person runs forward\n"
                       "someone kicks forward\na person squats down and stands up\nsomeone turns around\n"
                       "a person steps to the left\n")
    written = 0
    for seed in (0, 1, 2):
        out = tmp_path / f"seed{seed}"
        cli("sample", "--models", runs, "--texts", prompts, "--num", 2, "--seed", seed, "--out", out, "--no-gif",
            "--steps", 3)
        for path in sorted(out.glob("*.npy")):
            joints = np.load(path)
            assert_valid_body(joints, path.name)
            np.testing.assert_allclose(read_bvh(path.with_suffix(".bvh"), fps=20), joints, atol=1e-3)
            written += 1
    assert written == 48


def test_sample_reports_out_of_vocabulary_words(runs, tmp_path):
    """A prompt word that no training caption has is named on stderr ("cartwheel"); known words are not."""
    from fastmotion.checkpoint import load_checkpoint

    words = load_checkpoint(runs / "mask" / "last.pt")["extra"]["caption_words"]
    assert "cartwheel" not in words and len(words) >= 3
    known = " ".join(words[:3])
    done = cli("sample", "--models", runs, "--text", f"{known} Cartwheel", "--text", known, "--length", "2s",
               "--out", tmp_path / "s", "--no-gif", "--no-bvh", "--steps", 2)
    assert f'out of vocabulary in "{known} Cartwheel": \'cartwheel\' in no training caption' in done.stderr
    assert done.stderr.count("out of vocabulary") == 1


def test_sample_batched_prompts_with_predicted_lengths(runs, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks forward\n\nsomeone waves hello\n")
    cli("sample", "--models", runs, "--texts", prompts, "--out", tmp_path / "s", "--no-gif", "--steps", 3)
    lo, hi = json.loads((runs / "mask" / "config.json").read_text())["token_range"]
    listed = json.loads((tmp_path / "s" / "prompts.json").read_text())
    assert sorted(v["prompt"] for v in listed.values()) == ["a person walks forward", "someone waves hello"]
    for stem in listed:
        frames = np.load(tmp_path / "s" / f"{stem}.npy").shape[0]
        assert 4 * lo <= frames <= 4 * hi and frames % 4 == 0


def test_eval_t2m_reports_model_and_baselines(runs, tmp_path):
    out = tmp_path / "t2m.json"
    done = cli("eval", "t2m", "--models", runs, "--evaluator", runs / "evaluator" / "last.pt", "--data", runs / "d2",
               "--repeats", 2, "--mm-prompts", 3, "--mm-samples", 2, "--steps", 2, "--json", out)
    assert "random other caption" in done.stdout and "R@top-3" in done.stdout
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"real", "model", "first level alone", "empty caption", "random other caption"}
    model = result["metrics"]["model"]
    for key in ("R-precision top-1", "R-precision top-3", "FID", "MM-Dist", "Diversity", "MultiModality", "QM"):
        mean, half = model[key]
        assert np.isfinite(mean) and np.isfinite(half)
    assert len(result["runs"]["model"]["FID"]) == 2
    first = result["runs"]["first level alone"]
    assert first["FID"] != result["runs"]["model"]["FID"]  # the residual levels change the motions
    # the row decodes the model's own first-level codes: the same motions as sampling without the residual model
    cli("eval", "t2m", "--models", runs, "--evaluator", runs / "evaluator" / "last.pt", "--data", runs / "d2",
        "--repeats", 1, "--mm-prompts", 0, "--steps", 2, "--no-res", "--no-baselines", "--json", tmp_path / "l1.json")
    assert json.loads((tmp_path / "l1.json").read_text())["runs"]["model"]["FID"][0] == pytest.approx(first["FID"][0])
    assert abs(result["metrics"]["real"]["FID"][0]) < 1e-6  # the real motions against themselves
    assert result["bones"] == "rigid" and result["residual_levels"]
    # the same first run (same seed) with the bones as decoded, then with the first code level only
    for flag, key, value in (("--free-bones", "bones", "free"), ("--no-res", "residual_levels", False)):
        other = tmp_path / f"t2m{flag}.json"
        cli("eval", "t2m", "--models", runs, "--evaluator", runs / "evaluator" / "last.pt", "--data", runs / "d2",
            "--repeats", 1, "--mm-prompts", 0, "--no-baselines", "--steps", 2, flag, "--json", other)
        changed = json.loads(other.read_text())
        assert changed[key] == value
        assert changed["runs"]["model"]["FID"][0] != result["runs"]["model"]["FID"][0]


def test_bad_prompts_and_lengths_are_refused(runs, tmp_path):
    base = ["sample", "--models", runs, "--out", tmp_path / "x"]
    done = cli(*base, "--text", "  ", check=False)
    assert done.returncode != 0 and "empty" in done.stderr and "--text" in done.stderr
    done = cli(*base, "--text", "walk " * 100, check=False)
    assert done.returncode != 0 and "at most 75" in done.stderr
    done = cli(*base, "--text", "a person walks", "--length", "60s", check=False)
    assert done.returncode != 0 and "outside the trained range" in done.stderr and "--length" in done.stderr
    done = cli(*base, "--text", "a person walks", "--length", "fast", check=False)
    assert done.returncode != 0 and "--length" in done.stderr
    done = cli("sample", "--models", tmp_path / "nowhere", "--text", "a person walks", "--out", tmp_path / "x",
               check=False)
    assert done.returncode != 0 and "no such checkpoint" in done.stderr
    done = cli(*base, "--text", "a person walks", "--res", runs / "res" / "last.pt", "--no-res", check=False)
    assert done.returncode != 0 and "--res or --no-res" in done.stderr
    done = cli(*base, "--text", "a person walks", "--model", "mdm", "--no-res", check=False)
    assert done.returncode != 0 and "--no-res is for the ML-RQ transformers" in done.stderr
    assert not (tmp_path / "x").exists()


def test_codebook_mismatch_is_refused(runs, tmp_path):
    other = MLRQ(MotionVQConfig(width=16, latent_dim=8, num_levels=6, num_codes=32))
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"kind": "MLRQ", "model_config": {"kind": "MLRQ", **other.config.__dict__, "length": 32},
                           "model": other.state_dict(), "step": 0})
    done = cli("sample", "--models", runs, "--mlrq", path, "--text", "a person walks", "--out", tmp_path / "x",
               check=False)
    assert done.returncode != 0 and "codebooks of" in done.stderr and "32" in done.stderr


def test_clip_text_features_path(runs, clip_file, tmp_path):
    clip_path, _ = clip_file
    d2, mlrq = runs / "d2", runs / "mlrq" / "last.pt"
    done = cli("train", "mask", "--data", d2, "--mlrq", mlrq, "--out", tmp_path / "m", "--clip-weights",
               tmp_path / "missing.pt", "--steps", 2, check=False)
    assert done.returncode != 0 and "--clip-weights" in done.stderr and "no such file" in done.stderr
    cli("train", "mask", "--data", d2, "--mlrq", mlrq, "--out", tmp_path / "clip" / "mask", "--clip-weights", clip_path,
        "--steps", 3, *FAST)
    state = torch.load(tmp_path / "clip" / "mask" / "last.pt", weights_only=True)
    assert not any(k.startswith("text.") for k in state["model"])  # CLIP stays out of the checkpoint
    cli("sample", "--models", tmp_path / "clip", "--text", "a person walks", "--length", "40", "--out",
        tmp_path / "s", "--no-gif", "--clip-weights", clip_path)
    (stem,) = json.loads((tmp_path / "s" / "prompts.json").read_text())
    assert np.load(tmp_path / "s" / f"{stem}.npy").shape == (40, 22, 3)
    done = cli("sample", "--models", tmp_path / "clip", "--text", "a person walks", "--out", tmp_path / "s2",
               "--clip-weights", tmp_path / "gone.pt", check=False)
    assert done.returncode != 0 and "--clip-weights" in done.stderr


def test_eval_t2m_with_the_original_evaluator_files(runs, tmp_path):
    from helpers import t2m_release

    folder, glove, _ = t2m_release(tmp_path)
    done = cli("eval", "t2m", "--models", runs, "--t2m-evaluator", folder, "--glove", glove, "--data", runs / "d2",
               "--repeats", 1, "--mm-prompts", 0, "--steps", 2, "--no-baselines")
    assert "model" in done.stdout and "R@top-1" in done.stdout
    done = cli("eval", "t2m", "--models", runs, "--t2m-evaluator", folder, "--data", runs / "d2", check=False)
    assert done.returncode != 0 and "--glove" in done.stderr
    done = cli("eval", "t2m", "--models", runs, "--data", runs / "d2", check=False)
    assert done.returncode != 0 and "exactly one of --evaluator or --t2m-evaluator" in done.stderr
