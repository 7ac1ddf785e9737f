"""Free3D's models: the 2D motion prior (a VQ-VAE on 2D motions) and the Motion-Lifting Residual-Quantized VAE
(ML-RQ: 2D motion in, residual-quantized latent, 3D motion out).

Motion features (Free3D's representation, `fastmotion.motion.free3d`): the root trajectory relative to the
first frame plus the limb vectors, from keypoints in normalised image coordinates (K^-1 [k, 1]): 2D input
[B, T, 2 + 21*2], 3D output [B, T, 3 + 21*3] in the same units (camera frame, x right, y down, z forward,
divided by the subject's depth). Both models standardise with per-channel statistics of the training data,
stored in the model (buffers) so that a checkpoint is self-contained.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastmotion.motion.free3d import from_root_and_limbs, to_root_and_limbs
from fastmotion.motion.skeleton import SMPL22

from .conv import Decoder, Encoder
from .vq import ResidualVQ

DIM_2D = 2 * SMPL22.num_joints
DIM_3D = 3 * SMPL22.num_joints


@dataclass
class MotionVQConfig:
    width: int = 512
    latent_dim: int = 512
    num_levels: int = 6
    num_codes: int = 512
    down: int = 2
    depth: int = 3
    dilation_growth: int = 3
    quantize_dropout_prob: float = 0.2

    @classmethod
    def preset(cls, name: str, levels: int) -> "MotionVQConfig":
        """'full': Free3D / MoMask sizes; 'small': a CPU-sized model with the same structure."""
        if name == "full":
            return cls(num_levels=levels)
        if name == "small":
            return cls(width=96, latent_dim=64, num_levels=levels, num_codes=128)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


def motion_features(joints: torch.Tensor) -> torch.Tensor:
    """Joints [B, T, 22, C] -> [B, T, C * 22]: root relative to frame 0, then limb vectors."""
    root, limbs = to_root_and_limbs(joints)
    return torch.cat([root - root[:, :1], limbs.flatten(-2)], dim=-1)


def features_to_joints(features: torch.Tensor, channels: int) -> torch.Tensor:
    root = features[..., :channels]
    limbs = features[..., channels:].unflatten(-1, (SMPL22.num_joints - 1, channels))
    return from_root_and_limbs(root, limbs)


# No channel's scale below this fraction of the median channel's. Real skeletons have rigid short bones (the
# spine segments of motion capture) whose horizontal 2D component barely varies in the training views (std
# 0.0009 in normalised image units on Bandai-2, against a median of 0.008); standardised by that std, the
# rotated views of L_rec turn a few millimetres of predicted depth into tens of standard deviations, the
# frozen prior's error becomes steep there, and the ML-RQ's training diverged within 100 steps on three priors
# of six; with this floor, on none (docs/real-data.md).
RELATIVE_STD_FLOOR = 0.25


class _Standardise(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(DIM_2D))
        self.register_buffer("std", torch.ones(DIM_2D))

    @torch.no_grad()
    def fit(self, features: torch.Tensor, mask: torch.Tensor | None = None, min_std: float = 1e-4,
            relative_floor: float = RELATIVE_STD_FLOOR) -> None:
        """Per-channel mean and std of features [N, T, C] (frames where mask [N, T] is True); each std is at
        least min_std and at least relative_floor x the median channel's std."""
        flat = features[mask] if mask is not None else features.reshape(-1, features.shape[-1])
        std = flat.std(0)
        self.mean.copy_(flat.mean(0))
        self.std.copy_(std.clamp_min(max(min_std, relative_floor * float(std.median()))))

    def normalize(self, f2d):
        return (f2d - self.mean) / self.std

    def denormalize(self, x):
        return x * self.std + self.mean


class MotionVQVAE(nn.Module):
    """Encoder -> residual VQ -> decoder on standardised features. The 2D prior is one of these with
    in_dim = out_dim = 44 and one level; the ML-RQ's parts are built from the same pieces."""

    def __init__(self, config: MotionVQConfig, in_dim: int, out_dim: int):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(in_dim, c.width, c.latent_dim, c.down, c.depth, c.dilation_growth)
        self.vq = ResidualVQ(c.num_levels, c.num_codes, c.latent_dim, quantize_dropout_prob=c.quantize_dropout_prob)
        self.decoder = Decoder(c.latent_dim, c.width, out_dim, c.down, c.depth, c.dilation_growth)
        self.stats = _Standardise()

    @property
    def frame_multiple(self) -> int:
        return 2 ** self.config.down


class Prior2D(MotionVQVAE):
    """Free3D's 2D motion prior: reconstructs standardised 2D motion features through one codebook."""

    def __init__(self, config: MotionVQConfig):
        super().__init__(config, DIM_2D, DIM_2D)

    def forward(self, x: torch.Tensor):
        """x: standardised 2D features [B, T, 44] -> (reconstruction [B, T, 44], RVQ output)."""
        q = self.vq(self.encoder(x))
        return self.decoder(q.quantized), q

    def reconstruct(self, x: torch.Tensor, quantise: bool = True) -> torch.Tensor:
        """x [B, T, 44] -> reconstruction [B, T, 44]; quantise=False decodes the encoder's continuous latent
        (the codebook skipped). As a frozen critic (L_rec) the continuous path has no jumps where codes switch:
        through the codebook, a well-trained prior made the ML-RQ's training blow up on real 2D
        (docs/real-data.md)."""
        latent = self.encoder(x)
        return self.decoder(self.vq(latent).quantized if quantise else latent)


class MLRQ(MotionVQVAE):
    """Motion-Lifting RQ-VAE: standardised 2D features [B, T, 44] -> 3D features [B, T, 66] (root, limbs) in
    normalised-image units; x and y follow the input's standardisation, z gets the mean x/y scale."""

    def __init__(self, config: MotionVQConfig):
        super().__init__(config, DIM_2D, DIM_3D)

    def encode(self, x):
        return self.encoder(x)

    def lift(self, x: torch.Tensor):
        """-> (3D features [B, T, 66], pre-quantisation latent, RVQ output)."""
        latent = self.encoder(x)
        q = self.vq(latent)
        return self.to_3d(self.decoder(q.quantized)), latent, q

    def to_3d(self, raw: torch.Tensor) -> torch.Tensor:
        mean = self.stats.mean.view(-1, 2)
        std = self.stats.std.view(-1, 2)
        scale = torch.cat([std, std.mean(-1, keepdim=True)], -1).flatten()
        offset = torch.cat([mean, torch.zeros_like(mean[:, :1])], -1).flatten()
        return raw * scale + offset

    def xy_of(self, f3d: torch.Tensor) -> torch.Tensor:
        """The orthographic (identity-view) projection of 3D features: their x, y channels [B, T, 44]."""
        return f3d.unflatten(-1, (-1, 3))[..., :2].flatten(-2)
