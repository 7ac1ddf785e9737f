"""A split of a 2D-only dataset in memory, for training crops and for lifting whole clips."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch

from fastmotion.errors import DatasetError
from fastmotion.motion.horizon import pitches_from_horizon
from fastmotion.motion.skeleton import SKELETONS, Skeleton
from fastmotion.ops.reference import normalized_keypoints

from . import humanml3d as hml

DISPLAY = {"smpl22": "SMPL-22", "coco17": "COCO-17", "h36m17": "Human3.6M-17", "openpose18": "OpenPose-18",
           "openpose25": "OpenPose-25"}
LEVEL_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # world y up -> image y down, looking along -z


def pitched_camera(degrees: float) -> torch.Tensor:
    """R [3, 3] (world y up -> OpenCV camera) of a camera without roll pitched down by `degrees` (negative: up);
    its second column, the world's up in the camera frame, is (0, -cos, -sin)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]) @ LEVEL_CAMERA


class ClipBank:
    """Every clip of one split of a 2D dataset folder (`fastmotion data render` or `data import`) in memory:
    `names`, `clips` (keypoints in normalised image coordinates [T, J, 2]: SMPL-22, or the layout of a folder from
    `data import --native`, `skeleton`, which the caller must accept: `skeletons`) and `cameras` ((K [3, 3] pixels,
    R [3, 3], t [3] metres) world -> camera). Imported clips have no camera pose: theirs is a camera without roll
    (t = 0) pitched down by `pitch` degrees, or by default ("horizon") by the pitch estimated from the 2D
    (`fastmotion.motion.horizon.pitches_from_horizon`; SMPL-22 folders only, others are level): it sets the
    vertical that L_rec turns views about. `pitch_note` says what was assumed (None: every clip has its pose).
    Never reads eval3d/.

    Raises:
        DatasetError: the split file or a clip's keypoints are missing or malformed, the split is empty, or the
            folder's skeleton is not one of `skeletons` (None: any).
        ValueError: `pitch` is neither "horizon" nor a number.
    """

    def __init__(self, root, split: str, skeletons: tuple[str, ...] | None = ("smpl22",),
                 pitch: float | str = "horizon"):
        self.root = Path(root)
        self.skeleton_name = require_skeleton(self.root, skeletons)
        self.skeleton: Skeleton = SKELETONS[self.skeleton_name]
        joints = self.skeleton.num_joints
        try:
            self.names = hml.read_split(self.root, split)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        if pitch != "horizon" and (isinstance(pitch, str) or not math.isfinite(pitch)):
            raise ValueError(f"pitch must be 'horizon' or finite degrees, got {pitch!r}")
        self.clips, self.cameras, self.confidence = [], [], []
        unposed = []  # clips without a camera pose
        for name in self.names:
            path = self.root / "keypoints" / f"{name}.npy"
            if not path.exists():
                raise DatasetError(f"{path} is missing (is {self.root} a folder from `fastmotion data render`?)")
            k = np.load(path)
            if k.ndim != 3 or k.shape[1:] != (joints, 2):
                raise DatasetError(f"{path}: expected {DISPLAY.get(self.skeleton_name, self.skeleton_name)} keypoints "
                                   f"[T, {joints}, 2], got {list(k.shape)} (wrong joint count?)")
            with np.load(self.root / "cameras" / f"{name}.npz") as cam:
                K = torch.from_numpy(np.asarray(cam["K"], np.float32))
                if "R" in cam:
                    R, t = (torch.from_numpy(np.asarray(cam[key], np.float32)) for key in ("R", "t"))
                else:  # imported keypoints: the pose is unknown (set below)
                    R, t = LEVEL_CAMERA, torch.zeros(3)
                    unposed.append(len(self.clips))
            n = normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0]
            if not torch.isfinite(n).all():
                raise DatasetError(f"{path}: keypoints contain NaN or inf")
            self.clips.append(n)
            self.cameras.append((K, R, t))
            self.confidence.append(self._confidence(name, len(k)))
        if not self.clips:
            raise DatasetError(f"{self.root}: the {split} split has no clips")
        self.pitch_note = self._assume_pitch(unposed, pitch) if unposed else None

    def _assume_pitch(self, unposed: list[int], pitch: float | str) -> str:
        """Give the clips `unposed` a camera pitched by `pitch` (or their horizon estimate); -> what was assumed."""
        if pitch == "horizon" and self.skeleton_name == "smpl22":
            pitches, note = pitches_from_horizon([self.clips[i].numpy() for i in unposed],
                                                 [self.confidence[i].numpy() for i in unposed])
        else:
            pitches = [0.0 if pitch == "horizon" else float(pitch)] * len(unposed)
            note = f"camera pitch assumed: {pitches[0]:g} degrees down (no roll) for the clips without a pose"
        for i, degrees in zip(unposed, pitches):
            K, _, t = self.cameras[i]
            self.cameras[i] = (K, pitched_camera(degrees), t)
        return f"{self.root.name}: {note}"

    @functools.cached_property
    def weighted(self) -> bool:
        """Whether some joint has a confidence below 1 (imported detector keypoints). Kept: the confidences are fixed
        once loaded, and every training step asks (a scan of every clip took 8% of an ML-RQ step)."""
        return any(bool((c < 1).any()) for c in self.confidence)

    def _confidence(self, name: str, frames: int) -> torch.Tensor:
        """confidence/NAME.npy [T, J] in [0, 1] (`data import`: 0 for joints the detector did not give),
        else all 1."""
        path = self.root / "confidence" / f"{name}.npy"
        joints = self.skeleton.num_joints
        if not path.exists():
            return torch.ones(frames, joints)
        c = np.load(path)
        if c.shape != (frames, joints) or not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
            raise DatasetError(f"{path}: expected confidences in [0, 1] of shape [{frames}, {joints}], got "
                               f"{list(c.shape)}")
        return torch.from_numpy(c.astype(np.float32))

    def __len__(self) -> int:
        return len(self.clips)

    def up(self, index: int) -> torch.Tensor:
        """The world's up axis in clip `index`'s camera frame (R's second column): [3]."""
        return self.cameras[index][1][:, 1]

    def batch(self, size: int, length: int, generator: torch.Generator):
        """size random crops of `length` frames (padded, with a frame mask), each clip's up axis in its camera,
        and the joints' confidences -> ([B, L, J, 2], [B, L], [B, 3], [B, L, J])."""
        picks = torch.randint(len(self.clips), (size,), generator=generator).tolist()
        joints = self.skeleton.num_joints
        out = torch.zeros(size, length, joints, 2)
        mask = torch.zeros(size, length, dtype=torch.bool)
        confidence = torch.zeros(size, length, joints)
        for i, c in enumerate(picks):
            clip = self.clips[c]
            start = int(torch.randint(max(1, len(clip) - length + 1), (), generator=generator))
            piece = clip[start:start + length]
            out[i, :len(piece)] = piece
            out[i, len(piece):] = piece[-1]  # hold the last pose: no jump to zero for the convolutions
            mask[i, :len(piece)] = True
            confidence[i, :len(piece)] = self.confidence[c][start:start + length]
        return out, mask, torch.stack([self.up(c) for c in picks]), confidence


