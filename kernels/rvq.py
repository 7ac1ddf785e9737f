"""Triton residual-VQ search. Semantics: fastmotion/ops/reference.py::rvq_search.

Two kernels per level, so that every SM has work even for moderate N:
  scores: grid (row blocks, code blocks); tile scores ||C_k||^2 - 2 <r, C_k> from tl.dot over D, folded at once
          into the tile's (min, argmin) per row -> partials [N, code blocks] (no N x K matrix is stored);
  update: per row, the best partial (lowest index on ties), then residual -= C[code]; the last level also sums
          the chosen codes into quantized (cheaper than keeping a running sum in memory).
Level 0 reads x directly, so no copy of x into the residual is needed.
"""
import torch
import triton
import triton.language as tl

from fastmotion.ops import _validate as check
from fastmotion.ops.reference import gumbel_level_key

# fp32 products on tensor cores with three TF32 passes (about fp32 accuracy); plain TF32 would flip argmins.
FP32_DOT_PRECISION = "tf32x3"
# (BLOCK_N, BLOCK_K, BLOCK_D, num_warps, num_stages) for the scores kernel; fp32 measured on an H100
# (bench/RESULTS.md), fp64 has no tl.dot: a broadcast product, kept small for registers.
FP32_TILES = (128, 128, 64, 8, 3)
FP64_TILES = (16, 16, 16, 4, 2)


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
def _scores_kernel(r_ptr, book_ptr, norms_ptr, keys_ptr, part_val_ptr, part_idx_ptr, N, K, D, level, n_parts,
                   temperature, SAMPLE: tl.constexpr, IS_FP64: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    # Code tiles vary fastest across programs: the programs sharing a row tile run together and hit L2.
    part = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    codes = part * BLOCK_K + tl.arange(0, BLOCK_K)
    row_ok, code_ok = rows < N, codes < K
    rows64, codes64 = rows.to(tl.int64), codes.to(tl.int64)
    acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float64 if IS_FP64 else tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        dim_ok = dims < D
        r = tl.load(r_ptr + rows64[:, None] * D + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
        c = tl.load(book_ptr + codes64[None, :] * D + dims[:, None], mask=dim_ok[:, None] & code_ok[None, :],
                    other=0.0)
        if IS_FP64:
            acc += tl.sum(r[:, :, None] * c[None, :, :], axis=1)
        else:
            acc = tl.dot(r, c, acc, input_precision=PRECISION)
    norms = tl.load(norms_ptr + codes, mask=code_ok, other=0.0)
    scores = norms[None, :] - 2.0 * acc
    if SAMPLE:
        level_key = tl.load(keys_ptr + level).to(tl.uint32)
        scores -= temperature * _gumbel(level_key, rows, codes).to(acc.dtype)
    scores = tl.where(code_ok[None, :], scores, float("inf"))
    best = tl.min(scores, axis=1)
    best_idx = tl.min(tl.where(scores == best[:, None], codes[None, :], K), axis=1)
    tl.store(part_val_ptr + rows64 * n_parts + part, best, mask=row_ok)
    tl.store(part_idx_ptr + rows64 * n_parts + part, best_idx, mask=row_ok)


@triton.jit
def _update_kernel(x_ptr, book_ptr, part_val_ptr, part_idx_ptr, codes_ptr, quant_ptr, resid_ptr, N, K, D, L,
                   level, n_parts, FIRST: tl.constexpr, LAST: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    rows64 = rows.to(tl.int64)
    parts = tl.arange(0, BLOCK_P)
    ok = row_ok[:, None] & (parts < n_parts)[None, :]
    vals = tl.load(part_val_ptr + rows64[:, None] * n_parts + parts[None, :], mask=ok, other=float("inf"))
    best = tl.min(vals, axis=1)
    # the first code block holding the minimum: its argmin is the lowest index overall
    first = tl.min(tl.where(vals == best[:, None], parts[None, :], BLOCK_P), axis=1)
    first = tl.minimum(first, n_parts - 1)
    code = tl.load(part_idx_ptr + rows64 * n_parts + first, mask=row_ok, other=0).to(tl.int64)
    code = tl.where(code < K, code, 0)  # all scores NaN (rejected input, checked after the launch): stay in bounds
    tl.store(codes_ptr + rows64 * L + level, code, mask=row_ok)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        m = row_ok[:, None] & (dims < D)[None, :]
        offs = rows64[:, None] * D + dims[None, :]
        c = tl.load(book_ptr + level * K * D + code[:, None] * D + dims[None, :], mask=m, other=0.0)
        src = x_ptr if FIRST else resid_ptr
        tl.store(resid_ptr + offs, tl.load(src + offs, mask=m, other=0.0) - c, mask=m)
        if LAST:  # quantized = the chosen codes summed in level order, as the reference adds them
            q = tl.zeros([BLOCK_N, BLOCK_D], c.dtype)
            for l in range(0, L):
                if l == level:
                    lcode = code
                else:
                    lcode = tl.load(codes_ptr + rows64 * L + l, mask=row_ok, other=0)
                q += tl.load(book_ptr + l * K * D + lcode[:, None] * D + dims[None, :], mask=m, other=0.0)
            tl.store(quant_ptr + offs, q, mask=m)


def rvq_search_triton(x: torch.Tensor, codebooks: torch.Tensor, temperature: float = 0.0, seed: int = 0,
                      tiles=None):
    """Residual-VQ search: fastmotion.ops.rvq_search's forward without its NaN check, autograd or backend choice.

    x [N, D] and codebooks [L, K, D] (L, K, D >= 1): contiguous, both float32 or both float64, on a CUDA device
    (or the CPU under TRITON_INTERPRET=1); temperature >= 0 (0: greedy; > 0: Gumbel-max sampling seeded by the
    int `seed`); tiles: (BLOCK_N, BLOCK_K, BLOCK_D, warps, stages) of the scores kernel, None for the default.
    Returns codes [N, L] int64, quantized [N, D], residual [N, D].
    Raises TypeError (a non-tensor, another dtype, a non-number temperature, a non-int seed) or ValueError (a
    wrong shape, device or stride, a negative or non-finite temperature), naming the argument.
    """
    op = "rvq_search (triton)"
    check.triton_inputs(op, ("x", x, "[N, D]"), ("codebooks", codebooks, "[L, K, D]"))
    check.rvq_sizes(op, x, codebooks)
    check.number(op, "temperature", temperature, minimum=0)
    check.integer(op, "seed", seed, minimum=None)
    n, d = x.shape
    levels, k, _ = codebooks.shape
    codes = torch.empty(n, levels, dtype=torch.int64, device=x.device)
    quantized = torch.empty_like(x)
    residual = torch.empty_like(x)
    if n == 0:
        return codes, quantized, residual
    is_fp64 = x.dtype == torch.float64
    block_n, block_k, block_d, warps, stages = tiles or (FP64_TILES if is_fp64 else FP32_TILES)
    n_parts = triton.cdiv(k, block_k)
    part_val = torch.empty(n, n_parts, dtype=x.dtype, device=x.device)
    part_idx = torch.empty(n, n_parts, dtype=torch.int32, device=x.device)
    norms = torch.einsum("lkd,lkd->lk", codebooks, codebooks)  # no [L, K, D] temporary
    # Per-level Gumbel stream keys, computed on the host exactly as the reference does (greedy search reads
    # none: any tensor will do, and skipping the host-to-device copy keeps launches asynchronous).
    keys = norms
    if temperature > 0:
        keys = torch.tensor([gumbel_level_key(seed, level) for level in range(levels)], dtype=torch.int64,
                            device=x.device)
    score_grid = (n_parts, triton.cdiv(n, block_n))
    update_block = 32
    update_grid = (triton.cdiv(n, update_block),)
    for level in range(levels):
        src = x if level == 0 else residual
        _scores_kernel[score_grid](
            src, codebooks[level], norms[level], keys, part_val, part_idx, n, k, d, level, n_parts,
            float(temperature), SAMPLE=temperature > 0, IS_FP64=is_fp64, PRECISION=FP32_DOT_PRECISION,
            BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d, num_warps=warps,
            num_stages=stages)
        _update_kernel[update_grid](
            x, codebooks, part_val, part_idx, codes, quantized, residual, n, k, d, levels, level, n_parts,
            FIRST=level == 0, LAST=level == levels - 1, BLOCK_N=update_block,
            BLOCK_P=triton.next_power_of_2(n_parts), BLOCK_D=64)
    return codes, quantized, residual
