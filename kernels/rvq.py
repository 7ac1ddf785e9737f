"""Triton residual-VQ search. Semantics: fastmotion/ops/reference.py::rvq_search.

One program owns BLOCK_N rows for all levels. Per level it sweeps the codebook in BLOCK_K-code chunks; each
chunk's scores ||C_k||^2 - 2 <r, C_k> come from tl.dot over D and fold into a running (min, argmin) per row,
so no N x K matrix exists. The residual lives in the `residual` output, updated in place after each level.
"""
import torch
import triton
import triton.language as tl

from fastmotion.ops.reference import gumbel_level_key

# fp32 products on tensor cores with three TF32 passes (about fp32 accuracy); plain TF32 would flip argmins.
FP32_DOT_PRECISION = "tf32x3"


@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


@triton.jit
def _gumbel(level_key, rows, codes):
    """Same bits as fastmotion.ops.reference.gumbel_noise: [BLOCK_N, BLOCK_K] float32."""
    row_key = _fmix32(level_key + rows.to(tl.uint32))
    h = _fmix32(row_key[:, None] + codes.to(tl.uint32)[None, :])
    u = ((h >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    return -tl.log(-tl.log(u))


@triton.jit
def _rvq_search_kernel(x_ptr, books_ptr, norms_ptr, keys_ptr, codes_ptr, quant_ptr, resid_ptr, N, L, K, D,
                       temperature,
                       SAMPLE: tl.constexpr, IS_FP64: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    rows64 = rows.to(tl.int64)
    acc_type = tl.float64 if IS_FP64 else tl.float32

    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        ok = row_ok[:, None] & (dims < D)[None, :]
        offs = rows64[:, None] * D + dims[None, :]
        v = tl.load(x_ptr + offs, mask=ok, other=0.0)
        tl.store(resid_ptr + offs, v, mask=ok)
        tl.store(quant_ptr + offs, tl.zeros_like(v), mask=ok)
    tl.debug_barrier()

    for level in range(0, L):
        book = books_ptr + level * K * D  # level is an int in the interpreter: no .to()
        level_key = tl.load(keys_ptr + level).to(tl.uint32)
        best_val = tl.full([BLOCK_N], float("inf"), acc_type)
        best_idx = tl.zeros([BLOCK_N], tl.int32)
        for k0 in range(0, K, BLOCK_K):
            codes = k0 + tl.arange(0, BLOCK_K)
            code_ok = codes < K
            acc = tl.zeros([BLOCK_N, BLOCK_K], acc_type)
            for d0 in range(0, D, BLOCK_D):
                dims = d0 + tl.arange(0, BLOCK_D)
                dim_ok = dims < D
                r = tl.load(resid_ptr + rows64[:, None] * D + dims[None, :],
                            mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
                c = tl.load(book + codes.to(tl.int64)[None, :] * D + dims[:, None],
                            mask=dim_ok[:, None] & code_ok[None, :], other=0.0)
                if IS_FP64:
                    acc = tl.dot(r, c, acc)
                else:
                    acc = tl.dot(r, c, acc, input_precision=PRECISION)
            norms = tl.load(norms_ptr + level * K + codes, mask=code_ok, other=0.0)
            scores = norms[None, :] - 2.0 * acc
            if SAMPLE:
                scores -= temperature * _gumbel(level_key, rows, codes).to(acc_type)
            scores = tl.where(code_ok[None, :], scores, float("inf"))
            chunk_min = tl.min(scores, axis=1)
            chunk_idx = tl.min(tl.where(scores == chunk_min[:, None], codes[None, :], K), axis=1)
            take = chunk_min < best_val  # strict: an earlier chunk keeps ties (lowest index wins)
            best_idx = tl.where(take, chunk_idx, best_idx)
            best_val = tl.where(take, chunk_min, best_val)
        tl.store(codes_ptr + rows64 * L + level, best_idx.to(tl.int64), mask=row_ok)
        tl.debug_barrier()
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + tl.arange(0, BLOCK_D)
            ok = row_ok[:, None] & (dims < D)[None, :]
            offs = rows64[:, None] * D + dims[None, :]
            c = tl.load(book + best_idx.to(tl.int64)[:, None] * D + dims[None, :], mask=ok, other=0.0)
            tl.store(resid_ptr + offs, tl.load(resid_ptr + offs, mask=ok, other=0.0) - c, mask=ok)
            tl.store(quant_ptr + offs, tl.load(quant_ptr + offs, mask=ok, other=0.0) + c, mask=ok)
        tl.debug_barrier()


def rvq_search_triton(x: torch.Tensor, codebooks: torch.Tensor, temperature: float = 0.0, seed: int = 0,
                      block_n: int = 64, block_k: int = 64, block_d: int = 32):
    """Launch the Triton kernel on validated, contiguous inputs; returns (codes, quantized, residual)."""
    n, d = x.shape
    levels, k, _ = codebooks.shape
    codes = torch.empty(n, levels, dtype=torch.int64, device=x.device)
    quantized = torch.empty_like(x)
    residual = torch.empty_like(x)
    if n == 0:
        return codes, quantized, residual
    norms = codebooks.square().sum(-1).contiguous()
    # Per-level Gumbel stream keys, computed on the host exactly as the reference does.
    keys = torch.tensor([gumbel_level_key(seed, level) for level in range(levels)], dtype=torch.int64,
                        device=x.device)
    grid = (triton.cdiv(n, block_n),)
    _rvq_search_kernel[grid](
        x, codebooks, norms, keys, codes, quantized, residual, n, levels, k, d, float(temperature),
        SAMPLE=temperature > 0, IS_FP64=x.dtype == torch.float64, PRECISION=FP32_DOT_PRECISION,
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d)
    return codes, quantized, residual
