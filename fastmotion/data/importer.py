"""`fastmotion data import`: 2D keypoint tracks from a pose detector -> the 2D-only dataset layout that
`data render` writes and every trainer reads, without a camera pose and without 3D.

Sources (one folder, read in name order; or a folder written by `data render --layout coco17`, whose split
files, captions, intrinsics and held-out 3D are carried over to each clip cut from it):
  NAME.json          COCO-style keypoints of one video: a list of frames, a COCO dict ("annotations",
                     optionally "images" with width/height) or a flat list of detector/tracker results; one clip
                     source per track id (`fastmotion.data.keypoints.read_coco_json`);
  NAME/ (a folder)   OpenPose output: one NAME_<frame>_keypoints.json per frame, BODY_25 or COCO-18 (the
                     layout from the keypoint count); the first person of each frame;
  NAME.npy           [T, K, 2|3] keypoints in `layout` (default from K);
  cameras/NAME.npz   optional intrinsics K [3, 3] of a video (else guessed: `import_keypoints`).
Each track is resampled to 20 fps, cut where the person is lost for more than `max_gap` frames, and split at
calm frames (`fastmotion.data.clips.split_clips`) into clips of `min_frames`..`max_frames`; shorter pieces are
dropped. Joints a detector does not give are completed (`complete_smpl22`), and their confidence is 0: the
written `confidence/NAME.npy` is 1 for seen joints only, so no loss trusts a completed or missing joint.

Writes OUT/keypoints/NAME.npy [T, 22, 2] pixels, OUT/confidence/NAME.npy [T, 22], OUT/cameras/NAME.npz (K
only: the camera pose is unknown), OUT/texts/NAME.txt (captions from SRC/texts/VIDEO.txt or a CSV), the
split files (by video, so no video is in two splits), stats_free3d_2d.npz, meta.json and report.json (every
cut and every dropped piece with its reason). The folder appears only when complete.

`native=True` keeps the source's own layout instead ([T, K, 2], meta.json "skeleton": the layout; MVLift lifts
any skeleton, the Free3D and VideoMDM models need SMPL-22): joints missing in some frames are filled from the
nearest frame where they were seen (confidence 0 there), a clip with a joint never seen is dropped, and no
stats_free3d_2d.npz is written (the Free3D features are SMPL-22's).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastmotion.motion.free3d import Normalizer, to_features
from fastmotion.motion.skeleton import SKELETONS
from fastmotion.ops.reference import normalized_keypoints

from . import humanml3d as hml
from .clips import split_clips
from .keypoints import (LAYOUT_BY_COUNT, coco_track_ids, complete_smpl22, fill_from_nearest, guess_intrinsics,
                        read_coco_json, read_keypoints_npy, read_openpose_folder)

FPS = 20.0


@dataclass
class Track:
    """One person in one video: keypoints [T, J, 2] (pixels, NaN where missing; SMPL-22 unless imported
    `native`), mask [T, J]."""
    video: str
    name: str
    keypoints: np.ndarray
    mask: np.ndarray
    confidence: np.ndarray  # [T, J] the detector's, 0 where missing
    image_size: tuple[float, float] | None = None
    split: str | None = None  # a rendered source's split
    K: np.ndarray | None = None  # a rendered source's intrinsics


def rendered_tracks(src: Path, layout: str | None, report: list, native: bool = False) -> list[Track]:
    """The clips of a folder written by `data render` (keypoints/, cameras/, split files), one track each."""
    tracks = []
    for split in hml.SPLITS:
        if not (src / f"{split}.txt").exists():
            continue
        for name in hml.read_split(src, split):
            path = src / "keypoints" / f"{name}.npy"
            try:
                k, m, c = read_keypoints_npy(path, layout, with_confidence=True, native=native)
                K = _intrinsics(src / "cameras" / f"{name}.npz")
            except (ValueError, OSError) as err:
                report.append({"source": str(path), "dropped": "unreadable", "reason": str(err)})
                continue
            tracks.append(Track(name, name, k, m, c, split=split, K=K))
    return tracks


def read_tracks(src: Path, layout: str | None, report: list, native: bool = False) -> list[Track]:
    """Every track of every source in `src` (module docstring); unreadable sources are reported, not fatal."""
    tracks = []
    for path in sorted(src.iterdir()):
        if path.name in ("texts", "cameras"):
            continue
        try:
            if path.suffix.lower() == ".json":
                size = _image_size(path)
                ids = coco_track_ids(path)
                for track in ids:
                    k, m, c = read_coco_json(path, track=track, layout=layout, with_confidence=True, native=native)
                    suffix = "" if len(ids) == 1 else "_t" + re.sub(r"[^A-Za-z0-9.-]", "-", str(track))
                    tracks.append(Track(path.stem, f"{path.stem}{suffix}", k, m, c, size))
            elif path.is_dir() and any(path.glob("*_keypoints.json")):
                k, m, c = read_openpose_folder(path, layout, with_confidence=True, native=native)
                tracks.append(Track(path.name, path.name, k, m, c))
            elif path.suffix.lower() == ".npy":
                k, m, c = read_keypoints_npy(path, layout, with_confidence=True, native=native)
                tracks.append(Track(path.stem, path.stem, k, m, c))
            else:
                continue
            camera = src / "cameras" / f"{tracks[-1].video}.npz"
            if camera.exists():
                for track in tracks:
                    if track.video == tracks[-1].video:
                        track.K = _intrinsics(camera)
        except (ValueError, OSError) as err:
            report.append({"source": str(path), "dropped": "unreadable", "reason": str(err)})
    names: set[str] = set()
    for track in tracks:  # a.json and a.npy: two sources, two names (never one clip overwriting another)
        name, k = track.name, 1
        while name in names:
            k += 1
            name = f"{track.name}_{k}"
        if name != track.name:
            report.append({"source": track.name, "renamed": name, "reason": "another source has the same name"})
        track.name = name
        names.add(name)
    return tracks


def _intrinsics(path: Path) -> np.ndarray:
    """K [3, 3] from a camera file. Raises ValueError naming the file."""
    try:
        with np.load(path) as cam:
            K = np.asarray(cam["K"], np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a camera file with K ({type(err).__name__}: {err})") from None
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0:
        raise ValueError(f"{path}: K must be a finite [3, 3] intrinsics matrix, got {K.tolist()}")
    return K


def _image_size(path: Path) -> tuple[float, float] | None:
    """Width and height of a COCO dict's images (the first one that says), else None."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    if isinstance(data, dict):
        for image in data.get("images") or []:
            if isinstance(image, dict) and image.get("width") and image.get("height"):
                return float(image["width"]), float(image["height"])
    return None


