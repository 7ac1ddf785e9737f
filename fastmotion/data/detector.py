"""What a 2D pose detector would give for a 3D motion: COCO-17 keypoints (`coco17_points`) and detector noise
(`detector_noise`), for `fastmotion data render --layout coco17 --noise detector`.

COCO-17's 12 limb joints are SMPL's (shoulders, elbows, wrists, hips, knees, ankles). Its five head points are
placed from SMPL's head and neck joints and the body's facing: the nose 10 cm in front of the head joint and
3 cm below it, the eyes 3.5 cm to each side of the nose and 3 cm above it, the ears 7.5 cm to each side of the
head joint (adult proportions; a detector's nose and ears are surface points, SMPL's head joint is inside the
skull).

Noise (seeded; sizes relative to the person's box height h in each frame, so they hold at any distance):
  jitter      per joint, temporally correlated (an AR(1) process with correlation 0.7 frame to frame), 1% of h;
  dropouts    bursts (1-6 frames) in which a joint is missed: confidence 0.05-0.3 and its position off by up
              to 10% of h, 2% of joint-frames;
  swaps       left and right exchanged for a whole frame (1-3 frames in a row), 1% of frames;
  misses      frames without the person (1-8 in a row): no keypoints, confidence 0, 1% of frames;
  confidence  0.6-0.95 for seen joints.
"""
from __future__ import annotations

import numpy as np

from fastmotion.motion.skeleton import COCO17_NAMES, SMPL22

_LIMB_JOINTS = COCO17_NAMES[5:]  # the 12 limb joints, SMPL names
_SWAP = [COCO17_NAMES.index(n.replace("left", "right")) if "left" in n else
         COCO17_NAMES.index(n.replace("right", "left")) if "right" in n else i for i, n in enumerate(COCO17_NAMES)]


def coco17_points(joints: np.ndarray) -> np.ndarray:
    """SMPL-22 joints [..., T, 22, 3] (metres, y up) -> the 3D points COCO-17 keypoints stand for [..., T, 17, 3]."""
    j = np.asarray(joints, dtype=np.float64)
    idx = SMPL22.index
    head, neck = j[..., idx("head"), :], j[..., idx("neck"), :]
    up = head - neck
    up /= np.linalg.norm(up, axis=-1, keepdims=True).clip(1e-9)
    across = j[..., idx("right_hip"), :] - j[..., idx("left_hip"), :] + \
        j[..., idx("right_shoulder"), :] - j[..., idx("left_shoulder"), :]
    across -= (across * up).sum(-1, keepdims=True) * up
    across /= np.linalg.norm(across, axis=-1, keepdims=True).clip(1e-9)  # towards the body's right
    forward = np.cross(up, across)  # up x right: the way the body faces (+z for SMPL's rest pose)
    nose = head + 0.10 * forward - 0.03 * up
    points = {"nose": nose, "left_eye": nose - 0.035 * across + 0.03 * up,
              "right_eye": nose + 0.035 * across + 0.03 * up, "left_ear": head - 0.075 * across,
              "right_ear": head + 0.075 * across}
    points.update({n: j[..., idx(n), :] for n in _LIMB_JOINTS})
    return np.stack([points[n] for n in COCO17_NAMES], -2)


def _bursts(rng: np.random.Generator, shape, rate: float, longest: int) -> np.ndarray:
    """A boolean mask [T, ...] of bursts along the first axis: starts with probability rate / mean length, each
    lasting 1..longest frames."""
    T = shape[0]
    starts = rng.random(shape) < rate / ((1 + longest) / 2)
    out = np.zeros(shape, dtype=bool)
    for t in np.argwhere(starts):
        n = int(rng.integers(1, longest + 1))
        out[(slice(t[0], min(T, t[0] + n)), *t[1:])] = True
    return out


def detector_noise(keypoints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact COCO-17 keypoints [T, 17, 2] (pixels) -> [T, 17, 3] (x, y, confidence) as a detector would give
    them (module docstring); frames without the person are NaN with confidence 0."""
    k = np.array(keypoints, dtype=np.float64)
    T = len(k)
    height = (np.nanmax(k[..., 1], 1) - np.nanmin(k[..., 1], 1)).clip(1.0)[:, None, None]  # box height per frame
    noise = np.zeros_like(k)
    step = rng.normal(size=k.shape)
    for t in range(T):  # AR(1): var stays 1 (0.7^2 + 0.51 = 1)
        noise[t] = step[t] if t == 0 else 0.7 * noise[t - 1] + np.sqrt(1 - 0.49) * step[t]
    out = k + 0.01 * height * noise
    confidence = rng.uniform(0.6, 0.95, size=k.shape[:2])
    dropped = _bursts(rng, k.shape[:2], 0.02, 6)
    out[dropped] += rng.uniform(-0.1, 0.1, size=(int(dropped.sum()), 2)) * np.broadcast_to(height, k.shape)[dropped]
    confidence[dropped] = rng.uniform(0.05, 0.3, size=int(dropped.sum()))
    swapped = _bursts(rng, (T,), 0.01, 3)
    out[swapped] = out[swapped][:, _SWAP]
    confidence[swapped] = confidence[swapped][:, _SWAP]
    missed = _bursts(rng, (T,), 0.01, 8)
    out[missed] = np.nan
    confidence[missed] = 0.0
    return np.concatenate([out, confidence[..., None]], -1)
