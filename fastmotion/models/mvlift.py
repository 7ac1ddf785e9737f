"""MVLift's stage-1 model (Li et al., CVPR 2025, "Lifting Motion to the 3D World via 2D Diffusion", section
"Line-conditioned 2D motion diffusion"): a transformer that denoises a 2D motion [T, J, 2] given one line per joint
and frame (a x + b y + c = 0, (a, b) a unit vector), predicting x0.

Any skeleton: the joint count is a config value. Inputs are in MVLift's clip normalisation (`normalise_clips`):
each clip centred on its first frame's hip centre and scaled by its first frame's bounding box to [-1, 1].
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .mdm import timestep_embedding


@dataclass
class LineDenoiserConfig:
    joints: int = 22
    skeleton: str = "smpl22"  # the keypoint layout trained on (a key of fastmotion.motion.skeleton.SKELETONS)
    width: int = 512
    layers: int = 4
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    max_frames: int = 196
    diffusion_steps: int = 1000  # the cosine schedule's length (fastmotion.diffusion.GaussianDiffusion)

    @classmethod
    def preset(cls, name: str, joints: int = 22) -> LineDenoiserConfig:
        """'full': the paper's release (4 layers, 4 heads, width 512, 1000 diffusion steps); 'small': a CPU-sized
        model (width 128, 100 steps, no dropout: attention dropout takes CPU attention off its fused path)."""
        if name == "full":
            return cls(joints=joints)
        if name == "small":
            return cls(joints=joints, width=128, layers=4, heads=4, ff=256, dropout=0.0, max_frames=200,
                       diffusion_steps=100)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


class LineDenoiser(nn.Module):
    """x_t [B, T, J, 2], lines [B, T, J, 3], t [B] (diffusion step), mask [B, T] (True on real frames)
    -> x0_hat [B, T, J, 2]. One token per frame (the noisy joints concatenated with their lines), a noise-level
    token in front, sinusoidal positions."""

    def __init__(self, config: LineDenoiserConfig):
        super().__init__()
        self.config = config
        w, J = config.width, config.joints
        self.input = nn.Linear(J * 5, w)
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        layer = nn.TransformerEncoderLayer(w, config.heads, config.ff, config.dropout, activation="gelu",
                                           batch_first=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.transformer = nn.TransformerEncoder(layer, config.layers)
        self.output = nn.Linear(w, J * 2)
        self.register_buffer("positions", timestep_embedding(torch.arange(config.max_frames + 1), w), persistent=False)

    def forward(self, x: torch.Tensor, lines: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None):
        B, T, J, _ = x.shape
        if J != self.config.joints:
            raise ValueError(f"x has {J} joints; this model was built for {self.config.joints}")
        if lines.shape != (B, T, J, 3):
            raise ValueError(f"lines must be [B, T, J, 3] = {[B, T, J, 3]}, got {list(lines.shape)}")
        if T > self.config.max_frames:
            raise ValueError(f"{T} frames exceed the model's max_frames={self.config.max_frames}")
        token = self.time(timestep_embedding(t, self.config.width).to(x.dtype))
        h = self.input(torch.cat([x, lines], -1).reshape(B, T, J * 5))
        h = torch.cat([token[:, None], h], 1) + self.positions[:T + 1].to(h.dtype)
        pad = None if mask is None else torch.cat([mask.new_ones(B, 1), mask], 1).logical_not()
        with warnings.catch_warnings():  # inference takes torch's nested-tensor fast path, which warns each call
            warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")
            out = self.transformer(h, src_key_padding_mask=pad)[:, 1:]
        return self.output(out).reshape(B, T, J, 2)

    def describe(self) -> dict:
        return {"kind": "LineDenoiser", **asdict(self.config)}


def normalise_clips(keypoints: torch.Tensor, root: torch.Tensor | int, mask: torch.Tensor | None = None):
    """MVLift's 2D normalisation: each clip minus its first frame's root (hip centre), divided by half the longer
    side of its first frame's bounding box, so that the first pose spans [-1, 1].

    keypoints [B, T, J, 2] (any units); root: the root joint's index, or a [B, T, 2] root track (e.g. the
    hips' midpoint); mask [B, T] is unused for the first frame (the first frame must be real).
    -> (normalised [B, T, J, 2], centre [B, 2], scale [B]) with keypoints = normalised * scale + centre.
    Raises ValueError when a first frame has no extent (all joints at one point)."""
    if keypoints.dim() != 4 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be [B, T, J, 2], got {list(keypoints.shape)}")
    first = keypoints[:, 0]
    centre = first[:, root] if isinstance(root, int) else root[:, 0]
    extent = first.amax(1) - first.amin(1)  # [B, 2]
    scale = extent.amax(-1) / 2
    if bool((scale <= 0).any()):
        bad = int((scale <= 0).nonzero()[0])
        raise ValueError(f"keypoints: clip {bad}'s first frame has all joints at one point (no bounding box)")
    return (keypoints - centre[:, None, None]) / scale[:, None, None, None], centre, scale
