"""Public geometry ops: rotated-view weak-perspective projection, VideoMDM's depth-aware reprojection loss and
camera-ray projection. Definitions in `fastmotion.ops.reference`; fused backends: cpp and cuda (compiled ops
torch.ops.fastmotion.*, dispatched on the tensors' device) and triton (fastmotion.kernels.geometry, the same entry
points), all behind the same autograd Functions."""
from __future__ import annotations

import torch

from . import reference
from ._autocast import float32_under_autocast
from ._backends import resolve_backend

_FLOATS = (torch.float32, torch.float64)
IMPLEMENTED = {name: ("torch", "cpp", "triton", "cuda")
               for name in ("project_weak_perspective", "reprojection_loss", "ray_project")}


def _kernels(backend: str):
    """The module whose functions implement the fused ops for `backend` (same names and signatures)."""
    if backend == "triton":
        from fastmotion.kernels import geometry

        return geometry
    return torch.ops.fastmotion


class _ProjectWeakPerspective(torch.autograd.Function):
    """Compiled forward and fused backward (points, rotations, scale, offset in one pass)."""

    @staticmethod
    def forward(ctx, backend, points, rotations, scale, offset):
        ctx.save_for_backward(points, rotations, scale)
        ctx.backend = backend
        return _kernels(backend).project_weak_perspective(points, rotations, scale, offset)

    @staticmethod
    def backward(ctx, grad_out):
        points, rotations, scale = ctx.saved_tensors
        grads = _kernels(ctx.backend).project_weak_perspective_backward(grad_out.contiguous(), points, rotations, scale)
        return (None,) + tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[1:]))


class _ReprojectionTerms(torch.autograd.Function):
    """Per-joint loss terms [B, T(-1), J] from the compiled kernels; the backward is one fused pass too."""

    @staticmethod
    def forward(ctx, backend, points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth, velocity,
                detach_depth):
        ctx.save_for_backward(points, keypoints, K, R, t, weights, mask)
        ctx.flags = (depth_weighted, min_depth, velocity, detach_depth)
        ctx.backend = backend
        terms, valid_terms = _kernels(backend).reprojection_terms(points, keypoints, K, R, t, weights, mask, depth_weighted,
                                                        min_depth, velocity)
        ctx.mark_non_differentiable(valid_terms)
        return terms, valid_terms

    @staticmethod
    def backward(ctx, grad_terms, _grad_count):
        points, keypoints, K, R, t, weights, mask = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[1]:
            grad = _kernels(ctx.backend).reprojection_terms_backward(grad_terms.contiguous(), points, keypoints, K, R, t,
                                                           weights, mask, *ctx.flags)
        return (None, grad) + (None,) * 10


class _RayProject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend, points, keypoints, K, R, t):
        ctx.save_for_backward(keypoints, K, R)
        ctx.backend = backend
        return _kernels(backend).ray_project(points, keypoints, K, R, t)

    @staticmethod
    def backward(ctx, grad_out):
        keypoints, K, R = ctx.saved_tensors
        grad = _kernels(ctx.backend).ray_project_backward(grad_out.contiguous(), keypoints, K, R)
        return None, grad if ctx.needs_input_grad[1] else None, None, None, None, None