def resample_track(keypoints: np.ndarray, mask: np.ndarray, fps: float, confidence: np.ndarray | None = None):
    """Keypoints [T, J, 2], mask (and confidence) [T, J] at `fps` -> at 20 fps: linear between the two nearest
    source frames, seen only where both are (or where the time falls on a seen source frame)."""
    T = len(keypoints)
    if abs(fps - FPS) <= 1e-4 * FPS or T < 2:
        return (keypoints, mask) if confidence is None else (keypoints, mask, confidence)
    times = np.arange(0, (T - 1) / fps + 1e-9, 1 / FPS) * fps
    lo = np.floor(times).astype(int).clip(0, T - 1)
    hi = (lo + 1).clip(0, T - 1)
    w = (times - lo)[:, None]
    on_frame = w == 0
    k = np.nan_to_num(keypoints)  # NaN * 0 would poison frames that fall exactly on a source frame
    out = k[lo] * (1 - w[..., None]) + k[hi] * w[..., None]
    seen = mask[lo] & (mask[hi] | on_frame)
    out = np.where(seen[..., None], out, np.nan)
    if confidence is None:
        return out, seen
    conf = np.where(seen, np.where(on_frame, confidence[lo], np.minimum(confidence[lo], confidence[hi])), 0.0)
    return out, seen, conf


