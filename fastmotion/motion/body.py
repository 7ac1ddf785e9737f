"""Valid bodies: one skeleton per clip, plausible proportions, feet on the floor.

The networks predict limb vectors (Free3D's representation, Sec. 4.1 of the Free3D paper: root plus child-minus-
parent vectors) whose lengths are free to drift from frame to frame; a barely trained or unlucky sample can give an
upper arm of 1.6 m. The motions fastmotion hands to users (`fastmotion lift`, `sample`, `eval`'s scores of them)
therefore keep the predicted limb *directions* and take the limb *lengths* from one skeleton per clip
(`rigid_body`); sampled motions are then put on the floor where a foot stands (`on_floor`). Intermediate training
data (VideoMDM's teacher, MVLift's multi-view windows) are left as the models predict them. Measured effect on
lifting and FID: docs/bodies.md.
"""
from __future__ import annotations

import numpy as np
import torch

from fastmotion.errors import MotionError

from .free3d import from_root_and_limbs, to_root_and_limbs
from .rotations import qbetween, qrot
from .skeleton import SMPL22, SMPL22_REST_OFFSETS, Skeleton

# bone lengths of the average adult's rest pose (metres), limb k ending at SMPL-22 joint k + 1
REFERENCE_BONES = torch.as_tensor(np.linalg.norm(SMPL22_REST_OFFSETS[1:], axis=-1), dtype=torch.float64)
# the long bones of the arms and legs (thigh, shin, upper arm, forearm), limb indices: their proportions agree
# across people and mocap skeletons (Bandai-2's are within 10% of SMPL's), unlike the torso's segments (0.35-1.5x)
LONG_BONES = tuple(SMPL22.index(f"{side}_{end}") - 1 for end in ("knee", "ankle", "elbow", "wrist")
                   for side in ("left", "right"))
