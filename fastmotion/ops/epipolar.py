"""Public epipolar op: MVLift stage 2's multi-view consistency, the Sampson error of each view pair's matched
joints. Definition in `fastmotion.ops.reference`; fused backends: cpp and cuda (torch.ops.fastmotion.sampson_terms,
dispatched on the tensors' device) and triton (fastmotion.kernels), behind one autograd Function."""
from __future__ import annotations

import torch

from . import _validate as check
from . import reference
from ._autocast import float32_under_autocast
from ._backends import kernels, needs_autograd, resolve_backend


class _SampsonTerms(torch.autograd.Function):
    """Per-pair, per-joint terms [P, B, M] from the compiled kernels; the backward is one fused pass per view."""

    @staticmethod
    def forward(ctx, backend, views, F, pairs, mask):
        ctx.save_for_backward(views, F, mask)
        ctx.backend, ctx.pairs = backend, pairs
        return kernels(backend).sampson_terms(views, F, pairs, mask)

    @staticmethod
    def backward(ctx, grad_terms):
        views, F, mask = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[1]:
            grad = kernels(ctx.backend).sampson_terms_backward(grad_terms.contiguous(), views, F, ctx.pairs, mask)
        return None, grad, None, None, None


@float32_under_autocast
def sampson_consistency(views, F, pairs, mask=None, *, reduction="mean", backend: str | None = None):
    """MVLift stage 2's multi-view epipolar consistency (MVLift section 3.2, "epipolar consistency"; our Sampson
    form, docs/methods/mvlift.md): the Sampson error (Hartley & Zisserman section 11.4.3, eq. 11.9) of each view
    pair's matched joints, (x_j^T F x_i)^2 / ((F x_i)_1^2 + (F x_i)_2^2 + (F^T x_j)_1^2 + (F^T x_j)_2^2).

    views [V, B, T, J, 2] (image units); F [P, B, 3, 3] or shared [P, 3, 3], F[p] mapping view pairs[p][0]'s
    points to lines in view pairs[p][1]; pairs: a list of P (i, j) view indices (Python ints, i != j, P <= 128);
    mask None or bool [B, T] or [B, T, J] (False: ignored, the views may hold NaN there). Returns terms
    [P, B, T, J] in squared image units (reduction "none", zero where masked), their "sum", or the "mean" over the
    unmasked joints and the pairs. Differentiable in views; F is a constant (refused if it requires grad). Values
    are not checked: a NaN in an unmasked joint gives NaN.

    Raises (messages name the op and the argument; checks in `fastmotion.ops._validate`):
        TypeError: a non-tensor, a dtype other than float32/float64 (float16/bfloat16 only under autocast) or other
            than the views' (mask: bool), pairs that are not a list of Python int pairs (bools and tensors too).
        ValueError: a shape that does not fit the layouts (B, T, J must agree; F's P must be len(pairs)), a view
            index outside [0, V) or a pair of one view, more than 128 pairs, F requiring grad, another reduction, a
            tensor on another
            device than the views, an unknown backend or one that cannot take this device.
        NotImplementedError / RuntimeError: a backend this op lacks / that cannot run here (with the reason).
    """
    op = "sampson_consistency"
    flat = check.sampson_consistency(views, F, pairs, mask, reduction)
    chosen = resolve_backend(op, backend, views)
    if chosen == "torch":  # the validated pairs, as Python ints
        return reference.sampson_consistency(views, F, list(zip(flat[::2], flat[1::2])), mask, reduction)
    V, B, T, J, _ = views.shape
    if mask is not None:
        mask = (mask if mask.dim() == 3 else mask[..., None]).expand(B, T, J).reshape(B, T * J)
    F = (F if F.dim() == 4 else F[:, None]).expand(len(pairs), B, 3, 3).contiguous()  # F requires no grad: checked
    args = (views.reshape(V, B, T * J, 2).contiguous(), F, list(flat), None if mask is None else mask.contiguous())
    terms = _SampsonTerms.apply(chosen, *args) if needs_autograd(views) else kernels(chosen).sampson_terms(*args)
    if reduction == "none":
        return terms.view(len(pairs), B, T, J)
    if reduction == "sum":
        return terms.sum()
    if mask is None:
        return terms.sum() / max(1, B * T * J * len(pairs))
    return terms.sum() / (mask.sum() * len(pairs)).clamp_min(1)
