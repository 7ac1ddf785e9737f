"""fastmotion.data: synthetic corpus, HumanML3D IO, 2D rendering (input checked at the door: orientation,
captions), dataset, keypoint files, clips, render; the CLI through real subprocesses."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fastmotion.data import Keypoints2DDataset, build_synthetic, render_2d
from fastmotion.data import humanml3d as hml
from fastmotion.data.build import height_axis
from fastmotion.data.clips import split_clips
from fastmotion.data.synth import synth_clip
from fastmotion.motion import SMPL22
from fastmotion.motion.camera import Cameras, project
from helpers import shared_dir

SHARED = shared_dir()
CMU = SHARED / "data" / "cmu" if SHARED else None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    build_synthetic(root / "synth", num=60, seed=3)
    render_2d(root / "synth", root / "synth2d", views=2, seed=1)
    return root


def test_synthetic_clips_are_plausible_and_seeded():
    rng = np.random.default_rng(0)
    for _ in range(40):
        joints, texts, label = synth_clip(rng)
        assert joints.shape[1:] == (22, 3) and 20 <= len(joints) <= 200 and len(texts) == 3 and all(texts)
        bones = np.linalg.norm(joints[:, 1:] - joints[:, list(SMPL22.parents[1:])], axis=-1)
        assert np.ptp(bones, axis=0).max() < 1e-4  # rigid bones
        assert joints[..., 1].min() > -1e-5  # nothing below the floor
        if "jump" not in label:
            assert np.abs(joints[..., 1].min(1)).max() < 1e-5  # always standing on it
        speed = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1) * 20
        assert speed.max() < 8.0  # metres per second: human
        height = joints[0, SMPL22.index("head"), 1]
        assert 1.1 < height < 2.2 or "squat" in label or "sit" in label or "jump" in label or "kick" in label
    a, b = synth_clip(np.random.default_rng(5)), synth_clip(np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_corpus_layout_and_determinism(corpus, tmp_path):
    root = corpus / "synth"
    names = sum((hml.read_split(root, s) for s in hml.SPLITS), [])
    assert len(names) == 60 == len(set(names))
    captions = hml.parse_captions(root / "texts" / f"{names[0]}.txt")
    assert len(captions) == 3 and all("/" in t for t in captions[0].tokens)
    build_synthetic(tmp_path / "again", num=60, seed=3)
    for name in names[:5]:
        assert np.array_equal(np.load(root / "new_joints" / f"{name}.npy"),
                              np.load(tmp_path / "again" / "new_joints" / f"{name}.npy"))


def test_render_2d_keeps_3d_apart_and_projects_with_its_camera(corpus):
    out = corpus / "synth2d"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["clips"]["train"] + meta["clips"]["val"] + meta["clips"]["test"] == 120 and meta["skipped"] == 0
    name = hml.read_split(out, "val")[0]
    keypoints = np.load(out / "keypoints" / f"{name}.npy")
    joints = np.load(out / "eval3d" / "new_joints" / f"{name}.npy")
    with np.load(out / "cameras" / f"{name}.npz") as c:
        cams = Cameras(*(torch.from_numpy(c[k]).double()[None] for k in ("K", "R", "t")))
    np.testing.assert_allclose(project(torch.from_numpy(joints).double()[None], cams)[0].numpy(), keypoints,
                               rtol=1e-4, atol=0.05)
    assert not list(out.glob("new_joints")) and (out / "stats_free3d_2d.npz").exists()


def test_render_2d_skips_bad_clips_and_never_leaves_half_a_folder(tmp_path):
    build_synthetic(tmp_path / "src", num=6, seed=0)
    name = hml.read_split(tmp_path / "src", "train")[0]
    np.save(tmp_path / "src" / "new_joints" / f"{name}.npy", np.zeros((5, 21, 3)))  # wrong shape
    summary = render_2d(tmp_path / "src", tmp_path / "out", views=1, seed=0)
    assert summary["skipped"] == 1 and "expected joints of shape [T, 22, 3]" in summary["skipped_reasons"][0]
    assert name in summary["skipped_reasons"][0]
    for n in sum((hml.read_split(tmp_path / "src", s) for s in hml.SPLITS), []):  # every clip broken
        np.save(tmp_path / "src" / "new_joints" / f"{n}.npy", np.full((5, 22, 3), np.nan))
    with pytest.raises(ValueError, match="no clip could be read"):
        render_2d(tmp_path / "src", tmp_path / "out2", views=1)
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        render_2d(tmp_path / "nowhere", tmp_path / "out3")


def test_dataset_crops_pads_and_is_seeded(corpus):
    ds = Keypoints2DDataset(corpus / "synth2d", "train", length=48, seed=0)
    lengths = [ds[i]["length"] for i in range(len(ds))]
    frames = [len(np.load(corpus / "synth2d" / "keypoints" / f"{ds[i]['name']}.npy")) for i in range(len(ds))]
    assert lengths == [min(48, f) for f in frames]  # cropped to 48 frames, or the whole clip
    assert min(frames) < 48 < max(frames)  # the corpus has both kinds
    item = ds[0]
    assert item["keypoints"].shape == (48, 22, 2) and item["mask"].sum() == item["length"]
    assert (item["keypoints"][item["length"]:] == 0).all() and item["text"]
    assert item["features"].shape == (48, 44) and (item["features"][item["length"]:] == 0).all()
    everything = torch.cat([ds[i]["features"][ds[i]["mask"]] for i in range(len(ds))])
    assert everything.mean(0).abs().max() < 0.5 and (everything.std(0) - 1).abs().max() < 0.5  # standardised
    again = Keypoints2DDataset(corpus / "synth2d", "train", length=48, seed=0)[0]
    assert torch.equal(again["keypoints"], item["keypoints"]) and again["text"] == item["text"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["keypoints"].shape == (4, 48, 22, 2) and batch["K"].shape == (4, 3, 3)
    with pytest.raises(FileNotFoundError, match="split file missing"):
        Keypoints2DDataset(corpus / "synth2d", "holdout")


def test_humanml3d_io_errors_name_the_file(tmp_path):
    bad = tmp_path / "texts.txt"
    bad.write_text("a person walks#a/DET person/NOUN#0.0#0.0\nbroken line\n")
    with pytest.raises(ValueError, match=r"texts.txt:2: expected 'caption#tokens#start#end'"):
        hml.parse_captions(bad)
    np.save(tmp_path / "nan.npy", np.full((4, 22, 3), np.nan))
    with pytest.raises(ValueError, match="nan.npy: 264 joint coordinates are NaN"):
        hml.load_joints(tmp_path / "nan.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy: not a readable .npy"):
        hml.load_joints(tmp_path / "junk.npy")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.txt").write_text("\n")
    with pytest.raises(ValueError, match="train.txt: the split is empty"):
        hml.read_split(tmp_path / "empty", "train")


def test_clip_extraction_cuts_at_calm_frames():
    rng = np.random.default_rng(0)
    T = 300
    joints = np.repeat(synth_clip(rng)[0][:1], T, axis=0).astype(np.float64)
    moving = np.ones(T, bool)
    moving[[95, 96, 97, 200, 201, 202]] = False  # the only still frames
    joints[moving] += rng.normal(scale=0.05, size=joints[moving].shape)
    clips = split_clips(joints, 60, 120)
    assert clips[0][0] == 0 and clips[-1][1] == T
    assert all(60 <= e - s <= 120 for s, e in clips)
    assert all(s in (96, 97, 201, 202) for s, _ in clips[1:])
    assert split_clips(joints[:30], 60, 120) == []
    with pytest.raises(ValueError, match="min_len <= max_len"):
        split_clips(joints, 10, 5)


def test_cli_builds_renders_and_draws(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "fastmotion.cli", *args], capture_output=True, text=True)

    done = run("data", "synth", "--out", str(tmp_path / "s"), "--num", "12", "--seed", "1")
    assert done.returncode == 0, done.stderr
    done = run("data", "render", "--from", str(tmp_path / "s"), "--out", str(tmp_path / "s2d"), "--views", "1")
    assert done.returncode == 0 and "skipped 0 bad clip(s)" in done.stdout, done.stderr
    name = hml.read_split(tmp_path / "s2d", "train")[0]
    joints = tmp_path / "s2d" / "eval3d" / "new_joints" / f"{name}.npy"
    done = run("render", str(joints), str(tmp_path / "s2d" / "keypoints" / f"{name}.npy"), "--title", "3D",
               "--title", "2D", "--out", str(tmp_path / "clip.gif"))
    assert done.returncode == 0, done.stderr
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == len(np.load(joints)) and gif.size == (640, 320)
    gif.seek(gif.n_frames // 2)
    assert len(np.unique(np.asarray(gif.convert("RGB")).reshape(-1, 3), axis=0)) > 3  # something was drawn
    done = run("render", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "x.gif"))
    assert done.returncode != 0 and "missing.npy: no such file" in done.stderr
    done = run("data", "render", "--help")
    assert done.returncode == 0 and "Example" in done.stdout
    if shutil.which("ffmpeg"):
        assert run("render", str(joints), "--out", str(tmp_path / "clip.mp4")).returncode == 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fastmotion.cli", *map(str, args)], capture_output=True, text=True)


def test_z_up_data_is_refused_with_the_fix_and_renders_with_it(tmp_path):
    build_synthetic(tmp_path / "y", num=8, seed=3)
    shutil.copytree(tmp_path / "y", tmp_path / "z")
    for path in (tmp_path / "z" / "new_joints").glob("*.npy"):  # stored z-up, as AMASS stores it
        np.save(path, np.load(path) @ np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T)
    done = _cli("data", "render", "--from", tmp_path / "z", "--out", tmp_path / "z2d")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "new_joints" in done.stderr and "runs along +z" in done.stderr and "--up z" in done.stderr
    assert not (tmp_path / "z2d").exists()
    render_2d(tmp_path / "y", tmp_path / "y2d", seed=5)
    render_2d(tmp_path / "z", tmp_path / "z2d", seed=5, up="z")
    name = hml.read_split(tmp_path / "y2d", "train")[0]
    np.testing.assert_allclose(np.load(tmp_path / "z2d" / "keypoints" / f"{name}.npy"),
                               np.load(tmp_path / "y2d" / "keypoints" / f"{name}.npy"), atol=1e-3)


@settings(max_examples=20, deadline=None)
@given(perm=st.permutations([0, 1, 2]), signs=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
def test_only_bodies_that_stand_along_y_pass_the_orientation_check(perm, signs):
    joints = synth_clip(np.random.default_rng(0))[0].astype(np.float64)
    turned = joints[..., list(perm)] * np.array(signs)
    axis = height_axis(turned)
    assert axis == ("+" if signs[perm.index(1)] > 0 else "-") + "xyz"[perm.index(1)]  # where y went


def test_cli_errors_are_one_line_naming_the_problem(tmp_path):
    build_synthetic(tmp_path / "src", num=4, seed=0)
    for path in (tmp_path / "src" / "new_joints").glob("*.npy"):
        np.save(path, np.full((5, 22, 3), np.nan))
    done = _cli("data", "render", "--from", tmp_path / "src", "--out", tmp_path / "out")
    assert done.returncode != 0 and "Traceback" not in done.stderr and "no clip could be read" in done.stderr


def test_a_caption_too_long_for_the_text_encoders_is_named_before_training(tmp_path):
    build_synthetic(tmp_path / "src", num=30, seed=0)
    name = hml.read_split(tmp_path / "src", "train")[0]
    (tmp_path / "src" / "texts" / f"{name}.txt").write_text(" ".join(["walk"] * 90) + "#walk/VERB#0.0#0.0\n")
    done = _cli("data", "render", "--from", tmp_path / "src", "--out", tmp_path / "d2")
    assert done.returncode == 0 and f"{name}_v0.txt" in done.stderr and "75 BPE tokens" in done.stderr
    done = _cli("train", "evaluator", "--data", tmp_path / "d2", "--out", tmp_path / "ev", "--steps", 2)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{name}_v0.txt" in done.stderr and "at most 75 fit" in done.stderr
    assert not (tmp_path / "ev" / "last.pt").exists()