def pieces(mask: np.ndarray, max_gap: int, min_joints: int = 6) -> list[tuple[int, int]]:
    """(start, end) frame ranges where the person is seen (at least `min_joints` joints), cut where they are
    lost for more than `max_gap` frames in a row; shorter gaps stay inside a piece (completed later)."""
    seen = mask.sum(1) >= min_joints
    out, start, last = [], None, None
    for t in np.nonzero(seen)[0]:
        if start is None:
            start = t
        elif t - last - 1 > max_gap:
            out.append((int(start), int(last) + 1))
            start = t
        last = t
    if start is not None:
        out.append((int(start), int(last) + 1))
    return out


def _captions(src: Path, texts) -> dict[str, list[str]]:
    """Captions per video: SRC/texts/VIDEO.txt (HumanML3D lines or plain text, one per line), or `texts`: a
    folder of such files or a CSV with columns name, caption."""
    folder = Path(texts) if texts else src / "texts"
    out: dict[str, list[str]] = {}
    if folder.is_file() and folder.suffix.lower() == ".csv":
        with folder.open(newline="") as f:
            for row in csv.DictReader(f):
                if "name" not in row or "caption" not in row:
                    raise ValueError(f"{folder}: a captions CSV needs the columns name and caption")
                out.setdefault(row["name"], []).append(row["caption"])
    elif folder.is_dir():
        for path in folder.glob("*.txt"):
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            out[path.stem] = [line.split("#")[0] if line.count("#") == 3 else line for line in lines]
    elif texts:
        raise FileNotFoundError(f"{folder}: no captions folder or CSV")
    return out


def _split_of(video: str, videos: int) -> str:
    """80/10/10 by a hash of the video's name: stable, and every clip of a video in one split. With fewer than
    10 videos every clip goes to train (and `fix_small_splits` gives val and test one clip each)."""
    if videos < 10:
        return "train"
    h = int(hashlib.sha1(video.encode()).hexdigest()[:8], 16) % 10
    return "train" if h < 8 else "val" if h == 8 else "test"


def fix_small_splits(written: dict[str, list[str]], report: list) -> None:
    """A small import (fewer than 10 videos) puts everything in train: its last clips become val and test (one
    each when it has at least three), so the trainers can validate. The clips then share videos: reported."""
    train = written["train"]
    for split in ("val", "test"):
        if not written[split] and len(train) >= 3:
            written[split].append(train.pop())
            report.append({"source": written[split][0], "split": split,
                           "reason": "fewer than 10 videos: this clip was moved from train (same video as others)"})


