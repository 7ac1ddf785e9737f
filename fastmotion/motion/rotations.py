"""Quaternions (w, x, y, z) and rotation matrices in torch, batched over leading dimensions, differentiable."""
from __future__ import annotations

import torch


def qmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b (apply b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def qinv(q: torch.Tensor) -> torch.Tensor:
    """Inverse of a unit quaternion (its conjugate)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v [..., 3] by unit quaternions q [..., 4] (broadcast)."""
    w, u = q[..., :1], q[..., 1:]
    uv = torch.cross(u.expand_as(v), v, dim=-1)
    return v + 2 * (w * uv + torch.cross(u.expand_as(v), uv, dim=-1))


def qbetween(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The shortest-arc unit quaternion rotating direction a onto direction b ([..., 3] each)."""
    w = torch.sqrt((a * a).sum(-1) * (b * b).sum(-1)) + (a * b).sum(-1)
    q = torch.cat([w.unsqueeze(-1), torch.cross(a, b, dim=-1)], dim=-1)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [..., 4] -> rotation matrices [..., 3, 3]."""
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def matrix_to_cont6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> the continuous 6D representation: the first two columns [..., 6]."""
    return torch.cat([m[..., 0], m[..., 1]], dim=-1)


def axis_angle_y(angle: torch.Tensor) -> torch.Tensor:
    """Quaternions of rotations by `angle` radians about the up axis y."""
    half = 0.5 * angle
    zero = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zero, torch.sin(half), zero], dim=-1)
