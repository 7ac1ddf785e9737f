"""Stick-figure rendering of 3D motions ([T, J, 3], metres, y up) and 2D keypoint sequences ([T, J, 2],
pixels; SMPL-22 or another layout of fastmotion.motion.skeleton.SKELETONS) to GIF (Pillow) or MP4 (when ffmpeg is
installed). Several motions render side by side, each in its own panel, with a ground grid, the root's trajectory
trace, an optional title and a legend."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastmotion.motion.skeleton import SKELETONS, Skeleton
from fastmotion.render_text import title_font

PANEL = 320
LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR = (220, 60, 60), (50, 110, 220), (40, 40, 40)
_BY_COUNT = {22: "smpl22", 17: "coco17", 18: "openpose18", 25: "openpose25"}  # 17: COCO unless named


def skeleton_of(joints: int, preferred: str | None = None) -> Skeleton:
    """The skeleton to draw a motion of `joints` joints with: `preferred` (a key of SKELETONS) when it has that
    many, else the layout of that joint count (17: COCO-17). Raises ValueError for a count no layout has."""
    if preferred is not None and SKELETONS[preferred].num_joints == joints:
        return SKELETONS[preferred]
    if joints not in _BY_COUNT:
        known = ", ".join(f"{name}: {count}" for count, name in _BY_COUNT.items())
        raise ValueError(f"no known skeleton has {joints} joints ({known})")
    return SKELETONS[_BY_COUNT[joints]]


def _colour(skeleton: Skeleton, child: int):
    left = {pair[0] for pair in skeleton.left_right}
    right = {pair[1] for pair in skeleton.left_right}
    return LEFT_COLOUR if child in left else RIGHT_COLOUR if child in right else CENTRE_COLOUR


class _View:
    """A fixed oblique perspective camera framing whole motions (all frames of all of them), looking at their
    centre: every 3D panel of a sheet is seen through one, so that sizes compare across panels."""

    def __init__(self, motions: list[np.ndarray], azimuth_deg: float = 35.0, elevation_deg: float = 20.0):
        points = np.concatenate([m.reshape(-1, 3) for m in motions])
        lo, hi = points.min(0), points.max(0)
        self.centre = 0.5 * (lo + hi)
        radius = max(float(np.linalg.norm(hi - lo)) * 0.5, 0.8)
        az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
        direction = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        self.eye = self.centre + direction * radius * 3.0
        forward = (self.centre - self.eye) / np.linalg.norm(self.centre - self.eye)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        self.R = np.stack([right, np.cross(forward, right), forward])
        self.focal = 1.2 * PANEL  # the motion's bounding sphere spans about 80% of the panel

    def __call__(self, points: np.ndarray) -> np.ndarray:
        c = (points - self.eye) @ self.R.T
        z = np.maximum(c[..., 2:], 1e-3)
        return c[..., :2] / z * self.focal + PANEL / 2


def _panel_3d(joints: np.ndarray, frame: int, view: _View, title: str | None, skeleton: Skeleton) -> Image.Image:
    img = Image.new("RGB", (PANEL, PANEL), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    lo, hi = joints[..., [0, 2]].reshape(-1, 2).min(0) - 0.5, joints[..., [0, 2]].reshape(-1, 2).max(0) + 0.5
    for x in np.arange(np.floor(lo[0]), hi[0] + 1e-9, 0.5):  # ground grid every 0.5 m
        a, b = view(np.array([[x, 0.0, lo[1]], [x, 0.0, hi[1]]]))
        draw.line([tuple(a), tuple(b)], fill=(215, 215, 215))
    for z in np.arange(np.floor(lo[1]), hi[1] + 1e-9, 0.5):
        a, b = view(np.array([[lo[0], 0.0, z], [hi[0], 0.0, z]]))
        draw.line([tuple(a), tuple(b)], fill=(215, 215, 215))
    trace = np.array(skeleton.root_position(joints[:frame + 1]))
    trace[:, 1] = 0.0
    if len(trace) > 1:
        draw.line([tuple(p) for p in view(trace)], fill=(120, 180, 120), width=2)
    pts = view(joints[frame])
    for parent, child in skeleton.limbs:
        draw.line([tuple(pts[parent]), tuple(pts[child])], fill=_colour(skeleton, child), width=3)
    for p in pts:
        draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=(30, 30, 30))
    _caption(draw, title, frame, len(joints))
    _legend(draw, "grid 0.5 m")
    return img


def _panel_2d(keypoints: np.ndarray, frame: int, title: str | None, skeleton: Skeleton) -> Image.Image:
    img = Image.new("RGB", (PANEL, PANEL), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    finite = keypoints[np.isfinite(keypoints).all(-1)]
    lo, hi = (finite.min(0), finite.max(0)) if len(finite) else (np.zeros(2), np.ones(2))
    # every frame's whole body inside the panel, between the title and the captions at the bottom
    top, bottom, side = _TITLE_BAND + 3, PANEL - _CAPTION_BAND - 3, 12  # 3: the lines' width
    scale = min((PANEL - 2 * side) / max(float(hi[0] - lo[0]), 1e-6), (bottom - top) / max(float(hi[1] - lo[1]), 1e-6))
    centre = np.array([PANEL / 2, (top + bottom) / 2])
    pts = (keypoints[frame] - 0.5 * (lo + hi)) * scale + centre  # image y already points down
    for parent, child in skeleton.limbs:
        if np.isfinite(pts[[parent, child]]).all():
            draw.line([tuple(pts[parent]), tuple(pts[child])], fill=_colour(skeleton, child), width=3)
    _caption(draw, title, frame, len(keypoints))
    _legend(draw)
    return img


_TITLE_BAND, _CAPTION_BAND = 22, 20  # pixels at the top (title) and bottom (frame counter, legend) of a panel


def _legend(draw, extra: str | None = None) -> None:
    """The colours' meaning (the subject's left and right), and `extra` (a 3D panel: the ground grid's spacing),
    at the bottom right."""
    x, y = PANEL - 6, PANEL - 14
    for text, colour in ((extra, (90, 90, 90)), ("right", RIGHT_COLOUR), ("left", LEFT_COLOUR)):
        if text:
            x -= int(draw.textlength(text)) + 8
            draw.text((x, y), text, fill=colour)


def _caption(draw, title, frame, frames):
    font = title_font(title[:48]) if title else None
    if font is not None:
        draw.text((6, 4), title[:48], fill=(0, 0, 0), font=font)
    draw.text((6, PANEL - 14), f"{frame + 1}/{frames}", fill=(90, 90, 90))


def load_motion(path, skeleton: str | None = None) -> np.ndarray:
    """A .npy motion file: [T, J, 3] joints or [T, J, 2] keypoints of a known skeleton (`skeleton_of(J,
    skeleton)`: 22 SMPL-22, 17 COCO-17 unless `skeleton` says "h36m17", 18 and 25 OpenPose). Returns float64.

    Raises:
        FileNotFoundError: no such file.
        ValueError: (naming the file) another shape, a joint count no skeleton has, no frames, NaN/inf 3D joints.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    data = np.load(path, allow_pickle=False)
    if data.ndim != 3 or data.shape[2] not in (2, 3):
        raise ValueError(f"{path}: expected [T, J, 3] joints or [T, J, 2] keypoints, got {list(data.shape)}")
    try:
        skeleton_of(data.shape[1], skeleton)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no frames")
    if data.shape[2] == 3 and not np.isfinite(data).all():
        raise ValueError(f"{path}: joints contain NaN or inf")
    return data.astype(np.float64)


def render_frames(motions: list[np.ndarray], titles: list[str | None] | None = None,
                  skeleton: str | None = None) -> list[Image.Image]:
    """One image per frame (the longest motion's length; shorter ones hold their last frame). Each motion is
    drawn with `skeleton_of(its joint count, skeleton)`. The 3D panels share one camera and scale, each motion
    moved on the floor to start at the origin; every panel carries a legend (left and right colours; the 3D
    grid's 0.5 m spacing); a 2D panel fits the whole body of every frame.

    Raises:
        ValueError: no motions, or a joint count no skeleton has.
    """
    if not motions:
        raise ValueError("render_frames: no motions given")
    titles = list(titles or [None] * len(motions))
    # 3D motions start at one place (their first root above the origin), and one camera sees them all
    motions = [_at_origin(m, skeleton) if m.shape[-1] == 3 else m for m in motions]
    view = _View([m for m in motions if m.shape[-1] == 3]) if any(m.shape[-1] == 3 for m in motions) else None
    views = [view if m.shape[-1] == 3 else None for m in motions]
    trees = [skeleton_of(m.shape[1], skeleton) for m in motions]
    frames = []
    for f in range(max(len(m) for m in motions)):
        sheet = Image.new("RGB", (PANEL * len(motions), PANEL))
        for i, (m, view, tree) in enumerate(zip(motions, views, trees)):
            k = min(f, len(m) - 1)
            panel = _panel_3d(m, k, view, titles[i], tree) if view else _panel_2d(m, k, titles[i], tree)
            sheet.paste(panel, (PANEL * i, 0))
        frames.append(sheet)
    return frames


def _at_origin(joints: np.ndarray, skeleton: str | None) -> np.ndarray:
    """3D joints moved on the floor so that the first frame's root stands above the origin (heights kept)."""
    root = np.asarray(skeleton_of(joints.shape[1], skeleton).root_position(joints[0]))
    return joints - np.array([root[0], 0.0, root[2]])


def save_animation(frames: list[Image.Image], out, fps: int = 20) -> Path:
    """Write frames to .gif (Pillow) or .mp4 (ffmpeg, which must be installed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0)
        return out
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"{out}: the output must end in .gif or .mp4")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(f"{out}: writing .mp4 needs ffmpeg on the PATH (or write a .gif)")
    with tempfile.TemporaryDirectory() as tmp:
        for i, frame in enumerate(frames):
            frame.save(Path(tmp) / f"{i:06d}.png")
        subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-framerate", str(fps), "-i", str(Path(tmp) / "%06d.png"),
                        "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(out)], check=True)
    return out
