"""VideoMDM parts: each loss against a hand-computed case, the differentiable 263-d features, EPnP with and
without noise, the teacher builder's skip reasons, guided lifting of an exactly projected clip."""
import json

import numpy as np
import pytest
import torch

from fastmotion.data.synth import synth_clip
from fastmotion.losses.videomdm import REDUNDANT, VideoMDMLossConfig, videomdm_losses
from fastmotion.models.mdm import MDM, MDMConfig
from fastmotion.motion.camera import estimate_camera_epnp
from fastmotion.motion.humanml3d import canonical_transform, canonicalize, features_to_joints, joints_to_features


def _clip(seed=0, frames=12):
    joints, _, _ = synth_clip(np.random.default_rng(seed))
    return torch.from_numpy(joints[:frames]).double()


def _camera(distance=5.0):
    """Looking at the origin from +z at `distance` (a half turn about x: y down), x_cam = R x + t."""
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    t = torch.tensor([0.0, 1.0, distance], dtype=torch.float64)
    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]], dtype=torch.float64)
    return K, R, t


def _project(joints, K, R, t):
    c = joints @ R.T + t
    uv = c @ K.T
    return uv[..., :2] / uv[..., 2:]


def _setup(frames=10):
    canon = canonicalize(_clip(frames=frames + 1))
    feats = joints_to_features(canon)  # [F, 263]
    joints = features_to_joints(feats)  # exact on the canonical clip
    K, R, t = _camera()
    keypoints = _project(joints, K, R, t)
    stats = (torch.zeros(263, dtype=torch.float64), torch.ones(263, dtype=torch.float64))
    mask = torch.ones(1, len(feats), dtype=torch.bool)
    return feats[None], joints, keypoints[None], K[None], R[None], t[None], stats, mask


def test_losses_vanish_on_consistent_input_and_match_hand_computed_shifts():
    feats, joints, kp, K, R, t, stats, mask = _setup()
    zero = videomdm_losses(feats, stats, kp, K, R, t, mask, VideoMDMLossConfig())
    assert float(zero["pos"]) < 1e-18 and float(zero["vel"]) < 1e-18 and float(zero["repr"]) < 1e-12
    # move one keypoint by 10 px in x: L_pos = (z * 10 / f)^2 over the F * 22 joint terms
    F = feats.shape[1]
    shifted = kp.clone()
    shifted[0, 3, 7, 0] += 10.0
    z = float((joints[3, 7] @ R[0].T + t[0])[2])
    for mode, weight in (("joint", z ** 2), ("none", 1.0)):
        out = videomdm_losses(feats, stats, shifted, K, R, t, mask, VideoMDMLossConfig(depth_weight=mode))
        assert float(out["pos"]) == pytest.approx(weight * (10 / 1000) ** 2 / (F * 22), rel=1e-9)
        # velocity: two frame differences change by 10 px; each weighted by the mean depth of its two frames
        zs = [(joints[f, 7] @ R[0].T + t[0])[2] for f in (2, 3, 4)]
        w = [((zs[0] + zs[1]) / 2) ** 2, ((zs[1] + zs[2]) / 2) ** 2] if mode == "joint" else [1.0, 1.0]
        assert float(out["vel"]) == pytest.approx(float(sum(w)) * (10 / 1000) ** 2 / ((F - 1) * 22), rel=1e-9)
    sample = videomdm_losses(feats, stats, shifted, K, R, t, mask, VideoMDMLossConfig(depth_weight="sample"))
    mean_z = float((joints @ R[0].T + t[0])[..., 2].mean())
    assert float(sample["pos"]) == pytest.approx(mean_z ** 2 * (10 / 1000) ** 2 / (F * 22), rel=1e-9)
    cfg = VideoMDMLossConfig()
    total = cfg.lambda_cam * (float(out["pos"]) + cfg.lambda_vel * float(out["vel"])) + cfg.lambda_repr * float(
        out["repr"])
    assert float(videomdm_losses(feats, stats, shifted, K, R, t, mask, VideoMDMLossConfig(depth_weight="none"))[
        "loss"]) == pytest.approx(total, rel=1e-9)


def test_representation_alignment_regresses_redundant_channels_onto_ray_targets():
    feats, joints, kp, K, R, t, stats, mask = _setup()
    F = feats.shape[1]
    pred = feats.clone().requires_grad_(True)
    bumped = pred.detach().clone()
    bumped[0, 2, REDUNDANT.start + 5] += 0.3  # one redundant channel of one frame
    out = videomdm_losses(bumped, stats, kp, K, R, t, mask, VideoMDMLossConfig())
    channels = REDUNDANT.stop - REDUNDANT.start
    assert float(out["repr"]) == pytest.approx(0.3 ** 2 / ((F - 1) * channels), rel=1e-6)
    # the target is detached: gradients reach the redundant channels only through the regression
    loss = videomdm_losses(pred, stats, kp, K, R, t, mask, VideoMDMLossConfig(lambda_cam=0.0))["loss"]
    loss.backward()
    assert pred.grad[..., :REDUNDANT.start].abs().max() == 0


