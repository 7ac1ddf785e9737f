"""VideoMDM's 2D objective on an MDM's predicted HumanML3D features (paper section 3.4-3.6).

  L_pos   depth-weighted reprojection of the predicted joints against the observed keypoints
          (`fastmotion.ops.reprojection_loss`; joints closer than min_depth dropped). Depth weight per joint
          (the paper), per sample (the released code: the sample's mean depth, squared), or none.
  L_vel   the same on frame differences.
  L_repr  the redundant channels (6D rotations, joint velocities, foot contacts) predicted by the model against
          those recomputed from its joints projected onto the keypoints' camera rays
          (`fastmotion.ops.ray_project`); the target is detached; mean squared error in feature units.
  total   lambda_cam * (L_pos + lambda_vel * L_vel) + lambda_repr * L_repr (+ lambda_root * L_root)
Root "predicted" (the paper): the joints integrate the predicted root channels (rotation and linear velocity,
height). Root "teacher": they take the teacher's root channels and the predicted root-relative pose, and the
root channels regress onto the teacher's instead (L_root, standardised MSE). Why: integrating the root
velocities turns small feature errors into metres of drift (measured on the demo's baseline MDM at t=0:
L_pos 0.86 with its own root, 0.006 with the teacher's), so that drift, not the pose, drives the 2D gradient.
Joints come from the features by `humanml3d.features_to_joints` (differentiable); every term is masked to the
clip's real frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmotion.motion.humanml3d import SLICES, features_to_joints, joints_to_features
from fastmotion.ops import ray_project, reprojection_loss

REDUNDANT = slice(SLICES["rot6d"].start, SLICES["foot_contact"].stop)  # channels 67..262
ROOT = slice(0, SLICES["root_height"].stop)  # channels 0..3: rotation velocity, linear velocity, height


@dataclass
class VideoMDMLossConfig:
    lambda_cam: float = 7.0
    lambda_vel: float = 50.0  # relative to L_pos
    lambda_repr: float = 1.0
    depth_weight: str = "joint"  # "joint" (paper) | "sample" (released code) | "none"
    min_depth: float = 0.1
    ray_targets: bool = True  # False: L_repr targets from the predicted joints themselves (ablation)
    root: str = "predicted"  # "predicted" (paper) | "teacher" (module docstring)
    lambda_root: float = 1.0  # with root "teacher"

    def __post_init__(self):
        if self.root not in ("predicted", "teacher"):
            raise ValueError(f"root must be 'predicted' or 'teacher', got {self.root!r}")
        if self.depth_weight not in ("joint", "sample", "none"):
            raise ValueError(f"depth_weight must be 'joint', 'sample' or 'none', got {self.depth_weight!r}")


def _camera_depth(joints, R, t):
    return torch.einsum("bij,btkj->btki", R, joints)[..., 2] + t[:, None, None, 2]


def _reprojection(joints, keypoints, K, R, t, mask, config: VideoMDMLossConfig, velocity: bool):
    joint_mask = mask[:, :, None].expand(joints.shape[:3])
    weights = None
    if config.depth_weight == "sample":
        depth = _camera_depth(joints.detach(), R, t)
        m = joint_mask.to(depth.dtype)
        mean = (depth * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1)
        weights = (mean ** 2)[:, None, None]  # [B, 1, 1]: broadcast over frames and joints
    return reprojection_loss(joints, keypoints, K, R, t, depth_weighted=config.depth_weight == "joint",
                             min_depth=config.min_depth, weights=weights, mask=joint_mask, velocity=velocity)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the frames where mask [B, T] is True (channels averaged)."""
    m = mask.to(pred.dtype)[..., None]
    return (((pred - target) ** 2) * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1)


def videomdm_losses(x0_hat: torch.Tensor, stats, keypoints: torch.Tensor, K: torch.Tensor, R: torch.Tensor,
                    t: torch.Tensor, mask: torch.Tensor, config: VideoMDMLossConfig,
                    teacher: torch.Tensor | None = None) -> dict:
    """x0_hat [B, F, 263] standardised features; stats: (mean, std) [263]; keypoints [B, F, 22, 2] pixels of the
    joint frames the features describe; camera in the features' (canonical) world frame; mask [B, F];
    teacher [B, F, 263] standardised teacher features (needed by root "teacher")."""
    mean, std = stats
    l_root = x0_hat.new_zeros(())
    if config.root == "teacher":
        if teacher is None:
            raise ValueError("root 'teacher' needs the teacher's features")
        l_root = masked_mse(x0_hat[..., ROOT], teacher[..., ROOT], mask)
        x0_hat = torch.cat([teacher[..., ROOT], x0_hat[..., ROOT.stop:]], -1)
    features = x0_hat * std + mean
    joints = features_to_joints(features)  # [B, F, 22, 3]
    l_pos = _reprojection(joints, keypoints, K, R, t, mask, config, velocity=False)
    l_vel = _reprojection(joints, keypoints, K, R, t, mask, config, velocity=True) if config.lambda_vel else \
        joints.new_zeros(())
    if config.lambda_repr:
        with torch.no_grad():
            source = ray_project(joints, keypoints, K, R, t) if config.ray_targets else joints
            target = joints_to_features(source, canonical=False)
        pair = mask[:, 1:] & mask[:, :-1]
        # in the features' own units (rotations, metres per frame, contacts): standardised, the tiny spread of the
        # velocity channels would blow up the noise of rays hit by a poor early prediction
        l_repr = masked_mse(features[:, :-1, REDUNDANT], target[..., REDUNDANT], pair)
    else:
        l_repr = joints.new_zeros(())
    loss = config.lambda_cam * (l_pos + config.lambda_vel * l_vel) + config.lambda_repr * l_repr
    out = {"pos": l_pos.detach(), "vel": l_vel.detach(), "repr": l_repr.detach()}
    if config.root == "teacher":
        loss = loss + config.lambda_root * l_root
        out["root"] = l_root.detach()
    return {"loss": loss, **out}
