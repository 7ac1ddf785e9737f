"""The text-motion evaluator: a motion encoder and a text encoder trained contrastively on held-out 3D, whose
joint embedding space every text-to-motion metric is measured in (`fastmotion.metrics.generation`).

Motions enter as HumanML3D 263-d features of camera-frame joints: generated motions live in the camera frame of
the 2D they were learned from (y down, units of the subject's depth), so real motions are taken into their own
camera's frame too; then both are turned y-up, scaled to a common body size (the SMPL rest skeleton's bone
lengths) and canonicalised (floor, origin, facing +z) by the feature extraction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models.conv import Encoder
from fastmotion.models.text import SmallTextEncoder
from fastmotion.motion.humanml3d import FEATURE_DIM, joints_to_features
from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS

_REST_BONES = float(torch.as_tensor(SMPL22_REST_OFFSETS[1:]).norm(dim=-1).sum())
_FLIP = torch.tensor([1.0, -1.0, -1.0])  # camera (y down, z forward) -> y up, a proper rotation


def evaluation_features(joints: torch.Tensor) -> torch.Tensor:
    """Camera-frame joints [..., T, 22, 3] (any unit) -> 263-d features [..., T-1, 263] at a common body size."""
    j = joints.double() * _FLIP.double()
    bones = (j[..., 1:, :] - j[..., list(SMPL22.parents[1:]), :]).norm(dim=-1).sum(-1)  # [..., T]
    scale = _REST_BONES / bones.mean(-1).clamp_min(1e-9)
    return joints_to_features(j * scale[..., None, None, None]).float()


@dataclass
class EvaluatorConfig:
    width: int = 256
    dim: int = 256  # embedding size
    temperature: float = 0.07

    @classmethod
    def preset(cls, name: str) -> "EvaluatorConfig":
        if name == "full":
            return cls(width=512, dim=512)
        if name == "small":
            return cls(width=128, dim=128, temperature=0.1)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


class TextMotionEvaluator(nn.Module):
    def __init__(self, config: EvaluatorConfig):
        super().__init__()
        self.config = config
        self.text = SmallTextEncoder(width=config.width, dim=config.dim)
        self.motion = Encoder(FEATURE_DIM, config.width, config.width, down=2)
        self.motion_out = nn.Sequential(nn.Linear(config.width, config.width), nn.GELU(),
                                        nn.Linear(config.width, config.dim))
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))

    @torch.no_grad()
    def fit_stats(self, features: torch.Tensor, mask: torch.Tensor) -> None:
        flat = features[mask]
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-3))

    def embed_motion(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features [B, T, 263], mask [B, T] of real frames -> unit embeddings [B, dim]."""
        x = ((features - self.mean) / self.std) * mask[..., None]
        h = self.motion(x)  # [B, T/4, W]
        m = F.max_pool1d(mask[:, None].float(), 4, 4, ceil_mode=True)[:, 0, :h.shape[1]]
        if m.shape[1] < h.shape[1]:
            m = F.pad(m, (0, h.shape[1] - m.shape[1]))
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
        return F.normalize(self.motion_out(pooled), dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text(texts), dim=-1)

    def loss(self, features, mask, texts: list[str]) -> dict:
        """Symmetric InfoNCE; pairs with the same caption count as positives of each other."""
        m, t = self.embed_motion(features, mask), self.embed_text(texts)
        logits = t @ m.T / self.config.temperature
        same = torch.tensor([[a == b for b in texts] for a in texts], device=logits.device, dtype=logits.dtype)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean() +
                      torch.sum(-target * logits.log_softmax(0).T, 1).mean())
        acc = (logits.argmax(1) == torch.arange(len(texts), device=logits.device)).float().mean()
        return {"loss": loss, "top1": acc}
