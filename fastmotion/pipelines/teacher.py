"""VideoMDM's noisy 3D teacher: per clip of a 2D dataset, an approximate 3D motion in metres, y up, in the
world frame of the clip's camera (or with a camera estimated for it).

Source: the ML-RQ (`fastmotion lift`: camera frame, units of the subject's depth; placed frame by frame at a
metric depth from the root's bone lengths, VideoMDM appendix D, and from the lifted pose) or a folder of a user's lifted
[T, 22, 3] motions (any lifter).
Camera: the dataset's when it has one ("auto"/"dataset"), else EPnP + Levenberg-Marquardt between the teacher's
first 24 frames and the 2D ("epnp", or "auto" without one), as the paper does when cameras are unknown.

Writes OUT/NAME.npy (world joints), OUT/cameras/NAME.npz (K, R, t of that world) and OUT/report.json (clips
written, clips skipped with the reason). A clip is skipped, never fatal: no camera and no way to estimate one,
teacher and 2D of different lengths, fewer than 6 valid keypoints for PnP, all joints behind the camera.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fastmotion.data import humanml3d as hml
from fastmotion.data.clip_bank import require_skeleton
from fastmotion.data.humanml3d import atomic_folder
from fastmotion.errors import DatasetError
from fastmotion.motion.camera import estimate_camera_epnp, naive_root_depth
from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS
from fastmotion.ops.reference import normalized_keypoints

from .free3d import lift, load_mlrq

PNP_FRAMES = 24
_REST_BONES = torch.as_tensor(np.linalg.norm(SMPL22_REST_OFFSETS, axis=-1), dtype=torch.float64)  # [22]


class SkipClip(ValueError):
    """This clip cannot give a teacher; the message says why."""


def metric_camera_frame(lifted: torch.Tensor, keypoints: torch.Tensor, K: torch.Tensor,
                        smooth: int = 4) -> torch.Tensor:
    """An ML-RQ lift [T, 22, 3] (camera frame, units of the subject's depth) -> camera-frame metres, placed frame
    by frame: the lift's pose about the root, scaled to the rest skeleton's mean bone, with the root on its
    keypoint's camera ray at a depth z_t estimated twice and combined (geometric mean, then a running median over
    2 * smooth + 1 frames):
      - the naive depth of the root's bones (VideoMDM appendix D);
      - the least-squares depth that makes the whole lifted pose match the 2D offsets from the root,
        n_j - n_root ~ (p_xy - n_root p_z) / z to first order.
    Frame by frame because a weak-perspective lift has no depth trajectory of its own: one depth for a whole clip
    left subjects walking from 3 m to 9 m up to 9 m off their keypoints (measured on the demo's val split, where
    the combined estimate is within 7.6% of the true root depth on average; the naive depth alone 8.5%)."""
    lifted, keypoints, K = lifted.double(), keypoints.double(), K.double()
    n = normalized_keypoints(keypoints[None], K[None])[0]  # [T, 22, 2]
    pose = lifted - lifted[:, :1]
    bones = (pose[:, 1:] - pose[:, list(SMPL22.parents[1:])]).norm(dim=-1).mean(-1)
    pose = pose * (_REST_BONES[1:].mean() / bones.clamp_min(1e-9))[:, None, None]
    q = pose[..., :2] - n[:, :1] * pose[..., 2:]
    fit = (q * q).sum((1, 2)) / (q * (n - n[:, :1])).sum((1, 2)).clamp_min(1e-9)
    naive = naive_root_depth(keypoints[None], K[None], _REST_BONES[None])[0]
    depth = (fit.clamp(0.1, 1e3) * naive.clamp(0.1, 1e3)).sqrt()
    depth = torch.stack([depth[max(0, i - smooth):i + smooth + 1].median() for i in range(len(depth))])
    root = depth[:, None] * torch.cat([n[:, 0], torch.ones_like(depth)[:, None]], -1)
    return root[:, None] + pose


def world_and_camera(camera_frame: torch.Tensor | None, world_guess: torch.Tensor | None, keypoints: np.ndarray,
                     K: np.ndarray, camera: tuple | None, mode: str):
    """-> (world joints [T, 22, 3], K, R, t). camera_frame: metric joints in the camera frame (ML-RQ path);
    world_guess: a user's lifted motion (any frame, y up)."""
    if mode in ("auto", "dataset") and camera is not None and camera_frame is not None:
        _, R, t = camera
        world = (camera_frame - torch.as_tensor(t, dtype=torch.float64)) @ torch.as_tensor(R, dtype=torch.float64)
        return world.numpy(), *camera
    if mode == "dataset" and camera is None:
        raise SkipClip("no camera in the dataset (cameras/NAME.npz) and --cameras dataset forbids estimating one")
    if mode in ("auto", "dataset") and camera is not None:  # a user's teacher with the dataset's camera
        return world_guess.numpy(), *camera
    world = world_guess if world_guess is not None else camera_frame * torch.tensor([1.0, -1.0, -1.0],
                                                                                   dtype=torch.float64)
    frames = min(PNP_FRAMES, len(world))
    pts2d = keypoints[:frames].reshape(-1, 2)
    valid = np.isfinite(pts2d).all(1)
    if valid.sum() < 6:
        raise SkipClip(f"only {int(valid.sum())} valid keypoints in the first {frames} frames: PnP needs 6")
    try:
        R, t = estimate_camera_epnp(world[:frames].numpy().reshape(-1, 3), pts2d, K, mask=valid)
    except (ValueError, RuntimeError) as err:
        raise SkipClip(f"PnP failed: {err}") from None
    return world.numpy(), K, R, t


