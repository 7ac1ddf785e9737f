"""VideoMDM's training and lifting windows: the noisy 3D teacher of each clip (`fastmotion data teacher`),
canonicalised as HumanML3D does (floor, origin, facing +z), with its 2D keypoints and its camera carried into
the canonical frame (R' = R R_c^T, t' = R offset + t), so that predicted joints project onto the keypoints."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastmotion.errors import DatasetError
from fastmotion.motion.humanml3d import FEATURE_DIM, canonical_transform, joints_to_features

from . import humanml3d as hml
from .clip_bank import require_skeleton


@dataclass
class Window:
    """One window of a clip: the teacher's canonical features, the observed 2D and the camera."""
    features: torch.Tensor  # [F, 263]
    keypoints: torch.Tensor  # [F, 22, 2] pixels
    K: torch.Tensor
    R: torch.Tensor  # canonical world -> camera
    t: torch.Tensor
    captions: list[str]
    name: str
    start: int  # first frame in the clip


def canonical_window(joints: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
    """Teacher joints [L, 22, 3] (world) -> (features [L-1, 263], R', t') of the canonicalised window."""
    Rc, offset = canonical_transform(joints)
    return joints_to_features(joints), R @ Rc.T, R @ offset + t


class TeacherBank:
    """Windows of at most `max_frames` feature frames from every clip of a split that has a teacher.

    Training batches come from length buckets (equal counts of windows sorted by length; a bucket drawn
    uniformly, then windows uniformly in it): every window keeps the same chance, but a batch is padded to
    the longest of similar lengths, not of the whole corpus (measured: 2x fewer frames per step on the demo)."""

    def __init__(self, data, teacher, split: str, max_frames: int, buckets: int = 8):
        data, teacher = Path(data), Path(teacher)
        require_skeleton(data)
        if not teacher.is_dir():
            raise DatasetError(f"{teacher}: no teacher folder (build one with `fastmotion data teacher`)")
        try:
            names = hml.read_split(data, split)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        self.windows: list[Window] = []
        self.skipped = 0
        for name in names:
            path = teacher / f"{name}.npy"
            if not path.exists():
                self.skipped += 1
                continue
            joints = torch.from_numpy(np.load(path)).double()
            keypoints = torch.from_numpy(np.load(data / "keypoints" / f"{name}.npy")).double()
            if len(joints) != len(keypoints):
                raise DatasetError(f"{path}: {len(joints)} frames, the 2D {len(keypoints)} (rebuild the teacher)")
            with np.load(teacher / "cameras" / f"{name}.npz") as c:
                K, R, t = (torch.from_numpy(c[k].astype(np.float64)) for k in ("K", "R", "t"))
            captions = hml.captions_of(data, name) or [""]
            for start in range(0, max(1, len(joints) - 1), max_frames):
                piece = joints[start:start + max_frames + 1]
                if len(piece) < 3:
                    continue
                features, Rw, tw = canonical_window(piece, R, t)
                self.windows.append(Window(features.float(), keypoints[start:start + len(features)].float(),
                                           K.float(), Rw.float(), tw.float(), captions, name, start))
        if not self.windows:
            raise DatasetError(f"{data}: no clip of the {split} split has a teacher in {teacher}")
        by_length = sorted(range(len(self.windows)), key=lambda i: len(self.windows[i].features))
        self.buckets = [b.tolist() for b in torch.tensor(by_length).tensor_split(min(buckets, len(by_length)))]

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.cat([w.features for w in self.windows])
        return flat.mean(0), flat.std(0).clamp_min(1e-3)

    def batch(self, size: int, generator: torch.Generator, picks=None):
        if picks is None:
            bucket = self.buckets[int(torch.randint(len(self.buckets), (), generator=generator))]
            picks = [bucket[i] for i in torch.randint(len(bucket), (size,), generator=generator).tolist()]
        ws = [self.windows[i] for i in picks]
        F = max(len(w.features) for w in ws)
        feats = torch.zeros(len(ws), F, FEATURE_DIM)
        kps = torch.zeros(len(ws), F, 22, 2)
        mask = torch.zeros(len(ws), F, dtype=torch.bool)
        for i, w in enumerate(ws):
            n = len(w.features)
            feats[i, :n], kps[i, :n], mask[i, :n] = w.features, w.keypoints, True
            feats[i, n:] = w.features[-1]
            kps[i, n:] = w.keypoints[-1]
        texts = [w.captions[int(torch.randint(len(w.captions), (), generator=generator))] for w in ws]
        cams = [torch.stack([getattr(w, k) for w in ws]) for k in ("K", "R", "t")]
        return feats, kps, mask, texts, cams
