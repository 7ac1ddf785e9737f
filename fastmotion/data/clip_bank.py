"""A split of a 2D-only dataset in memory, for training crops and for lifting whole clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastmotion.errors import DatasetError
from fastmotion.ops.reference import normalized_keypoints

from . import humanml3d as hml

LEVEL_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # world y up -> image y down, looking along -z


class ClipBank:
    """Every clip of one split of a 2D dataset folder (`fastmotion data render` or `data import`) in memory:
    `names`, `clips` (keypoints in normalised image coordinates [T, 22, 2]) and `cameras` ((K [3, 3] pixels,
    R [3, 3], t [3] metres) world -> camera; for imported clips, whose camera pose is unknown, LEVEL_CAMERA and
    t = 0: the vertical that L_rec turns views about is then the image's, which assumes no camera pitch or
    roll). Never reads eval3d/.

    Raises:
        DatasetError: the split file or a clip's keypoints are missing or malformed, or the split is empty.
    """

    def __init__(self, root, split: str):
        self.root = Path(root)
        try:
            self.names = hml.read_split(self.root, split)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        self.clips, self.cameras, self.confidence = [], [], []
        for name in self.names:
            path = self.root / "keypoints" / f"{name}.npy"
            if not path.exists():
                raise DatasetError(f"{path} is missing (is {self.root} a folder from `fastmotion data render`?)")
            k = np.load(path)
            if k.ndim != 3 or k.shape[1:] != (22, 2):
                raise DatasetError(f"{path}: expected SMPL-22 keypoints [T, 22, 2], got {list(k.shape)} "
                                    "(wrong joint count?)")
            with np.load(self.root / "cameras" / f"{name}.npz") as cam:
                K = torch.from_numpy(np.asarray(cam["K"], np.float32))
                if "R" in cam:
                    R, t = (torch.from_numpy(np.asarray(cam[key], np.float32)) for key in ("R", "t"))
                else:  # imported keypoints: the pose is unknown; a level camera (no pitch, no roll) is assumed
                    R, t = LEVEL_CAMERA, torch.zeros(3)
            n = normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0]
            if not torch.isfinite(n).all():
                raise DatasetError(f"{path}: keypoints contain NaN or inf")
            self.clips.append(n)
            self.cameras.append((K, R, t))
            self.confidence.append(self._confidence(name, len(k)))
        if not self.clips:
            raise DatasetError(f"{self.root}: the {split} split has no clips")

    @property
    def weighted(self) -> bool:
        """Whether some joint has a confidence below 1 (imported detector keypoints)."""
        return any(bool((c < 1).any()) for c in self.confidence)

    def _confidence(self, name: str, frames: int) -> torch.Tensor:
        """confidence/NAME.npy [T, 22] in [0, 1] (`data import`: 0 for joints the detector did not give),
        else all 1."""
        path = self.root / "confidence" / f"{name}.npy"
        if not path.exists():
            return torch.ones(frames, 22)
        c = np.load(path)
        if c.shape != (frames, 22) or not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
            raise DatasetError(f"{path}: expected confidences in [0, 1] of shape [{frames}, 22], got "
                               f"{list(c.shape)}")
        return torch.from_numpy(c.astype(np.float32))

    def __len__(self) -> int:
        return len(self.clips)

    def up(self, index: int) -> torch.Tensor:
        """The world's up axis in clip `index`'s camera frame (R's second column): [3]."""
        return self.cameras[index][1][:, 1]

    def batch(self, size: int, length: int, generator: torch.Generator):
        """size random crops of `length` frames (padded, with a frame mask), each clip's up axis in its camera,
        and the joints' confidences -> ([B, L, 22, 2], [B, L], [B, 3], [B, L, 22])."""
        picks = torch.randint(len(self.clips), (size,), generator=generator).tolist()
        out = torch.zeros(size, length, 22, 2)
        mask = torch.zeros(size, length, dtype=torch.bool)
        confidence = torch.zeros(size, length, 22)
        for i, c in enumerate(picks):
            clip = self.clips[c]
            start = int(torch.randint(max(1, len(clip) - length + 1), (), generator=generator))
            piece = clip[start:start + length]
            out[i, :len(piece)] = piece
            out[i, len(piece):] = piece[-1]  # hold the last pose: no jump to zero for the convolutions
            mask[i, :len(piece)] = True
            confidence[i, :len(piece)] = self.confidence[c][start:start + length]
        return out, mask, torch.stack([self.up(c) for c in picks]), confidence
