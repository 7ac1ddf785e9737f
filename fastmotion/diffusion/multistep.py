"""LIS-style multistep training (VideoMDM section 3.6, appendix G.1).

Timesteps below a threshold t* are split into B buckets of size t*/B. A batch takes the multistep path with
probability t*/T: it draws one timestep uniformly in every bucket and runs deterministic DDIM steps down through
them, taking the loss at every bucket (weight 1/B) and detaching between steps. Other batches draw t uniformly in
[t*, T) and take the loss once. Where the chain starts (`start`):
  "inside": from the noised teacher at the draw of the highest bucket (its loss counted);
  "above":  from the noised teacher one bucket higher, in [t*, t* + t*/B), its prediction only stepped from, so
            that every loss below t* sees the model's own DDIM path from a level where noise hides more of the
            teacher's error (LIS: "first further diffused to a higher level, then denoised down to t").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MultistepConfig:
    steps: int = 50  # T, the diffusion steps
    threshold: int = 12  # t*: timesteps below it are trained by the multistep path
    buckets: int = 4  # B
    start: str = "inside"  # "inside" | "above": see the module docstring

    def __post_init__(self):
        if self.start not in ("inside", "above"):
            raise ValueError(f"start must be 'inside' or 'above', got {self.start!r}")
        if not 0 <= self.threshold < self.steps:
            raise ValueError(f"threshold must be in [0, steps={self.steps}), got {self.threshold}")
        if self.threshold and (self.buckets < 1 or self.threshold % self.buckets):
            raise ValueError(f"threshold {self.threshold} must split into {self.buckets} equal buckets")
        if self.threshold and self.start == "above" and self.threshold + self.bucket_size > self.steps:
            raise ValueError(f"start 'above' needs threshold + threshold / buckets <= steps={self.steps}, got "
                             f"{self.threshold} + {self.bucket_size}")

    @property
    def bucket_size(self) -> int:
        return self.threshold // self.buckets if self.threshold else 0


def draw_timesteps(config: MultistepConfig, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The timesteps of one training batch, in the order the model sees them: one tensor [batch] (a single
    step, t >= t*) or the multistep path, highest first: B tensors, one per bucket ("inside"), or B + 1 with the
    start in [t*, t* + t*/B) first ("above": no loss at the first)."""
    T, ts = config.steps, config.threshold
    if ts and float(torch.rand((), generator=generator)) < ts / T:
        size = config.bucket_size
        levels = config.buckets + (config.start == "above")
        draws = [b * size + torch.randint(size, (), generator=generator) for b in range(levels)]
        return [torch.full((batch,), int(d), dtype=torch.long) for d in reversed(draws)]
    return [torch.randint(ts, T, (batch,), generator=generator)]
