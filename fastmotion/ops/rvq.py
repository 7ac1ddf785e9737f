"""Public residual-VQ search op: validation, backend dispatch, and the shared backward."""
from __future__ import annotations

import math

import torch

from . import reference
from ._autocast import float32_under_autocast
from ._backends import _triton_kernels, resolve_backend

_FLOATS = (torch.float32, torch.float64)


def _check_tensor(name: str, value, rank: int, layout: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"rvq_search: {name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _FLOATS:
        raise TypeError(f"rvq_search: {name} must be float32 or float64, got {value.dtype}")
    if value.dim() != rank:
        raise ValueError(f"rvq_search: {name} must be {rank}-D {layout}, got shape {tuple(value.shape)}")


def _finite_flag(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor | None:
    """A 0-d bool tensor, True only when x and codebooks hold no NaN/inf; computed without waiting for the device.

    A finite sum proves every element finite and costs one plain reduction; a non-finite sum (a NaN/inf, or
    merely an overflow) sends the caller to the exact per-element check."""
    if torch.compiler.is_compiling():  # a data-dependent check would break the graph; eager calls check
        return None
    return torch.isfinite(x.sum() + codebooks.sum())


def _raise_if_not_finite(flag: torch.Tensor | None, x: torch.Tensor, codebooks: torch.Tensor) -> None:
    """Reads the flag (one host-device sync); the exact check runs only when the sum was not finite."""
    if flag is None or bool(flag):
        return
    for name, value in (("x", x), ("codebooks", codebooks)):
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ValueError(f"rvq_search: {name} contains NaN or inf ({bad} of {value.numel()} values)")


def validate_rvq_inputs(x, codebooks, temperature) -> None:
    _check_tensor("x", x, 2, "[N, D]")
    _check_tensor("codebooks", codebooks, 3, "[L, K, D]")
    levels, num_codes, dim = codebooks.shape
    if levels == 0 or num_codes == 0:
        raise ValueError(f"rvq_search: codebooks need L >= 1 levels and K >= 1 codes, got shape {tuple(codebooks.shape)}")
    if dim == 0 or x.shape[1] != dim:
        raise ValueError(f"rvq_search: x is [N, D] with D={x.shape[1]} but codebooks are [L, K, D] with D={dim}; "
                         "they must agree and be >= 1")
    if codebooks.dtype != x.dtype:
        raise TypeError(f"rvq_search: codebooks dtype {codebooks.dtype} differs from x dtype {x.dtype}")
    if codebooks.device != x.device:
        raise ValueError(f"rvq_search: codebooks are on {codebooks.device} but x is on {x.device}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"rvq_search: temperature must be a finite number >= 0, got {temperature!r}")


def _draw_seed(generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**31 - 1, (), generator=generator, device=device))


def _forward_compiled(x, codebooks, temperature, seed):
    # resolve_backend already loaded fastmotion._C, which registered torch.ops.fastmotion.*
    return torch.ops.fastmotion.rvq_search(x, codebooks, temperature, seed)


def _forward_triton(x, codebooks, temperature, seed):
    kernels, _ = _triton_kernels()
    return kernels.rvq_search_triton(x.contiguous(), codebooks.contiguous(), temperature, seed)


_FORWARDS = {"cpp": _forward_compiled, "cuda": _forward_compiled, "triton": _forward_triton}


def codebook_grad(codes: torch.Tensor, grad_quantized: torch.Tensor, grad_residual: torch.Tensor,
                  num_codes: int) -> torch.Tensor:
    """d loss / d codebooks for quantized = sum_l C_l[codes_l] and residual = x - quantized: every chosen row
    collects grad_quantized - grad_residual. Returns [L, K, D]."""
    n, levels = codes.shape
    dim = grad_quantized.shape[1]
    rows = (codes + torch.arange(levels, device=codes.device) * num_codes).reshape(-1)
    per_row = (grad_quantized - grad_residual).unsqueeze(1).expand(n, levels, dim).reshape(-1, dim)
    grad = grad_quantized.new_zeros(levels * num_codes, dim).index_add_(0, rows, per_row)
    return grad.view(levels, num_codes, dim)


class _RVQSearch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, codebooks, temperature, seed, backend):
        codes, quantized, residual = _FORWARDS[backend](x, codebooks, temperature, seed)
        ctx.mark_non_differentiable(codes)
        ctx.save_for_backward(codes)
        ctx.num_codes = codebooks.shape[1]
        return codes, quantized, residual

    @staticmethod
    def backward(ctx, _grad_codes, grad_quantized, grad_residual):
        (codes,) = ctx.saved_tensors
        grad_x = grad_residual if ctx.needs_input_grad[0] else None
        grad_books = None
        if ctx.needs_input_grad[1]:
            grad_books = codebook_grad(codes, grad_quantized, grad_residual, ctx.num_codes)
        return grad_x, grad_books, None, None, None


@float32_under_autocast
def rvq_search(x: torch.Tensor, codebooks: torch.Tensor, *, temperature: float = 0.0,
               generator: torch.Generator | None = None, backend: str | None = None):
    """Greedy residual vector quantisation of x with L codebooks.

    Args:
        x: [N, D] float32/float64 vectors (any N, including 0).
        codebooks: [L, K, D], same dtype and device as x.
        temperature: 0 picks the nearest code (ties: lowest index); > 0 samples
            argmax_k(-||r - C_l[k]||^2 / temperature + Gumbel noise), MoMask trains with 0.5.
        generator: torch.Generator that seeds the Gumbel noise (the default generator when None); the same
            seed gives the same codes on every backend, up to floating-point near-ties.
        backend: "torch" | "cpp" | "triton" | "cuda" | None (FASTMOTION_BACKEND, else automatic).

    Returns:
        codes [N, L] int64, quantized [N, D] = sum_l C_l[codes[:, l]], residual [N, D] = x - quantized.
        quantized and residual are differentiable in codebooks; residual also in x (identity).
    Formula: r_0 = x, codes[:, l] = argmin_k ||r_l - C_l[k]||^2, r_{l+1} = r_l - C_l[codes[:, l]].
    """
    validate_rvq_inputs(x, codebooks, temperature)
    name = resolve_backend(backend, x, "rvq_search")
    temperature = float(temperature)
    seed = _draw_seed(generator) if temperature > 0 else 0
    # The NaN/inf check is enqueued before the search and read after it, so that on a GPU its synchronisation
    # overlaps the kernels instead of stalling the launches; a bad input still raises and returns nothing.
    finite = _finite_flag(x, codebooks)
    if name == "torch":
        out = reference.rvq_search(x, codebooks, temperature, seed)
    else:
        out = _RVQSearch.apply(x, codebooks, temperature, seed, name)
    _raise_if_not_finite(finite, x, codebooks)
    return out
