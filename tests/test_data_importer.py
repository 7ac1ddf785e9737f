"""`fastmotion data import`: detector keypoint tracks (COCO-style JSON with tracks, OpenPose folders, .npy) become
the 2D-only dataset layout: resampled to 20 fps, cut where the person is lost and at calm frames, short pieces
dropped and reported, completed joints at confidence 0, cameras without a pose; the trainers' reader loads it."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fastmotion.data import humanml3d as hml
from fastmotion.data.clip_bank import ClipBank
from fastmotion.data.importer import COMPLETED_WEIGHT, import_keypoints, pieces, resample_track
from fastmotion.motion import SMPL22
from fastmotion.motion.skeleton import OPENPOSE25_NAMES, OPENPOSE25_TO_SMPL22
from test_data_keypoints import coco_rows, pixels


def walk(frames, seed=0, shift=0.0):
    """SMPL-22 pixels of a synthetic clip, repeated to `frames` frames (a long, plausible track)."""
    base = pixels(seed, frames=40, shift=shift)
    reps = -(-frames // len(base))
    return np.concatenate([base if r % 2 == 0 else base[::-1] for r in range(reps)])[:frames]


@pytest.fixture
def detections(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a, b = coco_rows(walk(300)), coco_rows(walk(60, seed=1, shift=300))
    results = [{"image_id": i, "track_id": 1, "keypoints": a[i].ravel().tolist(), "score": 0.9}
               for i in range(300) if not 100 <= i < 120]  # person 1 lost for 20 frames
    results += [{"image_id": i, "track_id": 2, "keypoints": b[i].ravel().tolist(), "score": 0.8} for i in range(10)]
    (src / "video_a.json").write_text(json.dumps(results))  # track 2: 10 frames, too short
    frames = src / "video_b"
    frames.mkdir()
    smpl = walk(50, seed=2)
    for i in range(50):
        body = np.zeros((25, 3))
        for k, name in enumerate(OPENPOSE25_NAMES):
            if name in OPENPOSE25_TO_SMPL22:
                body[k] = [*smpl[i, SMPL22.index(OPENPOSE25_TO_SMPL22[name])], 0.8]
        (frames / f"video_b_{i:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()}]}))
    np.save(src / "video_c.npy", coco_rows(walk(40, seed=3)))
    (src / "texts").mkdir()
    (src / "texts" / "video_c.txt").write_text("a person walks\n")
    return src


def test_import_builds_the_dataset_layout_and_reports_every_piece(detections, tmp_path):
    out = tmp_path / "out"
    summary = import_keypoints(detections, out, fps=20.0, max_frames=100)
    report = json.loads((out / "report.json").read_text())
    assert summary["tracks"] == 4  # two in video_a, one each in video_b and video_c
    assert any(r.get("dropped") == "short" and "video_a_t2" in r["source"] for r in report)
    assert any("cut" in r and "video_a_t1" in r["source"] for r in report)  # 180 frames > 100: cut
    names = [n for s in hml.SPLITS for n in (out / f"{s}.txt").read_text().split()]
    assert names and all((out / "keypoints" / f"{n}.npy").exists() for n in names)
    first_piece = [n for n in names if n.startswith("video_a_t1_")]
    assert first_piece and all(np.load(out / "keypoints" / f"{n}.npy").shape[0] <= 100 for n in first_piece)
    for n in names:
        k, c = np.load(out / "keypoints" / f"{n}.npy"), np.load(out / "confidence" / f"{n}.npy")
        assert np.isfinite(k).all() and c.shape == k.shape[:2]
        assert (c[:, SMPL22.index("spine2")] == COMPLETED_WEIGHT).all()  # placed by rule: a low weight
        seen = c[:, SMPL22.index("left_knee")]
        assert ((seen == np.float32(0.9)) | (seen == np.float32(0.8)) | (seen == 0)).all()  # the detector's
    video_c = [n for n in names if n.startswith("video_c")]
    assert (out / "texts" / f"{video_c[0]}.txt").read_text().startswith("a person walks#")
    for split in hml.SPLITS:  # every clip of a video in one split
        videos = {n.rsplit("_", 1)[0].split("_t")[0] for n in (out / f"{split}.txt").read_text().split()}
        for other in set(hml.SPLITS) - {split}:
            assert not videos & {n.rsplit("_", 1)[0].split("_t")[0] for n in (out / f"{other}.txt").read_text().split()}
    with np.load(out / "cameras" / f"{names[0]}.npz") as cam:
        assert set(cam.files) == {"K"}  # no pose
    split = next(s for s in hml.SPLITS if (out / f"{s}.txt").read_text().split())
    assert "camera pitch from the horizon" in ClipBank(out, split).pitch_note  # the default: estimated
    bank = ClipBank(out, split, pitch=0.0)
    assert np.isfinite(bank.clips[0].numpy()).all() and bank.up(0).tolist() == [0.0, -1.0, 0.0]
    pitched = ClipBank(out, split, pitch=15.0).up(0)  # `train mlrq --pitch 15`
    np.testing.assert_allclose(pitched.numpy(), [0.0, -np.cos(np.radians(15)), -np.sin(np.radians(15))], atol=1e-6)


def test_a_folder_with_nothing_usable_fails_whole(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"no clip could be made .*broken.json: not valid JSON"):
        import_keypoints(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    done = subprocess.run([sys.executable, "-m", "fastmotion.cli", "data", "import", "--from", str(src), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "broken.json" in done.stderr


def test_resampling_and_gaps():
    k = np.stack([np.full((22, 2), float(t)) for t in range(31)])
    mask = np.ones((31, 22), bool)
    mask[10] = False
    out, seen = resample_track(k, mask, 30.0)  # 1 s at 30 fps -> 21 frames at 20 fps
    assert len(out) == 21 and np.allclose(out[seen[:, 0], 0, 0], (np.arange(21) * 1.5)[seen[:, 0]])
    assert not seen[7].any()  # 7 * 1.5 = 10.5: between frame 10 (missing) and 11
    m = np.zeros((40, 22), bool)
    m[0:10] = m[13:20] = m[30:40] = True
    assert pieces(m, max_gap=5) == [(0, 20), (30, 40)]  # a 3-frame gap stays, a 10-frame gap cuts


def test_the_prior_and_the_ml_rq_train_on_imported_keypoints(detections, tmp_path):
    out = tmp_path / "imported"
    import_keypoints(detections, out, max_frames=100)
    some = next(n for s in hml.SPLITS for n in (out / f"{s}.txt").read_text().split())
    for split in ("train", "val"):  # a tiny import may leave a split empty: give each one clip
        if not (out / f"{split}.txt").read_text().split():
            (out / f"{split}.txt").write_text(some + "\n")
    fast = ["--batch-size", "4", "--length", "16", "--eval-every", "1000", "--ckpt-every", "1000"]
    run = [sys.executable, "-m", "fastmotion.cli", "train"]
    done = subprocess.run(run + ["prior", "--data", str(out), "--out", str(tmp_path / "p"), "--steps", "3", *fast],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run(run + ["mlrq", "--data", str(out), "--prior", str(tmp_path / "p" / "last.pt"), "--out",
                                 str(tmp_path / "m"), "--steps", "3", *fast], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "m" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)


def test_detector_like_renders_import_with_their_held_out_3d(tmp_path):
    from fastmotion.data import build_synthetic, render_2d
    from fastmotion.data.detector import coco17_points
    from fastmotion.pipelines.lifting import ZeroDepthLifter, evaluate_lifting

    build_synthetic(tmp_path / "synth", num=30, seed=0)
    render_2d(tmp_path / "synth", tmp_path / "exact", seed=1, layout="coco17", camera=False)
    render_2d(tmp_path / "synth", tmp_path / "noisy", seed=1, layout="coco17", noise="detector", camera=False)
    name = hml.read_split(tmp_path / "exact", "train")[0]
    exact, noisy = (np.load(tmp_path / f / "keypoints" / f"{name}.npy") for f in ("exact", "noisy"))
    assert exact.shape[1:] == (17, 3) and (exact[..., 2] == 1).all() and noisy.shape == exact.shape
    with np.load(tmp_path / "noisy" / "cameras" / f"{name}.npz") as cam:
        assert set(cam.files) == {"K"}
    with np.load(tmp_path / "noisy" / "eval3d" / "cameras" / f"{name}.npz") as cam:
        K, R, t = cam["K"], cam["R"], cam["t"]
    points = coco17_points(np.load(tmp_path / "exact" / "eval3d" / "new_joints" / f"{name}.npy")) @ R.T + t
    uv = points @ K.T
    np.testing.assert_allclose(exact[..., :2], uv[..., :2] / uv[..., 2:], atol=1e-2)  # exact: the projection
    seen = noisy[..., 2] > 0.5
    error = np.linalg.norm(noisy[..., :2] - exact[..., :2], axis=-1)[seen]
    height = np.ptp(exact[..., 1], axis=1).mean()
    assert 0.002 * height < np.median(error) < 0.03 * height  # jitter of about 1% of the person's height
    summary = import_keypoints(tmp_path / "noisy", tmp_path / "imported", min_frames=16)
    assert summary["clips"]["train"] > 0
    for split in hml.SPLITS:  # the render's splits are kept, and each clip has its held-out 3D
        for clip in (tmp_path / "imported" / f"{split}.txt").read_text().split():
            source = clip.rsplit("_", 1)[0]
            assert source in hml.read_split(tmp_path / "noisy", split)
            frames = len(np.load(tmp_path / "imported" / "keypoints" / f"{clip}.npy"))
            assert len(np.load(tmp_path / "imported" / "eval3d" / "new_joints" / f"{clip}.npy")) == frames
    # the lift scored as it comes (no skeleton held), to equal the zero-depth row
    result = evaluate_lifting(ZeroDepthLifter(), tmp_path / "imported", "train", limit=5, rigid=False)
    assert result["clips"] == 5 and result["model"]["PA-MPJPE"] == pytest.approx(result["zero_depth"]["PA-MPJPE"])


def test_the_teacher_estimates_the_camera_of_imported_clips(tmp_path):
    from fastmotion.data import build_synthetic, render_2d
    from fastmotion.pipelines.teacher import build_teacher

    build_synthetic(tmp_path / "synth", num=12, seed=0)
    render_2d(tmp_path / "synth", tmp_path / "coco", seed=1, layout="coco17", camera=False)
    import_keypoints(tmp_path / "coco", tmp_path / "imported")
    lifted = tmp_path / "imported" / "eval3d" / "new_joints"  # the true 3D as a user's lifts
    report = build_teacher(tmp_path / "imported", tmp_path / "teacher", lifted_dir=lifted)
    assert report["written"] > 0 and not report["skipped"]
    name = next(iter(sorted(lifted.glob("*.npy")))).stem
    with np.load(tmp_path / "teacher" / "cameras" / f"{name}.npz") as cam, \
            np.load(tmp_path / "imported" / "eval3d" / "cameras" / f"{name}.npz") as true:
        assert np.abs(cam["R"] - true["R"]).max() < 0.05  # EPnP finds the held-out camera


def test_two_sources_with_one_name_give_two_clips(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = coco_rows(walk(40))
    np.save(src / "clip.npy", rows)
    (src / "clip.json").write_text(json.dumps([{"keypoints": r.ravel().tolist()} for r in rows]))
    import_keypoints(src, tmp_path / "out")
    names = [n for s in hml.SPLITS for n in (tmp_path / "out" / f"{s}.txt").read_text().split()]
    assert len(names) == 2 and len(set(names)) == 2


def test_the_command_resamples_and_reads_captions_from_a_csv(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "walk.npy", coco_rows(walk(90)))  # 3 s at 30 fps
    (tmp_path / "captions.csv").write_text("name,caption\nwalk,a person walks\nwalk,someone strolls\n")
    done = subprocess.run([sys.executable, "-m", "fastmotion.cli", "data", "import", "--from", str(src), "--out",
                           str(tmp_path / "out"), "--fps", "30", "--texts", str(tmp_path / "captions.csv"),
                           "--focal", "800", "--image-size", "1280,720"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (name,) = [n for s in hml.SPLITS for n in (tmp_path / "out" / f"{s}.txt").read_text().split()]
    assert len(np.load(tmp_path / "out" / "keypoints" / f"{name}.npy")) == 60  # 20 fps
    assert [c.text for c in hml.parse_captions(tmp_path / "out" / "texts" / f"{name}.txt")] == \
        ["a person walks", "someone strolls"]
    with np.load(tmp_path / "out" / "cameras" / f"{name}.npz") as cam:
        np.testing.assert_allclose(cam["K"], [[800, 0, 640], [0, 800, 360], [0, 0, 1]])


def test_review_cases_resampling_on_a_frame_names_and_untracked_people(tmp_path):
    k = np.stack([np.full((22, 2), float(t)) for t in range(4)])
    mask = np.ones((4, 22), bool)
    k[3, 5], mask[3, 5] = np.nan, False  # the next source frame lacks joint 5
    out, seen = resample_track(k, mask, 40.0)  # 20 fps: times 0, 2 fall on source frames
    assert np.isfinite(out[seen]).all()
    src = tmp_path / "src"
    src.mkdir()
    rows = coco_rows(walk(40))
    for name in ("a.npy", "a_2.npy"):
        np.save(src / name, rows)
    (src / "a.json").write_text(json.dumps([{"keypoints": r.ravel().tolist()} for r in rows]))
    import_keypoints(src, tmp_path / "out")
    names = [n for s in hml.SPLITS for n in (tmp_path / "out" / f"{s}.txt").read_text().split()]
    assert len(names) == 3 and len(set(names)) == 3
