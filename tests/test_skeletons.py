"""Skeletons other than SMPL-22 (issue 26): root positions, the joints a native lift is scored on, a dataset's
skeleton and the refusals that name it, native imports and keypoint files, drawing any skeleton."""
import json

import numpy as np
import pytest
import torch

from fastmotion.cli._common import SKELETON_NAMES
from fastmotion.data.clip_bank import require_skeleton
from fastmotion.data.importer import import_keypoints
from fastmotion.data.keypoints import fill_from_nearest
from fastmotion.errors import DatasetError
from fastmotion.metrics.lifting import LIMB_JOINTS
from fastmotion.motion.skeleton import COCO17, LAYOUTS, OPENPOSE25, SKELETONS, SMPL22
from fastmotion.pipelines.lifting import eval_joints, read_keypoint_file
from fastmotion.render import load_motion
from test_data_importer import walk
from test_data_keypoints import coco_rows


def test_the_cli_names_every_skeleton():
    assert sorted(SKELETON_NAMES) == sorted(SKELETONS)


def test_root_position_is_the_pelvis_or_the_hips_midpoint():
    points = torch.randn(3, 22, 2)
    assert torch.equal(SMPL22.root_position(points), points[:, SMPL22.index("pelvis")])
    coco = np.random.default_rng(0).normal(size=(3, 17, 2))
    left, right = COCO17.names.index("left_hip"), COCO17.names.index("right_hip")
    np.testing.assert_allclose(COCO17.root_position(coco), 0.5 * (coco[:, left] + coco[:, right]))
    body25 = torch.randn(2, 25, 3)
    assert torch.equal(OPENPOSE25.root_position(body25), body25[:, OPENPOSE25.names.index("mid_hip")])


def test_eval_joints_pick_the_same_body_points_in_every_layout():
    """The hips' midpoint and the 12 limb joints of a COCO-17 body equal those of the SMPL-22 body it came from."""
    smpl = torch.randn(4, 22, 3, dtype=torch.float64)
    names, to_smpl = LAYOUTS["coco17"]
    coco = torch.stack([smpl[:, SMPL22.index(to_smpl[n])] if n in to_smpl else torch.zeros(4, 3, dtype=smpl.dtype)
                        for n in names], 1)
    picked = eval_joints(coco, "coco17")
    assert picked.shape == (4, 13, 3)
    torch.testing.assert_close(picked, eval_joints(smpl, "smpl22"))
    torch.testing.assert_close(picked[:, 1:], smpl[:, list(LIMB_JOINTS)])
    hips = 0.5 * (smpl[:, SMPL22.index("left_hip")] + smpl[:, SMPL22.index("right_hip")])
    torch.testing.assert_close(picked[:, 0], hips)


def test_require_skeleton_names_the_folder_its_skeleton_and_the_fix(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"skeleton": "coco17"}))
    with pytest.raises(DatasetError, match="holds coco17 keypoints; this model takes smpl22: import the keypoints "
                                           "without --native"):
        require_skeleton(tmp_path)
    assert require_skeleton(tmp_path, ("coco17",)) == "coco17" and require_skeleton(tmp_path, None) == "coco17"
    (tmp_path / "meta.json").write_text(json.dumps({}))  # written before native imports: SMPL-22
    with pytest.raises(DatasetError, match="holds smpl22 keypoints; this model takes coco17: train the model"):
        require_skeleton(tmp_path, ("coco17",))
    (tmp_path / "meta.json").write_text(json.dumps({"skeleton": "mouse9"}))
    with pytest.raises(DatasetError, match="unknown skeleton 'mouse9'"):
        require_skeleton(tmp_path, None)


