"""Public residual-VQ search op: checks (`_validate`), backend dispatch (`_backends`), the shared backward."""
from __future__ import annotations

import torch

from . import _validate as check
from . import reference
from ._autocast import float32_under_autocast
from ._backends import kernels, needs_autograd, resolve_backend


def _draw_seed(generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**31 - 1, (), generator=generator, device=device))


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
    def forward(ctx, backend, x, codebooks, temperature, seed):
        codes, quantized, residual = kernels(backend).rvq_search(x, codebooks, temperature, seed)
        ctx.mark_non_differentiable(codes)
        ctx.save_for_backward(codes)
        ctx.num_codes = codebooks.shape[1]
        return codes, quantized, residual

    @staticmethod
    def backward(ctx, _grad_codes, grad_quantized, grad_residual):
        (codes,) = ctx.saved_tensors
        grad_x = grad_residual if ctx.needs_input_grad[1] else None
        grad_books = None
        if ctx.needs_input_grad[2]:
            grad_books = codebook_grad(codes, grad_quantized, grad_residual, ctx.num_codes)
        return None, grad_x, grad_books, None, None


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

    Raises (messages name the argument; checks in `fastmotion.ops._validate`):
        TypeError: a non-tensor, a dtype other than float32/float64 (float16/bfloat16 only under autocast),
            codebooks of another dtype than x, a temperature that is not a number, a generator that is not one.
        ValueError: a wrong rank, D differing between x and codebooks, L, K or D of 0, codebooks on another
            device, a temperature < 0 or not finite, NaN/inf in x or codebooks (checked on CPU tensors by default,
            on a GPU with `fastmotion.ops.set_checks(values=True)`), an unknown backend or one that cannot take
            these tensors' device.
        NotImplementedError / RuntimeError: a backend this op lacks / that cannot run here (with the reason).
    Formula: r_0 = x, codes[:, l] = argmin_k ||r_l - C_l[k]||^2, r_{l+1} = r_l - C_l[codes[:, l]].
    """
    check.rvq_search(x, codebooks, temperature, generator)
    name = resolve_backend("rvq_search", backend, x)
    temperature = float(temperature)
    seed = _draw_seed(generator) if temperature > 0 else 0
    # The NaN/inf check is enqueued before the search and read after it, so that on a GPU its synchronisation
    # overlaps the kernels instead of stalling the launches; a bad input still raises and returns nothing.
    finite = check.finite_flag(x, codebooks)
    if name == "torch":
        out = reference.rvq_search(x, codebooks, temperature, seed)
    else:
        args = (x.contiguous(), codebooks.contiguous(), temperature, seed)
        out = (_RVQSearch.apply(name, *args) if needs_autograd(x, codebooks) else
               tuple(kernels(name).rvq_search(*args)))
    check.raise_if_not_finite("rvq_search", finite, ("x", x), ("codebooks", codebooks))
    return out
