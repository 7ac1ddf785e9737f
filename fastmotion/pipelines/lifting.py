"""One lifting interface for every method, the zero-depth baseline, and lifting evaluation against held-out 3D.

A `Lifter` turns clips of 2D keypoints (normalised image coordinates) into 3D joints in each clip's camera
frame. `fastmotion lift` and `fastmotion eval lift` use only this interface: a method plugs in by adding a
`Lifter` subclass and one entry to `LIFTERS`.
"""
from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from fastmotion.data.clip_bank import ClipBank
from fastmotion.data.keypoints import AUTO
from fastmotion.errors import CheckpointError, DatasetError, MotionError
from fastmotion.metrics.lifting import LIMB_JOINTS, lifting_metrics, mvlift_metrics
from fastmotion.motion.body import rigid_body
from fastmotion.motion.skeleton import SKELETONS, SMPL22, keypoints_to_smpl22


@dataclass
class Clip2D:
    """One clip to lift: its name, keypoints [T, J, 2] in normalised image coordinates (x / z, y / z of the
    camera frame; SMPL-22, J = 22, unless the lifter takes another skeleton), and its camera (K [3, 3] pixels,
    R [3, 3], t [3] metres; world -> camera) when known."""
    name: str
    keypoints: torch.Tensor
    camera: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class Lifter(ABC):
    """Lifts 2D clips to 3D. `lift` returns {name: joints [T', J, 3]} in each clip's camera frame (T' <= T; J the
    joints of `skeleton`, 22 for SMPL-22); a clip the lifter cannot lift is left out of the dict. `metric_scale`:
    the joints are in metres (else any global scale, which N-MPJPE and PA-MPJPE align). `skeleton`: the keypoint
    layout it lifts (a key of SKELETONS; its output has the same joints)."""

    name: str = "lifter"
    metric_scale: bool = False
    skeleton: str = "smpl22"

    @abstractmethod
    def lift(self, clips: Sequence[Clip2D], progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
        """clips -> {name: joints [T', J, 3]}; `progress(n)` is called as n more clips are done."""


class ZeroDepthLifter(Lifter):
    """The 3D-free baseline: every joint at the root's depth (z = 0 relative), root at the origin on frame 0."""

    name = "zero depth"

    def lift(self, clips, progress=None):
        out = {c.name: zero_depth(c.keypoints) for c in clips}
        if progress:
            progress(len(clips))
        return out


def zero_depth(keypoints_normalised: torch.Tensor) -> torch.Tensor:
    """[T, J, 2] normalised image coordinates -> [T, J, 3]: the 2D offsets from the first frame's joint 0, z = 0."""
    k = keypoints_normalised - keypoints_normalised[:1, :1]
    return torch.cat([k, torch.zeros_like(k[..., :1])], -1)


def eval_joints(points: torch.Tensor, skeleton: str) -> torch.Tensor:
    """The joints every layout has exactly, for scoring a lift in another layout than the SMPL-22 truth:
    points [..., J, C] in `skeleton` (a key of SKELETONS) -> [..., 13, C]: the hips' midpoint (the root), then the
    12 limb joints in `fastmotion.metrics.lifting.LIMB_JOINTS` order."""
    names = SKELETONS[skeleton].names
    picks = [names.index(SMPL22.names[j]) for j in LIMB_JOINTS]
    left, right = names.index("left_hip"), names.index("right_hip")
    return torch.cat([0.5 * (points[..., left:left + 1, :] + points[..., right:right + 1, :]),
                      points[..., picks, :]], -2)


def lifter_skeleton(kind: str, checkpoint) -> str:
    """The keypoint layout that the lifter of `kind` from `checkpoint` takes: SMPL-22, or for MVLift the layout
    its stage-1 model was trained on. Raises CheckpointError (MVLift: the checkpoint is missing or another model)."""
    if kind != "mvlift":
        return "smpl22"
    from fastmotion.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    if state["kind"] not in ("LineDenoiser", "MultiViewDenoiser"):
        raise CheckpointError(f"{checkpoint} holds a {state['kind']} model, expected MVLift's LineDenoiser (`train "
                              "mvlift`) or MultiViewDenoiser (`train mvlift-mv`)")
    return state["model_config"]["skeleton"]


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


def dataset_clips(data, split: str, limit: int | None = None, skeleton: str = "smpl22",
                  stride: int = 1) -> list[Clip2D]:
    """The clips of a split of a 2D dataset folder, with their cameras: every `stride`-th clip in the split's
    order (a split file sorted by action, as Bandai-2's, gets every action), at most `limit`; the folder's
    keypoints must be in `skeleton` (the lifter's).

    Raises:
        DatasetError: see `ClipBank` (another skeleton than `skeleton` named). ValueError: stride < 1.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    bank = ClipBank(data, split, skeletons=(skeleton,))
    return [Clip2D(n, k, cam) for n, k, cam in zip(bank.names, bank.clips, bank.cameras)][::stride][:limit]


def lift_bodies(lifter: Lifter, clips: Sequence[Clip2D], progress: Callable[[int], None] | None = None,
                rigid: bool = True, left_out: list[str] | None = None) -> dict[str, torch.Tensor]:
    """`lifter.lift(clips, progress)` -> {name: joints [T', J, 3]}, each clip's bones held at one skeleton
    (`rigid`, the default: what `fastmotion lift` writes; `fastmotion.motion.body.rigid_body`, on SMPL-22 near an
    adult's proportions). A lift holding NaN or inf, or of size zero, is left out, the reason appended to
    `left_out`."""
    lifted = lifter.lift(clips, progress)
    skeleton = SKELETONS[lifter.skeleton]
    out = {}
    for name, joints in lifted.items():
        try:
            if not bool(torch.isfinite(joints).all()):
                raise MotionError("the lift holds NaN or inf")
            out[name] = rigid_body(joints, skeleton=skeleton) if rigid else joints
        except ValueError as err:  # MotionError, or a body of size zero
            if left_out is not None:
                left_out.append(f"{name}: left out ({err})")
    return out


def evaluate_lifting(lifter: Lifter, data, split: str = "test", limit: int | None = None,
                     progress: Callable[[int], None] | None = None, clips: list[Clip2D] | None = None,
                     rigid: bool = True, left_out: list[str] | None = None) -> dict:
    """Lifting figures of `lifter` and of the zero-depth baseline on the same clips against the held-out 3D
    (eval3d/, read here only): {"model": metrics, "zero_depth": metrics, "clips": n}, metrics as
    `fastmotion.metrics.lifting.lifting_metrics` (millimetres; MPJPE only for a metric lifter), and under
    "mvlift_protocol" the same two rows by MVLift's protocol (`mvlift_protocol`). Clips the lifter leaves out are
    left out of both rows. `clips`: the split's clips when already read (`dataset_clips`). "seconds" and
    "seconds_per_clip": the lifter's wall time (over the clips lifted; `threads`: torch's CPU threads). `rigid`:
    score the lifts with their bones held at one skeleton, as `fastmotion lift` writes them (`lift_bodies`; a lift
    holding NaN or inf is left out, the reason appended to `left_out`).

    Raises:
        DatasetError: the split or a clip's held-out 3D is missing, or no clip was lifted.
    """
    root = Path(data)
    clips = dataset_clips(data, split, limit, lifter.skeleton) if clips is None else clips
    started = time.perf_counter()
    lifted = lift_bodies(lifter, clips, progress, rigid, left_out)
    seconds = time.perf_counter() - started
    native = lifter.skeleton != "smpl22"  # scored on the joints both layouts have (`eval_joints`)
    picked = (lambda x: eval_joints(x, lifter.skeleton)) if native else (lambda x: x)  # noqa: E731
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
        preds.append(picked(pred))
        bases.append(picked(zero_depth(clip.keypoints))[:len(pred)])
        trues.append(eval_joints(camera[:len(pred)], "smpl22") if native else camera[:len(pred)])
        cams.append((K, R, t))
        keypoints.append(picked(clip.keypoints[:len(pred)]))
    if not preds:
        raise DatasetError(f"{data}: no clip of the {split} split could be lifted")
    longest = max(len(p) for p in preds)

    def stack(xs):
        out = torch.zeros(len(xs), longest, *xs[0].shape[1:], dtype=torch.float64)
        for i, x in enumerate(xs):
            out[i, :len(x)] = x
            out[i, len(x):] = x[-1]
        return out

    mask = torch.zeros(len(preds), longest, dtype=torch.bool)
    for i, p in enumerate(preds):
        mask[i, :len(p)] = True
    true, camera = stack(trues), [torch.stack(c).double() for c in zip(*cams)]
    pred, base, seen = stack(preds), stack(bases), stack(keypoints)
    limbs = tuple(range(1, 13)) if native else LIMB_JOINTS
    return {"model": lifting_metrics(pred, true, mask, lifter.metric_scale, limbs),
            "zero_depth": lifting_metrics(base, true, mask, limbs=limbs), "clips": len(preds),
            "joints": f"{lifter.skeleton}: the hips' midpoint and the 12 limb joints" if native else "smpl22",
            "seconds": seconds, "seconds_per_clip": seconds / len(preds), "threads": torch.get_num_threads(),
            "mvlift_protocol": {"model": mvlift_protocol(pred, true, mask, camera, seen, lifter.metric_scale),
                                "zero_depth": mvlift_protocol(base, true, mask, camera, seen)}}


def mvlift_protocol(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, camera, keypoints: torch.Tensor,
                    metric: bool = False) -> dict[str, float]:
    """MVLift's figures (`fastmotion.metrics.lifting.mvlift_metrics`: T_root, MPJPE, PA-MPJPE-seq in mm; J_2D in
    pixels) of lifts pred [N, T, J, 3] against true [N, T, J, 3] (the same J joints, joint 0 the root: SMPL-22, or
    `eval_joints` of both), both in each clip's camera frame (K, R, t: [N, 3, 3], [N, 3, 3], [N, 3]), keypoints
    [N, T, J, 2] normalised image coordinates. Both are taken to the world
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
                       layout: str | None = None, track=AUTO, fps: float = 20.0, skeleton: str = "smpl22") -> Clip2D:
    """One detector keypoint file as a clip to lift: .npy [T, K, 2|3] or a COCO-style .json (pixels; see
    `fastmotion.data.keypoints`); joints a detector does not give are estimated from those it does
    (`complete_smpl22`). intrinsics: (fx, fy, cx, cy) pixels; default: `guess_intrinsics`, as `data import`
    guesses them. layout: the keypoints' order (default: COCO-17 for .json, from the joint count for .npy);
    track: which person of a .json (default: the one seen longest; `read_coco_json`). fps: the file's frame rate
    (resampled to the models' 20). skeleton: the lifter's layout (`Lifter.skeleton`); other than smpl22 (MVLift
    trained on `data import --native` data), the file is read in that layout, joints missing in some frames taken
    from the nearest frame; unless `layout` names it, the file must look like that layout (`check_layout`). The
    clip has no camera pose.

    Raises:
        ValueError: the file is malformed, shows no keypoint, is in another layout than a native `skeleton`, or
            (native) never shows some joint. FileNotFoundError: no such file.
    """
    from fastmotion.data.importer import resample_track
    from fastmotion.data.keypoints import (check_layout, complete_smpl22, fill_from_nearest, guess_intrinsics,
                                           read_coco_json, read_keypoints_npy)
    from fastmotion.ops.reference import normalized_keypoints

    path, native = Path(path), skeleton != "smpl22"
    if native and layout not in (None, skeleton):
        raise ValueError(f"{path}: the model lifts {skeleton} keypoints; --layout {layout} cannot be read natively")
    assumed, layout = native and layout is None, skeleton if native else layout
    if path.suffix.lower() == ".json":
        k, mask = read_coco_json(path, track=track, layout=layout, native=native)
    else:
        k, mask = read_keypoints_npy(path, layout, native=native)
    if assumed:  # the model's layout was assumed, not given: checked as the readers check a layout they guess
        check_layout(*keypoints_to_smpl22(k, skeleton), path, skeleton)
    k, mask = resample_track(k, mask, fps)
    if not mask.any():
        raise ValueError(f"{path}: no keypoint is visible")
    try:
        k = fill_from_nearest(k, mask, names=SKELETONS[skeleton].names) if native else complete_smpl22(k, mask)[0]
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics
        K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
    else:
        K = torch.from_numpy(guess_intrinsics(k))
    return Clip2D(path.stem, normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0])