def test_native_import_keeps_one_layout_and_smpl22_gets_its_statistics(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "coco.npy", coco_rows(walk(40)))
    np.save(mixed / "body25.npy", np.concatenate([np.random.default_rng(0).uniform(0, 900, (40, 25, 2)),
                                                  np.full((40, 25, 1), 0.9)], -1))
    with pytest.raises(ValueError, match=r"--native keeps one layout for the whole dataset") as refused:
        import_keypoints(mixed, tmp_path / "out-mixed", native=True)
    assert "coco17 (coco)" in str(refused.value) and "openpose25 (body25)" in str(refused.value)
    assert not (tmp_path / "out-mixed").exists()

    smpl = tmp_path / "smpl"
    smpl.mkdir()
    for i in range(3):
        np.save(smpl / f"walk{i}.npy", walk(60, seed=i))
    out = tmp_path / "out-smpl"
    import_keypoints(smpl, out, layout="smpl22", native=True)
    assert json.loads((out / "meta.json").read_text())["skeleton"] == "smpl22"
    assert (out / "stats_free3d_2d.npz").exists()  # the Free3D trainers read a native SMPL-22 import too


def test_a_native_keypoint_file_must_look_like_the_models_layout(tmp_path):
    rows = coco_rows(walk(30))
    upside_down = rows.copy()
    upside_down[..., 1] = 1000 - upside_down[..., 1]
    np.save(tmp_path / "upright.npy", rows)
    np.save(tmp_path / "flipped.npy", upside_down)
    clip = read_keypoint_file(tmp_path / "upright.npy", skeleton="coco17")
    assert clip.keypoints.shape == (30, 17, 2)
    with pytest.raises(ValueError, match="flipped.npy: read as coco17, the head and shoulders are below"):
        read_keypoint_file(tmp_path / "flipped.npy", skeleton="coco17")
    # a layout given is trusted (a handstand reads), as the readers do
    assert read_keypoint_file(tmp_path / "flipped.npy", layout="coco17", skeleton="coco17").keypoints.shape[1] == 17
    with pytest.raises(ValueError, match="the model lifts coco17 keypoints; --layout h36m17"):
        read_keypoint_file(tmp_path / "upright.npy", layout="h36m17", skeleton="coco17")


def test_fill_from_nearest_names_joints_never_seen():
    k = np.zeros((3, 17, 2))
    mask = np.ones((3, 17), bool)
    mask[:, COCO17.names.index("left_ear")] = False
    with pytest.raises(ValueError, match="joint\\(s\\) left_ear never visible"):
        fill_from_nearest(k, mask, names=COCO17.names)
    mask[1:, 0] = False
    k[0, 0] = 7.0
    filled = fill_from_nearest(k, mask, require_all=False)
    assert (filled[:, 0] == 7.0).all()


def test_fill_from_nearest_takes_the_nearest_frame_the_earlier_on_a_tie_and_scales_to_long_tracks():
    rng = np.random.default_rng(0)
    for _ in range(100):
        frames = int(rng.integers(2, 25))
        k, mask = rng.normal(size=(frames, 3, 2)), rng.random((frames, 3)) < rng.random()
        filled = fill_from_nearest(k, mask, require_all=False)
        for j in range(3):
            seen = np.nonzero(mask[:, j])[0]
            for t in range(frames):
                if len(seen):  # the first of the nearest seen frames
                    assert (filled[t, j] == k[seen[np.abs(seen - t).argmin()], j]).all()
    k = rng.normal(size=(30_000, 22, 2))  # ten minutes at 50 fps, seen every 1000th frame: no [T, T] table
    sparse = np.zeros((30_000, 22), bool)
    sparse[::1000] = True
    nearest = np.minimum((np.arange(30_000) + 499) // 1000 * 1000, 29_000)  # the earlier one on a tie (t = 500)
    np.testing.assert_array_equal(fill_from_nearest(k, sparse), k[nearest])


def test_load_motion_takes_any_known_skeleton(tmp_path):
    np.save(tmp_path / "coco3d.npy", np.zeros((5, 17, 3)))
    assert load_motion(tmp_path / "coco3d.npy").shape == (5, 17, 3)
    np.save(tmp_path / "odd.npy", np.zeros((5, 19, 2)))
    with pytest.raises(ValueError, match="odd.npy: no known skeleton has 19 joints"):
        load_motion(tmp_path / "odd.npy")
