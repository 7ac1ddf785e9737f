"""MVLift's stage-4 model (Li et al., CVPR 2025, section "Multi-view 2D motion diffusion"): a transformer that
denoises the 2D motions of the V - 1 unobserved views of a camera ring at once, given the observed view, predicting
x0. Each block attends over time within each view (the views' own motion), then across the views within each frame
(their agreement); a learned embedding tells the views apart (the ring's order is fixed: view k at k * 360 / V
degrees).

Inputs are in MVLift's clip normalisation (`fastmotion.models.mvlift.normalise_clips` of the observed view; every
view shares its scale), as `fastmotion data mvlift` writes them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .mdm import timestep_embedding


@dataclass
class MultiViewDenoiserConfig:
    joints: int = 22
    skeleton: str = "smpl22"  # the keypoint layout (a key of fastmotion.motion.skeleton.SKELETONS)
    views: int = 4  # ring views with the observed one; the model generates views - 1
    width: int = 512
    layers: int = 4
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    max_frames: int = 196
    diffusion_steps: int = 1000  # the cosine schedule's length (fastmotion.diffusion.GaussianDiffusion)

    @classmethod
    def preset(cls, name: str, joints: int = 22) -> MultiViewDenoiserConfig:
        """'full': the size of the paper's stage-1 release (4 blocks, 4 heads, width 512, 1000 diffusion steps);
        'small': a CPU-sized model (width 128, 100 diffusion steps, no dropout)."""
        if name == "full":
            return cls(joints=joints)
        if name == "small":
            return cls(joints=joints, width=128, layers=4, heads=4, ff=256, dropout=0.0, max_frames=200,
                       diffusion_steps=100)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


class MultiViewBlock(nn.Module):
    """Pre-norm block on view tokens h [B, V, T, w]: temporal self-attention within each view (frames padded
    out by `pad` [B, T], True on padding, are never attended to), cross-view attention within each frame, then a
    feed-forward layer; each with a residual."""

    def __init__(self, width: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm_time, self.norm_views, self.norm_ff = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.time = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.views = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, width),
                                nn.Dropout(dropout))

    def temporal(self, h: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        """h + attention over the frames of each view alone."""
        B, V, T, w = h.shape
        a = self.norm_time(h).reshape(B * V, T, w)
        mask = None if pad is None else pad.repeat_interleave(V, 0)
        return h + self.time(a, a, a, key_padding_mask=mask, need_weights=False)[0].reshape(B, V, T, w)

    def cross_view(self, h: torch.Tensor) -> torch.Tensor:
        """h + attention over the views of each frame alone."""
        B, V, T, w = h.shape
        a = self.norm_views(h).transpose(1, 2).reshape(B * T, V, w)
        return h + self.views(a, a, a, need_weights=False)[0].reshape(B, T, V, w).transpose(1, 2)

    def forward(self, h: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        h = self.cross_view(self.temporal(h, pad))
        return h + self.ff(self.norm_ff(h))


class MultiViewDenoiser(nn.Module):
    """x_t [B, V-1, T, J, 2] (the noisy unobserved views), reference [B, T, J, 2] (the observed view 0), t [B]
    (diffusion step), mask [B, T] (True on real frames), focal [B] (the ring cameras' focal length in normalised-2D
    units, which sets how much perspective the views show) -> x0_hat [B, V-1, T, J, 2].

    One token per view and frame: the view's noisy joints concatenated with the reference's, plus a view embedding,
    a sinusoidal frame position, the noise level and log focal. Raises ValueError on inputs of the wrong shape."""

    def __init__(self, config: MultiViewDenoiserConfig):
        super().__init__()
        self.config = config
        w, J = config.width, config.joints
        if config.views < 2:
            raise ValueError(f"views must be at least 2 (the observed one and another), got {config.views}")
        self.input = nn.Linear(J * 4, w)
        self.view_embedding = nn.Parameter(torch.randn(config.views - 1, w) * 0.02)
        self.time = nn.Sequential(nn.Linear(w + 1, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(MultiViewBlock(w, config.heads, config.ff, config.dropout)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(w)
        self.output = nn.Linear(w, J * 2)
        self.register_buffer("positions", timestep_embedding(torch.arange(config.max_frames), w), persistent=False)

    def forward(self, x: torch.Tensor, reference: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None,
                focal: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if x.dim() != 5 or x.shape[1] != c.views - 1 or x.shape[3] != c.joints or x.shape[4] != 2:
            raise ValueError(f"x must be [B, {c.views - 1}, T, {c.joints}, 2] (the unobserved views), got "
                             f"{list(x.shape)}")
        B, V, T, J, _ = x.shape
        if reference.shape != (B, T, J, 2):
            raise ValueError(f"reference must be [B, T, J, 2] = {[B, T, J, 2]}, got {list(reference.shape)}")
        if T > c.max_frames:
            raise ValueError(f"{T} frames exceed the model's max_frames={c.max_frames}")
        focal = torch.ones(B, device=x.device, dtype=x.dtype) if focal is None else focal.to(x.dtype)
        level = torch.cat([timestep_embedding(t, c.width).to(x.dtype), focal.log()[:, None]], -1)
        tokens = torch.cat([x, reference[:, None].expand(B, V, T, J, 2)], -1).reshape(B, V, T, J * 4)
        h = (self.input(tokens) + self.view_embedding[:, None].to(x.dtype) + self.positions[:T].to(x.dtype)
             + self.time(level)[:, None, None])
        pad = None if mask is None else mask.logical_not()
        for block in self.blocks:
            h = block(h, pad)
        return self.output(self.norm(h)).reshape(B, V, T, J, 2)

    def describe(self) -> dict:
        return {"kind": "MultiViewDenoiser", **asdict(self.config)}
