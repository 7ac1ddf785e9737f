"""One lifting interface for every method, the zero-depth baseline, and lifting evaluation against held-out 3D.

A `Lifter` turns clips of 2D keypoints (normalised image coordinates) into 3D joints in each clip's camera
frame. `fastmotion lift` and `fastmotion eval lift` use only this interface: a method plugs in by adding a
`Lifter` subclass and one entry to `LIFTERS`.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from fastmotion.data.clip_bank import ClipBank
from fastmotion.data.keypoints import AUTO
from fastmotion.errors import DatasetError
from fastmotion.metrics.lifting import lifting_metrics, mvlift_metrics


@dataclass
class Clip2D:
    """One clip to lift: its name, keypoints [T, 22, 2] in normalised image coordinates (x / z, y / z of the
    camera frame), and its camera (K [3, 3] pixels, R [3, 3], t [3] metres; world -> camera) when known."""
    name: str
    keypoints: torch.Tensor
    camera: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class Lifter(ABC):
    """Lifts 2D clips to 3D. `lift` returns {name: joints [T', 22, 3]} in each clip's camera frame (T' <= T);
    a clip the lifter cannot lift is left out of the dict. `metric_scale`: the joints are in metres (else any
    global scale, which N-MPJPE and PA-MPJPE align)."""

    name: str = "lifter"
    metric_scale: bool = False

    @abstractmethod
    def lift(self, clips: Sequence[Clip2D], progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
        """clips -> {name: joints [T', 22, 3]}; `progress(n)` is called as n more clips are done."""


class ZeroDepthLifter(Lifter):
    """The 3D-free baseline: every joint at the root's depth (z = 0 relative), root at the origin on frame 0."""

    name = "zero depth"

    def lift(self, clips, progress=None):
        out = {c.name: zero_depth(c.keypoints) for c in clips}
        if progress:
            progress(len(clips))
        return out


def zero_depth(keypoints_normalised: torch.Tensor) -> torch.Tensor:
    """[T, 22, 2] normalised image coordinates -> [T, 22, 3]: the 2D offsets from the first frame's root, z = 0."""
    k = keypoints_normalised - keypoints_normalised[:1, :1]
    return torch.cat([k, torch.zeros_like(k[..., :1])], -1)


# kind -> (module, class): imported on use, so that `--help` and the other methods stay light
LIFTERS = {"mlrq": ("fastmotion.pipelines.free3d", "MLRQLifter"),
           "mdm": ("fastmotion.pipelines.videomdm", "MDMLifter"),
           "mvlift": ("fastmotion.pipelines.mvlift", "MVLiftLifter")}


def load_lifter(kind: str, checkpoint, device="cpu", **options) -> Lifter:
    """The lifter of method `kind` (a key of LIFTERS) from its checkpoint; `options` go to its constructor
    (e.g. VideoMDM's `data`, `split`, `teacher`).

    Raises:
        ValueError: unknown kind. CheckpointError: the checkpoint is missing or holds another model.
    """
    if kind not in LIFTERS:
        raise ValueError(f"unknown lifter {kind!r}; choose one of {', '.join(LIFTERS)}")
    module, cls = LIFTERS[kind]
    return getattr(importlib.import_module(module), cls).from_checkpoint(checkpoint, device, **options)


def dataset_clips(data, split: str, limit: int | None = None) -> list[Clip2D]:
    """The clips of a split of a 2D dataset folder, with their cameras (at most `limit`).

    Raises:
        DatasetError: see `ClipBank`.
    """
    bank = ClipBank(data, split)
    return [Clip2D(n, k, cam) for n, k, cam in zip(bank.names, bank.clips, bank.cameras)][:limit]


def evaluate_lifting(lifter: Lifter, data, split: str = "test", limit: int | None = None,
                     progress: Callable[[int], None] | None = None, clips: list[Clip2D] | None = None) -> dict:
    """Lifting figures of `lifter` and of the zero-depth baseline on the same clips against the held-out 3D
    (eval3d/, read here only): {"model": metrics, "zero_depth": metrics, "clips": n}, metrics as
    `fastmotion.metrics.lifting.lifting_metrics` (millimetres; MPJPE only for a metric lifter), and under
    "mvlift_protocol" the same two rows by MVLift's protocol (`mvlift_protocol`). Clips the lifter leaves out are
    left out of both rows. `clips`: the split's clips when already read (`dataset_clips`).

    Raises:
        DatasetError: the split or a clip's held-out 3D is missing, or no clip was lifted.
    """
    root = Path(data)
    clips = dataset_clips(data, split, limit) if clips is None else clips
    lifted = lifter.lift(clips, progress)
    preds, bases, trues, cams, keypoints = [], [], [], [], []
    for clip in clips:
        pred = lifted.get(clip.name)
        if pred is None:
            continue
        path = root / "eval3d" / "new_joints" / f"{clip.name}.npy"
        if not path.exists():
            raise DatasetError(f"{path} is missing: evaluation needs the held-out 3D that `fastmotion data "
                               "render` writes to eval3d/")
        K, R, t = _true_camera(root, clip)
        camera = torch.from_numpy(np.load(path)) @ R.T + t  # the truth in the camera frame, metres
        preds.append(pred)
        bases.append(zero_depth(clip.keypoints)[:len(pred)])
        trues.append(camera[:len(pred)])
        cams.append((K, R, t))
        keypoints.append(clip.keypoints[:len(pred)])
    if not preds:
        raise DatasetError(f"{data}: no clip of the {split} split could be lifted")
    longest = max(len(p) for p in preds)

    def stack(xs):
        out = torch.zeros(len(xs), longest, 22, xs[0].shape[-1], dtype=torch.float64)
        for i, x in enumerate(xs):
            out[i, :len(x)] = x
            out[i, len(x):] = x[-1]
        return out

    mask = torch.zeros(len(preds), longest, dtype=torch.bool)
    for i, p in enumerate(preds):
        mask[i, :len(p)] = True
    true, camera = stack(trues), [torch.stack(c).double() for c in zip(*cams)]
    pred, base, seen = stack(preds), stack(bases), stack(keypoints)
    return {"model": lifting_metrics(pred, true, mask, lifter.metric_scale),
            "zero_depth": lifting_metrics(base, true, mask), "clips": len(preds),
            "mvlift_protocol": {"model": mvlift_protocol(pred, true, mask, camera, seen, lifter.metric_scale),
                                "zero_depth": mvlift_protocol(base, true, mask, camera, seen)}}


def mvlift_protocol(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, camera, keypoints: torch.Tensor,
                    metric: bool = False) -> dict[str, float]:
    """MVLift's figures (`fastmotion.metrics.lifting.mvlift_metrics`: T_root, MPJPE, PA-MPJPE-seq in mm; J_2D in
    pixels) of lifts pred [N, T, 22, 3] against true [N, T, 22, 3], both in each clip's camera frame (K, R, t:
    [N, 3, 3], [N, 3, 3], [N, 3]), keypoints [N, T, 22, 2] normalised image coordinates. Both are taken to the world
    frame (y up) after, unless `metric`, the least-squares scale of each clip's root-relative joints (scaling about
    the camera centre keeps the projection). J_2D only where every lifted joint is in front of the camera (not
    for zero depth, whose joints sit at z = 0)."""
    K, R, t = camera
    if not metric:
        m = mask.to(pred.dtype)[..., None, None]
        rel_p, rel_t = (pred - pred[:, :, :1]) * m, (true - true[:, :, :1]) * m
        pred = pred * ((rel_p * rel_t).sum((1, 2, 3)) / (rel_p ** 2).sum((1, 2, 3)).clamp_min(1e-12))[:, None, None,
                                                                                                       None]
    world = lambda x: (x - t[:, None, None]) @ R[:, None]  # noqa: E731  (x_cam = R x + t)
    seen = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], -1) @ K.transpose(-1, -2)[:, None]
    in_front = bool((pred[..., 2][mask] > 1e-6).all())
    extra = {"keypoints": seen[..., :2], "K": K, "R": R, "t": t} if in_front else {}
    return mvlift_metrics(world(pred), world(true), mask, **extra)


def _true_camera(root: Path, clip: Clip2D):
    """The clip's camera with its pose: eval3d/cameras/NAME.npz (held out when the dataset has no camera pose),
    else the dataset's."""
    path = root / "eval3d" / "cameras" / f"{clip.name}.npz"
    if path.exists():
        with np.load(path) as cam:
            return tuple(torch.from_numpy(np.asarray(cam[k], np.float32)) for k in ("K", "R", "t"))
    return clip.camera


def read_keypoint_file(path, intrinsics: tuple[float, float, float, float] | None = None,
                       layout: str | None = None, track=AUTO, fps: float = 20.0) -> Clip2D:
    """One detector keypoint file as a clip to lift: .npy [T, K, 2|3] or a COCO-style .json (pixels; see
    `fastmotion.data.keypoints`); joints a detector does not give are estimated from those it does
    (`complete_smpl22`). intrinsics: (fx, fy, cx, cy) pixels; default: `guess_intrinsics`, as `data import`
    guesses them. layout: the keypoints' order (default: COCO-17 for .json, from the joint count for .npy);
    track: which person of a .json (default: the one seen longest; `read_coco_json`). fps: the file's frame rate
    (resampled to the models' 20). The clip has no camera pose.

    Raises:
        ValueError: the file is malformed or shows no keypoint. FileNotFoundError: no such file.
    """
    from fastmotion.data.importer import resample_track
    from fastmotion.data.keypoints import complete_smpl22, guess_intrinsics, read_coco_json, read_keypoints_npy
    from fastmotion.ops.reference import normalized_keypoints

    path = Path(path)
    if path.suffix.lower() == ".json":
        k, mask = read_coco_json(path, track=track, layout=layout)
    else:
        k, mask = read_keypoints_npy(path, layout)
    k, mask = resample_track(k, mask, fps)
    if not mask.any():
        raise ValueError(f"{path}: no keypoint is visible")
    k, _ = complete_smpl22(k, mask)
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics
        K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
    else:
        K = torch.from_numpy(guess_intrinsics(k))
    return Clip2D(path.stem, normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0])