def dataset_skeleton(root) -> str:
    """The keypoint layout of a 2D dataset folder: meta.json's "skeleton" (`data import --native`), else smpl22.

    Raises:
        DatasetError: meta.json is unreadable or names an unknown skeleton.
    """
    path = Path(root) / "meta.json"
    if not path.exists():
        return "smpl22"
    try:
        name = json.loads(path.read_text()).get("skeleton", "smpl22")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise DatasetError(f"{path}: not a JSON object ({err})") from None
    if name not in SKELETONS:
        raise DatasetError(f"{path}: unknown skeleton {name!r}; known: {', '.join(SKELETONS)}")
    return name


def require_skeleton(root, skeletons: tuple[str, ...] | None = ("smpl22",)) -> str:
    """The skeleton of a 2D dataset folder (`dataset_skeleton`), which must be one of `skeletons` (None: any).

    Raises:
        DatasetError: naming the folder, its skeleton and the ones this model takes.
    """
    name = dataset_skeleton(root)
    if skeletons is not None and name not in skeletons:
        fix = ("import the keypoints without --native" if "smpl22" in skeletons else
               f"train the model on this folder's skeleton, or import {skeletons[0]} keypoints with "
               "`data import --native`")
        raise DatasetError(f"{root} holds {name} keypoints; this model takes {' or '.join(skeletons)}: {fix}")
    return name
