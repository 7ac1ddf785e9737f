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

from fastmotion.motion.skeleton import SMPL22

LIMB_JOINTS = tuple(SMPL22.index(f"{side}_{part}") for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
                    for side in ("left", "right"))  # the 12 joints COCO-17 has exactly


def procrustes(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """pred aligned to true per leading index ([..., J, 3]) by similarity transform (Umeyama)."""
    mu_p, mu_t = pred.mean(-2, keepdim=True), true.mean(-2, keepdim=True)
    p, t = pred - mu_p, true - mu_t
    H = p.transpose(-1, -2) @ t
    U, S, Vt = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vt.transpose(-1, -2) @ U.transpose(-1, -2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vt.transpose(-1, -2) @ D @ U.transpose(-1, -2)
    scale = (S * torch.diagonal(D, dim1=-2, dim2=-1)).sum(-1) / (p ** 2).sum((-1, -2)).clamp_min(1e-12)
    return scale[..., None, None] * p @ R.transpose(-1, -2) + mu_t


def _clip_scale(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Least-squares scale per clip [N] mapping root-relative pred to true."""
    return (pred * true).sum((1, 2, 3)) / (pred * pred).sum((1, 2, 3)).clamp_min(1e-12)


def lifting_metrics(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor | None = None,
                    metric: bool = False) -> dict[str, float]:
    """pred, true: [N, T, J, 3] in the same frame (e.g. the camera's), metres; mask [N, T] of real frames;
    metric: pred is in metres too (adds MPJPE). -> {"N-MPJPE", ["MPJPE",] "PA-MPJPE", "PA-MPJPE-12", "PCK@50",
    "PCK@100", "accel", "root"} in millimetres (PCK in %). Definitions: the module docstring (N-MPJPE: Rhodin et al. 2018;
    PA-MPJPE and the acceleration error as in HMR and VIBE)."""
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
    limbs = list(LIMB_JOINTS)
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
