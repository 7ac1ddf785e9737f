"""Public geometry ops: rotated-view weak-perspective projection, VideoMDM's depth-aware reprojection loss and
camera-ray projection. Definitions in `fastmotion.ops.reference`; fused backends: cpp and cuda (compiled ops
torch.ops.fastmotion.*, dispatched on the tensors' device) and triton (fastmotion.kernels, the same entry points),
all behind the same autograd Functions. Checks: `_validate`; backend choice: `_backends`."""
from __future__ import annotations

import math

import torch

from . import _validate as check
from . import reference
from ._autocast import float32_under_autocast
from ._backends import IMPLEMENTED, kernels, needs_autograd, resolve_backend  # noqa: F401  (IMPLEMENTED: bench/geometry.py)


class _ProjectWeakPerspective(torch.autograd.Function):
    """Compiled forward and fused backward (points, rotations, scale, offset in one pass)."""

    @staticmethod
    def forward(ctx, backend, points, rotations, scale, offset):
        ctx.save_for_backward(points, rotations, scale)
        ctx.backend = backend
        return kernels(backend).project_weak_perspective(points, rotations, scale, offset)

    @staticmethod
    def backward(ctx, grad_out):
        points, rotations, scale = ctx.saved_tensors
        grads = kernels(ctx.backend).project_weak_perspective_backward(grad_out.contiguous(), points, rotations, scale)
        return (None,) + tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[1:]))


class _ReprojectionTerms(torch.autograd.Function):
    """Per-joint loss terms [B, T(-1), J] from the compiled kernels; the backward is one fused pass too."""

    @staticmethod
    def forward(ctx, backend, points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth, velocity,
                detach_depth):
        ctx.save_for_backward(points, keypoints, K, R, t, weights, mask)
        ctx.flags = (depth_weighted, min_depth, velocity, detach_depth)
        ctx.backend = backend
        terms, valid_terms = kernels(backend).reprojection_terms(points, keypoints, K, R, t, weights, mask,
                                                                 depth_weighted, min_depth, velocity)
        ctx.mark_non_differentiable(valid_terms)
        return terms, valid_terms

    @staticmethod
    def backward(ctx, grad_terms, _grad_count):
        points, keypoints, K, R, t, weights, mask = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[1]:
            grad = kernels(ctx.backend).reprojection_terms_backward(grad_terms.contiguous(), points, keypoints, K, R,
                                                                    t, weights, mask, *ctx.flags)
        return (None, grad) + (None,) * 10


class _RayProject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend, points, keypoints, K, R, t):
        ctx.save_for_backward(keypoints, K, R)
        ctx.backend = backend
        return kernels(backend).ray_project(points, keypoints, K, R, t)

    @staticmethod
    def backward(ctx, grad_out):
        keypoints, K, R = ctx.saved_tensors
        grad = kernels(ctx.backend).ray_project_backward(grad_out.contiguous(), keypoints, K, R)
        return None, grad if ctx.needs_input_grad[1] else None, None, None, None, None


@float32_under_autocast
def project_weak_perspective(points: torch.Tensor, rotations: torch.Tensor, scale=1.0, offset=None, *,
                             backend: str | None = None) -> torch.Tensor:
    """V rotated orthographic views of each motion: out[b, v, t, j] = scale * (R[b, v] @ p[b, t, j])[:2] + offset.

    points [B, T, J, 3] (metres); rotations [B, V, 3, 3] or shared [V, 3, 3]; scale a number or a tensor
    broadcastable to [B, V]; offset None, or a tensor broadcastable to [B, V, 2] ([2]: one for all). Returns
    [B, V, T, J, 2] in the points' units times scale. Differentiable in points, rotations, scale and offset.
    `sample_view_rotations` draws Free3D's random views.

    Raises (messages name the op and the argument; checks in `fastmotion.ops._validate`):
        TypeError: a non-tensor (scale may also be a number), a dtype other than float32/float64 (float16/bfloat16
            only under autocast) or other than the points'.
        ValueError: a shape that does not fit the layouts (B, V must agree), a tensor on another device than the
            points, an unknown backend or one that cannot take this device.
        NotImplementedError / RuntimeError: a backend this op lacks / that cannot run here (with the reason).
    """
    op = "project_weak_perspective"
    batch_views = check.project_weak_perspective(points, rotations, scale, offset)
    chosen = resolve_backend(op, backend, points)
    if chosen == "torch":
        return reference.project_weak_perspective(points, rotations, scale, offset)
    # Canonical [B, V] layouts for the kernels; autograd sums the gradients back through the expansions.
    rotations = rotations.expand(batch_views[0], -1, -1, -1).contiguous()
    scale = (points.new_full(batch_views, float(scale)) if isinstance(scale, (int, float)) else
             scale.expand(batch_views).contiguous())
    offset = (points.new_zeros(batch_views + (2,)) if offset is None else
              offset.expand(batch_views + (2,)).contiguous())
    if needs_autograd(points, rotations, scale, offset):
        return _ProjectWeakPerspective.apply(chosen, points.contiguous(), rotations, scale, offset)
    return kernels(chosen).project_weak_perspective(points.contiguous(), rotations, scale, offset)


