"""The camera's pitch from 2D alone, for keypoints without a camera pose (`data import`): the horizon found from how
a person's feet move in the image as their image size changes.

Geometry (a pinhole camera at height h above a flat floor, pitched down by theta, no roll; normalised image
coordinates, y down): a floor point at depth z along the optical axis images at y = h / (z cos theta) - tan theta,
and the person's image size is s = c / z for a constant c. So the feet's image height is linear in the person's
image size, y_feet = a s + b, and the intercept b = -tan theta is the horizon: the feet of a person infinitely far
away. Hoiem, Efros and Hebert (CVPR 2006, "Putting objects in perspective") estimate the horizon from people's
feet and image heights the same way. A clip gives the fit only where the person's distance changes; the others
take the median of the clips that do (`pitches_from_horizon`).

The image size is measured pose-free: each of 12 bones' image length relative to its own median over the clip, the
median over bones per frame, then a running median over about a second. The image height of the body (or one
bone) would not do: a pitched camera sees a nearer person's vertical bones more steeply, so they shorten as the
person comes closer, which biases the fit (the measurements: docs/detector-2d.md).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .skeleton import SMPL22

# The clip's image size must vary by this much (standard deviation over mean) for its own fit; a tenth: the
# clip's distance changes by about a tenth of itself or more (docs/detector-2d.md).
MIN_DEPTH_SPREAD = 0.1
WINDOW = 21  # frames of the running median of the image size (about a second at 20 fps)
MIN_CONFIDENCE = 0.3  # keypoints at or below it are not used (`data import` gives joints placed by rule 0.25)
PITCH_RANGE_DEGREES = (-30.0, 60.0)  # a fit outside it is taken as failed

_FEET = [SMPL22.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
_BONES = [(SMPL22.index(a), SMPL22.index(b)) for a, b in (
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"))]


def pitch_from_horizon(keypoints: np.ndarray, confidence: np.ndarray | None = None) -> tuple[float, float]:
    """One clip's camera pitch from its horizon (module docstring).

    keypoints [T, 22, 2]: SMPL-22 in normalised image coordinates (K^-1 applied: focal 1, principal point 0, y
    down); confidence [T, 22] in [0, 1] (None: all seen). -> (pitch in degrees, positive looking down, or NaN where
    no fit is possible: fewer than 8 frames with feet and bones seen, one image size throughout, or a fit outside
    PITCH_RANGE_DEGREES; the
    depth spread: the standard deviation of the person's image size over its mean). The pitch is trustworthy only
    where the spread reaches MIN_DEPTH_SPREAD.

    Raises:
        ValueError: keypoints not [T, 22, 2], or confidence not [T, 22].
    """
    k = np.asarray(keypoints, dtype=np.float64)
    if k.ndim != 3 or k.shape[1:] != (22, 2):
        raise ValueError(f"keypoints must be SMPL-22 [T, 22, 2], got {list(k.shape)}")
    c = np.ones(k.shape[:2]) if confidence is None else np.asarray(confidence, dtype=np.float64)
    if c.shape != k.shape[:2]:
        raise ValueError(f"confidence must be [T, 22] = {list(k.shape[:2])}, got {list(c.shape)}")
    seen = (c > MIN_CONFIDENCE) & np.isfinite(k).all(-1)
    feet = np.where(seen[:, _FEET], k[:, _FEET, 1], -np.inf).max(1)  # the lowest seen foot joint (y down)
    a, b = (np.array(side) for side in zip(*_BONES))
    length = np.where(seen[:, a] & seen[:, b], np.linalg.norm(k[:, a] - k[:, b], axis=-1), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bone never seen in the clip, a frame without bones
        relative = length / np.nanmedian(length, 0, keepdims=True)
        size = np.nanmedian(relative, 1)
    ok = np.isfinite(size) & np.isfinite(feet)
    if ok.sum() < 8:
        return math.nan, 0.0
    size = _running_median(np.where(ok, size, np.median(size[ok])), WINDOW)[ok]
    spread = float(size.std() / size.mean())
    if spread < 1e-6:  # one image size throughout: no line to fit
        return math.nan, spread
    slope, intercept = _huber_line(size, feet[ok])
    pitch = math.degrees(math.atan(-intercept))
    lo, hi = PITCH_RANGE_DEGREES
    return (pitch if lo <= pitch <= hi and np.isfinite(slope) else math.nan), spread


def pitches_from_horizon(clips, confidences=None) -> tuple[list[float], str]:
    """The camera pitch (degrees down) of each clip of one dataset split: its own horizon fit where its depth
    spread reaches MIN_DEPTH_SPREAD, else the median of those fits (0, a level camera, when no clip has one).

    clips: SMPL-22 keypoints [T, 22, 2] each (normalised image coordinates); confidences: [T, 22] each, or None.
    -> (pitches, a one-line summary naming how many clips had their own fit and the median).
    Raises ValueError as `pitch_from_horizon`, or when confidences and clips differ in number.
    """
    confidences = confidences if confidences is not None else [None] * len(clips)
    if len(confidences) != len(clips):
        raise ValueError(f"{len(clips)} clips but {len(confidences)} confidences")
    fits = [pitch_from_horizon(np.asarray(k), None if c is None else np.asarray(c)) for k, c in zip(clips, confidences)]
    own = [p for p, spread in fits if np.isfinite(p) and spread >= MIN_DEPTH_SPREAD]
    fallback = float(np.median(own)) if own else 0.0
    pitches = [p if np.isfinite(p) and spread >= MIN_DEPTH_SPREAD else fallback for p, spread in fits]
    summary = (f"camera pitch from the horizon: {len(own)} of {len(fits)} clips move in depth enough for their own "
               f"fit; the others take their median, {fallback:.1f} degrees down" if own else
               f"camera pitch from the horizon: none of {len(fits)} clips moves in depth enough; a level camera "
               "is assumed (set one with --pitch DEGREES)")
    return pitches, summary


def _running_median(values: np.ndarray, window: int) -> np.ndarray:
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), -1)


def _huber_line(x: np.ndarray, y: np.ndarray, iterations: int = 5, k: float = 1.5) -> tuple[float, float]:
    """(slope, intercept) of y ~ x by iteratively reweighted least squares with Huber weights (jumps and missed
    feet are outliers)."""
    design = np.stack([x, np.ones_like(x)], 1)
    weight = np.ones_like(x)
    coef = np.array([np.nan, np.nan])
    for _ in range(iterations):
        coef = np.linalg.lstsq(design * weight[:, None], y * weight, rcond=None)[0]
        residual = np.abs(y - design @ coef)
        scale = 1.4826 * np.median(residual) + 1e-9
        weight = np.sqrt(np.minimum(1.0, k * scale / np.maximum(residual, 1e-12)))
    return float(coef[0]), float(coef[1])

