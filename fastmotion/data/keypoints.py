"""2D keypoint sequences from files: `.npy` arrays and COCO-style JSON (per-frame keypoints with confidences),
mapped to SMPL-22 with a mask of missing joints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastmotion.data.humanml3d import load_npy
from fastmotion.motion.skeleton import COCO17_NAMES, H36M17_NAMES, SMPL22, keypoints_to_smpl22

_LAYOUT_BY_COUNT = {len(COCO17_NAMES): "coco17", len(SMPL22.names): "smpl22"}


def read_keypoints_npy(path, layout: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[T, K, 2] (or [T, K, 3] with confidences) keypoints -> SMPL-22 keypoints [T, 22, 2] and mask [T, 22].

    layout: "smpl22", "coco17" or "h36m17"; guessed from K when omitted (17 is taken as COCO). NaN keypoints
    are missing (mask False)."""
    path = Path(path)
    data = load_npy(path, "keypoints")
    if data.ndim != 3 or data.shape[-1] not in (2, 3) or data.shape[0] == 0:
        raise ValueError(f"{path}: expected keypoints [T, K, 2] or [T, K, 3] (x, y, confidence), got "
                         f"{list(data.shape)}")
    layout = layout or _LAYOUT_BY_COUNT.get(data.shape[1])
    if layout is None:
        raise ValueError(f"{path}: cannot tell the layout of {data.shape[1]} keypoints; give it (`fastmotion lift "
                         "--layout`, or layout= in Python): smpl22, coco17 or h36m17")
    confidence = data[..., 2] if data.shape[-1] == 3 else None
    xy = data[..., :2].astype(np.float64)
    if layout == "smpl22":
        if xy.shape[1] != 22:
            raise ValueError(f"{path}: smpl22 keypoints need 22 joints, got {xy.shape[1]}")
        mask = np.isfinite(xy).all(-1) & (confidence > 0 if confidence is not None else True)
        return np.where(mask[..., None], xy, np.nan), mask
    expected = {"coco17": len(COCO17_NAMES), "h36m17": len(H36M17_NAMES)}.get(layout)
    if expected is not None and xy.shape[1] != expected:
        raise ValueError(f"{path}: {layout} keypoints need {expected} joints, got {xy.shape[1]}")
    return keypoints_to_smpl22(xy, layout, confidence)


def read_coco_json(path, track: int | None = None, min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """COCO-style keypoint JSON -> SMPL-22 keypoints [T, 22, 2] and mask [T, 22].

    Accepted shapes: a list of frames, each `{"keypoints": [x1, y1, c1, ...]}` (or a list of such people; the
    first, or the one with `"track_id" == track`, is used), or `{"annotations": [...]}` with `image_id` as the
    frame index. A frame without a person is all missing. Keypoints with confidence <= min_confidence are
    missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict) and "annotations" in data:
        frames: dict[int, list] = {}
        for ann in data["annotations"]:
            frames.setdefault(int(ann.get("image_id", 0)), []).append(ann)
        order = sorted(frames)
        data = [frames[k] for k in range(order[0], order[-1] + 1)] if order else []
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of frames or a COCO dict with 'annotations'")
    rows = []
    for index, frame in enumerate(data):
        people = frame if isinstance(frame, list) else [frame]
        people = [p for p in people if isinstance(p, dict)]
        if track is not None:
            people = [p for p in people if p.get("track_id") == track]
        if not people:
            rows.append(np.full((17, 3), np.nan))
            continue
        if "keypoints" not in people[0]:
            raise ValueError(f"{path}: frame {index} has no 'keypoints' (keys: {', '.join(people[0])})")
        flat = np.asarray(people[0]["keypoints"], dtype=np.float64)
        if flat.size != 17 * 3:
            raise ValueError(f"{path}: frame {index} has {flat.size} keypoint values, COCO-17 needs 51 "
                             "(x, y, confidence for 17 joints)")
        rows.append(flat.reshape(17, 3))
    stacked = np.stack(rows)
    confidence = np.nan_to_num(stacked[..., 2], nan=0.0)
    return keypoints_to_smpl22(stacked[..., :2], "coco17", confidence, min_confidence)


# Where joints that 2D detectors do not report sit between ones they do (fractions from the SMPL rest pose).
_SPINE_FRACTIONS = {"spine1": 0.22, "spine2": 0.48, "spine3": 0.58}
_COLLAR_FRACTION = 0.4


def complete_smpl22(keypoints: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill SMPL-22 joints that a COCO-style detector never gives, from the ones it does: neck = shoulders'
    midpoint, spine1..3 on the pelvis-neck segment, collars between the neck and each shoulder, feet at the
    ankles (a zero-length foot). Joints that are missing only in some frames take their value from the nearest
    frame where they were seen. Returns (keypoints [T, 22, 2], estimated [T, 22] bool: True where filled)."""
    k = np.array(keypoints, dtype=np.float64)
    seen = np.array(mask, dtype=bool)
    for j in range(k.shape[1]):  # temporal fill of joints seen somewhere
        frames = np.nonzero(seen[:, j])[0]
        if 0 < len(frames) < len(k):
            nearest = frames[np.abs(np.arange(len(k))[:, None] - frames[None]).argmin(1)]
            k[:, j] = k[nearest, j]
    have = seen.any(0)
    idx = SMPL22.index

    def need(name):
        return not have[idx(name)]

    def require(*names):
        missing = [n for n in names if not have[idx(n)]]
        if missing:
            raise ValueError(f"cannot complete the skeleton: {', '.join(missing)} never visible")

    require("pelvis", "left_shoulder", "right_shoulder")
    if need("neck"):
        k[:, idx("neck")] = 0.5 * (k[:, idx("left_shoulder")] + k[:, idx("right_shoulder")])
    for name, f in _SPINE_FRACTIONS.items():
        if need(name):
            k[:, idx(name)] = k[:, idx("pelvis")] + f * (k[:, idx("neck")] - k[:, idx("pelvis")])
    for side in ("left", "right"):
        if need(f"{side}_collar"):
            k[:, idx(f"{side}_collar")] = k[:, idx("neck")] + _COLLAR_FRACTION * (
                k[:, idx(f"{side}_shoulder")] - k[:, idx("neck")])
        if need(f"{side}_foot"):
            require(f"{side}_ankle")
            k[:, idx(f"{side}_foot")] = k[:, idx(f"{side}_ankle")]
    still = [SMPL22.names[j] for j in range(22) if not have[j] and not np.isfinite(k[:, j]).all()]
    if still:
        raise ValueError(f"cannot complete the skeleton: {', '.join(still)} never visible")
    return k, ~seen
