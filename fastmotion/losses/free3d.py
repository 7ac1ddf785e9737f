"""Free3D's 3D-free losses for the ML-RQ (section 4), each on batches [B, T, ...] with a frame mask [B, T].

Units: motion features in normalised image coordinates (see fastmotion.models.mlrq); 2D terms are compared
after standardisation with the model's statistics, so every channel weighs alike.
"""
from __future__ import annotations

import math

import torch

from fastmotion.models.mlrq import MLRQ, Prior2D, features_to_joints, motion_features
from fastmotion.motion.rotations import qbetween, quat_to_matrix
from fastmotion.motion.skeleton import SMPL22
from fastmotion.ops import project_weak_perspective, sample_view_rotations


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, T, ...] over frames where mask [B, T] is True (and over trailing dims)."""
    weights = mask.to(values.dtype).view(*mask.shape, *([1] * (values.dim() - 2)))
    per = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * weights).sum() / (weights.sum() * per).clamp_min(1)


def weighted_mean(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of values [B, T, C] over frames where mask [B, T], each element weighted by weights [B, T, C] (None:
    `masked_mean`)."""
    if weights is None:
        return masked_mean(values, mask)
    w = weights * mask.to(weights.dtype)[..., None]
    return (values * w).sum() / w.sum().clamp_min(1e-6)


def feature_weights(confidence: torch.Tensor) -> torch.Tensor:
    """Per-channel weights [B, T, 44] of the 2D features (root, then 21 limb vectors) from joint confidences
    [B, T, 22]: the root's times the first frame's (the root feature is its offset from the first frame), and
    each limb's as the product of its two joints' (a limb is known only where both ends are seen)."""
    parents = list(SMPL22.parents[1:])
    limbs = confidence[..., 1:] * confidence[..., parents]
    root = confidence[..., :1] * confidence[..., :1, :1]
    return torch.cat([root, limbs], -1).repeat_interleave(2, -1)


def loss_2d(model: MLRQ, f3d: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_2D: the decoded 3D motion seen from the input camera (weak perspective: its x, y) vs the input 2D
    trajectory and limb vectors, standardised; weights [B, T, 44] (`feature_weights`) leave out what the
    detector did not see."""
    return weighted_mean((model.stats.normalize(model.xy_of(f3d)) - x) ** 2, mask, weights)


CAMERA_UP = (0.0, -1.0, 0.0)  # the world's up in an OpenCV camera frame (y down) when the camera is level


def vertical_rotations(up: torch.Tensor, views: int, generator: torch.Generator | None = None,
                       max_yaw: float = math.pi) -> torch.Tensor:
    """V random rotations [B, V, 3, 3] about each motion's vertical axis `up` [B, 3] (in its camera frame):
    yaw uniform in [-max_yaw, max_yaw) radians (default the full circle). A camera looking down at the subject tilts
    that axis away from -y; turning about the camera's own y axis instead would show the body from below, which no real
    2D view does."""
    yaw = sample_view_rotations(views, up.shape[0], max_pitch=0.0, max_roll=0.0, max_yaw=max_yaw,
                                generator=generator, dtype=up.dtype, device=up.device)  # about y
    level = up.new_tensor(CAMERA_UP).expand_as(up)
    align = quat_to_matrix(qbetween(level, up))[:, None]  # takes -y onto up
    return align @ yaw @ align.transpose(-1, -2)


def up_from_lift(f3d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The vertical [B, 3] in each camera frame estimated from the lift itself, for 2D without a camera pose:
    the mean pelvis -> neck direction over the real frames (mask [B, T]) of the decoded motion f3d [B, T, 66],
    its x component dropped (no camera roll assumed), so only the camera's pitch is estimated; detached. The torso
    leans in many motions, so this is a rough vertical; an experiment (docs/detector-2d.md)."""
    joints = features_to_joints(f3d.detach(), 3)
    torso = joints[:, :, SMPL22.index("neck")] - joints[:, :, SMPL22.index("pelvis")]
    m = mask.to(torso.dtype)[..., None]
    mean = (torso * m).sum(1) / m.sum(1).clamp_min(1)
    pitch = torch.stack([torch.zeros_like(mean[:, 0]), mean[:, 1], mean[:, 2]], -1)
    fallback = pitch.new_tensor(CAMERA_UP).expand_as(pitch)
    norm = pitch.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-6, pitch / norm.clamp_min(1e-12), fallback)


