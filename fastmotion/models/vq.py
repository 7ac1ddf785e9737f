"""Residual vector quantiser trained as MoMask trains its RVQ-VAE, on top of `fastmotion.ops.rvq_search`.

Codebooks are buffers updated by exponential moving averages of the vectors assigned to each code (no gradient
reaches them); codes nobody used recently are reset to random inputs; during training a random number of
trailing levels is dropped (quantize dropout) so that coarse levels learn to stand alone; the encoder sees a
straight-through gradient and a commitment loss pulls its outputs towards their codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fastmotion.ops import rvq_search


@dataclass
class RVQOutput:
    quantized: torch.Tensor  # [..., D]: straight-through (forward value: the codes' sum; gradient: identity to x)
    codes: torch.Tensor  # [..., L] int64; -1 for levels dropped by quantize dropout
    commitment: torch.Tensor  # scalar: sum over levels of mean ||r_l - q_l||^2 (gradient to the input only)
    perplexity: torch.Tensor  # [L]: exp(entropy) of each level's code usage in this batch


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class ResidualVQ(nn.Module):
    """L levels of K codes of dimension D; input [..., D] (channels last).

    Args:
        num_levels, num_codes, dim: L, K, D (Free3D / MoMask: 6, 512, 512).
        decay: EMA decay of code counts and sums (0.99).
        reset_threshold: a code whose EMA count falls below this is reset to a random input vector.
        quantize_dropout_prob: probability that a training batch keeps only the first n levels,
            n uniform in [quantize_dropout_cutoff, L - 1] (at least 1).
        sample_temperature: > 0 samples codes with Gumbel noise during training (MoMask: 0.5); eval is greedy.
        backend: op backend for rvq_search (None: automatic).
    """

    def __init__(self, num_levels: int = 6, num_codes: int = 512, dim: int = 512, decay: float = 0.99,
                 reset_threshold: float = 1.0, quantize_dropout_prob: float = 0.2, quantize_dropout_cutoff: int = 1,
                 sample_temperature: float = 0.0, eps: float = 1e-5, backend: str | None = None):
        super().__init__()
        for name, value in (("num_levels", num_levels), ("num_codes", num_codes), ("dim", dim)):
            if value < 1:
                raise ValueError(f"ResidualVQ: {name} must be >= 1, got {value}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ResidualVQ: decay must be in [0, 1), got {decay}")
        if not 0.0 <= quantize_dropout_prob <= 1.0:
            raise ValueError(f"ResidualVQ: quantize_dropout_prob must be in [0, 1], got {quantize_dropout_prob}")
        self.num_levels, self.num_codes, self.dim = num_levels, num_codes, dim
        self.decay, self.reset_threshold, self.eps = decay, reset_threshold, eps
        self.quantize_dropout_prob = quantize_dropout_prob
        self.quantize_dropout_cutoff = max(1, quantize_dropout_cutoff)
        self.sample_temperature = sample_temperature
        self.backend = backend
        self.register_buffer("codebooks", torch.zeros(num_levels, num_codes, dim))
        self.register_buffer("ema_count", torch.zeros(num_levels, num_codes))
        self.register_buffer("ema_sum", torch.zeros(num_levels, num_codes, dim))
        self.register_buffer("initialized", torch.tensor(False))

    # ---- codes <-> vectors -------------------------------------------------------------------------------
    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"ResidualVQ: input must be [..., {self.dim}] (channels last), got {tuple(x.shape)}")
        return x.reshape(-1, self.dim).float()  # the search stays fp32 under autocast

    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_levels: int | None = None) -> torch.Tensor:
        """Greedy codes [..., L'] for x [..., D] (L' = num_levels or all)."""
        books = self.codebooks[: num_levels or self.num_levels]
        codes, _, _ = rvq_search(self._flatten(x), books, backend=self.backend)
        return codes.reshape(*x.shape[:-1], books.shape[0])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Vectors [..., D] from codes [..., L'] (L' <= L); code -1 means 'level not used'."""
        if codes.shape[-1] > self.num_levels:
            raise ValueError(f"ResidualVQ.decode: codes have {codes.shape[-1]} levels, the quantiser {self.num_levels}")
        if codes.numel() and int(codes.max()) >= self.num_codes:
            raise ValueError(f"ResidualVQ.decode: codes must be < {self.num_codes}, got {int(codes.max())}")
        used = codes >= 0
        levels = torch.arange(codes.shape[-1], device=codes.device)
        vectors = self.codebooks[levels, codes.clamp_min(0)]  # [..., L', D]
        return (vectors * used.unsqueeze(-1)).sum(-2)

    # ---- training ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Level by level, codebook l = random residual vectors that levels < l leave (rank 0's, under DDP)."""
        residual = flat
        for level in range(self.num_levels):
            self.codebooks[level] = self._random_rows(residual)
            residual = rvq_search(residual, self.codebooks[level : level + 1], backend=self.backend)[2]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebooks, src=0)
        self.ema_sum.copy_(self.codebooks)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    def _random_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """K rows drawn from `rows` (repeated with small noise when there are fewer than K)."""
        if rows.shape[0] >= self.num_codes:
            return rows[torch.randperm(rows.shape[0], device=rows.device)[: self.num_codes]]
        repeats = -(-self.num_codes // rows.shape[0])
        tiled = rows.repeat(repeats, 1)
        tiled = tiled + torch.randn_like(tiled) * (0.01 / rows.shape[1] ** 0.5)
        return tiled[torch.randperm(tiled.shape[0], device=rows.device)[: self.num_codes]]

    @torch.no_grad()
    def _ema_update(self, level_inputs: torch.Tensor, codes: torch.Tensor, active: int) -> None:
        """EMA of assignment counts and sums per code, then the dead-code reset; levels >= active untouched."""
        for level in range(active):
            inputs, idx = level_inputs[:, level], codes[:, level]
            count = torch.bincount(idx, minlength=self.num_codes).to(inputs.dtype)
            total = torch.zeros_like(self.ema_sum[level]).index_add_(0, idx, inputs)
            _all_reduce_sum(count)
            _all_reduce_sum(total)
            self.ema_count[level].mul_(self.decay).add_(count, alpha=1 - self.decay)
            self.ema_sum[level].mul_(self.decay).add_(total, alpha=1 - self.decay)
            updated = self.ema_sum[level] / (self.ema_count[level].unsqueeze(1) + self.eps)
            dead = self.ema_count[level] < self.reset_threshold
            if dead.any():
                fresh = self._random_rows(inputs)
                if dist.is_available() and dist.is_initialized():
                    dist.broadcast(fresh, src=0)
                updated = torch.where(dead.unsqueeze(1), fresh, updated)
                self.ema_sum[level][dead] = fresh[dead]
                self.ema_count[level][dead] = 1.0
            self.codebooks[level] = updated

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> RVQOutput:
        flat = self._flatten(x)
        if self.training and not bool(self.initialized):
            self._initialise(flat.detach())
        active = self.num_levels
        if self.training and self.num_levels > 1 and torch.rand(()) < self.quantize_dropout_prob:
            low = min(self.quantize_dropout_cutoff, self.num_levels - 1)
            active = int(torch.randint(low, self.num_levels, ()))
        temperature = self.sample_temperature if self.training else 0.0
        codes, quantized, _ = rvq_search(flat.detach(), self.codebooks[:active], temperature=temperature,
                                         generator=generator, backend=self.backend)
        # Input of each level: x minus the codes chosen before it (codes carry no gradient).
        chosen = self.codebooks[torch.arange(active, device=codes.device), codes]  # [N, active, D]
        before = torch.cumsum(chosen, dim=1) - chosen
        level_inputs = flat.unsqueeze(1) - before  # gradient flows to x
        commitment = ((level_inputs - chosen) ** 2).mean(dim=(0, 2)).sum()
        if self.training:
            self._ema_update(level_inputs.detach(), codes, active)
        quantized_st = flat + (quantized - flat).detach()
        perplexity = torch.stack([self._perplexity(codes[:, level]) for level in range(active)] +
                                 [flat.new_tensor(0.0)] * (self.num_levels - active))
        if active < self.num_levels:
            pad = codes.new_full((codes.shape[0], self.num_levels - active), -1)
            codes = torch.cat([codes, pad], dim=1)
        lead = x.shape[:-1]
        return RVQOutput(quantized_st.reshape(*lead, self.dim).to(x.dtype), codes.reshape(*lead, self.num_levels),
                         commitment, perplexity)

    def _perplexity(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.numel() == 0:
            return torch.tensor(0.0, device=idx.device)
        p = torch.bincount(idx, minlength=self.num_codes).float() / idx.numel()
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
