"""Triton geometry kernels: rotated-view weak-perspective projection, the depth-aware reprojection loss terms and
camera-ray projection, with fused backward passes. Semantics: fastmotion/ops/reference.py.

Same entry points (arguments, outputs) as the compiled ops torch.ops.fastmotion.<name>, and the same canonical
layouts: the Python layer (fastmotion/ops/geometry.py) makes rotations [B,V,3,3], scale [B,V], offset [B,V,2],
ray points [B,M,3] contiguous. Each entry point checks its tensors' metadata (fastmotion.ops._validate: layout,
one float dtype and device, contiguity), not their values; a NaN or a degenerate camera is the public op's check.

Every kernel is elementwise over (motion b, joint-frame m) with a 1-D grid of B * blocks: each program reads its
motion's camera or rotations once as scalars. Reductions (rotation/scale/offset gradients, the valid-term count)
go through per-program partials summed by torch, so results are deterministic (no atomics).
"""
import torch
import triton
import triton.language as tl

from fastmotion.ops import _validate as check

BLOCK = 256


def _grid(batch, per_motion):
    blocks = triton.cdiv(max(per_motion, 1), BLOCK)
    return blocks, (batch * blocks,)


# ---- weak-perspective projection ----------------------------------------------------------------------------
@triton.jit
def _project_fwd(p_ptr, rot_ptr, scale_ptr, off_ptr, out_ptr, M, V, n_blocks, BLOCK: tl.constexpr):
    b = tl.program_id(0) // n_blocks
    m = (tl.program_id(0) % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = m < M
    src = (b.to(tl.int64) * M + m) * 3
    x = tl.load(p_ptr + src, mask=ok, other=0.0)
    y = tl.load(p_ptr + src + 1, mask=ok, other=0.0)
    z = tl.load(p_ptr + src + 2, mask=ok, other=0.0)
    for v in range(V):  # the points are read once for all V views
        bv = b.to(tl.int64) * V + v
        r = rot_ptr + bv * 9
        s = tl.load(scale_ptr + bv)
        u = s * (tl.load(r) * x + tl.load(r + 1) * y + tl.load(r + 2) * z) + tl.load(off_ptr + bv * 2)
        w = s * (tl.load(r + 3) * x + tl.load(r + 4) * y + tl.load(r + 5) * z) + tl.load(off_ptr + bv * 2 + 1)
        dst = (bv * M + m) * 2
        tl.store(out_ptr + dst, u, mask=ok)
        tl.store(out_ptr + dst + 1, w, mask=ok)


@triton.jit
def _project_bwd(g_ptr, p_ptr, rot_ptr, scale_ptr, gp_ptr, part_ptr, M, V, n_blocks, NEED_PARAMS: tl.constexpr,
                 BLOCK: tl.constexpr):
    blk = tl.program_id(0) % n_blocks
    b = tl.program_id(0) // n_blocks
    m = blk * BLOCK + tl.arange(0, BLOCK)
    ok = m < M
    src = (b.to(tl.int64) * M + m) * 3
    x = tl.load(p_ptr + src, mask=ok, other=0.0)
    y = tl.load(p_ptr + src + 1, mask=ok, other=0.0)
    z = tl.load(p_ptr + src + 2, mask=ok, other=0.0)
    gx = tl.zeros_like(x)
    gy = tl.zeros_like(x)
    gz = tl.zeros_like(x)
    for v in range(V):
        bv = b.to(tl.int64) * V + v
        r = rot_ptr + bv * 9
        s = tl.load(scale_ptr + bv)
        go = (bv * M + m) * 2
        g0 = tl.load(g_ptr + go, mask=ok, other=0.0)
        g1 = tl.load(g_ptr + go + 1, mask=ok, other=0.0)
        gx += s * (tl.load(r) * g0 + tl.load(r + 3) * g1)
        gy += s * (tl.load(r + 1) * g0 + tl.load(r + 4) * g1)
        gz += s * (tl.load(r + 2) * g0 + tl.load(r + 5) * g1)
        if NEED_PARAMS:  # sum_m g (x) p (6 values) and sum_m g (2): rotations, scale and offset follow from them
            part = part_ptr + (bv * n_blocks + blk) * 8
            tl.store(part, tl.sum(g0 * x))
            tl.store(part + 1, tl.sum(g0 * y))
            tl.store(part + 2, tl.sum(g0 * z))
            tl.store(part + 3, tl.sum(g1 * x))
            tl.store(part + 4, tl.sum(g1 * y))
            tl.store(part + 5, tl.sum(g1 * z))
            tl.store(part + 6, tl.sum(g0))
            tl.store(part + 7, tl.sum(g1))
    tl.store(gp_ptr + src, gx, mask=ok)
    tl.store(gp_ptr + src + 1, gy, mask=ok)
    tl.store(gp_ptr + src + 2, gz, mask=ok)


def project_weak_perspective(points, rotations, scale, offset):
    """points [B, T, J, 3], rotations [B, V, 3, 3], scale [B, V], offset [B, V, 2] -> views [B, V, T, J, 2].
    Raises TypeError / ValueError naming the argument for a non-tensor, a wrong dtype, shape, device or stride."""
    check.triton_inputs("project_weak_perspective (triton)", ("points", points, "[B, T, J, 3]"),
                        ("rotations", rotations, "[B, V, 3, 3]"), ("scale", scale, "[B, V]"),
                        ("offset", offset, "[B, V, 2]"))
    B, T, J, _ = points.shape
    V, M = rotations.shape[1], T * J
    out = points.new_empty((B, V, T, J, 2))
    if out.numel():
        n_blocks, grid = _grid(B, M)
        _project_fwd[grid](points, rotations, scale, offset, out, M, V, n_blocks, BLOCK=BLOCK)
    return out


def project_weak_perspective_backward(grad_out, points, rotations, scale, need_params=True):
    """grad_out [B, V, T, J, 2] and the forward's points, rotations, scale -> gradients (points [B, T, J, 3],
    rotations [B, V, 3, 3], scale [B, V], offset [B, V, 2]); need_params=False skips the last three's partial sums
    (then zero). Raises TypeError / ValueError naming the argument, as the forward."""
    check.triton_inputs("project_weak_perspective_backward (triton)", ("points", points, "[B, T, J, 3]"),
                        ("grad_out", grad_out, "[B, V, T, J, 2]"), ("rotations", rotations, "[B, V, 3, 3]"),
                        ("scale", scale, "[B, V]"))
    B, T, J, _ = points.shape
    V, M = rotations.shape[1], T * J
    grad_points = torch.zeros_like(points)
    n_blocks, grid = _grid(B, M)
    partials = points.new_zeros((B, V, n_blocks, 8))
    if points.numel() and V:
        _project_bwd[grid](grad_out, points, rotations, scale, grad_points, partials, M, V, n_blocks,
                           NEED_PARAMS=need_params, BLOCK=BLOCK)
    sums = partials.sum(2)
    outer = sums[..., :6].view(B, V, 2, 3)  # sum_m g_i p_j
    grad_rotations = torch.zeros_like(rotations)
    grad_rotations[:, :, :2] = scale[..., None, None] * outer
    grad_scale = (rotations[:, :, :2] * outer).sum((-1, -2))
    return grad_points, grad_rotations, grad_scale, sums[..., 6:].contiguous()


# ---- depth-aware reprojection loss ----------------------------------------------------------------------------
@triton.jit
def _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx, ok, min_depth_ptr, HAS_MASK: tl.constexpr):
    """Joints idx of motion b in its camera: (c0, c1, z, e0, e1, valid); z is 1 and e is 0 where invalid.
    The camera's scalars are loaded here (the compiler keeps them in registers across calls)."""
    R = R_ptr + b * 9
    K = K_ptr + b * 9
    x = tl.load(p_ptr + idx * 3, mask=ok, other=0.0)
    y = tl.load(p_ptr + idx * 3 + 1, mask=ok, other=0.0)
    z = tl.load(p_ptr + idx * 3 + 2, mask=ok, other=0.0)
    c0 = tl.load(R) * x + tl.load(R + 1) * y + tl.load(R + 2) * z + tl.load(t_ptr + b * 3)
    c1 = tl.load(R + 3) * x + tl.load(R + 4) * y + tl.load(R + 5) * z + tl.load(t_ptr + b * 3 + 1)
    cz = tl.load(R + 6) * x + tl.load(R + 7) * y + tl.load(R + 8) * z + tl.load(t_ptr + b * 3 + 2)
    valid = ok & (cz >= tl.load(min_depth_ptr))
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + idx, mask=ok, other=0) != 0)
    zs = tl.where(valid, cz, 1.0)
    nv = (tl.load(k_ptr + idx * 2 + 1, mask=valid, other=0.0) - tl.load(K + 5)) / tl.load(K + 4)
    nu = (tl.load(k_ptr + idx * 2, mask=valid, other=0.0) - tl.load(K + 2) - tl.load(K + 1) * nv) / tl.load(K)
    e0 = tl.where(valid, c0 / zs - nu, 0.0)
    e1 = tl.where(valid, c1 / zs - nv, 0.0)
    return c0, c1, zs, e0, e1, valid


