"""HumanML3D's 263-d features: differentiable, exact round trip; canonicalisation carries the camera along;
EPnP with and without noise."""

import numpy as np
import pytest
import torch

from fastmotion.motion.camera import estimate_camera_epnp
from fastmotion.motion.humanml3d import canonical_transform, canonicalize, features_to_joints, joints_to_features
from helpers import front_camera, pinhole, synthetic_clip


def test_feature_extraction_is_differentiable_and_round_trips():
    canon = canonicalize(synthetic_clip(frames=4))
    f = joints_to_features(canon)
    assert torch.allclose(features_to_joints(f), canon[:-1], atol=1e-9)
    # as L_repr uses it (on joints already in the canonical frame); foot contacts are thresholds
    smooth = lambda j: joints_to_features(j, canonical=False)[..., :259]  # noqa: E731
    x = canon.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(smooth, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_canonical_transform_moves_cameras_with_the_clip():
    c, s = np.cos(0.8), np.sin(0.8)
    yaw = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    joints = synthetic_clip(3) @ yaw.T + torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64)
    K, R, t = front_camera(8.0)
    Rc, offset = canonical_transform(joints)
    canon = canonicalize(joints)
    assert torch.allclose(canon, (joints - offset) @ Rc.T, atol=1e-12)
    R2, t2 = R @ Rc.T, R @ offset + t
    assert torch.allclose(pinhole(canon, K, R2, t2), pinhole(joints, K, R, t), atol=1e-9)


def test_epnp_recovers_a_camera_and_degrades_gracefully_with_noise():
    joints = synthetic_clip(5, frames=24).numpy().reshape(-1, 3)
    K, R, t = (x.numpy() for x in front_camera(6.0))
    pixels = pinhole(torch.from_numpy(joints), *(torch.from_numpy(x) for x in (K, R, t))).numpy()
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
