"""The camera pitch from the horizon (`fastmotion.motion.horizon`): exact on a synthetic person walking in depth
under a known pitched camera; clips that keep their distance take the others' median."""
import math

import numpy as np
import pytest
import torch
from helpers import synthetic_clip

from fastmotion.data.clip_bank import pitched_camera
from fastmotion.motion.horizon import MIN_DEPTH_SPREAD, pitch_from_horizon, pitches_from_horizon


def seen_by(degrees: float, walk_metres: float, seed: int = 0, frames: int = 40) -> np.ndarray:
    """A synthetic clip (feet on the floor) whose person moves `walk_metres` away from a camera 1.6 m above the
    floor pitched down by `degrees`, from 4 m: SMPL-22 keypoints [T, 22, 2] in normalised image coordinates."""
    joints = synthetic_clip(seed, frames).numpy()
    joints = joints - np.array([joints[0, 0, 0], joints[..., 1].min(), joints[0, 0, 2]])  # floor at y = 0
    joints[..., 2] -= 4.0 + np.linspace(0.0, walk_metres, len(joints))[:, None]  # away from the camera (-z)
    R = pitched_camera(degrees).double().numpy()
    camera = (joints - np.array([0.0, 1.6, 0.0])) @ R.T
    return camera[..., :2] / camera[..., 2:]


@pytest.mark.parametrize("degrees", [0.0, 12.0, 25.0])
def test_the_horizon_gives_the_pitch_of_a_person_walking_in_depth(degrees):
    pitch, spread = pitch_from_horizon(seen_by(degrees, walk_metres=4.0))
    assert spread > MIN_DEPTH_SPREAD and pitch == pytest.approx(degrees, abs=2.0)


def test_unseen_joints_are_not_used_and_a_clip_at_one_distance_takes_the_median():
    walking = seen_by(15.0, walk_metres=4.0)
    confidence = np.ones(walking.shape[:2])
    garbage = walking.copy()
    garbage[::3, 7] = 40.0  # a left ankle far off in a third of the frames, seen with confidence 0
    confidence[::3, 7] = 0.0
    assert pitch_from_horizon(garbage, confidence)[0] == pytest.approx(pitch_from_horizon(walking)[0], abs=0.5)
    still = seen_by(15.0, walk_metres=0.0, seed=1)
    assert pitch_from_horizon(still)[1] < MIN_DEPTH_SPREAD
    pitches, note = pitches_from_horizon([walking, still, seen_by(5.0, 4.0, seed=2)])
    assert pitches[1] == pytest.approx(np.median([pitches[0], pitches[2]])) and "2 of 3 clips" in note
    level, note = pitches_from_horizon([still])
    assert level == [0.0] and "level camera" in note


@pytest.mark.parametrize("frames", [8, 12, 20])
def test_clips_shorter_than_the_running_median_still_fit(frames):
    keypoints = seen_by(15.0, walk_metres=4.0)
    keep = np.linspace(0, len(keypoints) - 1, frames).round().astype(int)  # the same walk, fewer frames
    pitch, spread = pitch_from_horizon(keypoints[keep])
    assert spread > MIN_DEPTH_SPREAD and pitch == pytest.approx(15.0, abs=2.5)


def test_no_fit_without_a_change_of_size_or_outside_the_plausible_range():
    still = np.repeat(seen_by(15.0, walk_metres=0.0)[:1], 30, 0)  # one pose, one distance
    pitch, spread = pitch_from_horizon(still)
    assert math.isnan(pitch) and spread < 1e-6
    shifted = seen_by(15.0, walk_metres=4.0) + np.array([0.0, 3.0])  # the horizon 70 degrees up: not a camera's
    assert math.isnan(pitch_from_horizon(shifted)[0])
    with pytest.raises(ValueError, match="2 clips but 1 confidences"):
        pitches_from_horizon([still, still], [None])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"SMPL-22 \[T, 22, 2\], got \[5, 17, 2\]"):
        pitch_from_horizon(np.zeros((5, 17, 2)))
    with pytest.raises(ValueError, match="confidence must be"):
        pitch_from_horizon(np.zeros((5, 22, 2)), np.ones((4, 22)))
    pitch, spread = pitch_from_horizon(np.full((5, 22, 2), np.nan))  # nothing to fit
    assert math.isnan(pitch) and spread == 0.0


def test_a_bank_of_imported_clips_is_pitched_by_its_horizon(tmp_path):
    """`ClipBank` gives clips without a camera pose the estimated pitch: L_rec's vertical is the world's up in that
    camera."""
    from fastmotion.data.clip_bank import ClipBank

    (tmp_path / "keypoints").mkdir()
    (tmp_path / "cameras").mkdir()
    K = np.array([[1000.0, 0, 500], [0, 1000, 500], [0, 0, 1]])
    names = [f"clip{i}" for i in range(3)]
    for i, name in enumerate(names):
        n = seen_by(10.0 * i, walk_metres=4.0, seed=i)
        np.save(tmp_path / "keypoints" / f"{name}.npy", (n * 1000 + 500).astype(np.float32))
        np.savez(tmp_path / "cameras" / f"{name}.npz", K=K)
    (tmp_path / "train.txt").write_text("\n".join(names) + "\n")
    bank = ClipBank(tmp_path, "train")
    for i in range(3):
        up = bank.up(i)
        pitch = math.degrees(math.atan2(-float(up[2]), -float(up[1])))
        assert pitch == pytest.approx(10.0 * i, abs=2.0)
    assert "3 of 3 clips" in bank.pitch_note
    torch.testing.assert_close(ClipBank(tmp_path, "train", pitch=7.0).up(0), pitched_camera(7.0)[:, 1])


def test_train_mlrq_names_a_bad_pitch(tmp_path):
    from helpers import fastmotion_cli

    for bad, why in (("sideways", "'horizon' or an angle in degrees"), ("120", "within [-90, 90]")):
        done = fastmotion_cli("train", "mlrq", "--data", tmp_path, "--prior", tmp_path / "p.pt", "--out",
                              tmp_path / "run", "--pitch", bad, check=False)
        assert done.returncode == 2 and "--pitch" in done.stderr and why in done.stderr