@triton.jit
def _terms_fwd(p_ptr, k_ptr, K_ptr, R_ptr, t_ptr, w_ptr, mask_ptr, terms_ptr, count_ptr, T, J, n_blocks,
               min_depth_ptr, HAS_W: tl.constexpr, HAS_MASK: tl.constexpr, DEPTH_WEIGHTED: tl.constexpr,
               VELOCITY: tl.constexpr, BLOCK: tl.constexpr):
    b = (tl.program_id(0) // n_blocks).to(tl.int64)
    T_out = T - 1 if VELOCITY else T
    m = (tl.program_id(0) % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = m < T_out * J
    # output (f, j) reads frame f, and with VELOCITY frame f + 1 too (the later frame carries the weight)
    idx = b * T * J + m + (J if VELOCITY else 0)
    c0, c1, z, e0, e1, valid = _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx, ok,
                   min_depth_ptr, HAS_MASK)
    if VELOCITY:
        pc0, pc1, pz, pe0, pe1, pvalid = _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx - J, ok,
                   min_depth_ptr, HAS_MASK)
        e0 = e0 - pe0
        e1 = e1 - pe1
        z = 0.5 * (z + pz)
        valid = valid & pvalid
    term = e0 * e0 + e1 * e1
    if DEPTH_WEIGHTED:
        term = term * z * z
    if HAS_W:
        term = term * tl.load(w_ptr + idx, mask=valid, other=0.0)
    tl.store(terms_ptr + b * T_out * J + m, tl.where(valid, term, 0.0), mask=ok)
    tl.store(count_ptr + tl.program_id(0), tl.sum(valid.to(tl.int32)))


