"""VideoMDM's losses, each against a hand-computed case."""

import pytest
import torch

from fastmotion.losses.videomdm import REDUNDANT, VideoMDMLossConfig, videomdm_losses
from fastmotion.motion.humanml3d import canonicalize, features_to_joints, joints_to_features
from helpers import front_camera, pinhole, synthetic_clip


def _setup(frames=10):
    canon = canonicalize(synthetic_clip(frames=frames + 1))
    feats = joints_to_features(canon)  # [F, 263]
    joints = features_to_joints(feats)  # exact on the canonical clip
    K, R, t = front_camera()
    keypoints = pinhole(joints, K, R, t)
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
