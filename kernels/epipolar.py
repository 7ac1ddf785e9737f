"""Triton kernels of MVLift's Sampson consistency (fastmotion.ops.sampson_consistency), with a fused backward.
Semantics: fastmotion/ops/reference.py; the per-point math mirrors csrc/epipolar/sampson.h.

Entry points as the compiled ops torch.ops.fastmotion.sampson_terms(_backward): views [V, B, M, 2], F [P, B, 3, 3],
pairs a flat list of 2P view indices, mask None or bool [B, M]. Each program takes one motion's block of points, so
it reads F[p, b] as scalars; the pairs go to the device once per (pairs, device) and stay cached. The backward
writes each view's gradient once, summing its pairs in order (deterministic, no atomics).
"""
import torch
import triton
import triton.language as tl

from fastmotion.ops import _validate as check

BLOCK = 256
_PAIRS: dict = {}  # (pairs, device) -> int32 tensor [2P]


@triton.jit
def _sampson(F, ax, ay, bx, by, tiny):
    """The Sampson error of a -> b under the 3x3 F at F (row-major) and its pieces for the gradient."""
    f0, f1, f2 = tl.load(F), tl.load(F + 1), tl.load(F + 2)
    f3, f4, f5 = tl.load(F + 3), tl.load(F + 4), tl.load(F + 5)
    f6, f7, f8 = tl.load(F + 6), tl.load(F + 7), tl.load(F + 8)
    lb0, lb1, lb2 = f0 * ax + f1 * ay + f2, f3 * ax + f4 * ay + f5, f6 * ax + f7 * ay + f8  # F a
    la0, la1 = f0 * bx + f3 * by + f6, f1 * bx + f4 * by + f7  # (F^T b)_12
    e = bx * lb0 + by * lb1 + lb2
    n = lb0 * lb0 + lb1 * lb1 + la0 * la0 + la1 * la1
    clamped = n < tiny
    nc = tl.where(clamped, tiny, n)
    return e * e / nc, e, nc, clamped, lb0, lb1, la0, la1, f0, f1, f3, f4


@triton.jit
def _block(mask_ptr, b, block, B, M, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """Motion b's block of points: in range, their flat index over [B, M], unmasked, and B * M (int64 like b:
    P * B * M may pass 2^31 on a large GPU)."""
    m = block * BLOCK + tl.arange(0, BLOCK)
    ok = m < M
    bm = b * M + m
    valid = ok
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + bm, mask=ok, other=0) != 0)
    return ok, bm, valid, (b * 0 + B) * M


