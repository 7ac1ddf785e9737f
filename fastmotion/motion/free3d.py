"""Free3D's motion representation: the root trajectory plus one vector per limb (child joint minus parent
joint), in 3D ([..., T, 3] and [..., T, J-1, 3]) or 2D (the same with 2 channels). Joints are recovered by
summing limb vectors down the kinematic tree, so the round trip is exact for any skeleton with the given
parents. The flat feature layout used by the models is [..., T, C + (J-1) * C]: root first, then limbs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .skeleton import SMPL22, Skeleton


def to_root_and_limbs(joints: torch.Tensor, skeleton: Skeleton = SMPL22) -> tuple[torch.Tensor, torch.Tensor]:
    """joints [..., J, C] (C = 2 or 3) -> root [..., C], limbs [..., J-1, C] (limb k ends at joint k + 1)."""
    _check_joints(joints, skeleton)
    parents = torch.tensor([p for p in skeleton.parents[1:]], device=joints.device)
    return joints[..., 0, :], joints[..., 1:, :] - joints.index_select(-2, parents)


def from_root_and_limbs(root: torch.Tensor, limbs: torch.Tensor, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """Inverse of `to_root_and_limbs`: joints [..., J, C]. Differentiable."""
    if limbs.shape[-2] != skeleton.num_joints - 1 or root.shape[-1] != limbs.shape[-1]:
        raise ValueError(f"limbs must be [..., {skeleton.num_joints - 1}, C] and root [..., C], got "
                         f"{tuple(limbs.shape)} and {tuple(root.shape)}")
    joints = [root]
    for j, p in enumerate(skeleton.parents[1:], start=1):  # parents come first: one pass down the tree
        joints.append(joints[p] + limbs[..., j - 1, :])
    return torch.stack(joints, dim=-2)


def to_features(joints: torch.Tensor, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """joints [..., J, C] -> flat features [..., C * J]: root, then the limb vectors."""
    root, limbs = to_root_and_limbs(joints, skeleton)
    return torch.cat([root, limbs.flatten(-2)], dim=-1)


def from_features(features: torch.Tensor, channels: int, skeleton: Skeleton = SMPL22) -> torch.Tensor:
    """Flat features [..., C * J] -> joints [..., J, C]."""
    if features.shape[-1] != channels * skeleton.num_joints:
        raise ValueError(f"features must have {channels * skeleton.num_joints} channels for {channels}D joints, "
                         f"got {features.shape[-1]}")
    root, limbs = features[..., :channels], features[..., channels:]
    return from_root_and_limbs(root, limbs.unflatten(-1, (skeleton.num_joints - 1, channels)), skeleton)


@dataclass
class Normalizer:
    """Per-channel mean and std of flat features, computed on a dataset and saved beside it (.npz)."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features, min_std: float = 1e-4) -> "Normalizer":
        """features: an array [N, C] or an iterable of arrays [T_i, C] (clips of any length)."""
        if isinstance(features, np.ndarray):
            features = [features]
        stacked = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1, np.shape(f)[-1]) for f in features])
        if stacked.shape[0] == 0:
            raise ValueError("Normalizer.fit: no frames to compute statistics on")
        return cls(stacked.mean(0).astype(np.float32), np.maximum(stacked.std(0), min_std).astype(np.float32))

    def normalize(self, x):
        return (x - self._like(self.mean, x)) / self._like(self.std, x)

    def denormalize(self, x):
        return x * self._like(self.std, x) + self._like(self.mean, x)

    @staticmethod
    def _like(value, x):
        return torch.as_tensor(value, dtype=x.dtype, device=x.device) if isinstance(x, torch.Tensor) else value

    def save(self, path) -> None:
        np.savez(path, mean=self.mean, std=self.std)

    @classmethod
    def load(cls, path) -> "Normalizer":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"normalisation statistics {path} do not exist (computed by `fastmotion data`)")
        with np.load(path) as data:
            if "mean" not in data or "std" not in data:
                raise ValueError(f"{path}: expected arrays 'mean' and 'std', found {', '.join(data.files)}")
            return cls(data["mean"], data["std"])


def _check_joints(joints, skeleton):
    if not isinstance(joints, torch.Tensor):
        raise TypeError(f"joints must be a torch.Tensor [..., J, C], got {type(joints).__name__}")
    if joints.dim() < 2 or joints.shape[-2] != skeleton.num_joints or joints.shape[-1] not in (2, 3):
        raise ValueError(f"joints must be [..., {skeleton.num_joints}, 2 or 3], got {tuple(joints.shape)}")


def upright(joints: torch.Tensor, R: torch.Tensor | None = None, height: float = 1.7) -> torch.Tensor:
    """Lifted or generated joints [T, J, 3] (camera frame: y down, z forward; units of the subject's depth) ->
    the world convention for files and pictures: y up (the camera's rotation R undone when known, else y and z
    flipped), feet on the floor, scaled to a `height`-metre person (a lift from one view has no metric scale)."""
    j = joints @ R if R is not None else joints * joints.new_tensor([1.0, -1.0, -1.0])
    tall = (j[..., 1].amax(-1) - j[..., 1].amin(-1)).median().clamp_min(1e-6)
    j = j * (height / tall)
    return j - torch.stack([torch.zeros(()), j[..., 1].min(), torch.zeros(())]).to(j)