@float32_under_autocast
def reprojection_loss(points, keypoints, K, R, t, *, depth_weighted=True, min_depth=0.1, weights=None, mask=None,
                      velocity=False, detach_depth=True, reduction="mean", backend: str | None = None):
    """VideoMDM's depth-aware 2D reprojection loss (see `fastmotion.ops.reference.reprojection_loss`).

    points [B, T, J, 3] world metres; keypoints [B, T, J, 2] pixels; K, R [B, 3, 3]; t [B, 3] metres (OpenCV
    camera: c = R p + t). Per joint ||z (c_xy / z - K^-1 [k, 1])||^2 (depth_weighted, metres^2) or without the z;
    joints with camera depth z < min_depth (metres) or mask False contribute nothing and get no gradient;
    keypoints may be NaN only where the mask (bool [B, T, J]) is False. weights: broadcastable to [B, T, J].
    velocity=True: the same on frame differences (needs T >= 2).
    reduction "mean" | "sum" | "none" ([B, T, J], or [B, T-1, J] with velocity).

    Raises (messages name the op and the argument; checks in `fastmotion.ops._validate`):
        TypeError: a non-tensor, a dtype other than float32/float64 (float16/bfloat16 only under autocast) or
            other than the points' (mask: bool), a min_depth that is not a number.
        ValueError: a shape that does not fit the layouts (B, T, J must agree), a tensor on another device than
            the points, velocity=True with T < 2, another reduction, a NaN min_depth, NaN/inf in K, R, t or in
            an unmasked keypoint, a degenerate K (fx * fy == 0) (these value checks: on CPU tensors by default,
            on a GPU with `set_checks(values=True)`), an unknown backend or one that cannot take this device.
        NotImplementedError / RuntimeError: a backend this op lacks / that cannot run here (with the reason).
    """
    op = "reprojection_loss"
    check.reprojection_loss(points, keypoints, K, R, t, weights, mask, velocity, min_depth, reduction)
    check.camera_and_keypoint_values(op, keypoints, mask, K, R, t, takes_mask=True)
    chosen = resolve_backend(op, backend, points)
    if chosen == "torch":
        return reference.reprojection_loss(points, keypoints, K, R, t, depth_weighted=depth_weighted,
                                           min_depth=min_depth, weights=weights, mask=mask, velocity=velocity,
                                           detach_depth=detach_depth, reduction=reduction)
    if weights is not None:
        weights = weights.expand(points.shape[:-1]).contiguous()
    args = (points.contiguous(), keypoints.contiguous(), K.contiguous(), R.contiguous(), t.contiguous(), weights,
            None if mask is None else mask.contiguous(), bool(depth_weighted), float(min_depth), bool(velocity))
    # The Function gives points their gradient (the others get none, as always); the bare kernel has no autograd
    # formula, so it runs only when nothing asks for one.
    if needs_autograd(points, keypoints, K, R, t, weights):
        terms, valid_terms = _ReprojectionTerms.apply(chosen, *args, bool(detach_depth))
    else:
        terms, valid_terms = kernels(chosen).reprojection_terms(*args)
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    return terms.sum() / valid_terms.clamp_min(1)  # mean over the valid terms, as the reference


@float32_under_autocast
def ray_project(points, keypoints, K, R, t, *, backend: str | None = None):
    """The point on each keypoint's camera ray closest to the matching 3D point (VideoMDM appendix B).

    points [B, ..., 3] world metres (e.g. [B, T, J, 3]); keypoints [B, ..., 2] pixels, the same middle
    dimensions; K, R [B, 3, 3]; t [B, 3] metres. Ray: centre -R^T t, direction R^T K^-1 [k, 1].
    Returns [B, ..., 3] metres, differentiable in points.

    Raises (messages name the op and the argument; checks in `fastmotion.ops._validate`):
        TypeError: a non-tensor, a dtype other than float32/float64 (float16/bfloat16 only under autocast) or
            other than the points'.
        ValueError: a shape that does not fit the layouts (B and the middle dimensions must agree), a tensor on
            another device than the points, NaN/inf in K, R, t or keypoints, a degenerate K (fx * fy == 0) (these
            value checks: on CPU tensors by default, on a GPU with `set_checks(values=True)`), an unknown backend
            or one that cannot take this device.
        NotImplementedError / RuntimeError: a backend this op lacks / that cannot run here (with the reason).
    """
    op = "ray_project"
    check.ray_project(points, keypoints, K, R, t)
    check.camera_and_keypoint_values(op, keypoints, None, K, R, t, takes_mask=False)
    chosen = resolve_backend(op, backend, points)
    if chosen == "torch":
        return reference.ray_project(points, keypoints, K, R, t)
    n = math.prod(points.shape[1:-1])  # not -1: an empty batch has no size to infer
    args = (points.reshape(points.shape[0], n, 3).contiguous(), keypoints.reshape(points.shape[0], n, 2).contiguous(),
            K.contiguous(), R.contiguous(), t.contiguous())
    out = (_RayProject.apply(chosen, *args) if needs_autograd(points, keypoints, K, R, t) else
           kernels(chosen).ray_project(*args))
    return out.view(points.shape)


def sample_view_rotations(num_views: int, batch: int | None = None, *, max_pitch: float = 0.35,
                          max_roll: float = 0.15, max_yaw: float = math.pi, generator: torch.Generator | None = None,
                          dtype=torch.float32, device=None) -> torch.Tensor:
    """Random viewing rotations for Free3D's rotated views (`fastmotion.ops.reference.sample_view_rotations`): yaw
    uniform in [-max_yaw, max_yaw) about the up axis (y), pitch (about x) and roll (about z) uniform in
    [-max, max], all in radians; seeded by `generator`. Returns [V, 3, 3], or [batch, V, 3, 3] when batch is given.

    Raises TypeError for a num_views or batch that is not an int, an angle that is not a number, a generator that
    is not a torch.Generator, a dtype that is not floating point; ValueError for a negative count or an angle
    bound that is not finite.
    """
    check.sample_view_rotations(num_views, batch, max_pitch, max_roll, max_yaw, generator, dtype)
    return reference.sample_view_rotations(num_views, batch, max_pitch=max_pitch, max_roll=max_roll, max_yaw=max_yaw,
                                           generator=generator, dtype=dtype, device=device)
