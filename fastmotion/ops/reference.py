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
