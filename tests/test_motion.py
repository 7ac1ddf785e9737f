"""fastmotion.motion: skeleton, Free3D representation, HumanML3D features, cameras."""
import math

import cv2
import numpy as np
import pytest
import torch

from fastmotion.data.synth import synth_clip
from fastmotion.motion import SMPL22, keypoints_to_smpl22, rest_pose
from fastmotion.motion import camera as cam
from fastmotion.motion import free3d, humanml3d
from fastmotion.motion.rotations import qmul, qrot


def clip(seed=0):
    return torch.from_numpy(synth_clip(np.random.default_rng(seed))[0]).double()


def test_smpl22_skeleton_facts():
    assert SMPL22.num_joints == 22 and len(SMPL22.limbs) == 21
    assert all(p < j for j, p in enumerate(SMPL22.parents) if p >= 0)
    assert SMPL22.names[:3] == ("pelvis", "left_hip", "right_hip") and SMPL22.names[-1] == "right_wrist"
    perm = SMPL22.mirror_permutation()
    assert (perm[perm] == np.arange(22)).all()
    rest = rest_pose()
    assert rest[SMPL22.index("left_hip"), 0] > 0 > rest[SMPL22.index("right_hip"), 0]  # left is +x
    with pytest.raises(KeyError, match="'tail' is not in this skeleton"):
        SMPL22.index("tail")


def test_free3d_round_trip_2d_and_3d_and_normalizer(tmp_path):
    joints = clip()
    for channels in (3, 2):
        x = joints[..., :channels]
        root, limbs = free3d.to_root_and_limbs(x)
        assert limbs.shape == (len(x), 21, channels)
        torch.testing.assert_close(free3d.from_root_and_limbs(root, limbs), x)
        feats = free3d.to_features(x)
        torch.testing.assert_close(free3d.from_features(feats, channels), x)
    norm = free3d.Normalizer.fit([free3d.to_features(clip(s)).numpy() for s in range(3)])
    norm.save(tmp_path / "stats.npz")
    again = free3d.Normalizer.load(tmp_path / "stats.npz")
    f = free3d.to_features(joints).float()
    torch.testing.assert_close(again.denormalize(again.normalize(f)), f, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="joints must be"):
        free3d.to_features(joints[..., :5, :])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        free3d.Normalizer.load(tmp_path / "missing.npz")


def test_humanml3d_features_layout_and_exact_round_trip():
    joints = clip(1)
    feats = humanml3d.joints_to_features(joints)
    assert feats.shape == (len(joints) - 1, 263) == (len(joints) - 1, humanml3d.FEATURE_DIM)
    canonical = humanml3d.canonicalize(joints)
    assert canonical[..., 1].min().abs() < 1e-9 and canonical[0, 0, [0, 2]].abs().max() < 1e-9
    torch.testing.assert_close(humanml3d.features_to_joints(feats), canonical[:-1])
    # rotations: each local rotation chain turns the rest directions onto the bones
    quats = humanml3d.local_rotations(canonical, humanml3d.facing_quaternion(canonical))
    rest = torch.tensor(humanml3d.REST_DIRECTIONS, dtype=joints.dtype)
    for chain in humanml3d.KINEMATIC_CHAINS:
        R = quats[:, 0]
        for parent, child in zip(chain[:-1], chain[1:]):
            R = qmul(R, quats[:, child])
            bone = torch.nn.functional.normalize(canonical[:, child] - canonical[:, parent], dim=-1)
            torch.testing.assert_close(qrot(R, rest[child].expand_as(bone)), bone)
    # the features are differentiable where they should be
    x = joints.clone().requires_grad_()
    humanml3d.joints_to_features(x)[:, :259].square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_humanml3d_foot_contacts_and_bad_input():
    standing = torch.tensor(rest_pose()).expand(10, 22, 3).clone()
    contacts = humanml3d.joints_to_features(standing)[:, humanml3d.SLICES["foot_contact"]]
    assert (contacts == 1).all()
    with pytest.raises(ValueError, match=r"joints must be \[..., T >= 2, 22, 3\]"):
        humanml3d.joints_to_features(standing[:1])
    with pytest.raises(ValueError, match="263 channels"):
        humanml3d.features_to_joints(torch.zeros(3, 262))


def test_sampled_cameras_keep_min_depth_and_project_like_opencv():
    joints = torch.stack([clip(s)[:40] for s in range(8)])
    cams = cam.sample_cameras(joints, generator=torch.Generator().manual_seed(0), min_depth=3.0)
    depth = torch.einsum("bij,btkj->btki", cams.R, joints)[..., 2] + cams.t[:, None, None, 2]
    assert depth.min() >= 3.0 - 1e-9
    torch.testing.assert_close(cams.R @ cams.R.transpose(1, 2), torch.eye(3, dtype=joints.dtype).expand(8, 3, 3))
    pixels = cam.project(joints, cams)
    for b in range(2):
        rvec, _ = cv2.Rodrigues(cams.R[b].numpy())
        ref, _ = cv2.projectPoints(joints[b].reshape(-1, 3).numpy(), rvec, cams.t[b].numpy(), cams.K[b].numpy(), None)
        np.testing.assert_allclose(pixels[b].reshape(-1, 2).numpy(), ref.reshape(-1, 2), rtol=1e-7, atol=1e-6)
    again = cam.sample_cameras(joints, generator=torch.Generator().manual_seed(0), min_depth=3.0)
    assert torch.equal(again.R, cams.R)
    views = cam.weak_perspective(joints, cams.R[:3])  # three shared views of every motion
    assert views.shape == (8, 3, 40, 22, 2)
    torch.testing.assert_close(views[:, 1], torch.einsum("ij,btkj->btki", cams.R[1, :2], joints))