def _tensor(op, name, value, shape_text, rank=None, last=None, dtype=None, device=None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor {shape_text}, got {type(value).__name__}")
    if dtype is None and value.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {value.dtype}, expected {dtype} like the points")
    if device is not None and value.device != device:
        raise ValueError(f"{op}: {name} is on {value.device} but the points are on {device}")
    if (rank is not None and value.dim() not in (rank if isinstance(rank, tuple) else (rank,))) or \
            (last is not None and value.shape[-len(last):] != last):
        raise ValueError(f"{op}: {name} must be {shape_text}, got shape {tuple(value.shape)}")


def _check_camera(op, K, R, t, batch, dtype, device):
    _tensor(op, "K", K, "[B, 3, 3]", 3, (3, 3), dtype, device)
    _tensor(op, "R", R, "[B, 3, 3]", 3, (3, 3), dtype, device)
    _tensor(op, "t", t, "[B, 3]", 2, (3,), dtype, device)
    for name, value in (("K", K), ("R", R), ("t", t)):
        if value.shape[0] != batch:
            raise ValueError(f"{op}: {name} has batch size {value.shape[0]}, the points {batch}")
    if torch.compiler.is_compiling():  # value checks would break the graph; eager calls make them
        return
    focal = K[:, 0, 0] * K[:, 1, 1]
    if bool(torch.isfinite(K.sum() + R.sum() + t.sum()) & (focal != 0).all()):  # one host sync when all is well
        return
    for name, value in (("K", K), ("R", R), ("t", t)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{op}: {name} contains NaN or inf")
    if bool((focal == 0).any()):
        raise ValueError(f"{op}: K is degenerate (fx * fy == 0) for batch entries "
                         f"{torch.nonzero(focal == 0).flatten().tolist()[:8]}")


def _check_keypoints(op, keypoints, points, mask):
    _tensor(op, "keypoints", keypoints, "[B, T, J, 2] pixels", last=(2,), dtype=points.dtype, device=points.device)
    if keypoints.shape[:-1] != points.shape[:-1]:
        raise ValueError(f"{op}: keypoints {tuple(keypoints.shape)} must match points {tuple(points.shape)} "
                         "in every dimension but the last")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != keypoints.shape[:-1]:
            raise ValueError(f"{op}: mask must be a bool tensor of shape {tuple(keypoints.shape[:-1])}, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        if mask.device != points.device:
            raise ValueError(f"{op}: mask is on {mask.device} but the points are on {points.device}")
    if torch.compiler.is_compiling() or bool(torch.isfinite(keypoints.sum())):  # a finite sum: all finite
        return
    bad = ~torch.isfinite(keypoints).all(-1)
    if mask is not None:
        bad = bad & mask
    if bool(bad.any()):
        raise ValueError(f"{op}: keypoints contain NaN or inf at {int(bad.sum())} joint(s) that the mask does not "
                         "mark as missing (pass mask=False there)")


@float32_under_autocast
def project_weak_perspective(points: torch.Tensor, rotations: torch.Tensor, scale=1.0, offset=None, *,
                             backend: str | None = None) -> torch.Tensor:
    """V rotated orthographic views of each motion: out[b, v, t, j] = scale * (R[b, v] @ p[b, t, j])[:2] + offset.

    points [B, T, J, 3] (metres); rotations [B, V, 3, 3] or shared [V, 3, 3]; scale a number or a tensor
    broadcastable to [B, V]; offset None, [2] or [B, V, 2]. Returns [B, V, T, J, 2]. Differentiable in points,
    rotations, scale and offset. `sample_view_rotations` draws Free3D's random views.
    """
    op = "project_weak_perspective"
    _tensor(op, "points", points, "[B, T, J, 3]", 4, (3,))
    _tensor(op, "rotations", rotations, "[B, V, 3, 3] or [V, 3, 3]", (3, 4), (3, 3), points.dtype, points.device)
    if rotations.dim() == 4 and rotations.shape[0] != points.shape[0]:
        raise ValueError(f"{op}: rotations have batch size {rotations.shape[0]}, the points {points.shape[0]}")
    batch_views = (points.shape[0], rotations.shape[-3])
    for name, value, tail in (("scale", scale, ()), ("offset", offset, (2,))):
        if value is None or isinstance(value, (int, float)):
            continue
        _tensor(op, name, value, "broadcastable to [B, V]" + (", 2]" if tail else ""), dtype=points.dtype,
                device=points.device)
        try:
            torch.broadcast_shapes(value.shape, batch_views + tail)
        except RuntimeError:
            raise ValueError(f"{op}: {name} of shape {tuple(value.shape)} does not broadcast to "
                             f"{batch_views + tail}") from None
    if isinstance(offset, (int, float)):
        raise TypeError(f"{op}: offset must be None or a tensor of shape [2] or [B, V, 2], got a number")
    chosen = resolve_backend(backend, points, op, IMPLEMENTED[op])
    if chosen == "torch":
        return reference.project_weak_perspective(points, rotations, scale, offset)
    # Canonical [B, V] layouts for the kernels; autograd sums the gradients back through the expansions.
    rotations = rotations.expand(batch_views[0], -1, -1, -1).contiguous()
    scale = torch.as_tensor(scale, dtype=points.dtype, device=points.device).expand(batch_views).contiguous()
    offset = (points.new_zeros(batch_views + (2,)) if offset is None else
              offset.expand(batch_views + (2,)).contiguous())
    return _ProjectWeakPerspective.apply(chosen, points.contiguous(), rotations, scale, offset)


@float32_under_autocast
def reprojection_loss(points, keypoints, K, R, t, *, depth_weighted=True, min_depth=0.1, weights=None, mask=None,
                      velocity=False, detach_depth=True, reduction="mean", backend: str | None = None):
    """VideoMDM's depth-aware 2D reprojection loss (see `fastmotion.ops.reference.reprojection_loss`).

    points [B, T, J, 3] world metres; keypoints [B, T, J, 2] pixels; K, R [B, 3, 3]; t [B, 3] (OpenCV camera).
    Per joint ||z (c_xy / z - K^-1 [k, 1])||^2 (depth_weighted) or without the z; joints with camera depth
    z < min_depth or mask False contribute nothing and get no gradient; keypoints may be NaN only where the
    mask is False. velocity=True: the same on frame differences (needs T >= 2).
    reduction "mean" | "sum" | "none" ([B, T, J], or [B, T-1, J] with velocity).
    """
    op = "reprojection_loss"
    _tensor(op, "points", points, "[B, T, J, 3]", 4, (3,))
    _check_keypoints(op, keypoints, points, mask)
    _check_camera(op, K, R, t, points.shape[0], points.dtype, points.device)
    if velocity and points.shape[1] < 2:
        raise ValueError(f"{op}: velocity=True needs T >= 2 frames, got T={points.shape[1]}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not isinstance(min_depth, (int, float)) or min_depth != min_depth:
        raise ValueError(f"{op}: min_depth must be a number, got {min_depth!r}")
    if weights is not None:
        _tensor(op, "weights", weights, "broadcastable to [B, T, J]", dtype=points.dtype, device=points.device)
        try:
            torch.broadcast_shapes(weights.shape, points.shape[:-1])
        except RuntimeError:
            raise ValueError(f"{op}: weights of shape {tuple(weights.shape)} do not broadcast to "
                             f"{tuple(points.shape[:-1])}") from None
    chosen = resolve_backend(backend, points, op, IMPLEMENTED[op])
    if chosen == "torch":
        return reference.reprojection_loss(points, keypoints, K, R, t, depth_weighted=depth_weighted,
                                           min_depth=min_depth, weights=weights, mask=mask, velocity=velocity,
                                           detach_depth=detach_depth, reduction=reduction)
    if weights is not None:
        weights = weights.expand(points.shape[:-1]).contiguous()
    terms, valid_terms = _ReprojectionTerms.apply(
        chosen, points.contiguous(), keypoints.contiguous(), K.contiguous(), R.contiguous(), t.contiguous(),
        weights, None if mask is None else mask.contiguous(), bool(depth_weighted), float(min_depth), bool(velocity),
        bool(detach_depth))
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    return terms.sum() / valid_terms.clamp_min(1)  # mean over the valid terms, as the reference


@float32_under_autocast
def ray_project(points, keypoints, K, R, t, *, backend: str | None = None):
    """The point on each keypoint's camera ray closest to the matching 3D point (VideoMDM appendix B).

    points [B, ..., J, 3] world; keypoints [B, ..., J, 2] pixels; K, R [B, 3, 3]; t [B, 3].
    Ray: centre -R^T t, direction R^T K^-1 [k, 1]. Returns [B, ..., J, 3], differentiable in points.
    """
    op = "ray_project"
    _tensor(op, "points", points, "[B, ..., J, 3]", last=(3,))
    if points.dim() < 2:
        raise ValueError(f"{op}: points must be [B, ..., J, 3], got shape {tuple(points.shape)}")
    _check_keypoints(op, keypoints, points, None)
    _check_camera(op, K, R, t, points.shape[0], points.dtype, points.device)
    chosen = resolve_backend(backend, points, op, IMPLEMENTED[op])
    if chosen == "torch":
        return reference.ray_project(points, keypoints, K, R, t)
    flat = points.reshape(points.shape[0], -1, 3).contiguous()
    out = _RayProject.apply(chosen, flat, keypoints.reshape(points.shape[0], -1, 2).contiguous(), K.contiguous(),
                            R.contiguous(), t.contiguous())
    return out.view(points.shape)


sample_view_rotations = reference.sample_view_rotations
