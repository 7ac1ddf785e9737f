"""3D lifting metrics on [N, T, J, 3] motions (metres in, millimetres out).

Lifted motions from single-view 2D are known up to scale (the subject's distance), so:
  N-MPJPE: root-relative joints after one least-squares scale per clip;
  MPJPE: root-relative joints as they are, only for lifters whose output is metric (`metric=True`);
  PA-MPJPE: per frame, Procrustes alignment with rotation, translation and scale;
  PA-MPJPE-12: the same over the 12 limb joints a 2D detector gives exactly (shoulders, elbows, wrists, hips,
      knees, ankles), aligned on them alone: comparable between SMPL-22 input and detector input;
  PCK@50/100 mm: share of joints within the threshold after the per-frame Procrustes alignment;
  acceleration error: mean norm of the difference in second differences (per frame, mm/frame^2) of the
      scale-aligned root-relative joints;
  root trajectory error: mean distance of the root, relative to its first-frame position, after the clip's
      scale.
"""
from __future__ import annotations

import torch

from fastmotion.motion.camera import Cameras, project
from fastmotion.motion.skeleton import SMPL22

LIMB_JOINTS = tuple(SMPL22.index(f"{side}_{part}") for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
                    for side in ("left", "right"))  # the 12 joints COCO-17 has exactly


