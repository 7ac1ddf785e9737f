"""Cameras (OpenCV pinhole: x_cam = R x_world + t; x right, y down, z forward; K the 3x3 intrinsics):
VideoMDM-style sampling around a motion, perspective and weak-perspective projection, EPnP estimation from
3D-2D pairs (OpenCV), and VideoMDM's naive root depth from 2D bone lengths (appendix D)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fastmotion.ops import project_weak_perspective, reference

from .skeleton import SMPL22, Skeleton


@dataclass
class Cameras:
    K: torch.Tensor  # [B, 3, 3]
    R: torch.Tensor  # [B, 3, 3]
    t: torch.Tensor  # [B, 3]

    def centres(self) -> torch.Tensor:
        """Camera centres in world coordinates, -R^T t: [B, 3]."""
        return -torch.einsum("bji,bj->bi", self.R, self.t)


def intrinsics(focal: float, width: int, height: int, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def look_at(eye: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R, t of cameras at `eye` [B, 3] looking at `target` [B, 3], world y up, no roll."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.zeros_like(forward)
    up[:, 1] = 1.0
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    R = torch.stack([right, down, forward], dim=1)
    return R, -torch.einsum("bij,bj->bi", R, eye)


def sample_cameras(joints: torch.Tensor, *, elevation_deg=(0.0, 30.0), distance=(4.0, 6.0), min_depth: float = 3.0,
                   focal: float = 1000.0, image_size=(1000, 1000), generator: torch.Generator | None = None) -> Cameras:
    """One camera per motion of joints [B, T, J, 3], as VideoMDM builds its 2D-only HumanML3D: azimuth uniform
    in [0, 360), elevation uniform in `elevation_deg`, aimed at the motion's mean root position, at a distance
    drawn from `distance` and pushed back until the closest joint of every frame is at least `min_depth`
    in front of the camera."""
    if joints.dim() != 4 or joints.shape[-1] != 3:
        raise ValueError(f"joints must be [B, T, J, 3], got {tuple(joints.shape)}")
    B, dtype = joints.shape[0], joints.dtype
    u = torch.rand(B, 3, generator=generator, dtype=torch.float64)
    azimuth = u[:, 0] * 2 * math.pi
    elevation = torch.deg2rad(elevation_deg[0] + u[:, 1] * (elevation_deg[1] - elevation_deg[0]))
    dist = distance[0] + u[:, 2] * (distance[1] - distance[0])
    direction = torch.stack([torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation),
                             torch.cos(elevation) * torch.cos(azimuth)], dim=-1)  # from the target to the camera
    target = joints[:, :, 0].mean(1).double()
    R, _ = look_at(target + direction, target)
    depth_from_target = torch.einsum("bi,btji->btj", R[:, 2], joints.double() - target[:, None, None])
    dist = torch.maximum(dist, min_depth - depth_from_target.flatten(1).amin(1))
    eye = target + dist[:, None] * direction
    R, t = look_at(eye, target)
    K = intrinsics(focal, *image_size, batch=B, dtype=torch.float64)
    return Cameras(K.to(dtype), R.to(dtype), t.to(dtype))


def project(points: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """Perspective projection of world points [B, ..., 3] to pixels [B, ..., 2]."""
    c = reference.camera_frame(points, cameras.R, cameras.t)
    uvw = torch.einsum("bij,b...j->b...i", cameras.K, c)
    return uvw[..., :2] / uvw[..., 2:]


def weak_perspective(points: torch.Tensor, rotations: torch.Tensor, scale=1.0, offset=None) -> torch.Tensor:
    """Orthographic views [B, V, T, J, 2] of motions [B, T, J, 3] (Free3D's Phi), through the fused op."""
    return project_weak_perspective(points, rotations, scale, offset)


def estimate_camera_epnp(points3d: np.ndarray, points2d: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None,
                         refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """R [3, 3], t [3] from 3D-2D correspondences (points3d [N, 3] world, points2d [N, 2] pixels) by OpenCV's
    EPnP, then Levenberg-Marquardt refinement of the reprojection error (VideoMDM's unknown-camera path)."""
    import cv2

    points3d, points2d = (np.asarray(points3d, np.float64).reshape(-1, 3),
                          np.asarray(points2d, np.float64).reshape(-1, 2))
    if points3d.shape[0] != points2d.shape[0]:
        raise ValueError(f"points3d has {points3d.shape[0]} points, points2d {points2d.shape[0]}")
    keep = np.isfinite(points3d).all(1) & np.isfinite(points2d).all(1)
    if mask is not None:
        keep &= np.asarray(mask, bool).reshape(-1)
    if keep.sum() < 6:
        raise ValueError(f"EPnP needs at least 6 valid correspondences, got {int(keep.sum())}")
    K = np.asarray(K, np.float64)
    ok, rvec, tvec = cv2.solvePnP(points3d[keep], points2d[keep], K, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        raise RuntimeError("EPnP failed (are the points degenerate, e.g. all on one line?)")
    if refine:
        rvec, tvec = cv2.solvePnPRefineLM(points3d[keep], points2d[keep], K, None, rvec, tvec)
    return cv2.Rodrigues(rvec)[0], tvec.reshape(3)


def _naive_depth_constant(edges: int = 3, samples: int = 200_001) -> float:
    """1 / E[1 / max_e sin(theta_e)] for `edges` independent uniformly oriented bones (|cos theta| ~ U[0, 1]):
    makes the min-over-bones depth estimate unbiased. The paper's eq. 11 is missing from our copy of the text;
    this is the correction its prose describes, computed by quadrature over the smallest |cos|."""
    m = (np.arange(samples) + 0.5) / samples  # the smallest |cos| of the edges; density edges (1 - m)^(edges-1)
    density = edges * (1 - m) ** (edges - 1)
    return float(1.0 / np.mean(density / np.sqrt(1 - m * m)))


NAIVE_DEPTH_CONSTANT = _naive_depth_constant()


def naive_root_depth(keypoints: torch.Tensor, K: torch.Tensor, bone_lengths: torch.Tensor,
                     skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """VideoMDM appendix D: per frame root depth from 2D keypoints [B, T, J, 2] (pixels) and known 3D bone
    lengths [B, J] (length of the bone ending at each joint; the root's is ignored). A bone of length L at
    depth z and angle theta to the optical axis projects to about L sin(theta) / z in normalised coordinates,
    so z <= L / l; the root's three bones give z ~ c * min_e L_e / l_e. Returns [B, T]."""
    n = reference.normalized_keypoints(keypoints, K)
    root_children = [j for j, p in enumerate(skeleton.parents) if p == 0]
    l2d = (n[:, :, root_children] - n[:, :, :1]).norm(dim=-1).clamp_min(1e-9)  # [B, T, 3]
    ratios = bone_lengths[:, None, root_children] / l2d
    return NAIVE_DEPTH_CONSTANT * ratios.amin(-1)


def relative_depth(keypoints: torch.Tensor, skeleton: Skeleton = SMPL22, window: int = 5) -> torch.Tensor:
    """Each frame's subject depth relative to the first frame's, Z(t) / Z(0), from the apparent size of the
    skeleton in 2D: a limb of length L at depth Z projects to about L cos(phi) / Z, so each limb's clip median
    over its length in frame t is proportional to Z(t) up to its foreshortening; the median over limbs shrugs
    off the foreshortened ones. Smoothed by a moving average over `window` frames (chosen on Bandai-2's
    validation split: docs/real-data.md).

    keypoints: [..., T, J, 2] in normalised image coordinates (pixels work too: only ratios matter).
    Returns [..., T], 1 on the first frame. Pinhole geometry; no learned part.

    Raises:
        ValueError: keypoints not [..., T, J, 2] for the skeleton's J, or window < 1.
    """
    if keypoints.dim() < 3 or keypoints.shape[-2:] != (skeleton.num_joints, 2):
        raise ValueError(f"keypoints must be [..., T, {skeleton.num_joints}, 2], got {tuple(keypoints.shape)}")
    if window < 1:
        raise ValueError(f"window must be at least 1 frame, got {window}")
    parents = torch.tensor(skeleton.parents[1:], device=keypoints.device)
    lengths = (keypoints[..., 1:, :] - keypoints.index_select(-2, parents)).norm(dim=-1).clamp_min(1e-9)
    typical = lengths.median(dim=-2, keepdim=True).values  # [..., 1, J-1]
    depth = (typical / lengths).median(dim=-1).values  # [..., T]
    if window > 1:
        flat = depth.reshape(-1, 1, depth.shape[-1])
        padded = torch.nn.functional.pad(flat, (window // 2, (window - 1) // 2), mode="replicate")
        depth = torch.nn.functional.avg_pool1d(padded, window, stride=1).reshape(depth.shape)
    return depth / depth[..., :1]


def place_on_rays(pose: torch.Tensor, root_keypoint: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Global motion from per-frame poses and the root's 2D track, in units of the first frame's depth.

    pose: [..., T, J, 3] joints whose root-relative part is in units of the frame's own depth (what a lifter
    from normalised 2D predicts); root_keypoint: [..., T, 2] the root's normalised image coordinates;
    depth: [..., T] Z(t) / Z(0) (`relative_depth`). Each frame's pose is scaled by its depth and its root put on
    its camera ray [u, v, 1] at that depth; the result is translated so that the first frame's root is at the
    origin. Returns [..., T, J, 3] (camera axes: x right, y down, z forward).
    """
    ray = torch.cat([root_keypoint, torch.ones_like(root_keypoint[..., :1])], dim=-1) * depth[..., None]
    root = ray - ray[..., :1, :]
    return (pose - pose[..., :1, :]) * depth[..., None, None] + root[..., None, :]
