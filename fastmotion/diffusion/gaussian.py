"""Gaussian diffusion with an x0-predicting denoiser (MDM's parameterisation).

Forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t = 0..T-1 (t = 0 is the least noisy step), with
the cosine schedule of Nichol & Dhariwal (abar(s) = cos^2(pi/2 (s/T + 0.008) / 1.008), betas capped at 0.999).
DDPM steps sample the posterior q(x_{t-1} | x_t, x0_hat); DDIM steps (eta = 0) are deterministic and may skip
timesteps. `x0_hook` lets a sampler change each predicted x0 before the step (VideoMDM's guided lifting).
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def cosine_alpha_bar(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """abar_t for t = 0..steps-1 (float64)."""
    f = lambda u: math.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


class GaussianDiffusion:
    def __init__(self, steps: int = 50):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps = steps
        self.alpha_bar = cosine_alpha_bar(steps)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        betas = 1 - self.alpha_bar / self.alpha_bar_prev
        # posterior q(x_{t-1} | x_t, x0) = N(c0 x0 + ct x_t, var)
        self.post_var = betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        self.post_c0 = betas * self.alpha_bar_prev.sqrt() / (1 - self.alpha_bar)
        self.post_ct = (1 - self.alpha_bar_prev) * (1 - betas).sqrt() / (1 - self.alpha_bar)

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] shaped to broadcast over `like` [B, ...]."""
        return table.to(like.device)[t.to(like.device)].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._at(self.alpha_bar.sqrt(), t, x0) * x0 + self._at((1 - self.alpha_bar).sqrt(), t, x0) * noise

    def eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (xt - self._at(self.alpha_bar.sqrt(), t, xt) * x0) / self._at((1 - self.alpha_bar).sqrt(), t, xt)

    def ddpm_step(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A sample of x_{t-1} ~ q(. | x_t, x0); at t = 0 the mean (no noise is added)."""
        mean = self._at(self.post_c0, t, xt) * x0 + self._at(self.post_ct, t, xt) * xt
        last = (t > 0).to(xt.device, xt.dtype).view(-1, *([1] * (xt.dim() - 1)))
        std = self._at(self.post_var.clamp_min(0).sqrt(), t, xt) * last
        return mean + std * noise

    def ddim_step(self, xt: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from t to t_prev < t; t_prev = -1 returns x0."""
        eps = self.eps_from_x0(xt, t, x0)
        abar_prev = self._at(self.alpha_bar_prev, t_prev + 1, xt)  # alpha_bar_prev[s + 1] = abar_s, abar_-1 = 1
        return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps

    @torch.no_grad()
    def sample(self, denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, generator: torch.Generator,
               sampler: str = "ddpm", steps: int | None = None, device="cpu",
               x0_hook: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
               dtype: torch.dtype = torch.float32, start: torch.Tensor | None = None) -> torch.Tensor:
        """Sample x0 from pure noise. denoise(x_t, t [B]) -> x0_hat. DDIM may use fewer `steps` (evenly spaced).
        start: the initial noise x_T of `shape` (default: drawn from `generator`)."""
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        x = (torch.randn(shape, generator=generator, dtype=dtype).to(device) if start is None
             else start.to(device, dtype))
        if sampler == "ddpm":
            times = list(range(self.steps - 1, -1, -1))
        else:
            n = min(steps or self.steps, self.steps)
            times = sorted({round(v) for v in torch.linspace(self.steps - 1, 0, n).tolist()}, reverse=True)
        for i, step in enumerate(times):
            t = torch.full((shape[0],), step, dtype=torch.long, device=device)
            x0 = denoise(x, t)
            if x0_hook is not None:
                x0 = x0_hook(x0, step)
            if sampler == "ddpm":
                x = self.ddpm_step(x, t, x0, torch.randn(shape, generator=generator, dtype=dtype).to(device))
            else:
                prev = times[i + 1] if i + 1 < len(times) else -1
                x = self.ddim_step(x, t, torch.full_like(t, prev), x0)
        return x