def test_teacher_root_takes_the_teachers_trajectory_and_regresses_the_root_channels():
    feats, joints, kp, K, R, t, stats, mask = _setup()
    drifted = feats.clone()
    drifted[0, :, 0] += 0.05  # a root rotation velocity bias: the integrated trajectory turns away from the rays
    paper = videomdm_losses(drifted, stats, kp, K, R, t, mask, VideoMDMLossConfig())
    anchored = videomdm_losses(drifted, stats, kp, K, R, t, mask, VideoMDMLossConfig(root="teacher"), teacher=feats)
    assert float(paper["pos"]) > 1e-4
    assert float(anchored["pos"]) < 1e-18  # the pose is exact, the root comes from the teacher
    assert float(anchored["root"]) == pytest.approx(0.05 ** 2 / 4, rel=1e-9)  # one of the 4 root channels
    cfg = VideoMDMLossConfig(root="teacher", lambda_root=3.0)
    out = videomdm_losses(drifted, stats, kp, K, R, t, mask, cfg, teacher=feats)
    assert float(out["loss"]) == pytest.approx(3.0 * 0.05 ** 2 / 4 + float(out["repr"]) * cfg.lambda_repr, rel=1e-9)
    # a pose error still reaches the 2D loss, and gradients reach the root channels only through L_root
    pred = feats.clone()
    pred[0, :, 4 + 3 * 5] += 0.02  # ric x of one joint
    pred.requires_grad_(True)
    out = videomdm_losses(pred, stats, kp, K, R, t, mask, VideoMDMLossConfig(root="teacher"), teacher=feats)
    assert float(out["pos"]) > 1e-6
    out["loss"].backward()
    assert pred.grad[..., :4].abs().max() == 0  # the root channels equal the teacher's: L_root's gradient is 0
    with pytest.raises(ValueError, match="teacher"):
        videomdm_losses(feats, stats, kp, K, R, t, mask, VideoMDMLossConfig(root="teacher"))
    with pytest.raises(ValueError, match="root"):
        VideoMDMLossConfig(root="mean")


def test_ray_targets_differ_from_self_targets_when_joints_miss_the_rays():
    feats, joints, kp, K, R, t, stats, mask = _setup()
    noisy = kp + torch.randn(kp.shape, generator=torch.Generator().manual_seed(0), dtype=kp.dtype) * 20
    ray = videomdm_losses(feats, stats, noisy, K, R, t, mask, VideoMDMLossConfig())
    own = videomdm_losses(feats, stats, noisy, K, R, t, mask, VideoMDMLossConfig(ray_targets=False))
    assert float(own["repr"]) < 1e-12 < float(ray["repr"])


def test_feature_extraction_is_differentiable_and_round_trips():
    canon = canonicalize(_clip(frames=4))
    f = joints_to_features(canon)
    assert torch.allclose(features_to_joints(f), canon[:-1], atol=1e-9)
    # as L_repr uses it (on joints already in the canonical frame); foot contacts are thresholds
    smooth = lambda j: joints_to_features(j, canonical=False)[..., :259]  # noqa: E731
    x = canon.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(smooth, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_canonical_transform_moves_cameras_with_the_clip():
    c, s = np.cos(0.8), np.sin(0.8)
    yaw = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    joints = _clip(3) @ yaw.T + torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64)
    K, R, t = _camera(8.0)
    Rc, offset = canonical_transform(joints)
    canon = canonicalize(joints)
    assert torch.allclose(canon, (joints - offset) @ Rc.T, atol=1e-12)
    R2, t2 = R @ Rc.T, R @ offset + t
    assert torch.allclose(_project(canon, K, R2, t2), _project(joints, K, R, t), atol=1e-9)


def test_epnp_recovers_a_camera_and_degrades_gracefully_with_noise():
    joints = _clip(5, frames=24).numpy().reshape(-1, 3)
    K, R, t = (x.numpy() for x in _camera(6.0))
    pixels = _project(torch.from_numpy(joints), *(torch.from_numpy(x) for x in (K, R, t))).numpy()
    R_est, t_est = estimate_camera_epnp(joints, pixels, K)
    assert np.abs(R_est - R).max() < 1e-4 and np.abs(t_est - t).max() < 1e-4
    rng = np.random.default_rng(0)
    errors = []
    for sigma in (1.0, 4.0):
        R_n, t_n = estimate_camera_epnp(joints, pixels + rng.normal(0, sigma, pixels.shape), K)
        angle = np.degrees(np.arccos(np.clip((np.trace(R_n.T @ R) - 1) / 2, -1, 1)))
        errors.append((angle, np.linalg.norm(t_n - t)))
    assert errors[0][0] < 2.0 and errors[1][0] < 6.0  # degrees
    assert errors[0][1] < 0.3 and errors[1][1] < 1.0  # metres
    with pytest.raises(ValueError, match="6"):
        estimate_camera_epnp(joints[:5], pixels[:5], K)


def test_guided_lifting_of_an_exact_projection_has_low_2d_error():
    from fastmotion.data.teacher_bank import Window
    from fastmotion.models.mdm import VideoMDMModel
    from fastmotion.pipelines.videomdm import guided_lift

    torch.manual_seed(0)
    canon = canonicalize(_clip(7, frames=17))
    K, R, t = _camera(6.0)
    feats = joints_to_features(canon)
    kp = _project(canon[:-1], K, R, t)
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
    K, R, t = _camera()
    keypoints = _project(joints, K, R, t)
    camera = joints @ R.T + t
    placed = metric_camera_frame(0.2 * (camera - camera[:, :1]), keypoints, K)
    true_depth, depth = camera[:, 0, 2], placed[:, 0, 2]
    assert true_depth[-1] - true_depth[0] > 5.5
    assert ((depth - true_depth).abs() / true_depth).max() < 0.1
    pixels = (_project(placed, K, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
              - keypoints).norm(dim=-1)
    assert pixels[:, 0].max() < 1e-6  # the root on its ray
    assert pixels.mean() < 3.0