PITCH_GRID_DEGREES = (-10.0, 0.0, 10.0, 20.0, 30.0, 40.0)  # the candidates of `up_by_pitch_search`


def up_from_pitch(pitch: torch.Tensor) -> torch.Tensor:
    """The world's up [..., 3] in the frame of a camera pitched down by `pitch` [...] radians (negative: up),
    with no roll: (0, -cos, -sin) (OpenCV axes: y down, z forward)."""
    return torch.stack([torch.zeros_like(pitch), -torch.cos(pitch), -torch.sin(pitch)], -1)


@torch.no_grad()
def up_by_pitch_search(prior: Prior2D, f3d: torch.Tensor, mask: torch.Tensor, views: int,
                       generator: torch.Generator | None = None, max_yaw: float = math.pi,
                       pitches_degrees=PITCH_GRID_DEGREES,
                       quantised: bool = False) -> torch.Tensor:
    """The vertical [B, 3] of each motion for 2D without a camera pose: the camera pitch, among
    `pitches_degrees`, under which the frozen prior (through its codebook if `quantised`) finds the V rotated views of
    the current lift f3d [B, T, 66] most plausible (lowest `loss_rec` per clip over the real frames, mask [B, T]; the
    same yaws for every candidate); no roll assumed. ElePose (Wandt et al. 2022) learns the elevation with its lifter
    under a 2D prior; this searches a grid instead, detached, anew for each batch. An experiment (docs/detector-2d.md).

    Raises:
        ValueError: `pitches_degrees` is empty.
    """
    if len(pitches_degrees) == 0:
        raise ValueError("pitches_degrees must name at least one pitch")
    joints = features_to_joints(f3d, 3)
    b, p = joints.shape[0], len(pitches_degrees)
    ups = up_from_pitch(joints.new_tensor([math.radians(d) for d in pitches_degrees]))  # [P, 3]
    yaw = sample_view_rotations(views, b, max_pitch=0.0, max_roll=0.0, max_yaw=max_yaw, generator=generator,
                                dtype=joints.dtype, device=joints.device)  # [B, V, 3, 3], shared by candidates
    align = quat_to_matrix(qbetween(joints.new_tensor(CAMERA_UP).expand_as(ups), ups))  # [P, 3, 3]
    rotations = align[:, None, None] @ yaw[None] @ align[:, None, None].transpose(-1, -2)  # [P, B, V, 3, 3]
    seen = project_weak_perspective(joints.repeat(p, 1, 1, 1), rotations.flatten(0, 1))  # [P*B, V, T, 22, 2]
    x = prior.stats.normalize(motion_features(seen.flatten(0, 1)))
    error = ((prior.reconstruct(x, quantise=quantised) - x) ** 2).mean(-1).view(p, b, views, -1).mean(2)  # [P, B, T]
    m = mask.to(error.dtype)
    score = (error * m).sum(-1) / m.sum(-1).clamp_min(1)  # [P, B]
    return ups[score.argmin(0)]


def loss_rec(model: MLRQ, prior: Prior2D, f3d: torch.Tensor, mask: torch.Tensor, up: torch.Tensor, views: int,
             generator: torch.Generator | None = None, *, max_yaw: float = math.pi,
             quantised: bool = False) -> torch.Tensor:
    """L_rec: V random rotated weak-perspective views of the decoded motion (about the vertical axis through
    its first root position, yaw in [-max_yaw, max_yaw) radians, via the fused `project_weak_perspective`),
    scored by the frozen 2D prior's reconstruction error: plausible 3D looks like real 2D motion from every side.
    quantised=False (default) scores through the prior's continuous latent, True through its codebook
    (Free3D's formulation, which blew up with well-trained priors on real 2D: docs/real-data.md)."""
    joints = features_to_joints(f3d, 3)  # [B, T, 22, 3], root at the origin on frame 0
    rotations = vertical_rotations(up.to(joints.dtype), views, generator, max_yaw)
    seen = project_weak_perspective(joints, rotations)  # [B, V, T, 22, 2]
    x = prior.stats.normalize(motion_features(seen.flatten(0, 1)))  # [B*V, T, 44]
    recon = prior.reconstruct(x, quantise=quantised)
    return masked_mean((recon - x) ** 2, mask.repeat_interleave(views, 0))