def build_teacher(data, out, mlrq_path=None, lifted_dir=None, cameras: str = "auto", device="cpu",
                  progress=None) -> dict:
    """Write the teacher folder for every clip of every split of the 2D dataset `data`; see the module docstring.
    Returns the report (also in OUT/report.json).

    Raises:
        ValueError: not exactly one source, or an unknown `cameras`. DatasetError: no split files, keypoints
            other than SMPL-22 (`data import --native`), or no clip gave a teacher. CheckpointError: a bad ML-RQ
            checkpoint.
    """
    data = Path(data)
    if (mlrq_path is None) == (lifted_dir is None):
        raise ValueError("give exactly one teacher source: an ML-RQ checkpoint or a folder of lifted motions")
    if cameras not in ("auto", "dataset", "epnp"):
        raise ValueError(f"cameras must be 'auto', 'dataset' or 'epnp', got {cameras!r}")
    names = [n for s in hml.SPLITS if (data / f"{s}.txt").exists() for n in hml.read_split(data, s)]
    if not names:
        raise DatasetError(f"{data}: no split files (is it a folder from `fastmotion data render`?)")
    require_skeleton(data)  # the teacher is SMPL-22 motion
    model = load_mlrq(mlrq_path, device) if mlrq_path is not None else None
    written, skipped = [], []
    with atomic_folder(out) as tmp:
        (tmp / "cameras").mkdir()
        for name in names:
            if progress:
                progress(1)
            try:
                world, K, R, t = _one_clip(data, name, model, lift, lifted_dir, cameras)
            except SkipClip as err:
                skipped.append({"clip": name, "reason": str(err)})
                continue
            np.save(tmp / f"{name}.npy", world.astype(np.float32))
            np.savez(tmp / "cameras" / f"{name}.npz", K=np.asarray(K, np.float32), R=np.asarray(R, np.float32),
                     t=np.asarray(t, np.float32))
            written.append(name)
        if not written:
            first = skipped[0]["reason"] if skipped else "no clips"
            raise DatasetError(f"no clip of {data} gave a teacher ({len(skipped)} skipped; first: {first})")
        report = {"source": str(mlrq_path or lifted_dir), "cameras": cameras, "written": len(written),
                  "skipped": skipped}
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _one_clip(data: Path, name: str, model, lift, lifted_dir, cameras: str):
    keypoints = np.load(data / "keypoints" / f"{name}.npy").astype(np.float64)
    cam_path = data / "cameras" / f"{name}.npz"
    camera = None
    K = None
    if cam_path.exists():
        with np.load(cam_path) as c:
            K = c["K"].astype(np.float64)
            if "R" in c:  # imported keypoints have intrinsics only: their pose is estimated (EPnP)
                camera = (K, c["R"].astype(np.float64), c["t"].astype(np.float64))
    K = K if K is not None else _default_intrinsics(keypoints)
    camera_frame = world_guess = None
    if model is not None:
        kp = torch.from_numpy(keypoints)
        if not torch.isfinite(kp).all():
            raise SkipClip("keypoints contain NaN or inf (the ML-RQ needs every joint)")
        n = normalized_keypoints(kp.float()[None], torch.from_numpy(K).float()[None])[0]
        camera_frame = metric_camera_frame(lift(model, n), kp, torch.from_numpy(K))
        if (camera_frame[..., 2] <= 0).all():
            raise SkipClip("all joints are behind the camera")
    else:
        path = Path(lifted_dir) / f"{name}.npy"
        if not path.exists():
            raise SkipClip(f"{path}: no lifted motion for this clip")
        world_guess = torch.from_numpy(hml.load_joints(path)).double()
        if len(world_guess) != len(keypoints):
            raise SkipClip(f"teacher has {len(world_guess)} frames, the 2D {len(keypoints)}")
    world, K, R, t = world_and_camera(camera_frame, world_guess, keypoints, K, camera, cameras)
    depth = world @ np.asarray(R).T + np.asarray(t)
    if (depth[..., 2] <= 0).all():
        raise SkipClip("all joints are behind the camera")
    return world, K, R, t


def _default_intrinsics(keypoints: np.ndarray) -> np.ndarray:
    """Focal 1000 px at the keypoints' bounding-box centre, for datasets without cameras."""
    lo, hi = np.nanmin(keypoints.reshape(-1, 2), 0), np.nanmax(keypoints.reshape(-1, 2), 0)
    cx, cy = (lo + hi) / 2
    return np.array([[1000.0, 0, cx], [0, 1000.0, cy], [0, 0, 1]])

