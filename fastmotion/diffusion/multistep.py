"""LIS-style multistep training (VideoMDM section 3.6, appendix G.1).

Timesteps below a threshold t* are split into B buckets of size t*/B. A batch takes the multistep path with
probability t*/T: it draws one timestep uniformly in every bucket, starts from the noised teacher at the highest
one and runs deterministic DDIM steps down through the others, taking the loss at every step (weight 1/B) and
detaching between steps. Other batches draw t uniformly in [t*, T) and take the loss once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MultistepConfig:
    steps: int = 50  # T, the diffusion steps
    threshold: int = 12  # t*: timesteps below it are trained by the multistep path
    buckets: int = 4  # B

    def __post_init__(self):
        if not 0 <= self.threshold < self.steps:
            raise ValueError(f"threshold must be in [0, steps={self.steps}), got {self.threshold}")
        if self.threshold and (self.buckets < 1 or self.threshold % self.buckets):
            raise ValueError(f"threshold {self.threshold} must split into {self.buckets} equal buckets")

    @property
    def bucket_size(self) -> int:
        return self.threshold // self.buckets if self.threshold else 0


def draw_timesteps(config: MultistepConfig, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The timesteps of one training batch, in the order the model sees them: one tensor [batch] (a single
    step, t >= t*) or B tensors, highest bucket first (the multistep path, each in its bucket)."""
    T, ts = config.steps, config.threshold
    if ts and float(torch.rand((), generator=generator)) < ts / T:
        size = config.bucket_size
        draws = [b * size + torch.randint(size, (), generator=generator) for b in range(config.buckets)]
        return [torch.full((batch,), int(d), dtype=torch.long) for d in reversed(draws)]
    return [torch.randint(ts, T, (batch,), generator=generator)]