def import_keypoints(src, out, layout: str | None = None, fps: float = FPS, focal: float | None = None,
                     image_size: tuple[float, float] | None = None, texts=None, max_gap: int = 5,
                     min_frames: int = 16, max_frames: int = 196, progress=None, native: bool = False) -> dict:
    """Build a 2D-only dataset folder from detector keypoints; see the module docstring. fps: the source's
    frame rate; focal (pixels) and image_size (width, height) give K (default: the image size of a COCO file,
    else the keypoints' extent, and a focal length of its larger side: `guess_intrinsics`). Returns the summary (also
    meta.json). native: keep the source's layout (module docstring).

    Raises:
        FileNotFoundError: no such folder. ValueError: bad arguments, no clip could be made (the report's
            first reasons named), or `native` with sources of different layouts.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder of keypoint files")
    if not (fps > 0 and max_gap >= 0 and 1 <= min_frames <= max_frames):
        raise ValueError(f"need fps > 0, max_gap >= 0 and 1 <= min_frames <= max_frames; got {fps}, {max_gap}, "
                         f"{min_frames}, {max_frames}")
    report: list[dict] = []
    rendered = (src / "keypoints").is_dir() and any((src / f"{s}.txt").exists() for s in hml.SPLITS)
    tracks = rendered_tracks(src, layout, report, native) if rendered else read_tracks(src, layout, report, native)
    skeleton = _native_layout(tracks, layout) if native else "smpl22"
    captions = _captions(src, texts)
    written: dict[str, list[str]] = {s: [] for s in hml.SPLITS}
    train_features = []
    with hml.atomic_folder(out) as tmp:
        for sub in ("keypoints", "confidence", "cameras", "texts") + (("eval3d/new_joints", "eval3d/cameras")
                                                                      if rendered else ()):
            (tmp / sub).mkdir(parents=True)
        for track in tracks:
            if progress:
                progress(1)
            k, m, c = resample_track(track.keypoints, track.mask, fps, track.confidence)
            spans = pieces(m, max_gap)
            if not spans:
                report.append({"source": track.name, "dropped": "empty", "reason": "no frame shows the person"})
                continue
            for a, b in spans:
                for start, end in _calm_cuts(k[a:b], m[a:b], min_frames, max_frames, track.name, a, report):
                    piece = slice(a + start, a + end)
                    clip = _write_clip(tmp, track, k[piece], m[piece], c[piece], f"{track.name}_{a + start:06d}",
                                       focal, image_size, captions, report, skeleton)
                    if clip is None:
                        continue
                    name, features = clip
                    split = track.split or _split_of(track.video, len({t.video for t in tracks}))
                    if rendered and fps == FPS:  # the held-out 3D of the same frames, for `eval lift`
                        _carry_eval3d(src, tmp, track.name, name, a + start, a + end)
                    written[split].append(name)
                    if split == "train":
                        train_features.append(features)
        if not rendered and len({t.video for t in tracks}) < 10:
            fix_small_splits(written, report)
        if not any(written.values()):
            reasons = "; ".join(r["reason"] if r["reason"].startswith(r["source"]) else f"{r['source']}: {r['reason']}"
                                for r in report[:3]) or "no keypoint files"
            raise ValueError(f"{src}: no clip could be made ({len(report)} piece(s) dropped); first: {reasons}")
        for split, names in written.items():
            (tmp / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        if skeleton == "smpl22":  # the Free3D trainers' feature statistics (a native SMPL-22 import too)
            Normalizer.fit(train_features or _all_features(tmp, written)).save(tmp / "stats_free3d_2d.npz")
        summary = {"source": str(src.resolve()), "kind": "imported keypoints", "cameras": "intrinsics only",
                   "layout": layout, "skeleton": skeleton, "fps": fps, "max_gap": max_gap, "min_frames": min_frames,
                   "max_frames": max_frames, "clips": {s: len(n) for s, n in written.items()},
                   "tracks": len(tracks), "dropped": len([r for r in report if "dropped" in r]),
                   "cut": len([r for r in report if "cut" in r])}
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return summary


def _carry_eval3d(src: Path, tmp: Path, source: str, name: str, start: int, end: int) -> None:
    """Copy a rendered clip's held-out 3D (frames start..end) and true camera to the imported clip `name`."""
    joints = src / "eval3d" / "new_joints" / f"{source}.npy"
    camera = src / "eval3d" / "cameras" / f"{source}.npz"
    camera = camera if camera.exists() else src / "cameras" / f"{source}.npz"
    if not joints.exists() or not camera.exists():
        return
    with np.load(camera) as cam:
        if "R" not in cam:  # the 3D without its camera cannot be compared with a lift: neither is carried
            return
        np.savez(tmp / "eval3d" / "cameras" / f"{name}.npz", K=cam["K"], R=cam["R"], t=cam["t"])
    np.save(tmp / "eval3d" / "new_joints" / f"{name}.npy", np.load(joints)[start:end])


