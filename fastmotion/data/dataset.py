"""The 2D-only training dataset (a folder written by `fastmotion data render`): random fixed-length crops of
2D keypoint clips with their camera, a caption and the Free3D normalisation statistics. It never reads the
eval3d/ folder."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from fastmotion.motion.free3d import Normalizer, to_features
from fastmotion.ops.reference import normalized_keypoints

from . import humanml3d as hml
from .clip_bank import require_skeleton


class Keypoints2DDataset(torch.utils.data.Dataset):
    """Items: dict with
      keypoints [L, 22, 2] float32 pixels (zeros past the clip's end), mask [L] bool (True on real frames),
      K, R [3, 3], t [3] float32, text (one of the clip's captions, drawn at random), length (real frames),
      name, and features [L, 44]: the Free3D 2D features (root + 21 limb vectors) of the keypoints in
      normalised image coordinates, standardised with the dataset's statistics (zeros past the clip's end). Clips
      shorter than `length` are padded; longer ones are cropped at a random start.
    Randomness (crop start, caption) comes from (seed, epoch, index): call `set_epoch` each epoch.
    """

    def __init__(self, root, split: str = "train", length: int = 64, seed: int = 0, min_length: int = 1):
        self.root = Path(root)
        if length < 1:
            raise ValueError(f"length must be at least 1 frame, got {length}")
        self.names = hml.read_split(self.root, split)
        require_skeleton(self.root)  # the Free3D features are SMPL-22's
        self.length, self.seed, self.epoch, self.min_length = length, seed, 0, min_length
        stats = self.root / "stats_free3d_2d.npz"
        self.normalizer = Normalizer.load(stats) if stats.exists() else None
        missing = [n for n in self.names[:5] if not (self.root / "keypoints" / f"{n}.npy").exists()]
        if missing:
            raise FileNotFoundError(f"{self.root / 'keypoints'}: missing {', '.join(missing)}.npy (is {self.root} "
                                    "a folder written by `fastmotion data render`?)")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        path = self.root / "keypoints" / f"{name}.npy"
        keypoints = np.load(path)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (22, 2):
            raise ValueError(f"{path}: expected keypoints [T, 22, 2], got {list(keypoints.shape)}")
        with np.load(self.root / "cameras" / f"{name}.npz") as cam:
            K, R, t = cam["K"], cam["R"], cam["t"]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        T = keypoints.shape[0]
        start = rng.randrange(0, T - self.length + 1) if T > self.length else 0
        real = min(T, self.length)
        out = np.zeros((self.length, 22, 2), dtype=np.float32)
        out[:real] = keypoints[start:start + real]
        mask = np.zeros(self.length, dtype=bool)
        mask[:real] = True
        text_path = self.root / "texts" / f"{name}.txt"
        captions = hml.parse_captions(text_path) if text_path.exists() else []
        text = rng.choice(captions).text if captions else ""
        item = {"keypoints": torch.from_numpy(out), "mask": torch.from_numpy(mask),
                "K": torch.from_numpy(np.asarray(K, np.float32)), "R": torch.from_numpy(np.asarray(R, np.float32)),
                "t": torch.from_numpy(np.asarray(t, np.float32)), "text": text, "length": real, "name": name}
        features = to_features(normalized_keypoints(item["keypoints"][None], item["K"][None])[0])
        if self.normalizer is not None:
            features = self.normalizer.normalize(features)
        item["features"] = torch.where(item["mask"][:, None], features, torch.zeros_like(features))
        return item
