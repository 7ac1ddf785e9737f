"""Free3D's losses: the rotated views of L_rec turn about the camera's up axis within the yaw range."""

import pytest
import torch

from fastmotion.losses.free3d import feature_weights, masked_mean, vertical_rotations, weighted_mean
from fastmotion.motion import SMPL22


def test_vertical_rotations_turn_about_the_camera_up_axis():
    up = torch.nn.functional.normalize(torch.tensor([[0.0, -1.0, 0.3], [0.0, -1.0, 0.0]]), dim=-1)
    R = vertical_rotations(up, 5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(R @ up[:, None, :, None], up[:, None, :, None].expand(2, 5, 3, 1))
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(2, 5, 3, 3), atol=1e-6, rtol=0)


def test_vertical_rotations_keep_their_yaw_within_max_yaw():
    up = torch.tensor([[0.0, -1.0, 0.0]]).expand(500, 3)
    for max_yaw in (0.3, 3.0):
        R = vertical_rotations(up, 4, torch.Generator().manual_seed(0), max_yaw=max_yaw)
        yaw = torch.atan2(R[..., 0, 2], R[..., 0, 0]).abs()  # a level camera: a turn about y
        assert yaw.max() <= max_yaw + 1e-5 and yaw.max() > 0.9 * max_yaw


def test_what_the_detector_did_not_see_carries_no_weight():
    confidence = torch.ones(2, 5, 22)
    confidence[0, :, SMPL22.index("left_wrist")] = 0.0
    w = feature_weights(confidence)
    limb = SMPL22.index("left_wrist") - 1  # limb k ends at joint k + 1
    assert w.shape == (2, 5, 44) and (w[0, :, 2 + 2 * limb:4 + 2 * limb] == 0).all() and w[1].eq(1).all()
    values, mask = torch.rand(2, 5, 44), torch.ones(2, 5, dtype=torch.bool)
    garbage = values.clone()
    garbage[w == 0] = 1e6  # whatever sits where nothing was seen
    assert weighted_mean(garbage, mask, w) == pytest.approx(float(weighted_mean(values, mask, w)))
    torch.testing.assert_close(weighted_mean(values, mask, torch.ones_like(values)), masked_mean(values, mask))


def test_up_from_lift_finds_the_camera_pitch_of_an_upright_body():
    """A standing body seen by a camera pitched down by 20 degrees: the vertical estimated from the lift's torso is
    the world's up in that camera, (0, -cos 20, -sin 20), with no roll."""
    import math

    from fastmotion.losses.free3d import up_from_lift
    from fastmotion.models.mlrq import motion_features
    from helpers import synthetic_clip

    joints = synthetic_clip(0, 12).float()  # world, y up
    e = math.radians(20)
    R = torch.tensor([[1, 0, 0], [0, -math.cos(e), -math.sin(e)], [0, math.sin(e), -math.cos(e)]])  # y down
    camera = joints @ R.T
    up = up_from_lift(motion_features(camera[None]), torch.ones(1, 12, dtype=torch.bool))[0]
    truth = R @ torch.tensor([0.0, 1.0, 0.0])
    assert up[0] == 0 and torch.dot(up, truth) > math.cos(math.radians(12))  # the torso leans a little


def test_a_pitched_camera_looks_down_without_roll():
    import math

    from fastmotion.data.clip_bank import LEVEL_CAMERA, pitched_camera
    from fastmotion.losses.free3d import up_from_pitch

    torch.testing.assert_close(pitched_camera(0.0), LEVEL_CAMERA)
    for degrees in (-10.0, 15.0, 90.0):
        R = pitched_camera(degrees)
        torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
        assert torch.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(R[:, 1], up_from_pitch(torch.tensor(math.radians(degrees))))
        assert R[0].tolist() == [1.0, 0.0, 0.0]  # the image's x stays horizontal: no roll
    torch.testing.assert_close(pitched_camera(90.0)[2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6, rtol=0)


def test_the_pitch_search_returns_one_of_its_candidates():
    from fastmotion.losses.free3d import up_by_pitch_search, up_from_pitch
    from fastmotion.models.mlrq import MotionVQConfig, Prior2D, motion_features
    from helpers import synthetic_clip

    torch.manual_seed(0)
    prior = Prior2D(MotionVQConfig.preset("small", levels=1)).eval()
    f3d = motion_features(torch.stack([synthetic_clip(s, 16).float() for s in range(3)]))
    mask = torch.ones(3, 16, dtype=torch.bool)
    grid = (-10.0, 5.0, 40.0)
    ups = up_by_pitch_search(prior, f3d, mask, 4, torch.Generator().manual_seed(0), pitches_degrees=grid)
    candidates = up_from_pitch(torch.deg2rad(torch.tensor(grid)))
    assert ups.shape == (3, 3) and all((candidates - up).abs().sum(-1).min() < 1e-6 for up in ups)
    again = up_by_pitch_search(prior, f3d, mask, 4, torch.Generator().manual_seed(0), pitches_degrees=grid)
    assert torch.equal(ups, again)
    one = up_by_pitch_search(prior, f3d, mask, 4, pitches_degrees=(12.0,), quantised=True)
    torch.testing.assert_close(one, up_from_pitch(torch.deg2rad(torch.tensor(12.0))).expand(3, 3))
    with pytest.raises(ValueError, match="pitches_degrees"):
        up_by_pitch_search(prior, f3d, mask, 4, pitches_degrees=())
