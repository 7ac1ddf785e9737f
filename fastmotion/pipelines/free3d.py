"""Free3D's trained models: loading the 2D prior and the ML-RQ, and lifting 2D clips to 3D with the ML-RQ."""
from __future__ import annotations

import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.models.mlrq import MLRQ, MotionVQConfig, Prior2D, features_to_joints, motion_features
from fastmotion.motion.camera import place_on_rays, relative_depth

from .lifting import Lifter


def _load(path, cls, device):
    """A trained model of class `cls` from its checkpoint, in eval mode on `device` (CheckpointError if not)."""
    state = load_checkpoint(path, cls.__name__)
    cfg = {k: v for k, v in state["model_config"].items() if k not in ("kind", "length")}
    model = cls(MotionVQConfig(**cfg))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_prior(path, device) -> Prior2D:
    """The frozen 2D prior of `fastmotion train prior`: eval mode, no gradients to its weights (they still flow
    through it). Raises CheckpointError."""
    prior = _load(path, Prior2D, device)
    for p in prior.parameters():
        p.requires_grad_(False)
    return prior


def load_mlrq(path, device) -> MLRQ:
    """The ML-RQ of `fastmotion train mlrq`, in eval mode. Raises CheckpointError."""
    return _load(path, MLRQ, device)


@torch.no_grad()
def lift(model: MLRQ, keypoints_normalised: torch.Tensor) -> torch.Tensor:
    """One clip [T, 22, 2] in normalised image coordinates -> 3D joints [T, 22, 3] in the camera frame, in
    units of the subject's first-frame depth, root at the origin on the first frame.

    The ML-RQ gives each frame's pose in units of that frame's depth; the global motion puts it on the root's
    camera ray at the depth the skeleton's apparent 2D size gives (`relative_depth`, `place_on_rays`). On
    Bandai-2's val split this took the root trajectory error from 1021 mm (the ML-RQ's own root channels) to
    about 70 (docs/real-data.md): a deviation from Free3D, whose root comes from the network."""
    T = keypoints_normalised.shape[0]
    m = model.frame_multiple
    padded_len = -(-T // m) * m
    k = torch.cat([keypoints_normalised, keypoints_normalised[-1:].expand(padded_len - T, -1, -1)])
    device = model.stats.mean.device
    x = model.stats.normalize(motion_features(k[None].to(device)))
    f3d, _, _ = model.lift(x)
    pose = features_to_joints(f3d, 3)[0, :T].cpu()
    keypoints_normalised = keypoints_normalised.to(pose.dtype)
    return place_on_rays(pose, keypoints_normalised[:, 0], relative_depth(keypoints_normalised))


class MLRQLifter(Lifter):
    """Free3D's lifting: each clip through the ML-RQ (`lift`), one at a time."""

    name = "ML-RQ"

    def __init__(self, model: MLRQ):
        self.model = model

    @classmethod
    def from_checkpoint(cls, path, device="cpu") -> "MLRQLifter":
        return cls(load_mlrq(path, device))

    def lift(self, clips, progress=None):
        out = {}
        for clip in clips:
            out[clip.name] = lift(self.model, clip.keypoints)
            if progress:
                progress(1)
        return out