@triton.jit
def _fwd(views_ptr, F_ptr, pairs_ptr, mask_ptr, terms_ptr, tiny_ptr, P, B, M, n_blocks, HAS_MASK: tl.constexpr,
         BLOCK: tl.constexpr):
    b = (tl.program_id(0) // n_blocks).to(tl.int64)
    ok, bm, valid, BM = _block(mask_ptr, b, tl.program_id(0) % n_blocks, B, M, HAS_MASK, BLOCK)
    tiny = tl.load(tiny_ptr)
    for p in range(P):  # p * BM and p * B + b are int64 through BM and b
        i = tl.load(pairs_ptr + 2 * p).to(tl.int64)
        j = tl.load(pairs_ptr + 2 * p + 1).to(tl.int64)
        a = views_ptr + (i * BM + bm) * 2
        c = views_ptr + (j * BM + bm) * 2
        pieces = _sampson(F_ptr + (p * B + b) * 9, tl.load(a, mask=valid, other=0.0),
                          tl.load(a + 1, mask=valid, other=0.0), tl.load(c, mask=valid, other=0.0),
                          tl.load(c + 1, mask=valid, other=0.0), tiny)
        tl.store(terms_ptr + p * BM + bm, tl.where(valid, pieces[0], 0.0), mask=ok)


@triton.jit
def _bwd(grad_ptr, views_ptr, F_ptr, pairs_ptr, mask_ptr, gv_ptr, tiny_ptr, P, B, M, n_blocks,
         HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    v = (pid // (B * n_blocks)).to(tl.int64)
    b = ((pid // n_blocks) % B).to(tl.int64)
    ok, bm, valid, BM = _block(mask_ptr, b, pid % n_blocks, B, M, HAS_MASK, BLOCK)
    tiny = tl.load(tiny_ptr)
    g0 = tl.zeros((BLOCK,), dtype=gv_ptr.dtype.element_ty)
    g1 = tl.zeros((BLOCK,), dtype=gv_ptr.dtype.element_ty)
    for p in range(P):  # p * BM and p * B + b are int64 through BM and b
        i = tl.load(pairs_ptr + 2 * p).to(tl.int64)
        j = tl.load(pairs_ptr + 2 * p + 1).to(tl.int64)
        if (i == v) | (j == v):
            a = views_ptr + (i * BM + bm) * 2
            c = views_ptr + (j * BM + bm) * 2
            ax, ay = tl.load(a, mask=valid, other=0.0), tl.load(a + 1, mask=valid, other=0.0)
            bx, by = tl.load(c, mask=valid, other=0.0), tl.load(c + 1, mask=valid, other=0.0)
            _, e, nc, clamped, lb0, lb1, la0, la1, f0, f1, f3, f4 = _sampson(F_ptr + (p * B + b) * 9, ax, ay, bx, by,
                                                                             tiny)
            g = tl.load(grad_ptr + p * BM + bm, mask=valid, other=0.0)
            r = e / nc  # e / n, not e^2 / n^2: n^2 underflows in float32 where n is small
            de = 2 * g * r
            dn = tl.where(clamped, 0.0, -g * r * r)
            if i == v:
                g0 += de * la0 + dn * 2 * (lb0 * f0 + lb1 * f3)
                g1 += de * la1 + dn * 2 * (lb0 * f1 + lb1 * f4)
            if j == v:
                g0 += de * lb0 + dn * 2 * (la0 * f0 + la1 * f1)
                g1 += de * lb1 + dn * 2 * (la0 * f3 + la1 * f4)
    out = gv_ptr + (v * BM + bm) * 2
    tl.store(out, tl.where(valid, g0, 0.0), mask=ok)
    tl.store(out + 1, tl.where(valid, g1, 0.0), mask=ok)


def _check(op, views, F, pairs, mask, *grad):
    dims = check.triton_inputs(op, ("views", views, "[V, B, M, 2]"), ("F", F, "[P, B, 3, 3]"),
                               ("mask", mask, "[B, M]", (torch.bool,)), *grad, optional=("mask",))
    if not isinstance(pairs, (list, tuple)) or len(pairs) != 2 * F.shape[0]:
        raise ValueError(f"{op}: pairs must be a list of 2P = {2 * F.shape[0]} view indices, got {pairs!r}")
    for v in pairs:
        check.integer(op, "pairs", v)
        if v >= views.shape[0]:
            raise ValueError(f"{op}: pairs names view {v} but views has V={views.shape[0]}")
    return dims


def _device_pairs(pairs, device):
    key = (tuple(pairs), device)
    if key not in _PAIRS:
        _PAIRS[key] = torch.tensor(pairs, dtype=torch.int32, device=device)
    return _PAIRS[key]


def _tiny(views):
    """torch.finfo(dtype).tiny in the views' dtype, through memory (a Python float would arrive as float32)."""
    return torch.full((1,), torch.finfo(views.dtype).tiny, dtype=views.dtype, device=views.device)


def sampson_terms(views, F, pairs, mask):
    """Terms [P, B, M] of fastmotion.ops.sampson_consistency (reduction "none", zero where masked). Raises
    TypeError / ValueError naming the argument for a non-tensor, a wrong dtype, shape, device or stride, pairs
    that are not 2P view indices in [0, V)."""
    _check("sampson_terms (triton)", views, F, pairs, mask)
    _, B, M, _ = views.shape
    terms = views.new_empty((F.shape[0], B, M))
    if terms.numel():
        n_blocks = triton.cdiv(M, BLOCK)
        _fwd[(B * n_blocks,)](views, F, _device_pairs(pairs, views.device), views if mask is None else
                              mask.view(torch.uint8), terms, _tiny(views), F.shape[0], B, M, n_blocks,
                              HAS_MASK=mask is not None, BLOCK=BLOCK)
    return terms


def sampson_terms_backward(grad_terms, views, F, pairs, mask):
    """grad_terms [P, B, M] and the forward's inputs -> gradient to the views [V, B, M, 2]. Raises as the
    forward."""
    op = "sampson_terms_backward (triton)"
    _check(op, views, F, pairs, mask, ("grad_terms", grad_terms, "[P, B, M]"))
    V, B, M, _ = views.shape
    grad_views = torch.empty_like(views)
    if views.numel():
        n_blocks = triton.cdiv(M, BLOCK)
        _bwd[(V * B * n_blocks,)](grad_terms, views, F, _device_pairs(pairs, views.device), views if mask is None
                                  else mask.view(torch.uint8), grad_views, _tiny(views), F.shape[0], B, M, n_blocks,
                                  HAS_MASK=mask is not None, BLOCK=BLOCK)
    return grad_views
