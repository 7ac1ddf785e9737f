"""2D keypoint sequences from files: `.npy` arrays and COCO-style JSON (per-frame keypoints with confidences),
mapped to SMPL-22 with a mask of missing joints."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from fastmotion.data.humanml3d import load_npy
from fastmotion.motion.skeleton import LAYOUTS, SMPL22, keypoints_to_smpl22

LAYOUT_BY_COUNT = {17: "coco17", 18: "openpose18", 22: "smpl22", 25: "openpose25"}  # 17: COCO unless told


def read_keypoints_npy(path, layout: str | None = None, with_confidence: bool = False, native: bool = False):
    """[T, K, 2] (or [T, K, 3] with confidences in [0, 1]) keypoints in pixels -> SMPL-22 keypoints [T, 22, 2]
    (NaN where missing) and mask [T, 22].

    layout: "smpl22" or a key of LAYOUTS (coco17, h36m17, openpose18, openpose25); guessed from K when
    omitted (17 is taken as COCO; the guess is checked with `check_layout`, an explicit layout is trusted).
    NaN keypoints are missing. with_confidence: also return the confidences [T, 22] (0 where missing).
    native: the layout's own joints [T, K, 2] (mask, confidences [T, K]) instead of SMPL-22 (MVLift lifts any
    skeleton).

    Raises:
        FileNotFoundError: no such file. ValueError: naming the file: another shape, a joint count that does
            not fit the layout, a third column outside [0, 1] (3D joints are not keypoints), or a guessed layout
            that the skeleton does not fit (`check_layout`).
    """
    explicit = layout is not None
    path = Path(path)
    data = load_npy(path, "keypoints")
    if data.ndim != 3 or data.shape[-1] not in (2, 3) or data.shape[0] == 0:
        raise ValueError(f"{path}: expected keypoints [T, K, 2] or [T, K, 3] (x, y, confidence), got "
                         f"{list(data.shape)}")
    layout = layout or LAYOUT_BY_COUNT.get(data.shape[1])
    if layout is None:
        raise ValueError(f"{path}: cannot tell the layout of {data.shape[1]} keypoints; give it (`fastmotion lift "
                         "--layout`, or layout= in Python): smpl22, coco17, h36m17, openpose18 or openpose25")
    if layout != "smpl22" and layout not in LAYOUTS:
        raise ValueError(f"layout must be smpl22 or one of {', '.join(LAYOUTS)}, got {layout!r}")
    confidence = data[..., 2].astype(np.float64) if data.shape[-1] == 3 else None
    if confidence is not None and np.nanmax(np.abs(confidence - 0.5)) > 0.5 + 1e-6:
        raise ValueError(f"{path}: the third column is not a confidence in [0, 1] (range {np.nanmin(confidence):.3g} "
                         f"to {np.nanmax(confidence):.3g}): 3D joints are not keypoints; give pixels [T, K, 2]")
    xy = data[..., :2].astype(np.float64)
    expected = 22 if layout == "smpl22" else len(LAYOUTS[layout][0])
    if xy.shape[1] != expected:
        raise ValueError(f"{path}: {layout} keypoints need {expected} joints, got {xy.shape[1]}")
    return _result(xy, layout, confidence, 0.0, path, explicit, native, with_confidence)


def _seen(xy: np.ndarray, confidence: np.ndarray | None, min_confidence: float):
    """Keypoints [T, K, 2] as they are: (keypoints, NaN where missing; mask [T, K]; confidences, 0 where
    missing); a keypoint is missing where NaN or its confidence <= min_confidence."""
    mask = np.isfinite(xy).all(-1) & (confidence > min_confidence if confidence is not None else True)
    conf = np.where(mask, np.nan_to_num(confidence) if confidence is not None else 1.0, 0.0)
    return np.where(mask[..., None], xy, np.nan), mask, conf.clip(0, 1)


def _result(xy, layout, confidence, min_confidence, path, explicit: bool, native: bool, with_confidence: bool):
    """The readers' common end: SMPL-22 (or, `native`, the layout's own joints), checked with `check_layout`
    unless the layout was given."""
    if layout == "smpl22":
        smpl = _seen(xy, confidence, min_confidence)
    else:
        smpl = keypoints_to_smpl22(xy, layout, confidence, min_confidence, with_confidence=True)
    if not explicit:
        check_layout(smpl[0], smpl[1], path, layout)
    out = _seen(xy, confidence, min_confidence) if native else smpl
    return out if with_confidence else out[:2]


def _frame_index(value, path, where) -> int:
    """An image_id as a frame index: an integer, or the last number in a file name ('frame_000012.jpg')."""
    if isinstance(value, bool):
        raise ValueError(f"{path}: {where}: image_id {value!r} is not a frame number")
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        return int(value)
    if isinstance(value, str):
        digits = re.findall(r"\d+", value)
        if digits:
            return int(digits[-1])
    raise ValueError(f"{path}: {where}: image_id {value!r} is not a frame number")


def _people_by_frame(data, path) -> dict[int, list[dict]]:
    """The detections of a COCO-style JSON by frame: a list of frames (the list index is the frame; a frame is
    one person's dict or a list of them), or detections that carry `image_id` (a COCO dict's "annotations", or
    a flat list of detector/tracker results), `image_id` being the frame."""
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: 'annotations' must be a list of detections")
        flat = True
    else:
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of frames, a list of detections or a COCO dict with "
                             "'annotations'")
        flat = any(isinstance(d, dict) and "image_id" in d for d in data)  # then every one needs it
    frames: dict[int, list[dict]] = {}
    if flat:
        for i, det in enumerate(data):
            if not isinstance(det, dict) or "image_id" not in det:
                raise ValueError(f"{path}: detection {i} has no 'image_id' (the frame it belongs to)")
            frames.setdefault(_frame_index(det["image_id"], path, f"detection {i}"), []).append(det)
        return frames
    for index, frame in enumerate(data):
        people = frame if isinstance(frame, list) else [frame]
        frames[index] = [p for p in people if isinstance(p, dict)]
    return frames


def _track_key(det: dict, path):
    key = det.get("track_id", det.get("idx"))
    if key is not None and not isinstance(key, (int, str)):
        raise ValueError(f"{path}: a track_id must be a number or a name, got {key!r}")
    return key


def _score(det: dict, path, frame) -> float:
    try:
        return float(det.get("score", 0.0))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: frame {frame}: score {det.get('score')!r} is not a number") from None


MAX_FRAMES = 1_000_000  # image ids spanning more frames than this are not a video's frame numbers


AUTO = "auto"  # read_coco_json's default track: the one seen in the most frames


def read_coco_json(path, track=AUTO, min_confidence: float = 0.0, layout: str | None = None,
                   with_confidence: bool = False, native: bool = False):
    """COCO-style keypoint JSON -> SMPL-22 keypoints [T, 22, 2] (pixels; NaN where missing) and mask [T, 22].

    The time axis is the file's: the list index for a list of frames, else each detection's `image_id` (frames
    between the first and last id without a detection are all missing). The person: `track` (a `track_id`;
    None: the detections without one), by default (AUTO) the track seen in the most frames; detections without
    track ids are one person, the best-scoring one per frame. Keypoints with confidence <= min_confidence are
    missing. layout: the keypoints' order (a key of LAYOUTS; default coco17, as detectors write it, checked with
    `check_layout`; an explicit layout is trusted). with_confidence: also return the confidences [T, 22].
    native: the layout's own joints [T, K, 2] instead of SMPL-22.

    Raises:
        FileNotFoundError: no such file. ValueError: naming the file (and the detection or frame): invalid JSON,
            no detections, no such track, a keypoint count that does not fit the layout, two detections of one
            track in one frame, confidences outside [0, 1] (3D joints given as keypoints?), or a skeleton that
            does not fit the layout (`check_layout`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    frames = _people_by_frame(data, path)
    if not any(frames.values()):
        raise ValueError(f"{path}: no detection in any frame")
    tracks: dict = {}
    for frame, people in frames.items():
        for det in people:
            tracks.setdefault(_track_key(det, path), []).append(frame)
    if track != AUTO:
        if track not in tracks and str(track) in map(str, tracks):  # --track 1 for the id "1", or the reverse
            track = next(k for k in tracks if str(k) == str(track))
        if track not in tracks:
            raise ValueError(f"{path}: no track {track!r}; the file has {', '.join(map(repr, tracks))}")
        chosen = track
    else:
        # the most frames; on a tie the one seen first, then the lowest id (never the file's order)
        chosen = min(tracks, key=lambda k: (-len(set(tracks[k])), min(tracks[k]), str(k)))
    explicit, layout = layout is not None, layout or "coco17"
    names = LAYOUTS[layout][0] if layout in LAYOUTS else None
    if names is None:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    count = len(names)
    first, last = min(frames), max(frames)
    if last - first >= MAX_FRAMES:
        raise ValueError(f"{path}: image ids from {first} to {last} are not frame numbers of one video")
    rows = np.full((last - first + 1, count, 3), np.nan)
    for frame in sorted(frames):
        people = [d for d in frames[frame] if _track_key(d, path) == chosen]
        if not people:
            continue
        if len(people) > 1:
            if chosen is not None:
                raise ValueError(f"{path}: frame {frame} has {len(people)} detections of track {chosen}")
            people = [max(people, key=lambda d: _score(d, path, frame))]
        if "keypoints" not in people[0]:
            raise ValueError(f"{path}: frame {frame} has no 'keypoints' (keys: {', '.join(people[0])})")
        try:
            flat = np.asarray(people[0]["keypoints"], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"{path}: frame {frame}: the keypoints are not a list of numbers") from None
        if flat.size != count * 3:
            raise ValueError(f"{path}: frame {frame} has {flat.size} keypoint values, {layout} needs {count * 3} "
                             f"(x, y, confidence for {count} joints)")
        rows[frame - first] = flat.reshape(count, 3)
    confidence = rows[..., 2]
    if not np.isfinite(rows).any():
        raise ValueError(f"{path}: track {chosen!r} has no keypoint in any frame")
    if np.nanmax(np.abs(confidence - 0.5)) > 0.5 + 1e-6:
        raise ValueError(f"{path}: confidences outside [0, 1] (max {np.nanmax(confidence):.3g}): are these 3D "
                         "joints rather than keypoints with confidences?")
    return _result(rows[..., :2], layout, np.nan_to_num(confidence, nan=0.0), min_confidence, path, explicit, native,
                   with_confidence)


# Focal length guess without intrinsics: the larger image side (a horizontal field of view of 53 degrees for a
# landscape frame, typical of phone and webcam footage)
FOCAL_PER_SIDE = 1.0


def guess_intrinsics(keypoints: np.ndarray, image_size=None, focal: float | None = None) -> np.ndarray:
    """K [3, 3] for keypoints [T, J, 2] (pixels) without a known camera: the principal point at the image
    centre, the image size given (width, height) or taken as the keypoints' extent around that centre, the
    focal length given or FOCAL_PER_SIDE x the larger side."""
    if image_size is None:
        lo, hi = np.nanmin(keypoints.reshape(-1, 2), 0), np.nanmax(keypoints.reshape(-1, 2), 0)
        image_size = (float(hi[0] + lo[0]), float(hi[1] + lo[1]))  # an image centred on the person's extent
    f = focal or FOCAL_PER_SIDE * max(image_size)
    return np.array([[f, 0, image_size[0] / 2], [0, f, image_size[1] / 2], [0, 0, 1]], np.float32)


def coco_track_ids(path) -> list:
    """The track ids of a COCO-style JSON (None for detections without one), each seen in at least one frame,
    the longest first. Raises what `read_coco_json` raises for a malformed file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    frames = _people_by_frame(data, path)
    tracks: dict = {}
    for frame, people in frames.items():
        for det in people:
            tracks.setdefault(_track_key(det, path), set()).add(frame)
    if not tracks:
        raise ValueError(f"{path}: no detection in any frame")
    return sorted(tracks, key=lambda k: (-len(tracks[k]), min(tracks[k]), str(k)))


def read_openpose_folder(folder, layout: str | None = None, with_confidence: bool = False, native: bool = False):
    """An OpenPose output folder (one `*_keypoints.json` per frame, `people[i].pose_keypoints_2d`) -> SMPL-22
    keypoints [T, 22, 2] and mask: the frame number is the last number in each file name (gaps are missing
    frames), the first person of each frame; layout openpose25 (BODY_25) or openpose18 (COCO-18), by default
    from the keypoint count. native: the layout's own joints [T, K, 2] instead of SMPL-22.

    Raises:
        ValueError: naming the folder or file: no frame files, duplicate frame numbers, unreadable JSON, a
            keypoint count of neither layout, or a skeleton that does not fit the layout.
    """
    folder, explicit = Path(folder), layout is not None
    files = sorted(folder.glob("*_keypoints.json"))
    if not files:
        raise ValueError(f"{folder}: no OpenPose *_keypoints.json files")
    by_frame: dict[int, Path] = {}
    for f in files:
        digits = re.findall(r"\d+", f.name)
        if not digits:
            raise ValueError(f"{f}: no frame number in the file name")
        frame = int(digits[-1])
        if frame in by_frame:
            raise ValueError(f"{f}: frame {frame} again (also {by_frame[frame].name})")
        by_frame[frame] = f
    rows: dict[int, np.ndarray] = {}
    for frame, f in by_frame.items():
        try:
            people = json.loads(f.read_text()).get("people") or []
            if people:
                rows[frame] = np.asarray(people[0]["pose_keypoints_2d"], dtype=np.float64).reshape(-1, 3)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{f}: not an OpenPose keypoint file ({type(err).__name__}: {err})") from None
    if not rows:
        raise ValueError(f"{folder}: no person in any frame")
    counts = {len(r) for r in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"{folder}: frames with different keypoint counts {sorted(counts)}")
    count = counts.pop()
    layout = layout or {25: "openpose25", 18: "openpose18"}.get(count)
    if layout not in LAYOUTS or len(LAYOUTS[layout][0]) != count:
        raise ValueError(f"{folder}: {count} keypoints per person fit neither openpose25 nor openpose18"
                         + (f" (given {layout})" if layout else ""))
    first, last = min(by_frame), max(by_frame)
    stacked = np.full((last - first + 1, count, 3), np.nan)
    for frame, r in rows.items():
        stacked[frame - first] = r
    confidence = np.nan_to_num(stacked[..., 2], nan=0.0)  # OpenPose writes 0 0 0 for an unseen joint
    return _result(stacked[..., :2], layout, confidence, 0.0, folder, explicit, native, with_confidence)


def check_layout(keypoints: np.ndarray, mask: np.ndarray, path, layout: str) -> None:
    """Refuse 2D keypoints (SMPL-22 [T, 22, 2], image y down) whose skeleton does not fit their declared layout:
    in most frames where they are seen, the head is above the pelvis and the shoulders above the hips (a
    Human3.6M file read as COCO puts the head below the pelvis). The readers check only a layout they assumed:
    an explicit one is trusted, so a clip upside down for its whole length (a handstand) reads when its layout
    is given.

    Raises:
        ValueError: naming the file and the layout.
    """
    idx = SMPL22.index
    checks = [("head", "pelvis"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip")]
    above, seen = 0, 0
    for top, bottom in checks:
        both = mask[:, idx(top)] & mask[:, idx(bottom)]
        above += int((keypoints[both, idx(top), 1] < keypoints[both, idx(bottom), 1]).sum())
        seen += int(both.sum())
    if seen and above < 0.5 * seen:
        raise ValueError(f"{path}: read as {layout}, the head and shoulders are below the pelvis and hips in "
                         f"{seen - above} of {seen} checks: is the keypoint order another layout? (--layout "
                         f"{' / '.join(n for n in ('smpl22', *LAYOUTS) if n != layout)})")


# Where joints that 2D detectors do not report sit between ones they do (fractions from the SMPL rest pose).
_SPINE_FRACTIONS = {"spine1": 0.22, "spine2": 0.48, "spine3": 0.58}
_COLLAR_FRACTION = 0.4


def fill_from_nearest(keypoints: np.ndarray, mask: np.ndarray, require_all: bool = True,
                      names: Sequence[str] | None = None) -> np.ndarray:
    """Keypoints [T, J, 2] with each joint missing in some frames (mask [T, J] False) taken from the nearest frame
    where it was seen (the earlier one on a tie); a float64 copy. names: the J joints' names, for the error.

    Raises:
        ValueError: `require_all` and some joint is never seen (named, or its index).
    """
    k = np.array(keypoints, dtype=np.float64)
    seen = np.asarray(mask, dtype=bool)
    never = np.nonzero(~seen.any(0))[0].tolist()
    if require_all and never:
        named = ", ".join(names[j] if names is not None else str(j) for j in never)
        raise ValueError(f"cannot fill the skeleton: joint(s) {named} never visible")
    frames_all = np.arange(len(k))
    for j in range(k.shape[1]):
        frames = np.nonzero(seen[:, j])[0]
        if 0 < len(frames) < len(k):  # the nearest seen frame, the earlier on a tie: O(T log T) for long tracks
            after = np.searchsorted(frames, frames_all).clip(max=len(frames) - 1)
            before = (after - 1).clip(min=0)
            nearer = np.where(frames_all - frames[before] <= np.abs(frames[after] - frames_all), before, after)
            k[:, j] = k[frames[nearer], j]
    return k


def complete_smpl22(keypoints: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill SMPL-22 joints that a COCO-style detector never gives, from the ones it does: neck = shoulders'
    midpoint, spine1..3 on the pelvis-neck segment, collars between the neck and each shoulder, feet at the
    ankles (a zero-length foot). Joints that are missing only in some frames take their value from the nearest
    frame where they were seen. Returns (keypoints [T, 22, 2], estimated [T, 22] bool: True where filled)."""
    k = fill_from_nearest(keypoints, mask, require_all=False)
    seen = np.array(mask, dtype=bool)
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
