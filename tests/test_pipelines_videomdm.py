"""VideoMDM's model and inference: the denoiser's shapes and condition drop, guided lifting of an exactly
projected clip, the teacher builder's skip reasons and metric placement."""
import json

import numpy as np
import pytest
import torch

from fastmotion.data.synth import synth_clip
from fastmotion.models.mdm import MDM, MDMConfig
from fastmotion.motion.humanml3d import canonicalize, joints_to_features
from helpers import front_camera, pinhole, synthetic_clip


def test_guided_lifting_of_an_exact_projection_has_low_2d_error():
    from fastmotion.data.teacher_bank import Window
    from fastmotion.models.mdm import VideoMDMModel
    from fastmotion.pipelines.videomdm import guided_lift

    torch.manual_seed(0)
    canon = canonicalize(synthetic_clip(7, frames=17))
    K, R, t = front_camera(6.0)
    feats = joints_to_features(canon)
    kp = pinhole(canon[:-1], K, R, t)
    model = VideoMDMModel(MDMConfig(width=32, layers=1, heads=2, ff=32, max_frames=32)).double().eval()
    window = Window(feats, kp, K, R, t, ["a person walks"], "clip", 0)
    lifted = guided_lift(model, [window], torch.Generator().manual_seed(0), ["a person walks"], diffusion_steps=10)[0]
    uv = lifted @ K.T
    pixel_error = (uv[..., :2] / uv[..., 2:] - kp).norm(dim=-1)
    assert lifted.shape == (16, 22, 3) and float(pixel_error.mean()) < 1.0  # an untrained model: the rays decide


def test_mdm_denoiser_shapes_and_condition_drop():
    model = MDM(MDMConfig(width=32, layers=1, heads=2, ff=32, max_frames=16, dropout=0.0), text_dim=8).eval()
    x, t = torch.randn(2, 10, 263), torch.tensor([3, 7])
    mask = torch.ones(2, 10, dtype=torch.bool)
    text = torch.randn(2, 8)
    out = model(x, t, text, mask)
    assert out.shape == (2, 10, 263)
    dropped = model(x, t, text, mask, drop=torch.tensor([True, True]))
    assert torch.allclose(dropped, model(x, t, None, mask), atol=1e-6)  # dropped = no text at all
    with pytest.raises(ValueError, match="max_frames"):
        model(torch.randn(1, 17, 263), t[:1], None, torch.ones(1, 17, dtype=torch.bool))


def test_teacher_skips_clips_with_reasons(tmp_path):
    from fastmotion.data import build_synthetic, render_2d
    from fastmotion.errors import DatasetError
    from fastmotion.pipelines.teacher import build_teacher

    build_synthetic(tmp_path / "s", num=6, seed=1)
    render_2d(tmp_path / "s", tmp_path / "d", views=1, seed=0)
    d = tmp_path / "d"
    names = sorted(p.stem for p in (d / "keypoints").glob("*.npy"))
    lifted = tmp_path / "lifted"
    lifted.mkdir()
    for i, name in enumerate(names):
        world = np.load(d / "eval3d" / "new_joints" / f"{name}.npy")
        if i == 0:
            world = world[:-3]  # teacher shorter than the 2D
        if i == 1:
            continue  # no lifted motion at all
        np.save(lifted / f"{name}.npy", world)
    (d / "cameras" / f"{names[2]}.npz").unlink()  # no camera: --cameras dataset cannot go on
    kp = np.load(d / "keypoints" / f"{names[3]}.npy")
    kp[:30] = np.nan  # no valid keypoint in the frames PnP reads
    np.save(d / "keypoints" / f"{names[3]}.npy", kp)
    report = build_teacher(d, tmp_path / "t1", lifted_dir=lifted, cameras="dataset")
    reasons = {r["clip"]: r["reason"] for r in report["skipped"]}
    assert "frames" in reasons[names[0]] and "no lifted motion" in reasons[names[1]]
    assert "no camera" in reasons[names[2]] and report["written"] == len(names) - 3
    assert json.loads((tmp_path / "t1" / "report.json").read_text())["written"] == report["written"]
    report = build_teacher(d, tmp_path / "t2", lifted_dir=lifted, cameras="epnp")
    reasons = {r["clip"]: r["reason"] for r in report["skipped"]}
    assert "PnP needs 6" in reasons[names[3]]
    # the EPnP camera reproduces the dataset's on a clean clip
    name = names[4]
    with np.load(tmp_path / "t2" / "cameras" / f"{name}.npz") as est, np.load(d / "cameras" / f"{name}.npz") as true:
        assert np.abs(est["R"] - true["R"]).max() < 1e-3
    for name in names:
        (lifted / f"{name}.npy").unlink(missing_ok=True)
    with pytest.raises(DatasetError, match="no clip"):
        build_teacher(d, tmp_path / "t3", lifted_dir=lifted)
    assert not (tmp_path / "t3").exists()


def test_teacher_placement_follows_the_subject_in_depth():
    """A subject walking from 5 m to 11 m, lifted with no depth trajectory (pose about the root, in arbitrary
    units, as a weak-perspective lifter gives): the teacher's root follows the true depth frame by frame and its
    joints land on their keypoints."""
    from fastmotion.pipelines.teacher import metric_camera_frame

    joints, _, _ = synth_clip(np.random.default_rng(3))
    joints = torch.from_numpy(joints[:60]).double()
    joints = joints - torch.linspace(0, 6, len(joints), dtype=torch.float64)[:, None, None] * torch.tensor([0, 0, 1.0])
    K, R, t = front_camera()
    keypoints = pinhole(joints, K, R, t)
    camera = joints @ R.T + t
    placed = metric_camera_frame(0.2 * (camera - camera[:, :1]), keypoints, K)
    true_depth, depth = camera[:, 0, 2], placed[:, 0, 2]
    assert true_depth[-1] - true_depth[0] > 5.5
    assert ((depth - true_depth).abs() / true_depth).max() < 0.1
    pixels = (pinhole(placed, K, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
              - keypoints).norm(dim=-1)
    assert pixels[:, 0].max() < 1e-6  # the root on its ray
    assert pixels.mean() < 3.0
