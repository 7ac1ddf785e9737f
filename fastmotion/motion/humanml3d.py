"""HumanML3D's 263-d motion features for SMPL-22 joints, in torch (differentiable where the features are:
everything but the foot contacts, which are thresholds).

Layout per frame (T joint frames -> T - 1 feature frames; each frame uses the velocity to the next one):
  [0]        root angular velocity about y (half-angle per frame, as HumanML3D stores it)
  [1:3]      root linear velocity in x, z, in the root's facing frame
  [3]        root height
  [4:67]     positions of joints 1..21 relative to the root (x, z) and facing +z ("RIC"), 21 x 3
  [67:193]   local joint rotations of joints 1..21 in the continuous 6D form, 21 x 6
  [193:259]  joint velocities in the root's facing frame, 22 x 3
  [259:263]  foot contacts: left ankle, left foot, right ankle, right foot (speed^2 below a threshold)
`features_to_joints` recovers joints from the root channels and the RIC positions (as HumanML3D's
recover_from_ric). Not done here: HumanML3D's retargeting of every clip onto one reference skeleton before
feature extraction (bone lengths stay the clip's own).
"""
from __future__ import annotations

import torch

from .rotations import axis_angle_y, matrix_to_cont6d, qbetween, qinv, qmul, qrot, quat_to_matrix
from .skeleton import SMPL22

FEATURE_DIM = 4 + 21 * 3 + 21 * 6 + 22 * 3 + 4  # 263
SLICES = {"root_rot_velocity": slice(0, 1), "root_linear_velocity": slice(1, 3), "root_height": slice(3, 4),
          "ric": slice(4, 67), "rot6d": slice(67, 193), "local_velocity": slice(193, 259),
          "foot_contact": slice(259, 263)}
# HumanML3D's kinematic chains and rest directions of each joint from its parent (t2m skeleton).
KINEMATIC_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21),
                    (9, 13, 16, 18, 20))
REST_DIRECTIONS = ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0),
                   (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1),
                   (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0))
FOOT_CONTACT_THRESHOLD = 0.002  # squared metres per frame at 20 fps


def facing_quaternion(joints: torch.Tensor) -> torch.Tensor:
    """Per frame, the rotation about y that turns the body's forward (up x (right - left) of hips and
    shoulders) onto +z: [..., T, 4]."""
    lh, rh = SMPL22.hips
    ls, rs = SMPL22.shoulders
    across = (joints[..., rh, :] - joints[..., lh, :]) + (joints[..., rs, :] - joints[..., ls, :])
    up = torch.zeros_like(across)
    up[..., 1] = 1.0
    forward = torch.cross(up, across, dim=-1)
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return qbetween(forward, torch.zeros_like(forward) + forward.new_tensor([0.0, 0.0, 1.0]))


def canonical_transform(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_c [..., 3, 3], offset [..., 3]) with canonicalize(joints) == (joints - offset) @ R_c^T: what a camera
    of the clip must absorb to see the canonical clip (R' = R R_c^T, t' = R offset + t)."""
    floor = joints[..., 1].amin(dim=(-1, -2))
    start = joints[..., 0, 0, :]
    offset = torch.stack([start[..., 0], floor, start[..., 2]], -1)
    q0 = facing_quaternion((joints - offset[..., None, None, :])[..., :1, :, :])[..., 0, :]
    return quat_to_matrix(q0), offset


def canonicalize(joints: torch.Tensor) -> torch.Tensor:
    """HumanML3D's normalisation of a clip [T, 22, 3] (or [..., T, 22, 3]): feet on the floor (lowest joint at
    y = 0), the first frame's root above the origin, and the first frame facing +z."""
    floor = joints[..., 1].amin(dim=(-1, -2), keepdim=True)  # [..., 1, 1]
    start = joints[..., :1, 0, :]  # [..., 1, 3]: the first root position
    joints = joints - torch.stack([start[..., 0], floor[..., 0], start[..., 2]], dim=-1).unsqueeze(-2)
    q0 = facing_quaternion(joints[..., :1, :, :])  # [..., 1, 4]
    return qrot(q0.unsqueeze(-2), joints)