def test_epnp_recovers_the_camera_and_naive_depth_is_close():
    joints = clip(2)[:24]
    cams = cam.sample_cameras(joints[None], generator=torch.Generator().manual_seed(1))
    pixels = cam.project(joints[None], cams)[0]
    R, t = cam.estimate_camera_epnp(joints.reshape(-1, 3).numpy(), pixels.reshape(-1, 2).numpy(), cams.K[0].numpy())
    np.testing.assert_allclose(R, cams.R[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(t, cams.t[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="at least 6 valid correspondences"):
        cam.estimate_camera_epnp(joints[0, :5].numpy(), pixels[0, :5].numpy(), cams.K[0].numpy())
    # naive root depth over many random views: unbiased within 15% on average, never wildly off
    many = joints[None].expand(64, -1, -1, -1)
    cams = cam.sample_cameras(many, generator=torch.Generator().manual_seed(2))
    pix = cam.project(many, cams)
    bones = torch.zeros(64, 22, dtype=joints.dtype)
    bones[:, 1:] = (joints[0, 1:] - joints[0, list(SMPL22.parents[1:])]).norm(dim=-1)
    estimate = cam.naive_root_depth(pix, cams.K, bones)
    true = (torch.einsum("bij,btj->bti", cams.R, many[:, :, 0]) + cams.t[:, None])[..., 2]
    ratio = estimate / true
    assert abs(ratio.mean().item() - 1) < 0.15 and ratio.min() > 0.5 and ratio.max() < 2.5


def test_coco_and_h36m_keypoints_map_onto_smpl22():
    k = np.random.default_rng(0).normal(size=(4, 17, 2))
    conf = np.ones((4, 17))
    conf[1, 11] = 0.0  # left hip unseen in frame 1: no pelvis there either
    out, mask = keypoints_to_smpl22(k, "coco17", conf)
    assert out.shape == (4, 22, 2) and mask[0, 0] and not mask[1, 0] and not mask[1, 1]
    np.testing.assert_allclose(out[0, 0], 0.5 * (k[0, 11] + k[0, 12]))
    assert not mask[:, SMPL22.index("spine1")].any() and np.isnan(out[:, SMPL22.index("spine1")]).all()
    out, mask = keypoints_to_smpl22(k, "h36m17")
    assert mask[:, SMPL22.index("spine2")].all() and not mask[:, SMPL22.index("left_foot")].any()
    with pytest.raises(ValueError, match="layout must be one of"):
        keypoints_to_smpl22(k, "openpose")
    assert math.isfinite(cam.NAIVE_DEPTH_CONSTANT) and 0.8 < cam.NAIVE_DEPTH_CONSTANT < 1.0


def test_relative_depth_and_place_on_rays_recover_a_walk_away_from_the_camera():
    """A synthetic clip (it moves its limbs) carried from 4 m to 8 m in front of a camera, drifting sideways:
    the depth ratio from the 2D skeleton's size and the root placed on its rays give back the camera-frame
    trajectory, where a pose without depth (zero depth) does not."""
    joints, _, _ = synth_clip(np.random.default_rng(3))
    joints = torch.from_numpy(joints).double()[:60]
    T = len(joints)
    depth = torch.linspace(4.0, 8.0, T, dtype=torch.float64)
    # the clip's own motion, seen from behind (+z away from the camera, y down), then carried away
    camera = joints * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64) + torch.tensor([0.0, 1.0, 0.0])
    camera = camera - camera[:, :1] + torch.stack([torch.linspace(0, 1.5, T), torch.zeros(T), depth], -1)[:, None].double()
    n = camera[..., :2] / camera[..., 2:]  # normalised image coordinates
    truth = depth / depth[0]
    got = cam.relative_depth(n, window=1)
    assert got[0] == 1.0 and (got / truth - 1).abs().max() < 0.05
    # a lifter's pose: root-relative, in units of each frame's own root depth
    pose = (camera - camera[:, :1]) / camera[:, :1, 2:]
    placed = cam.place_on_rays(pose, n[:, 0], truth)
    expected = (camera - camera[:1, :1]) / depth[0]
    torch.testing.assert_close(placed, expected, atol=1e-9, rtol=0)  # exact with the true depth ratio
    placed = cam.place_on_rays(pose, n[:, 0], got)
    root_error = (placed[:, 0] - expected[:, 0]).norm(dim=-1).mean() * depth[0]  # metres
    flat = torch.cat([n[:, 0] - n[:1, 0], torch.zeros(T, 1, dtype=torch.float64)], -1)  # a zero-depth lift's root
    flat_error = (flat - expected[:, 0]).norm(dim=-1).mean() * depth[0]
    assert root_error < 0.15 and flat_error > 1.5, (float(root_error), float(flat_error))
    with pytest.raises(ValueError, match="keypoints must be"):
        cam.relative_depth(n[..., :21, :])
    with pytest.raises(ValueError, match="window"):
        cam.relative_depth(n, window=0)
