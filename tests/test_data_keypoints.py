"""2D keypoint files, by kind: the time axis and the person are what the file says (list index or image_id;
one track per person, the longest by default), the layout fits the skeleton, confidences are confidences;
bad files give a clear error naming the file; completion of the joints detectors do not give."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmotion.data.keypoints import complete_smpl22, read_coco_json, read_keypoints_npy
from fastmotion.data.synth import synth_clip
from fastmotion.motion import SMPL22, keypoints_to_smpl22
from fastmotion.motion.skeleton import COCO17_NAMES, H36M17_NAMES

COCO_FROM_SMPL = {"nose": "head", "left_eye": "head", "right_eye": "head", "left_ear": "head", "right_ear": "head",
                  **{n: n for n in COCO17_NAMES[5:]}}


def pixels(seed=0, frames=12, shift=0.0):
    """A synthetic clip seen from the front: SMPL-22 pixels [T, 22, 2], image y down."""
    joints = synth_clip(np.random.default_rng(seed))[0][:frames]
    return np.stack([500 + 300 * joints[..., 0] + shift, 500 - 300 * joints[..., 1]], -1)


def coco_rows(smpl_pixels, confidence=0.9):
    """COCO-17 [T, 17, 3] (x, y, confidence) from SMPL-22 pixels."""
    xy = np.stack([smpl_pixels[:, SMPL22.index(COCO_FROM_SMPL[n])] for n in COCO17_NAMES], 1)
    return np.concatenate([xy, np.full(xy.shape[:2] + (1,), confidence)], -1)


def test_a_list_of_frames_keeps_empty_frames_in_place(tmp_path):
    rows = coco_rows(pixels(frames=3))
    frames = [{"keypoints": rows[0].ravel().tolist()}, [], {"keypoints": rows[2].ravel().tolist()}]
    (tmp_path / "k.json").write_text(json.dumps(frames))
    keypoints, mask = read_coco_json(tmp_path / "k.json")
    assert keypoints.shape == (3, 22, 2) and mask[0].sum() == 14 and not mask[1].any() and mask[2].sum() == 14
    (tmp_path / "bad.json").write_text(json.dumps([{"bbox": [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match="bad.json: frame 0 has no 'keypoints'"):
        read_coco_json(tmp_path / "bad.json")


def test_a_coco_dict_with_a_missing_image_id_has_that_frame_missing(tmp_path):
    rows = coco_rows(pixels(frames=4))
    annotations = [{"image_id": i, "keypoints": rows[i].ravel().tolist(), "score": 0.9} for i in (0, 1, 3)]
    (tmp_path / "k.json").write_text(json.dumps({"annotations": annotations}))  # once a raw KeyError: 2
    keypoints, mask = read_coco_json(tmp_path / "k.json")
    assert keypoints.shape == (4, 22, 2) and not mask[2].any() and mask[[0, 1, 3]].any(1).all()


def test_detector_results_follow_image_ids_and_one_track(tmp_path):
    a, b = coco_rows(pixels(0, frames=6)), coco_rows(pixels(1, frames=6, shift=200))
    results = [{"image_id": i, "track_id": 1, "keypoints": a[i].ravel().tolist(), "score": 0.9} for i in range(6)]
    results += [{"image_id": i, "track_id": 2, "keypoints": b[i].ravel().tolist(), "score": 0.8} for i in (0, 1, 4)]
    results = [r for r in results if not (r["track_id"] == 1 and r["image_id"] == 2)]  # person 1 unseen in frame 2
    (tmp_path / "r.json").write_text(json.dumps(sorted(results, key=lambda r: r["image_id"])))
    keypoints, mask = read_coco_json(tmp_path / "r.json")  # default: the longest track, 1
    assert keypoints.shape == (6, 22, 2) and not mask[2].any()
    hip = SMPL22.index("left_hip")
    np.testing.assert_allclose(keypoints[[0, 1, 3, 4, 5], hip], a[[0, 1, 3, 4, 5], 11, :2])
    keypoints, mask = read_coco_json(tmp_path / "r.json", track=2)
    assert mask.any(1).tolist() == [True, True, False, False, True, False]  # the file's frames 0-5
    np.testing.assert_allclose(keypoints[[0, 1, 4], hip], b[[0, 1, 4], 11, :2])
    with pytest.raises(ValueError, match="r.json: no track 7"):
        read_coco_json(tmp_path / "r.json", track=7)
    results.append(dict(results[0]))  # track 1 twice in frame 0
    (tmp_path / "dup.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="dup.json: frame 0 has 2 detections of track 1"):
        read_coco_json(tmp_path / "dup.json")


@settings(max_examples=30, deadline=None)
@given(present=st.lists(st.booleans(), min_size=2, max_size=20).filter(lambda p: p[0] and p[-1]),
       others=st.integers(0, 3), shuffle=st.randoms())
def test_the_time_axis_and_the_person_are_what_the_file_says(tmp_path_factory, present, others, shuffle):
    frames = len(present)
    me = coco_rows(pixels(0, frames=frames))
    results = [{"image_id": i, "track_id": 0, "keypoints": me[i].ravel().tolist(), "score": 0.9}
               for i in range(frames) if present[i]]
    for k in range(others):  # other people, in fewer frames
        other = coco_rows(pixels(k + 1, frames=frames, shift=150 * (k + 1)))
        results += [{"image_id": i, "track_id": k + 1, "keypoints": other[i].ravel().tolist(), "score": 0.99}
                    for i in range(frames - 1) if present[i] and i % 2 == 0]  # never my last frame
    shuffle.shuffle(results)  # the order of detections in the file does not matter
    path = tmp_path_factory.mktemp("t") / "r.json"
    path.write_text(json.dumps(results))
    keypoints, mask = read_coco_json(path)
    assert len(keypoints) == frames and mask.any(1).tolist() == present
    seen = np.array(present)
    np.testing.assert_allclose(keypoints[seen, SMPL22.index("left_knee")], me[seen, 13, :2])


def test_a_file_in_another_layout_or_3d_joints_are_refused(tmp_path):
    smpl = pixels(frames=8)
    h36m = np.stack([smpl[:, SMPL22.index(n)] for n in ("pelvis", "right_hip", "right_knee", "right_ankle",
                     "left_hip", "left_knee", "left_ankle", "spine2", "spine3", "neck", "head", "left_shoulder",
                     "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")], 1)
    assert len(H36M17_NAMES) == 17
    np.save(tmp_path / "h36m.npy", h36m)
    with pytest.raises(ValueError, match="h36m.npy: read as coco17, the head and shoulders are below"):
        read_keypoints_npy(tmp_path / "h36m.npy")  # 17 joints: taken as COCO unless told
    keypoints, mask = read_keypoints_npy(tmp_path / "h36m.npy", layout="h36m17")
    assert keypoints[:, SMPL22.index("head"), 1].mean() < keypoints[:, 0, 1].mean()  # head above the pelvis
    np.save(tmp_path / "joints3d.npy", synth_clip(np.random.default_rng(0))[0])  # [T, 22, 3] metres
    with pytest.raises(ValueError, match="joints3d.npy: the third column is not a confidence"):
        read_keypoints_npy(tmp_path / "joints3d.npy")
    np.save(tmp_path / "odd.npy", np.zeros((5, 9, 2)))
    with pytest.raises(ValueError, match="cannot tell the layout of 9 keypoints"):
        read_keypoints_npy(tmp_path / "odd.npy")
    np.save(tmp_path / "k.npy", smpl)
    keypoints, mask = read_keypoints_npy(tmp_path / "k.npy")
    assert mask.all() and keypoints.shape == (8, 22, 2)


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                                   lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                       ["keypoints", "image_id", "track_id", "annotations", "score"]), c,
                                       max_size=4), max_leaves=12).map(json.dumps)))
def test_malformed_files_fail_with_the_file_named(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("m") / "bad.json"
    path.write_text(text)
    try:
        read_coco_json(path)
    except ValueError as err:
        assert "bad.json" in str(err) or "layout" in str(err)


def test_completion_gives_the_joints_detectors_do_not():
    smpl = synth_clip(np.random.default_rng(4))[0][..., [0, 1]] * np.array([1.0, -1.0])  # a frontal 2D view
    coco_names = ("head", None, None, None, None, "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                  "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                  "right_ankle")
    coco = np.stack([smpl[:, SMPL22.index(n)] if n else np.full((len(smpl), 2), np.nan) for n in coco_names], 1)
    partial, seen = keypoints_to_smpl22(coco, "coco17")
    done, estimated = complete_smpl22(partial, seen)
    assert np.isfinite(done).all() and estimated[:, SMPL22.index("spine2")].all() and not estimated[:, 0].any()
    error = np.linalg.norm(done - smpl, axis=-1)
    assert error[:, [SMPL22.index(n) for n in ("neck", "spine1", "spine2", "spine3")]].max() < 0.12  # metres
    with pytest.raises(ValueError, match="left_shoulder, right_shoulder never visible"):
        complete_smpl22(partial, seen & ~np.isin(np.arange(22), [16, 17])[None])



def test_bad_tracks_give_clear_errors(tmp_path):
    rows = coco_rows(pixels(frames=4))
    rows[..., 2] = 0.0  # a track the detector never trusted
    (tmp_path / "zero.json").write_text(json.dumps([{"keypoints": r.ravel().tolist()} for r in rows]))
    keypoints, mask = read_coco_json(tmp_path / "zero.json")
    assert not mask.any()  # every joint missing, nothing invented
    with pytest.raises(ValueError, match="never visible"):
        complete_smpl22(keypoints, mask)
    (tmp_path / "empty.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="empty.json: no detection in any frame"):
        read_coco_json(tmp_path / "empty.json")
    folder = tmp_path / "openpose"
    folder.mkdir()
    body = [0.0] * 75
    for name in ("clip_000000000001_keypoints.json", "other_000000000001_keypoints.json"):
        (folder / name).write_text(json.dumps({"people": [{"pose_keypoints_2d": body}]}))
    from fastmotion.data.keypoints import read_openpose_folder
    with pytest.raises(ValueError, match="frame 1 again"):
        read_openpose_folder(folder)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 30), min_size=1, max_size=4), fill=st.sampled_from([0.0, np.nan, np.inf, 2.0]),
       layout=st.sampled_from([None, "smpl22", "coco17", "h36m17", "openpose18", "openpose25"]))
def test_any_array_is_read_or_refused_naming_the_file(tmp_path_factory, shape, fill, layout):
    path = tmp_path_factory.mktemp("n") / "k.npy"
    data = np.random.default_rng(0).random(shape) * 100
    if data.size:
        data.flat[0] = fill
    np.save(path, data)
    try:
        keypoints, mask = read_keypoints_npy(path, layout)
    except ValueError as err:
        assert "k.npy" in str(err) or "layout must be" in str(err)
    else:
        assert keypoints.shape == (shape[0], 22, 2) and mask.shape == (shape[0], 22)


def test_one_detection_without_an_image_id_is_named_and_untracked_people_are_their_own_track(tmp_path):
    rows = coco_rows(pixels(frames=4))
    results = [{"image_id": i, "keypoints": rows[i].ravel().tolist()} for i in range(4)]
    del results[2]["image_id"]
    (tmp_path / "r.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="r.json: detection 2 has no 'image_id'"):
        read_coco_json(tmp_path / "r.json")
    other = coco_rows(pixels(1, frames=4, shift=200))
    results = [{"image_id": i, "track_id": 5, "keypoints": rows[i].ravel().tolist()} for i in range(4)]
    results += [{"image_id": i, "keypoints": other[i].ravel().tolist()} for i in range(2)]
    (tmp_path / "m.json").write_text(json.dumps(results))
    from fastmotion.data.keypoints import coco_track_ids
    assert coco_track_ids(tmp_path / "m.json") == [5, None]
    untracked, mask = read_coco_json(tmp_path / "m.json", track=None)
    np.testing.assert_allclose(untracked[:2, SMPL22.index("left_knee")], other[:2, 13, :2])
    assert not mask[2:].any()