def local_rotations(joints: torch.Tensor, root_quat: torch.Tensor) -> torch.Tensor:
    """Inverse kinematics along HumanML3D's chains: the local rotation of each joint [..., T, 22, 4] that turns
    its rest direction onto its bone's direction (twist-free shortest arcs), with the root's as given. As in
    HumanML3D, every chain starts from the root's rotation (the arm chains too, though they hang off spine3)."""
    quats = [None] * SMPL22.num_joints
    quats[0] = root_quat
    rest = joints.new_tensor(REST_DIRECTIONS)
    for chain in KINEMATIC_CHAINS:
        R = root_quat
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = joints[..., child, :] - joints[..., parent, :]
            bone = bone / bone.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            world = qbetween(rest[child].expand_as(bone), bone)
            local = qmul(qinv(R), world)
            quats[child] = local
            R = qmul(R, local)
    return torch.stack(quats, dim=-2)


def joints_to_features(joints: torch.Tensor, canonical: bool = True,
                       contact_threshold: float = FOOT_CONTACT_THRESHOLD) -> torch.Tensor:
    """SMPL-22 joints [..., T, 22, 3] (metres, y up, 20 fps) -> features [..., T-1, 263].

    canonical=True first applies `canonicalize` (floor, origin, facing +z), as HumanML3D does."""
    if joints.dim() < 3 or joints.shape[-2:] != (22, 3) or joints.shape[-3] < 2:
        raise ValueError(f"joints must be [..., T >= 2, 22, 3], got {tuple(joints.shape)}")
    if canonical:
        joints = canonicalize(joints)
    root_quat = facing_quaternion(joints)  # [..., T, 4]: world -> facing frame
    # The first frame's facing is the reference (identity after canonicalisation), as in HumanML3D.
    root_quat = torch.cat([root_quat.new_tensor([1.0, 0.0, 0.0, 0.0]).expand_as(root_quat[..., :1, :]),
                           root_quat[..., 1:, :]], dim=-2)
    root = joints[..., 0, :]
    velocity = qrot(root_quat[..., 1:, :], root[..., 1:, :] - root[..., :-1, :])
    rot_velocity = qmul(root_quat[..., 1:, :], qinv(root_quat[..., :-1, :]))
    rot_velocity = torch.asin(rot_velocity[..., 2:3].clamp(-1.0, 1.0))  # half-angle about y
    ground = torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)
    ric = qrot(root_quat.unsqueeze(-2), joints - ground.unsqueeze(-2))  # root x, z removed; facing +z
    rot6d = matrix_to_cont6d(quat_to_matrix(local_rotations(joints, root_quat)))
    local_velocity = qrot(root_quat[..., :-1, None, :], joints[..., 1:, :, :] - joints[..., :-1, :, :])
    feet = list(SMPL22.feet)
    speed = ((joints[..., 1:, feet, :] - joints[..., :-1, feet, :]) ** 2).sum(-1)
    contact = (speed < contact_threshold).to(joints.dtype)
    return torch.cat([rot_velocity, velocity[..., [0, 2]], ric[..., :-1, 0, 1:2], ric[..., :-1, 1:, :].flatten(-2),
                      rot6d[..., :-1, 1:, :].flatten(-2), local_velocity.flatten(-2), contact], dim=-1)


def root_from_features(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root facing quaternions [..., T, 4] and root positions [..., T, 3] integrated from the root channels."""
    rot_velocity = features[..., 0]
    angle = torch.cumsum(torch.cat([torch.zeros_like(rot_velocity[..., :1]), rot_velocity[..., :-1]], -1), -1)
    quat = axis_angle_y(2 * angle)
    step = torch.zeros(features.shape[:-1] + (3,), dtype=features.dtype, device=features.device)
    step[..., 1:, 0] = features[..., :-1, 1]
    step[..., 1:, 2] = features[..., :-1, 2]
    position = torch.cumsum(qrot(qinv(quat), step), dim=-2)
    position = torch.cat([position[..., :1], features[..., 3:4], position[..., 2:]], dim=-1)
    return quat, position


def features_to_joints(features: torch.Tensor) -> torch.Tensor:
    """Features [..., T, 263] -> joints [..., T, 22, 3] from the root channels and the RIC positions."""
    if features.shape[-1] != FEATURE_DIM:
        raise ValueError(f"features must have {FEATURE_DIM} channels, got {tuple(features.shape)}")
    quat, root = root_from_features(features)
    ric = features[..., SLICES["ric"]].unflatten(-1, (21, 3))
    joints = qrot(qinv(quat).unsqueeze(-2), ric)
    joints = joints + torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], -1).unsqueeze(-2)
    return torch.cat([root.unsqueeze(-2), joints], dim=-2)
