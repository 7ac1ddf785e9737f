"""Free3D's losses: the rotated views of L_rec turn about the camera's up axis within the yaw range."""

import torch

from fastmotion.losses.free3d import vertical_rotations



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