def umeyama(pred: torch.Tensor, true: torch.Tensor):
    """The similarity transform (scale, rotation, translation) that best maps pred onto true in least squares,
    per leading index: pred, true [..., N, 3] -> (scale [...], R [..., 3, 3], shift [..., 3]) with
    true ~ scale * pred @ R^T + shift (Umeyama 1991)."""
    mu_p, mu_t = pred.mean(-2, keepdim=True), true.mean(-2, keepdim=True)
    p, t = pred - mu_p, true - mu_t
    H = p.transpose(-1, -2) @ t
    U, S, Vt = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vt.transpose(-1, -2) @ U.transpose(-1, -2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vt.transpose(-1, -2) @ D @ U.transpose(-1, -2)
    scale = (S * torch.diagonal(D, dim1=-2, dim2=-1)).sum(-1) / (p ** 2).sum((-1, -2)).clamp_min(1e-12)
    shift = mu_t[..., 0, :] - scale[..., None] * (mu_p @ R.transpose(-1, -2))[..., 0, :]
    return scale, R, shift


def procrustes(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """pred aligned to true per leading index ([..., J, 3]) by similarity transform (`umeyama`)."""
    scale, R, shift = umeyama(pred, true)
    return scale[..., None, None] * pred @ R.transpose(-1, -2) + shift[..., None, :]


def _clip_scale(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Least-squares scale per clip [N] mapping root-relative pred to true."""
    return (pred * true).sum((1, 2, 3)) / (pred * pred).sum((1, 2, 3)).clamp_min(1e-12)


def lifting_metrics(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor | None = None,
                    metric: bool = False, limbs=LIMB_JOINTS) -> dict[str, float]:
    """pred, true: [N, T, J, 3] in the same frame (e.g. the camera's), metres; mask [N, T] of real frames;
    metric: pred is in metres too (adds MPJPE). -> {"N-MPJPE", ["MPJPE",] "PA-MPJPE", "PA-MPJPE-12", "PCK@50",
    "PCK@100", "accel", "root"} in millimetres (PCK in %). Definitions: the module docstring (N-MPJPE: Rhodin et al.
    2018; PA-MPJPE and the acceleration error as in HMR and VIBE). limbs: the indices of the 12 limb joints in J
    (default SMPL-22's; joint 0 is the root)."""
    pred, true = pred.double(), true.double()
    if mask is None:
        mask = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    m = mask.to(pred.dtype)
    rel_p, rel_t = pred - pred[:, :, :1], true - true[:, :, :1]
    s = _clip_scale(rel_p * m[..., None, None], rel_t * m[..., None, None])[:, None, None, None]
    mpjpe = ((s * rel_p - rel_t).norm(dim=-1).mean(-1) * m).sum() / m.sum()
    aligned = procrustes(pred, true)
    err = (aligned - true).norm(dim=-1)  # [N, T, J]
    pa = (err.mean(-1) * m).sum() / m.sum()
    limbs = list(limbs)
    pa12 = ((procrustes(pred[:, :, limbs], true[:, :, limbs]) - true[:, :, limbs]).norm(dim=-1).mean(-1) * m).sum() \
        / m.sum()
    pck = {f"PCK@{mm}": float(((err < mm / 1000).to(pred.dtype).mean(-1) * m).sum() / m.sum() * 100)
           for mm in (50, 100)}
    acc_p = s * rel_p[:, 2:] - 2 * s * rel_p[:, 1:-1] + s * rel_p[:, :-2]
    acc_t = rel_t[:, 2:] - 2 * rel_t[:, 1:-1] + rel_t[:, :-2]
    m_acc = m[:, 2:] * m[:, 1:-1] * m[:, :-2]
    accel = ((acc_p - acc_t).norm(dim=-1).mean(-1) * m_acc).sum() / m_acc.sum().clamp_min(1)
    root_p = pred[:, :, 0] - pred[:, :1, 0]
    root_t = true[:, :, 0] - true[:, :1, 0]
    root = ((s[..., 0] * root_p - root_t).norm(dim=-1) * m).sum() / m.sum()
    plain = {"MPJPE": float(((rel_p - rel_t).norm(dim=-1).mean(-1) * m).sum() / m.sum()) * 1000} if metric else {}
    return {"N-MPJPE": float(mpjpe) * 1000, **plain, "PA-MPJPE": float(pa) * 1000,
            "PA-MPJPE-12": float(pa12) * 1000, **pck, "accel": float(accel) * 1000,
            "root": float(root) * 1000}


def _yaw_matrices(theta: torch.Tensor) -> torch.Tensor:
    """Rotations [..., 3, 3] by theta about the world's vertical y axis (x' = cos x + sin z, z' = -sin x + cos z)."""
    c, s, o, i = theta.cos(), theta.sin(), torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack([c, o, s, o, i, o, -s, o, c], dim=-1).unflatten(-1, (3, 3))


def mvlift_metrics(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor | None = None,
                   keypoints: torch.Tensor | None = None, K: torch.Tensor | None = None, R: torch.Tensor | None = None,
                   t: torch.Tensor | None = None) -> dict[str, float]:
    """MVLift's evaluation protocol (Li et al., CVPR 2025, AIST++ / OMOMO tables and ablation) for global motion.

    pred, true: [N, T, J, 3] metres in the same world frame (y up), joint 0 the root (SMPL-22 pelvis);
    mask: [N, T] real frames (bool; masked frames may hold anything, NaN included, and never count);
    keypoints [N, T, J, 2] pixels with the camera K [N, 3, 3], R [N, 3, 3], t [N, 3] (x_cam = R x + t): all four
    or none. Every mean is over the valid frames of all clips (and their joints).

    Returns, in millimetres (J_2D in pixels):
      T_root: each clip's reference frame is its first valid frame. Both motions are re-rooted there (the
          reference frame's root moved to the origin); the truth is then turned about the vertical y axis by the
          yaw that best fits the prediction's reference-frame joints in least squares,
          theta = atan2(sum_j (p_x g_z - p_z g_x), sum_j (p_x g_x + p_z g_z)) (the maximiser of sum_j p . R_y g),
          and T_root is the mean distance between the roots (joint 0). The reference frame counts (it is 0 when
          the reference poses agree).
      MPJPE: root-relative per frame (joint 0 subtracted from each frame), mean joint distance; no rotation, no
          scale (the two motions must share the world frame's heading).
      PA-MPJPE-seq: one similarity (Umeyama: rotation, translation, scale) per clip, fitted over all its valid
          frames and joints at once, then the mean joint distance; unlike `lifting_metrics`' per-frame
          PA-MPJPE it does not forgive a pose-dependent drift of orientation or scale.
      J_2D (only with keypoints, K, R, t): mean distance between pred projected through the camera and the
          keypoints.

    Raises:
        ValueError: shapes other than the above, only some of keypoints/K/R/t, or no valid frame in mask.
    """
    if pred.dim() != 4 or pred.shape[-1] != 3:
        raise ValueError(f"pred must be [N, T, J, 3], got {tuple(pred.shape)}")
    if true.shape != pred.shape:
        raise ValueError(f"true must have pred's shape {tuple(pred.shape)}, got {tuple(true.shape)}")
    N, T, J, _ = pred.shape
    if mask is None:
        mask = torch.ones(N, T, dtype=torch.bool, device=pred.device)
    elif mask.shape != (N, T):
        raise ValueError(f"mask must be [N, T] = {(N, T)}, got {tuple(mask.shape)}")
    mask = mask.to(device=pred.device, dtype=torch.bool)
    if not mask.any():
        raise ValueError("mask has no valid frame")
    pred, true = pred.double(), true.double()

    clips = torch.arange(N, device=pred.device)
    first = mask.long().argmax(1)  # first valid frame of each clip (argmax returns the first maximum)
    p = pred - pred[clips, first, 0][:, None, None]
    g = true - true[clips, first, 0][:, None, None]
    p0, g0 = p[clips, first], g[clips, first]  # [N, J, 3], root-relative reference poses
    theta = torch.atan2((p0[..., 0] * g0[..., 2] - p0[..., 2] * g0[..., 0]).sum(-1),
                        (p0[..., 0] * g0[..., 0] + p0[..., 2] * g0[..., 2]).sum(-1))
    g = g @ _yaw_matrices(theta)[:, None].transpose(-1, -2)
    t_root = (p[..., 0, :] - g[..., 0, :]).norm(dim=-1)[mask].mean()

    rel_p, rel_t = pred - pred[:, :, :1], true - true[:, :, :1]
    mpjpe = (rel_p - rel_t).norm(dim=-1).mean(-1)[mask].mean()

    # one similarity per clip over its valid frames only: a loop, so that masked frames never enter the means
    per_frame = []
    for n in range(N):
        if mask[n].any():
            pn, tn = pred[n, mask[n]].reshape(1, -1, 3), true[n, mask[n]].reshape(1, -1, 3)
            per_frame.append((procrustes(pn, tn) - tn).norm(dim=-1).reshape(-1, J).mean(-1))
    pa_seq = torch.cat(per_frame).mean()

    out = {"T_root": float(t_root) * 1000, "MPJPE": float(mpjpe) * 1000, "PA-MPJPE-seq": float(pa_seq) * 1000}
    camera = {"keypoints": keypoints, "K": K, "R": R, "t": t}
    missing = [k for k, v in camera.items() if v is None]
    if len(missing) not in (0, 4):
        raise ValueError(f"J_2D needs keypoints, K, R and t together; missing {', '.join(missing)}")
    if not missing:
        for name, value, shape in (("keypoints", keypoints, (N, T, J, 2)), ("K", K, (N, 3, 3)),
                                   ("R", R, (N, 3, 3)), ("t", t, (N, 3))):
            if value.shape != shape:
                raise ValueError(f"{name} must be {shape}, got {tuple(value.shape)}")
        uv = project(pred, Cameras(K.double(), R.double(), t.double()))
        out["J_2D"] = float((uv - keypoints.double()).norm(dim=-1).mean(-1)[mask].mean())
    return out