def loss_orientation(f3d: torch.Tensor, mask: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """L_ori: hinge on feet pointing backwards: the horizontal direction ankle -> foot of each leg should not
    oppose the body's forward, up x (right hip - left hip); `up` [B, 3] is the vertical in the camera frame."""
    joints = features_to_joints(f3d, 3)
    up = up.to(joints.dtype)[:, None, :]
    lh, rh = SMPL22.hips
    across = joints[:, :, rh] - joints[:, :, lh]
    forward = torch.cross(up.expand_as(across), across, dim=-1)
    losses = []
    for ankle, foot in ((SMPL22.feet[0], SMPL22.feet[1]), (SMPL22.feet[2], SMPL22.feet[3])):
        d = joints[:, :, foot] - joints[:, :, ankle]
        d = d - (d * up).sum(-1, keepdim=True) * up  # horizontal part
        cos = (d * forward).sum(-1) / (d.norm(dim=-1) * forward.norm(dim=-1)).clamp_min(1e-8)
        losses.append(torch.relu(-cos))
    return masked_mean(torch.stack(losses, -1), mask)


def loss_feature(model: MLRQ, f3d: torch.Tensor, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_feat: the ML-RQ encoder's features of the reprojected decoded motion vs of the input (target fixed)."""
    again = model.encode(model.stats.normalize(model.xy_of(f3d)))
    m = model.frame_multiple
    return masked_mean((again - latent.detach()) ** 2, mask[:, ::m])


def mlrq_losses(model: MLRQ, prior: Prior2D, x: torch.Tensor, mask: torch.Tensor, up: torch.Tensor, *, views: int = 4,
                weights=(1.0, 1.0, 1.0), beta: float = 2.0, use_rec=True, use_ori=True, use_feat=True,
                max_yaw: float = math.pi, rec_quantised: bool = False, feature_weight: torch.Tensor | None = None,
                generator: torch.Generator | None = None, up_from: str = "dataset") -> dict[str, torch.Tensor]:
    """Every term and the total: L_2D + l1 L_rec + l2 L_ori + l3 L_feat + beta * commitment (section 4).
    x: standardised 2D features [B, T, 44]; mask [B, T]; up [B, 3]: the vertical in each camera frame (up_from
    "dataset"), or up_from "lift": estimated from the lift's torso (`up_from_lift`), "search": the camera pitch
    the prior prefers (`up_by_pitch_search`) (both experiments for 2D without camera poses); weights: (l1, l2, l3);
    max_yaw, rec_quantised: see `loss_rec`; feature_weight: see `loss_2d`."""
    if up_from not in ("dataset", "lift", "search"):
        raise ValueError(f"up_from must be 'dataset', 'lift' or 'search', got {up_from!r}")
    f3d, latent, q = model.lift(x)
    if up_from == "lift":
        up = up_from_lift(f3d, mask)
    elif up_from == "search":
        up = up_by_pitch_search(prior, f3d, mask, views, generator, max_yaw, quantised=rec_quantised)
    out = {"l2d": loss_2d(model, f3d, x, mask, feature_weight), "commit": q.commitment}
    if use_rec:
        out["rec"] = loss_rec(model, prior, f3d, mask, up, views, generator, max_yaw=max_yaw,
                              quantised=rec_quantised)
    if use_ori:
        out["ori"] = loss_orientation(f3d, mask, up)
    if use_feat:
        out["feat"] = loss_feature(model, f3d, latent, mask)
    l1, l2, l3 = weights
    out["loss"] = (out["l2d"] + l1 * out.get("rec", 0.0) + l2 * out.get("ori", 0.0) + l3 * out.get("feat", 0.0)
                   + beta * out["commit"])
    return out


def prior_losses(prior: Prior2D, x: torch.Tensor, mask: torch.Tensor, beta: float = 0.02,
                 feature_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The 2D prior's objective: reconstruction (weighted by `feature_weight` [B, T, 44], see `loss_2d`) +
    beta * commitment."""
    recon, q = prior(x)
    out = {"recon": weighted_mean((recon - x) ** 2, mask, feature_weight), "commit": q.commitment}
    out["loss"] = out["recon"] + beta * out["commit"]
    return out