LONG_BAND = 0.25  # a long bone may differ from the adult's proportion by this fraction
OTHER_RANGE = (0.25, 4.0)  # the other bones only within this factor of it (catches a broken bone, not a style)
def bone_lengths(joints: torch.Tensor, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """Bone lengths [..., J-1] of joints [..., J, 3] (any unit), limb k ending at joint k + 1 of `skeleton`.
    Raises ValueError for joints that are not [..., J, 3]."""
    return to_root_and_limbs(joints, skeleton)[1].norm(dim=-1)


def clip_skeleton(joints: torch.Tensor, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """One skeleton for a clip: bone lengths [J-1] (the joints' unit) from finite joints [T, J, 3].

    Each bone takes its median length over the clip. On SMPL-22 the lengths are then held near the average
    adult's proportions (`REFERENCE_BONES`) at the clip's own size (the median ratio of its long bones to the
    adult's): the long bones of arms and legs within `LONG_BAND`, the others within `OTHER_RANGE`, so one broken
    limb cannot survive while a mocap skeleton's own torso can. Other skeletons have no reference and keep their
    medians.

    Raises:
        ValueError: joints not [T, J, 3] with T >= 1, or long bones of median length zero (no size to hold).
    """
    if joints.dim() != 3 or joints.shape[0] < 1:
        raise ValueError(f"joints must be [T, {skeleton.num_joints}, 3] with T >= 1, got {tuple(joints.shape)}")
    lengths = bone_lengths(joints, skeleton).median(dim=0).values
    if skeleton.names != SMPL22.names:
        return lengths
    reference = REFERENCE_BONES.to(lengths)
    long = list(LONG_BONES)
    size = (lengths[long] / reference[long]).quantile(0.5)  # the mean of the middle two, as numpy.median
    if not bool(size > 0):
        raise ValueError("the clip's arms and legs have length zero: no body size to hold its skeleton at")
    low = torch.full_like(lengths, OTHER_RANGE[0])
    high = torch.full_like(lengths, OTHER_RANGE[1])
    low[long], high[long] = 1 - LONG_BAND, 1 + LONG_BAND
    return torch.minimum(torch.maximum(lengths, size * reference * low), size * reference * high)


def rigid_body(joints: torch.Tensor, lengths: torch.Tensor | None = None, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """Joints [T, J, 3] rebuilt down the kinematic tree from the root, each limb along its predicted direction at
    a fixed length: `lengths` [J-1] (default `clip_skeleton(joints, skeleton)`). Same frame, unit, dtype and device
    as the input. A limb of zero length in a frame takes its mean direction over the clip (and, zero throughout,
    the +y axis).

    Raises:
        MotionError (a ValueError): NaN or inf in the joints (the frame and joint named).
        ValueError: joints not [T, J, 3]; lengths not [J-1] of finite lengths >= 0; see `clip_skeleton`.
    """
    if joints.dim() != 3 or joints.shape[1:] != (skeleton.num_joints, 3):
        raise ValueError(f"joints must be [T, {skeleton.num_joints}, 3], got {tuple(joints.shape)}")
    bad = ~torch.isfinite(joints).all(-1)
    if bad.any():
        t, j = (int(i) for i in bad.nonzero()[0])
        raise MotionError(f"the motion holds NaN or inf (first at frame {t}, joint {skeleton.names[j]}): the model "
                          "diverged")
    lengths = clip_skeleton(joints, skeleton) if lengths is None else lengths.to(joints)
    if lengths.shape != (skeleton.num_joints - 1,) or not bool(torch.isfinite(lengths).all() and (lengths >= 0).all()):
        raise ValueError(f"lengths must be [{skeleton.num_joints - 1}] finite lengths >= 0, got "
                         f"{tuple(lengths.shape)}")
    root, limbs = to_root_and_limbs(joints, skeleton)
    norm = limbs.norm(dim=-1, keepdim=True)
    mean = limbs.sum(0, keepdim=True)
    mean = torch.where(mean.norm(dim=-1, keepdim=True) > 0, mean, limbs.new_tensor([0.0, 1.0, 0.0]))
    directions = torch.where(norm > 0, limbs / norm.clamp_min(1e-12), mean / mean.norm(dim=-1, keepdim=True))
    return from_root_and_limbs(root, directions * lengths[:, None], skeleton)


def on_floor(joints: torch.Tensor, skeleton: Skeleton = SMPL22, fps: float = 20.0, window: float = 1.0,
             max_tilt_degrees: float = 25.0) -> torch.Tensor:
    """Joints [T, J, 3] (metres, y up) with the feet on the floor y = 0 wherever a foot stands.

    The floor under a frame is the lowest foot joint's lowest height within `window` seconds around it (someone
    walking, running or standing has a foot down within any second; a jump's flight is shorter), smoothed over
    the same window so that the shape of a foot, heel or toe, does not make the body bob. A floor tilted by the
    unknown camera of the 2D the motion was learned from (a run that climbs) is levelled first: a plane fitted to
    the feet where they touch the floor is rotated level when they span 0.5 m and it tilts less than
    `max_tilt_degrees`. No joint ends below the
    floor. A skeleton without foot joints, or a clip under 3 frames, is shifted as a whole.

    Raises:
        ValueError: joints not [T, J, 3].
    """
    if joints.dim() != 3 or joints.shape[-1] != 3 or joints.shape[1] != skeleton.num_joints:
        raise ValueError(f"joints must be [T, {skeleton.num_joints}, 3], got {tuple(joints.shape)}")
    j = joints.double()
    feet = list(skeleton.feet)
    if not feet or len(j) < 3:
        return (j - j.new_tensor([0.0, float(j[..., 1].min()), 0.0])).to(joints.dtype)
    half = max(1, round(window * fps / 2))
    j = _level(j, feet, max_tilt_degrees)
    envelope = -torch.nn.functional.max_pool1d(-j[:, feet, 1].amin(-1)[None, None], 2 * half + 1, 1, half)[0, 0]
    padded = torch.nn.functional.pad(envelope[None, None], (half, half), mode="replicate")
    floor = torch.nn.functional.avg_pool1d(padded, 2 * half + 1, 1)[0, 0]
    floor = torch.minimum(floor, j[..., 1].amin(-1))  # nothing under the floor
    return (j - torch.stack([torch.zeros_like(floor), floor, torch.zeros_like(floor)], -1)[:, None]).to(joints.dtype)


def _level(j: torch.Tensor, feet: list[int], max_tilt_degrees: float) -> torch.Tensor:
    """Rotate joints [T, J, 3] so that the floor their feet touch is level, about the touching feet's centre.

    The floor is a plane y = a x + b z + c fitted to each frame's lowest foot joint, then refitted twice to the
    points within 3 cm above it or below (a jump's flight and a raised foot drop out). Ridge least squares on
    centred points: a direction the feet barely span (across a straight walk) keeps its slope near 0 instead of
    fitting noise. Unchanged when the feet span under 0.5 m or the plane tilts more than `max_tilt_degrees`."""
    heights = j[:, feet, 1]
    points = j[torch.arange(len(j), device=j.device), torch.tensor(feet, device=j.device)[heights.argmin(-1)]]
    keep = torch.ones(len(points), dtype=torch.bool, device=j.device)
    for _ in range(3):
        touching = points[keep]
        centre = touching.mean(0)
        xz, y = touching[:, [0, 2]] - centre[[0, 2]], touching[:, 1] - centre[1]
        a, b = torch.linalg.solve(xz.T @ xz + len(xz) * 0.1 ** 2 * torch.eye(2, dtype=xz.dtype, device=j.device),
                                xz.T @ y)
        residual = points[:, 1] - centre[1] - a * (points[:, 0] - centre[0]) - b * (points[:, 2] - centre[2])
        keep = residual < 0.03
        if keep.sum() < 3:
            return j
    span = (touching[:, [0, 2]].amax(0) - touching[:, [0, 2]].amin(0)).norm()
    normal = torch.stack([-a, torch.ones_like(a), -b])
    normal = normal / normal.norm()
    cos = float(normal[1])
    if span < 0.5 or np.degrees(np.arccos(min(1.0, cos))) > max_tilt_degrees:
        return j
    return qrot(qbetween(normal, normal.new_tensor([0.0, 1.0, 0.0])), j - centre) + centre