@triton.jit
def _terms_bwd(gt_ptr, p_ptr, k_ptr, K_ptr, R_ptr, t_ptr, w_ptr, mask_ptr, gp_ptr, T, J, n_blocks, min_depth_ptr,
               HAS_W: tl.constexpr, HAS_MASK: tl.constexpr, DEPTH_WEIGHTED: tl.constexpr, VELOCITY: tl.constexpr,
               DEPTH_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    b = (tl.program_id(0) // n_blocks).to(tl.int64)
    m = (tl.program_id(0) % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = m < T * J
    idx = b * T * J + m
    c0, c1, z, e0, e1, valid = _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx, ok,
                   min_depth_ptr, HAS_MASK)
    if not VELOCITY:
        g = tl.load(gt_ptr + idx, mask=valid, other=0.0)
        if HAS_W:
            g = g * tl.load(w_ptr + idx, mask=valid, other=0.0)
        d2 = z * z if DEPTH_WEIGHTED else 1.0
        de0 = 2.0 * g * d2 * e0
        de1 = 2.0 * g * d2 * e1
        dz = 2.0 * g * z * (e0 * e0 + e1 * e1) if DEPTH_GRAD else 0.0 * z
    else:
        f = m // J
        T_out = T - 1
        de0 = tl.zeros_like(z)
        de1 = tl.zeros_like(z)
        dz = tl.zeros_like(z)
        # term f-1 (frames f-1, f): this frame is the later one
        has_prev = ok & (f >= 1)
        _, _, pz, pe0, pe1, pvalid = _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx - J, has_prev,
                   min_depth_ptr, HAS_MASK)
        live = valid & pvalid
        out_idx = b * T_out * J + m - J
        g = tl.load(gt_ptr + out_idx, mask=live, other=0.0)
        if HAS_W:
            g = g * tl.load(w_ptr + idx, mask=live, other=0.0)
        v0 = e0 - pe0
        v1 = e1 - pe1
        depth = 0.5 * (z + pz)
        d2 = depth * depth if DEPTH_WEIGHTED else 1.0
        de0 += 2.0 * g * d2 * v0
        de1 += 2.0 * g * d2 * v1
        if DEPTH_GRAD:
            dz += g * depth * (v0 * v0 + v1 * v1)
        # term f (frames f, f+1): this frame is the earlier one
        has_next = ok & (f + 1 < T)
        _, _, nz, ne0, ne1, nvalid = _frame(p_ptr, k_ptr, mask_ptr, K_ptr, R_ptr, t_ptr, b, idx + J, has_next,
                   min_depth_ptr, HAS_MASK)
        live = valid & nvalid
        g = tl.load(gt_ptr + out_idx + J, mask=live, other=0.0)
        if HAS_W:
            g = g * tl.load(w_ptr + idx + J, mask=live, other=0.0)
        v0 = ne0 - e0
        v1 = ne1 - e1
        depth = 0.5 * (z + nz)
        d2 = depth * depth if DEPTH_WEIGHTED else 1.0
        de0 -= 2.0 * g * d2 * v0
        de1 -= 2.0 * g * d2 * v1
        if DEPTH_GRAD:
            dz += g * depth * (v0 * v0 + v1 * v1)
    # through c = R p + t and e = c_xy / z - n
    dc0 = de0 / z
    dc1 = de1 / z
    dcz = dz - (de0 * c0 + de1 * c1) / (z * z)
    dc0 = tl.where(valid, dc0, 0.0)
    dc1 = tl.where(valid, dc1, 0.0)
    dcz = tl.where(valid, dcz, 0.0)
    R = R_ptr + b * 9
    r0, r1, r2, r3, r4, r5 = tl.load(R), tl.load(R + 1), tl.load(R + 2), tl.load(R + 3), tl.load(R + 4), tl.load(R + 5)
    r6, r7, r8 = tl.load(R + 6), tl.load(R + 7), tl.load(R + 8)
    tl.store(gp_ptr + idx * 3, r0 * dc0 + r3 * dc1 + r6 * dcz, mask=ok)
    tl.store(gp_ptr + idx * 3 + 1, r1 * dc0 + r4 * dc1 + r7 * dcz, mask=ok)
    tl.store(gp_ptr + idx * 3 + 2, r2 * dc0 + r5 * dc1 + r8 * dcz, mask=ok)


def _threshold(min_depth, points):
    """min_depth in the points' dtype, through memory: a Python float argument would arrive as float32."""
    return torch.full((1,), min_depth, dtype=points.dtype, device=points.device)


def _optional(tensor, fallback):
    return (tensor, True) if tensor is not None else (fallback, False)


def _check_terms(op, points, keypoints, K, R, t, weights, mask, min_depth, velocity, *grad):
    check.triton_inputs(op, ("points", points, "[B, T, J, 3]"), ("keypoints", keypoints, "[B, T, J, 2]"),
                        ("K", K, "[B, 3, 3]"), ("R", R, "[B, 3, 3]"), ("t", t, "[B, 3]"),
                        ("weights", weights, "[B, T, J]"), ("mask", mask, "[B, T, J]", (torch.bool,)), *grad,
                        optional=("weights", "mask"))
    check.number(op, "min_depth", min_depth, finite=False)
    if velocity and points.shape[1] < 2:
        raise ValueError(f"{op}: velocity=True needs T >= 2 frames, got T={points.shape[1]}")


def reprojection_terms(points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth, velocity):
    """Per-joint terms of fastmotion.ops.reprojection_loss (reduction="none") and the number of valid terms.

    points [B, T, J, 3] metres, keypoints [B, T, J, 2] pixels, K, R [B, 3, 3], t [B, 3]; weights None or
    [B, T, J]; mask None or bool [B, T, J]; min_depth a number (metres). Returns terms [B, T, J] ([B, T-1, J]
    with velocity) and an int64 0-d count. Raises TypeError / ValueError naming the argument for a non-tensor, a
    wrong dtype, shape, device or stride, a min_depth that is not a number, velocity with T < 2."""
    _check_terms("reprojection_terms (triton)", points, keypoints, K, R, t, weights, mask, min_depth, velocity)
    B, T, J, _ = points.shape
    T_out = T - 1 if velocity else T
    terms = points.new_empty((B, T_out, J))
    if terms.numel() == 0:
        return terms, torch.zeros((), dtype=torch.int64, device=points.device)
    n_blocks, grid = _grid(B, T_out * J)
    counts = torch.empty(grid[0], dtype=torch.int32, device=points.device)
    w, has_w = _optional(weights, points)
    mk, has_mask = _optional(None if mask is None else mask.view(torch.uint8), points)
    _terms_fwd[grid](points, keypoints, K, R, t, w, mk, terms, counts, T, J, n_blocks, _threshold(min_depth, points),
                     HAS_W=has_w, HAS_MASK=has_mask, DEPTH_WEIGHTED=bool(depth_weighted), VELOCITY=bool(velocity),
                     BLOCK=BLOCK)
    return terms, counts.sum(dtype=torch.int64)


def reprojection_terms_backward(grad_terms, points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth,
                                velocity, detach_depth):
    """grad_terms (the terms' shape) and the forward's inputs -> gradient to the points [B, T, J, 3]; the depth
    weight is a constant unless depth_weighted and not detach_depth. Raises as the forward."""
    op = "reprojection_terms_backward (triton)"
    _check_terms(op, points, keypoints, K, R, t, weights, mask, min_depth, velocity,
                 ("grad_terms", grad_terms, "[B, S, J]"))
    if grad_terms.shape[1] != points.shape[1] - bool(velocity):
        raise ValueError(f"{op}: grad_terms must have {'T - 1' if velocity else 'T'} frames for T={points.shape[1]}, "
                         f"got shape {tuple(grad_terms.shape)}")
    B, T, J, _ = points.shape
    grad_points = torch.empty_like(points)
    if points.numel() == 0:
        return grad_points
    n_blocks, grid = _grid(B, T * J)
    w, has_w = _optional(weights, points)
    mk, has_mask = _optional(None if mask is None else mask.view(torch.uint8), points)
    _terms_bwd[grid](grad_terms, points, keypoints, K, R, t, w, mk, grad_points, T, J, n_blocks, _threshold(min_depth, points),
                     HAS_W=has_w, HAS_MASK=has_mask, DEPTH_WEIGHTED=bool(depth_weighted), VELOCITY=bool(velocity),
                     DEPTH_GRAD=bool(depth_weighted and not detach_depth), BLOCK=BLOCK)
    return grad_points


# ---- camera-ray projection ------------------------------------------------------------------------------------
@triton.jit
def _ray_direction(k_ptr, K_ptr, R_ptr, b, idx, ok):
    """d = R^T K^-1 [k, 1] for keypoints idx of motion b (not normalised)."""
    R = R_ptr + b * 9
    K = K_ptr + b * 9
    nv = (tl.load(k_ptr + idx * 2 + 1, mask=ok, other=0.0) - tl.load(K + 5)) / tl.load(K + 4)
    nu = (tl.load(k_ptr + idx * 2, mask=ok, other=0.0) - tl.load(K + 2) - tl.load(K + 1) * nv) / tl.load(K)
    d0 = tl.load(R) * nu + tl.load(R + 3) * nv + tl.load(R + 6)
    d1 = tl.load(R + 1) * nu + tl.load(R + 4) * nv + tl.load(R + 7)
    d2 = tl.load(R + 2) * nu + tl.load(R + 5) * nv + tl.load(R + 8)
    return d0, d1, d2


@triton.jit
def _ray_fwd(p_ptr, k_ptr, K_ptr, R_ptr, t_ptr, out_ptr, M, n_blocks, BLOCK: tl.constexpr):
    b = (tl.program_id(0) // n_blocks).to(tl.int64)
    m = (tl.program_id(0) % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = m < M
    idx = b * M + m
    d0, d1, d2 = _ray_direction(k_ptr, K_ptr, R_ptr, b, idx, ok)
    R = R_ptr + b * 9
    t0, t1, t2 = tl.load(t_ptr + b * 3), tl.load(t_ptr + b * 3 + 1), tl.load(t_ptr + b * 3 + 2)
    o0 = -(tl.load(R) * t0 + tl.load(R + 3) * t1 + tl.load(R + 6) * t2)  # camera centre -R^T t
    o1 = -(tl.load(R + 1) * t0 + tl.load(R + 4) * t1 + tl.load(R + 7) * t2)
    o2 = -(tl.load(R + 2) * t0 + tl.load(R + 5) * t1 + tl.load(R + 8) * t2)
    x = tl.load(p_ptr + idx * 3, mask=ok, other=0.0) - o0
    y = tl.load(p_ptr + idx * 3 + 1, mask=ok, other=0.0) - o1
    z = tl.load(p_ptr + idx * 3 + 2, mask=ok, other=0.0) - o2
    along = (x * d0 + y * d1 + z * d2) / (d0 * d0 + d1 * d1 + d2 * d2)
    tl.store(out_ptr + idx * 3, o0 + along * d0, mask=ok)
    tl.store(out_ptr + idx * 3 + 1, o1 + along * d1, mask=ok)
    tl.store(out_ptr + idx * 3 + 2, o2 + along * d2, mask=ok)


@triton.jit
def _ray_bwd(g_ptr, k_ptr, K_ptr, R_ptr, gp_ptr, M, n_blocks, BLOCK: tl.constexpr):
    b = (tl.program_id(0) // n_blocks).to(tl.int64)
    m = (tl.program_id(0) % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = m < M
    idx = b * M + m
    d0, d1, d2 = _ray_direction(k_ptr, K_ptr, R_ptr, b, idx, ok)
    g0 = tl.load(g_ptr + idx * 3, mask=ok, other=0.0)
    g1 = tl.load(g_ptr + idx * 3 + 1, mask=ok, other=0.0)
    g2 = tl.load(g_ptr + idx * 3 + 2, mask=ok, other=0.0)
    along = (g0 * d0 + g1 * d1 + g2 * d2) / (d0 * d0 + d1 * d1 + d2 * d2)  # the map is the projector d d^T / d.d
    tl.store(gp_ptr + idx * 3, along * d0, mask=ok)
    tl.store(gp_ptr + idx * 3 + 1, along * d1, mask=ok)
    tl.store(gp_ptr + idx * 3 + 2, along * d2, mask=ok)


def ray_project(points, keypoints, K, R, t):
    """points [B, M, 3] metres, keypoints [B, M, 2] pixels, K, R [B, 3, 3], t [B, 3] -> the closest points on
    the rays [B, M, 3]. Raises TypeError / ValueError naming the argument for a non-tensor, a wrong dtype, shape,
    device or stride."""
    check.triton_inputs("ray_project (triton)", ("points", points, "[B, M, 3]"), ("keypoints", keypoints, "[B, M, 2]"),
                        ("K", K, "[B, 3, 3]"), ("R", R, "[B, 3, 3]"), ("t", t, "[B, 3]"))
    out = torch.empty_like(points)
    B, M, _ = points.shape
    if out.numel():
        n_blocks, grid = _grid(B, M)
        _ray_fwd[grid](points, keypoints, K, R, t, out, M, n_blocks, BLOCK=BLOCK)
    return out


def ray_project_backward(grad_out, keypoints, K, R):
    """grad_out [B, M, 3] and the forward's keypoints, K, R -> gradient to the points [B, M, 3]. Raises as the
    forward."""
    check.triton_inputs("ray_project_backward (triton)", ("grad_out", grad_out, "[B, M, 3]"),
                        ("keypoints", keypoints, "[B, M, 2]"), ("K", K, "[B, 3, 3]"), ("R", R, "[B, 3, 3]"))
    grad = torch.empty_like(grad_out)
    B, M, _ = grad_out.shape
    if grad.numel():
        n_blocks, grid = _grid(B, M)
        _ray_bwd[grid](grad_out, keypoints, K, R, grad, M, n_blocks, BLOCK=BLOCK)
    return grad
