"""Dataset builders behind `fastmotion data synth` and `fastmotion data render`.

`render_2d` turns a 3D dataset (HumanML3D layout) into what the 3D-free trainers read:

  OUT/keypoints/NAME.npy   2D keypoints [T, 22, 2] in pixels (NAME = clip name + `_v<view>`); with layout
                           coco17, [T, 17, 3] (x, y, confidence) as a detector gives them (`data import` reads it)
  OUT/cameras/NAME.npz     K [3, 3], R [3, 3], t [3] (OpenCV pinhole, world -> camera); K only without camera
  OUT/eval3d/cameras/NAME.npz  the camera with its pose, for evaluation only
  OUT/texts/NAME.txt       the clip's captions (HumanML3D format)
  OUT/train.txt ...        the source's splits, one line per rendered view
  OUT/stats_free3d_2d.npz  mean/std of the Free3D 2D features (normalised image coordinates), train split
  OUT/meta.json            how it was made
  OUT/eval3d/new_joints/NAME.npy   the 3D, for evaluation only: no trainer reads eval3d/

Clips that cannot be read are skipped and reported (with a count at the end), never fatal; the output folder
appears only when the build finished.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fastmotion.motion import camera as cameras
from fastmotion.motion.free3d import Normalizer, to_features
from fastmotion.ops.reference import normalized_keypoints

from fastmotion.motion.skeleton import SMPL22

from . import humanml3d as hml
from .detector import coco17_points, detector_noise
from .synth import FPS, synth_clip

UP_AXES = {"y": np.eye(3), "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])}  # z-up -> y-up: (x, y, z) -> (x, z, -y)
CHECKED_CLIPS = 20  # clips whose orientation is checked before anything is rendered


def height_axis(joints: np.ndarray) -> str:
    """Which axis the body's height runs along in joints [T, 22, 3] ('+y', '-z', ...): the largest component
    of the median head-above-ankles vector."""
    ankles = joints[:, [SMPL22.index("left_ankle"), SMPL22.index("right_ankle")]].mean(1)
    up = np.median(joints[:, SMPL22.index("head")] - ankles, axis=0)
    axis = int(np.argmax(np.abs(up)))
    return ("+" if up[axis] > 0 else "-") + "xyz"[axis]


def check_orientation(src: Path, names: list[str], up: str) -> None:
    """Refuse a dataset whose bodies do not stand along +y once turned by `up`: most of its first
    CHECKED_CLIPS readable clips must (one clip lying down is motion, most of them is a convention).

    Raises:
        ValueError: naming a clip and the fix (`--up z` for z-up data such as AMASS).
    """
    votes = []
    for name in names[:CHECKED_CLIPS]:
        try:
            joints = hml.load_joints(src / "new_joints" / f"{name}.npy") @ UP_AXES[up].T
        except (OSError, ValueError):
            continue
        votes.append((name, height_axis(joints)))
    wrong = [(n, a) for n, a in votes if a != "+y"]
    if votes and len(wrong) > len(votes) / 2:
        name, axis = wrong[0]
        fix = "pass --up z (z-up data, as AMASS and SMPL in Blender store it)" if axis == "+z" else \
            "turn the data so that y points up (fastmotion's convention: metres, y up)"
        raise ValueError(f"{src / 'new_joints' / (name + '.npy')}: the body's height runs along {axis}, not +y, in "
                         f"{len(wrong)} of the first {len(votes)} clips; {fix}")


def build_synthetic(out, num: int = 2000, seed: int = 0, progress=None) -> dict:
    """Write `num` synthetic clips in HumanML3D's layout to `out`; returns a summary."""
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    rng = np.random.default_rng(seed)
    labels: dict[str, int] = {}
    with hml.atomic_folder(out) as tmp:
        names = []
        for i in range(num):
            joints, texts, label = synth_clip(rng)
            name = f"{i:06d}"
            hml.write_clip(tmp, name, joints, [hml.Caption(t, hml.tokenize(t)) for t in texts])
            names.append(name)
            labels[label] = labels.get(label, 0) + 1
            if progress:
                progress(1)
        hml.write_splits(tmp, names, seed=seed)
        summary = {"source": "fastmotion synthetic corpus", "clips": num, "seed": seed, "fps": FPS,
                   "actions": dict(sorted(labels.items()))}
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def render_2d(src, out, views: int = 1, seed: int = 0, min_depth: float = 3.0, focal: float = 1000.0,
              image_size=(1000, 1000), elevation_deg=(0.0, 30.0), progress=None, up: str = "y",
              layout: str = "smpl22", noise: str = "none", camera: bool = True) -> dict:
    """Project every clip of the 3D dataset `src` (metres; `up`: the axis its bodies stand along, "y" or "z")
    into `views` sampled cameras; see the module docstring. layout "coco17" writes what a detector gives
    (`fastmotion.data.detector`: [T, 17, 3] x, y, confidence; read with `data import`), noise "detector" adds
    its noise (seeded by `seed`), camera False writes only K (the pose goes to eval3d/cameras/, held out).

    Raises:
        FileNotFoundError: no folder or no split files. ValueError: bad arguments, bodies that do not stand
            along `up` (`check_orientation`), or no readable clip.
    """
    if up not in UP_AXES:
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    if layout not in ("smpl22", "coco17") or noise not in ("none", "detector"):
        raise ValueError(f"layout must be smpl22 or coco17 and noise none or detector, got {layout!r}, {noise!r}")
    if noise == "detector" and layout != "coco17":
        raise ValueError("noise 'detector' needs layout 'coco17' (what a detector gives)")
    rng = np.random.default_rng(seed)
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such dataset folder")
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    splits = {s: hml.read_split(src, s) for s in hml.SPLITS if (src / f"{s}.txt").exists()}
    if not splits:
        raise FileNotFoundError(f"{src}: no split files ({', '.join(s + '.txt' for s in hml.SPLITS)})")
    check_orientation(src, [n for names in splits.values() for n in names], up)
    generator = torch.Generator().manual_seed(seed)
    skipped: list[str] = []
    train_features = []
    with hml.atomic_folder(out) as tmp:
        for sub in ("keypoints", "cameras", "texts", "eval3d/new_joints", "eval3d/cameras"):
            (tmp / sub).mkdir(parents=True)
        written = {s: [] for s in splits}
        for split, names in splits.items():
            for name in names:
                if progress:
                    progress(1)
                try:
                    joints = (hml.load_joints(src / "new_joints" / f"{name}.npy") @ UP_AXES[up].T).astype(np.float32)
                    text_path = src / "texts" / f"{name}.txt"
                    captions = hml.parse_captions(text_path) if text_path.exists() else []
                except (OSError, ValueError) as err:
                    skipped.append(str(err))
                    continue
                motion = torch.from_numpy(joints).double()[None].expand(views, -1, -1, -1)
                cams = cameras.sample_cameras(motion, elevation_deg=elevation_deg, min_depth=min_depth,
                                              focal=focal, image_size=image_size, generator=generator)
                pixels = cameras.project(motion, cams)
                if layout == "coco17":
                    points = torch.from_numpy(coco17_points(joints))[None].expand(views, -1, -1, -1)
                    detected = cameras.project(points, cams).numpy()  # [V, T, 17, 2]
                for v in range(views):
                    view_name = f"{name}_v{v}"
                    pose = {"K": cams.K[v].float().numpy(), "R": cams.R[v].float().numpy(),
                            "t": cams.t[v].float().numpy()}
                    if layout == "coco17":
                        seen = detector_noise(detected[v], rng) if noise == "detector" else np.concatenate(
                            [detected[v], np.ones(detected[v].shape[:2] + (1,))], -1)
                        np.save(tmp / "keypoints" / f"{view_name}.npy", seen.astype(np.float32))
                    else:
                        np.save(tmp / "keypoints" / f"{view_name}.npy", pixels[v].float().numpy())
                    np.savez(tmp / "cameras" / f"{view_name}.npz", **(pose if camera else {"K": pose["K"]}))
                    np.savez(tmp / "eval3d" / "cameras" / f"{view_name}.npz", **pose)
                    (tmp / "texts" / f"{view_name}.txt").write_text(
                        "".join(hml.format_caption(c) + "\n" for c in captions))
                    np.save(tmp / "eval3d" / "new_joints" / f"{view_name}.npy", joints)
                    written[split].append(view_name)
                    if split == "train" and layout == "smpl22":
                        n = normalized_keypoints(pixels[v:v + 1], cams.K[v:v + 1])[0]
                        train_features.append(to_features(n).float().numpy())
        if not any(written.values()):
            raise ValueError(f"{src}: no clip could be read ({len(skipped)} skipped); first problem: "
                             f"{skipped[0] if skipped else 'none'}")
        for split, names in written.items():
            (tmp / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        if train_features:
            Normalizer.fit(train_features).save(tmp / "stats_free3d_2d.npz")
        summary = {"source": str(src.resolve()), "up": up, "layout": layout, "noise": noise, "camera": camera,
                   "views": views, "seed": seed, "min_depth": min_depth,
                   "focal": focal, "image_size": list(image_size), "elevation_deg": list(elevation_deg),
                   "clips": {s: len(n) for s, n in written.items()}, "skipped": len(skipped),
                   "skipped_reasons": skipped[:50]}
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_from_bvh(src, out, split: str = "test", units="auto", progress=None) -> dict:
    """Write every .bvh of the folder `src` as a 3D dataset in HumanML3D's layout (SMPL-22 joints, metres, y up,
    20 fps; `fastmotion.data.bvh.read_bvh` with `units`), all clips in `split`, no captions: motion to render
    and evaluate on. Files that cannot be read are skipped and reported.

    Raises:
        FileNotFoundError: no such folder or no .bvh in it. ValueError: an unknown split, or no file read.
    """
    from .bvh import read_bvh

    src = Path(src)
    if split not in hml.SPLITS:
        raise ValueError(f"split must be one of {', '.join(hml.SPLITS)}, got {split!r}")
    files = sorted(src.glob("*.bvh")) if src.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{src}: no .bvh files")
    names, skipped = [], []
    with hml.atomic_folder(out) as tmp:
        (tmp / "new_joints").mkdir()
        (tmp / "texts").mkdir()
        for path in files:
            if progress:
                progress(1)
            try:
                joints = read_bvh(path, units=units)
            except (ValueError, OSError) as err:
                skipped.append(str(err))
                continue
            np.save(tmp / "new_joints" / f"{path.stem}.npy", joints)
            names.append(path.stem)
        if not names:
            raise ValueError(f"{src}: no .bvh file could be read; first problem: {skipped[0]}")
        (tmp / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))  # the other splits: none
        summary = {"source": str(src.resolve()), "clips": len(names), "split": split, "skipped": skipped}
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
