"""Pure-PyTorch definitions of fastmotion's fused ops.

These functions are the specification: readable, autograd-differentiable, and used by the tests as the
ground truth for every compiled backend (cpp, triton, cuda). Speed is not a goal here.
"""
from __future__ import annotations

import torch

_U32 = 0xFFFFFFFF


def _mul_u32(h: torch.Tensor, c: int) -> torch.Tensor:
    """(h * c) mod 2**32 for int64 tensors holding uint32 values, without int64 overflow."""
    lo, hi = h & 0xFFFF, h >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _U32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijective mix of a uint32."""
    h = h ^ (h >> 16)
    h = _mul_u32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul_u32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def gumbel_level_key(seed: int, level: int) -> int:
    """The uint32 stream key of one (seed, level): fmix32(seed + (level + 1) * 0x9E3779B9)."""
    return int(_fmix32(torch.tensor((seed + (level + 1) * 0x9E3779B9) & _U32, dtype=torch.int64)))


def gumbel_noise(seed: int, level: int, rows: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Counter-based Gumbel(0, 1) noise, float32, shape [len(rows), len(codes)].

    The noise for (seed, level, row n, code k) is a pure function of those four integers, so every backend
    (C++, CUDA, Triton) draws exactly the same numbers without storing an N x K noise matrix:
        h = fmix32(fmix32(fmix32(seed + (level + 1) * 0x9E3779B9) + n) + k)
        u = ((h >> 8) + 0.5) / 2**24          (uniform in (0, 1), exact in float32)
        g = -log(-log(u))
    """
    h = _fmix32((gumbel_level_key(seed, level) + (rows.to(torch.int64) & _U32)) & _U32)
    h = _fmix32((h[:, None] + codes.to(torch.int64)[None, :]) & _U32)
    u = ((h >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)
    return -torch.log(-torch.log(u))


def rvq_search(x: torch.Tensor, codebooks: torch.Tensor, temperature: float = 0.0, seed: int = 0):
    """Greedy residual vector quantisation.

    x: [N, D]; codebooks: [L, K, D] (same dtype and device).
    Level l picks, for every row, the code of codebook l nearest in squared L2 distance to the residual
    that levels < l left:
        r_0 = x,   c_l = argmin_k ||r_l - C_l[k]||^2,   r_{l+1} = r_l - C_l[c_l]
    Ties go to the lowest index. With temperature > 0 the choice is sampled instead (Gumbel-max):
        c_l = argmax_k ( -||r_l - C_l[k]||^2 / temperature + g(seed, l, n, k) )
    Returns codes [N, L] int64, quantized = sum_l C_l[c_l]  [N, D], residual = x - quantized  [N, D].
    Differentiable in codebooks (through quantized and residual) and in x (through residual).
    """
    num_levels, num_codes, _ = codebooks.shape
    rows = torch.arange(x.shape[0], device=x.device)
    code_ids = torch.arange(num_codes, device=x.device)
    residual = x
    quantized = torch.zeros_like(x)
    codes = []
    for level in range(num_levels):
        book = codebooks[level]
        dist = (residual * residual).sum(-1, keepdim=True) - 2 * residual @ book.T + (book * book).sum(-1)
        if temperature > 0:
            dist = dist - temperature * gumbel_noise(seed, level, rows, code_ids).to(dist.dtype)
        idx = dist.argmin(dim=-1)
        chosen = book[idx]
        quantized = quantized + chosen
        residual = residual - chosen
        codes.append(idx)
    codes = torch.stack(codes, dim=1) if codes else torch.empty(x.shape[0], 0, dtype=torch.int64, device=x.device)
    return codes, quantized, residual


# ---- geometry: projections and reprojection losses ---------------------------------------------------------


def project_weak_perspective(points: torch.Tensor, rotations: torch.Tensor, scale=1.0, offset=None) -> torch.Tensor:
    """Many rotated orthographic views of the same motions (Free3D's Phi).

    points [B, T, J, 3]; rotations [B, V, 3, 3] (per motion) or [V, 3, 3] (shared);
    scale: a number or a tensor broadcastable to [B, V]; offset: None, [2] or [B, V, 2].
    view v of motion b:  out[b, v, t, j] = scale[b, v] * (R[b, v] @ p[b, t, j])[:2] + offset[b, v]
    Returns [B, V, T, J, 2].
    """
    if rotations.dim() == 3:
        rotations = rotations.unsqueeze(0).expand(points.shape[0], -1, -1, -1)
    # Only the first two rows of each rotation matter: the dropped third coordinate is the depth.
    views = torch.einsum("bvij,btkj->bvtki", rotations[:, :, :2, :], points)
    scale = torch.as_tensor(scale, dtype=points.dtype, device=points.device)
    views = views * scale.expand(rotations.shape[:2]).reshape(*rotations.shape[:2], 1, 1, 1)
    if offset is not None:
        offset = torch.as_tensor(offset, dtype=points.dtype, device=points.device)
        views = views + offset.expand(*rotations.shape[:2], 2).reshape(*rotations.shape[:2], 1, 1, 2)
    return views


def normalized_keypoints(keypoints: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixel keypoints [B, ..., 2] -> normalised image coordinates K^-1 [k, 1] (first two entries) [B, ..., 2]."""
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    skew, cx, cy = K[:, 0, 1], K[:, 0, 2], K[:, 1, 2]
    shape = (-1,) + (1,) * (keypoints.dim() - 2)
    v = (keypoints[..., 1] - cy.view(shape)) / fy.view(shape)
    u = (keypoints[..., 0] - cx.view(shape) - skew.view(shape) * v) / fx.view(shape)
    return torch.stack([u, v], dim=-1)


def camera_frame(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """World points [B, ..., 3] -> camera frame R p + t (OpenCV: x right, y down, z forward)."""
    shape = (R.shape[0],) + (1,) * (points.dim() - 2)
    return torch.einsum("bij,b...j->b...i", R, points) + t.view(*shape, 3)


def reprojection_loss(points, keypoints, K, R, t, *, depth_weighted=True, min_depth=0.1, weights=None, mask=None,
                      velocity=False, detach_depth=True, reduction="mean"):
    """VideoMDM's depth-aware 2D reprojection loss.

    points [B, T, J, 3] world; keypoints [B, T, J, 2] pixels; K [B, 3, 3]; R [B, 3, 3]; t [B, 3].
    c = R p + t, z = c_z, residual e = c_xy / z - n with n = K^-1 [k, 1] (normalised image coordinates).
    Per joint: ||z e||^2 when depth_weighted (2D loss = 3D MSE in expectation, VideoMDM app. A; z is detached
    unless detach_depth=False), else ||e||^2. Joints with z < min_depth, or mask == False, contribute nothing.
    weights (broadcastable to [B, T, J]) scale each joint's term.
    velocity=True: the same on frame differences, e_t = (c_xy/z)_{t+1} - (c_xy/z)_t - (n_{t+1} - n_t), depth
    weight the mean of the two frames' z, valid where both frames are; needs T >= 2.
    reduction: "mean" (over valid joint terms, weighted sum / number of valid terms), "sum", or "none"
    (per-joint terms [B, T(-1), J], zero where invalid).
    """
    c = camera_frame(points, R, t)
    z = c[..., 2]
    valid = z >= min_depth
    if mask is not None:
        valid = valid & mask
    # Invalid joints: a safe depth so that no inf/NaN reaches the gradient (their terms are zeroed anyway).
    z_safe = torch.where(valid, z, torch.ones_like(z))
    proj = c[..., :2] / z_safe.unsqueeze(-1)
    n = normalized_keypoints(torch.where(valid.unsqueeze(-1), keypoints, torch.zeros_like(keypoints)), K)
    e = proj - n
    depth = z_safe.detach() if detach_depth else z_safe
    if velocity:
        e = e[:, 1:] - e[:, :-1]
        depth = 0.5 * (depth[:, 1:] + depth[:, :-1])
        valid = valid[:, 1:] & valid[:, :-1]
    per_joint = (e * e).sum(-1)
    if depth_weighted:
        per_joint = per_joint * depth * depth
    if weights is not None:
        w = torch.as_tensor(weights, dtype=per_joint.dtype, device=per_joint.device)
        if velocity:
            w = w.expand(valid.shape[0], valid.shape[1] + 1, valid.shape[2])[:, 1:]
        per_joint = per_joint * w
    per_joint = torch.where(valid, per_joint, torch.zeros_like(per_joint))
    if reduction == "none":
        return per_joint
    if reduction == "sum":
        return per_joint.sum()
    return per_joint.sum() / valid.sum().clamp_min(1)


def ray_project(points, keypoints, K, R, t):
    """Closest point to each 3D point on the camera ray through its keypoint (VideoMDM appendix B).

    points [B, ..., J, 3] world; keypoints [B, ..., J, 2] pixels; K, R [B, 3, 3]; t [B, 3].
    Camera centre o = -R^T t; ray direction d = R^T K^-1 [k, 1]; result o + ((p - o) . d / (d . d)) d.
    Differentiable in points. Returns [B, ..., J, 3].
    """
    n = normalized_keypoints(keypoints, K)
    ray_cam = torch.cat([n, torch.ones_like(n[..., :1])], dim=-1)
    direction = torch.einsum("bji,b...j->b...i", R, ray_cam)  # R^T applied
    centre = -torch.einsum("bji,bj->bi", R, t)
    shape = (R.shape[0],) + (1,) * (points.dim() - 2)
    centre = centre.view(*shape, 3)
    along = ((points - centre) * direction).sum(-1, keepdim=True) / (direction * direction).sum(-1, keepdim=True)
    return centre + along * direction


def sample_view_rotations(num_views: int, batch: int | None = None, *, max_pitch: float = 0.35,
                          max_roll: float = 0.15, max_yaw: float = torch.pi, generator: torch.Generator | None = None,
                          dtype=torch.float32, device=None) -> torch.Tensor:
    """Random viewing rotations for Free3D's rotated views: yaw uniform in [-max_yaw, max_yaw) about the up
    axis (y; default the full circle), pitch (about x) and roll (about z) uniform in [-max, max] radians.
    Seeded by `generator`.
    Returns [V, 3, 3], or [batch, V, 3, 3] when batch is given."""
    shape = (num_views,) if batch is None else (batch, num_views)
    u = torch.rand(*shape, 3, generator=generator, dtype=torch.float64)
    yaw = (u[..., 0] * 2 - 1) * max_yaw
    pitch = (u[..., 1] * 2 - 1) * max_pitch
    roll = (u[..., 2] * 2 - 1) * max_roll

    def rot(axis, angle):
        c, s = torch.cos(angle), torch.sin(angle)
        o, z = torch.ones_like(angle), torch.zeros_like(angle)
        rows = {"x": [[o, z, z], [z, c, -s], [z, s, c]], "y": [[c, z, s], [z, o, z], [-s, z, c]],
                "z": [[c, -s, z], [s, c, z], [z, z, o]]}[axis]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rotations = rot("z", roll) @ rot("x", pitch) @ rot("y", yaw)
    return rotations.to(dtype=dtype, device=device)


def sampson_error(points_a, points_b, F):
    """The Sampson error (Hartley & Zisserman section 11.4.3, eq. 11.9) of matched points [..., 2] under F
    [..., 3, 3] (view a's points -> lines in view b), broadcast: (x_b^T F x_a)^2 / ((F x_a)_1^2 + (F x_a)_2^2 +
    (F^T x_b)_1^2 + (F^T x_b)_2^2), the norm clamped to the dtype's smallest normal number."""
    xa = torch.cat([points_a, torch.ones_like(points_a[..., :1])], -1)
    xb = torch.cat([points_b, torch.ones_like(points_b[..., :1])], -1)
    line_b = (F @ xa[..., None])[..., 0]  # in view b
    line_a = (F.transpose(-1, -2) @ xb[..., None])[..., 0]  # in view a
    algebraic = (xb * line_b).sum(-1)
    norm = line_b[..., 0] ** 2 + line_b[..., 1] ** 2 + line_a[..., 0] ** 2 + line_a[..., 1] ** 2
    return algebraic ** 2 / norm.clamp_min(torch.finfo(norm.dtype).tiny)


def sampson_consistency(views, F, pairs, mask=None, reduction="mean"):
    """MVLift stage 2's multi-view epipolar consistency: the Sampson error (Hartley & Zisserman section 11.4.3,
    eq. 11.9; `sampson_error` above) of the matched joints of each view pair.

    views [V, B, T, J, 2] (image units); F [P, B, 3, 3] or [P, 3, 3], F[p] mapping view pairs[p][0]'s points to
    lines in view pairs[p][1] (a constant: no gradient); pairs: P (i, j) view indices; mask None or bool [B, T] /
    [B, T, J] (False: the joint is ignored, its views may hold anything, NaN included). Returns terms [P, B, T, J]
    (reduction "none", zero where masked), their "sum", or the "mean" over the unmasked joints and the pairs (the
    mean of each pair's masked mean). Differentiable in views.
    """
    _, B, T, J, _ = views.shape
    valid = views.new_ones((B, T, J), dtype=torch.bool) if mask is None else mask.expand(B, T, J) if mask.dim() == 3 \
        else mask[..., None].expand(B, T, J)
    safe = torch.where(valid[..., None], views, torch.zeros_like(views))  # no NaN reaches a value or a gradient
    F = (F if F.dim() == 4 else F[:, None]).detach().expand(len(pairs), B, 3, 3)[:, :, None, None]
    terms = torch.stack([sampson_error(safe[i], safe[j], F[p]) for p, (i, j) in enumerate(pairs)]) if pairs else \
        safe[:0, ..., 0]  # P = 0: empty, still connected to the views for autograd
    terms = torch.where(valid, terms, torch.zeros_like(terms))
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    return terms.sum() / (valid.sum() * len(pairs)).clamp_min(1)