def _calm_cuts(k, m, min_frames, max_frames, name, offset, report) -> list[tuple[int, int]]:
    """A piece's clips: itself when short enough, else cut at calm frames; pieces shorter than min_frames are
    dropped. Both reported."""
    T = len(k)
    if T < min_frames:
        report.append({"source": name, "frames": [offset, offset + T], "dropped": "short",
                       "reason": f"{T} frames, fewer than {min_frames}"})
        return []
    if T <= max_frames:
        return [(0, T)]
    centred = np.nan_to_num(k - np.nanmean(k, axis=(0, 1)), nan=0.0)
    scale = np.nanmax(np.abs(centred)) or 1.0
    flat = np.concatenate([centred / scale, np.zeros_like(centred[..., :1])], -1)  # the splitter takes [T, J, 3]
    cuts = split_clips(flat, min_frames, max_frames)
    covered = cuts[-1][1] if cuts else 0
    report.append({"source": name, "frames": [offset, offset + T], "cut": len(cuts),
                   "reason": f"{T} frames, more than {max_frames}: cut at calm frames"})
    if covered < T:
        report.append({"source": name, "frames": [offset + covered, offset + T], "dropped": "tail",
                       "reason": f"{T - covered} frames left after the cuts, fewer than {min_frames}"})
    return cuts


COMPLETED_WEIGHT = 0.25  # the confidence of joints placed by `complete_smpl22`'s rules (spine, neck, collars)


def _native_layout(tracks: list[Track], layout: str | None) -> str:
    """The one layout of natively imported tracks: `layout`, else from the keypoint count. Raises ValueError
    naming two tracks of different layouts."""
    names = {}
    for track in tracks:
        names.setdefault(layout or LAYOUT_BY_COUNT.get(track.keypoints.shape[1]), track.name)
    if len(names) > 1:
        raise ValueError("--native keeps one layout for the whole dataset; the sources have "
                         + ", ".join(f"{n} ({t})" for n, t in names.items()))
    return next(iter(names), layout or "coco17")


def _write_clip(tmp: Path, track: Track, k: np.ndarray, m: np.ndarray, c: np.ndarray, name: str, focal, image_size,
                captions, report, skeleton: str = "smpl22") -> tuple[str, np.ndarray] | None:
    native = skeleton != "smpl22"
    try:
        filled = fill_from_nearest(k, m, names=SKELETONS[skeleton].names) if native else complete_smpl22(k, m)[0]
    except ValueError as err:
        report.append({"source": track.name, "clip": name, "dropped": "incomplete", "reason": str(err)})
        return None
    # The detector's confidence where it saw the joint; joints it never gives, placed by rule from the ones it
    # does, a low weight (their 2D follows the seen joints, not the body: a 0 would leave the torso and
    # shoulders free in L_2D and untrained in the prior); joints missing in some frames (filled from the nearest
    # frame) 0.
    never = ~m.any(0)
    confidence = np.where(m, c, np.where(never[None], COMPLETED_WEIGHT, 0.0)).astype(np.float32)
    K = track.K if track.K is not None and focal is None and image_size is None else \
        guess_intrinsics(track.keypoints, image_size or track.image_size, focal)
    np.save(tmp / "keypoints" / f"{name}.npy", filled.astype(np.float32))
    np.save(tmp / "confidence" / f"{name}.npy", confidence)
    np.savez(tmp / "cameras" / f"{name}.npz", K=K)
    clean = [" ".join(text.replace("#", " ").split()) for text in captions.get(track.video, [])]
    (tmp / "texts" / f"{name}.txt").write_text("".join(hml.format_caption(hml.Caption(t, hml.tokenize(t))) + "\n"
                                                       for t in clean if t))
    if native:
        return name, np.zeros(0)
    n = normalized_keypoints(torch.from_numpy(filled.astype(np.float32))[None], torch.from_numpy(K)[None])[0]
    return name, to_features(n).float().numpy()


def _all_features(tmp: Path, written: dict) -> list[np.ndarray]:
    """Features of every written clip (statistics when the train split is empty: a tiny import)."""
    out = []
    for name in (n for names in written.values() for n in names):
        k = torch.from_numpy(np.load(tmp / "keypoints" / f"{name}.npy"))
        with np.load(tmp / "cameras" / f"{name}.npz") as cam:
            K = torch.from_numpy(cam["K"])
        out.append(to_features(normalized_keypoints(k[None], K[None])[0]).float().numpy())
    return out
