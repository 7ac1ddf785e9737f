"""MDM (Tevet et al. 2023): a transformer encoder that denoises HumanML3D 263-d motion features, predicting x0,
conditioned on the diffusion timestep and a sentence feature (dropped for classifier-free guidance)."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fastmotion.motion.humanml3d import FEATURE_DIM

from .text import TextConditioned


@dataclass
class MDMConfig:
    width: int = 512
    layers: int = 8
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    cond_drop: float = 0.1
    max_frames: int = 196

    @classmethod
    def preset(cls, name: str) -> "MDMConfig":
        """'full': MDM's sizes (8 layers, width 512, 4 heads); 'small': a CPU-sized model without dropout (attention
        dropout sends CPU attention down the unfused path: measured, 40% of a training step at B=64)."""
        if name == "full":
            return cls()
        if name == "small":
            return cls(width=128, layers=4, heads=4, ff=256, max_frames=200, dropout=0.0)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features [..., dim] of integer timesteps or positions t [...] (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


class MDM(nn.Module):
    """x_t [B, T, 263], t [B], sentence features [B, text_dim] (or None), frame mask [B, T] -> x0_hat."""

    def __init__(self, config: MDMConfig, text_dim: int):
        super().__init__()
        self.config, self.text_dim = config, text_dim
        w = config.width
        self.input = nn.Linear(FEATURE_DIM, w)
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.cond = nn.Linear(text_dim, w)
        self.position = nn.Parameter(torch.randn(config.max_frames + 1, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, config.heads, config.ff, config.dropout, activation="gelu",
                                           batch_first=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.transformer = nn.TransformerEncoder(layer, config.layers)
        self.output = nn.Linear(w, FEATURE_DIM)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor | None, mask: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        if T > self.config.max_frames:
            raise ValueError(f"{T} frames exceed the model's max_frames={self.config.max_frames}")
        token = self.time(timestep_embedding(t, self.config.width).to(x.dtype))
        if text is not None:
            c = self.cond(text)
            if drop is not None:
                c = c * (~drop)[:, None].to(c.dtype)
            token = token + c
        h = torch.cat([token[:, None], self.input(x)], 1) + self.position[:T + 1]
        pad = torch.cat([mask.new_ones(B, 1), mask], 1).logical_not()
        with warnings.catch_warnings():  # inference takes torch's nested-tensor fast path, which warns each call
            warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")
            return self.output(self.transformer(h, src_key_padding_mask=pad)[:, 1:])

    def describe(self) -> dict:
        return {"kind": "MDM", "text_dim": self.text_dim, **asdict(self.config)}


class VideoMDMModel(TextConditioned):
    """VideoMDM's model: an MDM + its own small text encoder (None with CLIP features) + the 263-d feature
    statistics `mean`, `std` (buffers, set from the training data)."""

    def __init__(self, config: MDMConfig, text: str = "small"):
        super().__init__()
        self.mdm = MDM(config, self.init_text(text))
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))

    def describe(self) -> dict:
        return {**self.mdm.describe(), "text": self.text_kind}
