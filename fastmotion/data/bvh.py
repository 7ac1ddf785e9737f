"""BVH motion files: read (forward kinematics to joint positions, mapped to SMPL-22 by joint name, resampled to
20 fps, converted to metres) and write (SMPL-22 joint positions -> a BVH whose offsets are the motion's own bones
and whose per-bone rotations are solved from the positions), Y up, channels Zrotation Yrotation Xrotation.

Units: BVH files do not say theirs. `read_bvh(units="auto")` picks the unit that gives the skeleton an adult's
size (its ankle-to-head chain, which does not depend on the pose); fastmotion writes metres, which "auto" reads
back as metres. Give `units` ("m", "cm", "mm", "inch", "cmu" or metres per file unit) when the subject is not an
adult-sized human.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS, bvh_joint_map, rest_pose

CMU_TO_METRES = 0.056444  # 2.54 / 100 / 0.45: the CMU FAQ's factor for its BVH units
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": CMU_TO_METRES}  # metres per file unit
_AXES = {"X": 0, "Y": 1, "Z": 2}
_SPINE = ("spine1", "spine2", "spine3")
_CHAIN = ("left_ankle", "left_knee", "left_hip", "pelvis", "spine1", "spine2", "spine3", "neck", "head")


@dataclass
class BVH:
    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # [J, 3]
    channels: list[list[str]]
    frame_time: float
    motion: np.ndarray = field(repr=False)  # [T, total channels]

    def positions(self) -> np.ndarray:
        """Forward kinematics: world positions [T, J, 3] of every joint, in the file's units."""
        T = self.motion.shape[0]
        world_rot = np.zeros((T, len(self.names), 3, 3))
        pos = np.zeros((T, len(self.names), 3))
        column = 0
        for j, (parent, chans) in enumerate(zip(self.parents, self.channels)):
            values = self.motion[:, column:column + len(chans)]
            column += len(chans)
            local = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
            translation = np.broadcast_to(self.offsets[j], (T, 3)).copy()
            for k, name in enumerate(chans):
                axis = _AXES[name[0].upper()]
                if name[1:].lower() == "position":
                    translation[:, axis] = values[:, k]  # position channels replace the offset
                else:
                    local = local @ _axis_rotation(axis, np.deg2rad(values[:, k]))
            if parent < 0:
                world_rot[:, j], pos[:, j] = local, translation
            else:
                world_rot[:, j] = world_rot[:, parent] @ local
                pos[:, j] = pos[:, parent] + np.einsum("tij,tj->ti", world_rot[:, parent], translation)
        return pos


def _axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    i, j = [a for a in range(3) if a != axis]
    R[..., axis, axis] = 1.0
    R[..., i, i], R[..., j, j] = c, c
    R[..., i, j], R[..., j, i] = -s, s
    if axis == 1:  # about y the sine signs flip (right-handed: z x -> y)
        R[..., i, j], R[..., j, i] = s, -s
    return R


def parse_bvh(path) -> BVH:
    """Parse a BVH file; errors name the file and the line (FileNotFoundError, ValueError)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such BVH file")
    return parse_bvh_text(path.read_text(errors="replace"), path)


def parse_bvh_text(text: str, path="<bvh>") -> BVH:
    """Parse BVH text; `path` names it in errors (ValueError)."""
    lines = text.splitlines()
    names, parents, offsets, channels, stack = [], [], [], [], []
    i, in_end_site, pending = 0, 0, -1
    while i < len(lines):
        words = lines[i].split()
        i += 1
        if not words:
            continue
        key = words[0].upper()
        if key in ("ROOT", "JOINT"):
            names.append(" ".join(words[1:]))
            parents.append(stack[-1] if stack else -1)
            offsets.append(np.zeros(3))
            channels.append([])
            pending = len(names) - 1
        elif key == "END":
            in_end_site += 1
            pending = -2
        elif key == "{":
            stack.append(pending if pending >= 0 else -2)
        elif key == "}":
            if not stack:
                raise ValueError(f"{path}:{i}: unbalanced '}}'")
            if stack.pop() == -2:
                in_end_site -= 1
        elif key == "OFFSET" and stack and stack[-1] >= 0:
            offsets[stack[-1]] = _floats(path, i, words[1:4], 3)
        elif key == "CHANNELS" and stack and stack[-1] >= 0:
            count = _number(path, i, words[1] if len(words) > 1 else "", int, "CHANNELS count")
            channels[stack[-1]] = words[2:2 + count]
        elif key == "MOTION":
            break
    if not names:
        raise ValueError(f"{path}: no HIERARCHY with a ROOT joint")
    header = {}
    while i < len(lines) and len(header) < 2:
        text = lines[i].strip()
        i += 1
        if text.lower().startswith("frames:"):
            header["frames"] = _number(path, i, text.split(":", 1)[1], int, "Frames")
        elif text.lower().startswith("frame time:"):
            header["frame_time"] = _number(path, i, text.split(":", 1)[1], float, "Frame Time")
    if len(header) < 2:
        raise ValueError(f"{path}: the MOTION section lacks 'Frames:' or 'Frame Time:' (truncated file?)")
    if header["frames"] < 1 or not header["frame_time"] > 0:
        raise ValueError(f"{path}: {header['frames']} frames of {header['frame_time']} s: a motion needs at least one "
                         "frame and a positive frame time")
    width = sum(len(c) for c in channels)
    rows = [line.split() for line in lines[i:] if line.strip()]
    if len(rows) < header["frames"]:
        raise ValueError(f"{path}: truncated: the header promises {header['frames']} frames, the file has "
                         f"{len(rows)}")
    motion = np.array([_floats(path, i + k + 1, r, width) for k, r in enumerate(rows[:header["frames"]])])
    return BVH(names, parents, np.array(offsets), channels, header["frame_time"], motion.reshape(-1, width))


def _number(path, line, text, kind, what):
    try:
        return kind(text.strip())
    except ValueError:
        raise ValueError(f"{path}:{line}: {what} {text.strip()!r} is not a number") from None


def _floats(path, line, words, count):
    if len(words) != count:
        raise ValueError(f"{path}:{line}: expected {count} numbers, got {len(words)} (truncated line?)")
    try:
        return np.array([float(w) for w in words])
    except ValueError:
        raise ValueError(f"{path}:{line}: not a number in {' '.join(words[:8])}") from None


def resample(positions: np.ndarray, source_fps: float, target_fps: float = 20.0) -> np.ndarray:
    """Linear resampling along time of [T, ...] arrays. Rates within 0.01% count as equal: a file's frame time
    is rounded (1/30 s written as 0.033333), and resampling by that rounding would drop or blur frames."""
    T = positions.shape[0]
    if T < 2 or abs(source_fps - target_fps) <= 1e-4 * target_fps:
        return positions
    duration = (T - 1) / source_fps
    times = np.arange(0, duration + 1e-9, 1 / target_fps) * source_fps
    lo = np.floor(times).astype(int).clip(0, T - 1)
    hi = (lo + 1).clip(0, T - 1)
    w = (times - lo).reshape(-1, *([1] * (positions.ndim - 1)))
    return positions[lo] * (1 - w) + positions[hi] * w


def _chain_length(joints: np.ndarray) -> float:
    """Ankle-to-head bone chain of SMPL-22 joints [22, 3] (any pose: a sum of bone lengths)."""
    idx = [SMPL22.index(n) for n in _CHAIN]
    return float(np.linalg.norm(np.diff(joints[idx], axis=0), axis=-1).sum())


ADULT_CHAIN = _chain_length(rest_pose())  # metres, the rest pose of an average adult (about 1.5)


def guess_units(joints: np.ndarray) -> tuple[str, float]:
    """The unit of SMPL-22 joints [T, 22, 3] in a file's units: (name, metres per unit) of UNITS whose skeleton
    is nearest an adult's in size (log ratio of the ankle-to-head chain of the first frame)."""
    chain = _chain_length(joints[0])
    if not chain > 0:
        raise ValueError("the skeleton has no size (every joint at one point)")
    return min(UNITS.items(), key=lambda kv: abs(math.log(chain * kv[1] / ADULT_CHAIN)))


def _spine_by_arc_length(bvh: BVH, positions: np.ndarray, index: list) -> np.ndarray:
    """SMPL's spine1-3 [T, 3, 3] for files whose spine has other joints: placed along the file's own joints
    from the pelvis to the neck at the arc-length fractions of SMPL's rest spine."""
    pelvis, neck = index[SMPL22.index("pelvis")], index[SMPL22.index("neck")]
    chain = [neck]
    while chain[-1] != pelvis:
        if bvh.parents[chain[-1]] < 0:
            raise ValueError(f"the file's neck joint {bvh.names[neck]!r} is not below its pelvis "
                             f"{bvh.names[pelvis]!r}")
        chain.append(bvh.parents[chain[-1]])
    points = positions[:, chain[::-1]]  # [T, C, 3] pelvis ... neck
    arc = np.concatenate([np.zeros((len(points), 1)),
                          np.cumsum(np.linalg.norm(np.diff(points, axis=1), axis=-1), axis=1)], axis=1)
    rest = rest_pose()[[SMPL22.index(n) for n in ("pelvis", *_SPINE, "neck")]]
    rest_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(rest, axis=0), axis=-1))])
    out = np.zeros((len(points), 3, 3))
    for k, fraction in enumerate(rest_arc[1:4] / rest_arc[-1]):
        for t in range(len(points)):
            target = fraction * arc[t, -1]
            for c in range(3):
                out[t, k, c] = np.interp(target, arc[t], points[t, :, c])
    return out


def bvh_to_smpl22(bvh: BVH, positions: np.ndarray, table: dict | None = None) -> np.ndarray:
    """SMPL-22 joints [T, 22, 3] from a parsed file's joint positions [T, J, 3], matched by name
    (fastmotion.motion.BVH_TO_SMPL22 or `table`); a spine with other joints than SMPL's three (CMU's LowerBack,
    Spine, Spine1 and Neck, Neck1) is resampled along its length. Raises ValueError naming a missing joint."""
    index = bvh_joint_map(bvh.names, table, optional=_SPINE)
    out = np.zeros((positions.shape[0], 22, 3))
    for j, i in enumerate(index):
        if i is not None:
            out[:, j] = positions[:, i]
    if any(index[SMPL22.index(n)] is None for n in _SPINE):
        out[:, [SMPL22.index(n) for n in _SPINE]] = _spine_by_arc_length(bvh, positions, index)
    return out


def read_bvh(path, units: str | float = "auto", fps: float = 20.0, table: dict | None = None) -> np.ndarray:
    """A BVH file -> SMPL-22 joints [T, 22, 3] in metres at `fps` (linear resampling from the file's frame
    time). units: "auto" (module docstring), a name of UNITS, or metres per file unit.

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed file (file and line named), a joint that cannot
            be matched, or an unknown unit.
    """
    bvh = parse_bvh(path)
    joints = bvh_to_smpl22(bvh, bvh.positions(), table)
    if units == "auto":
        _, scale = guess_units(joints)
    elif isinstance(units, str):
        if units not in UNITS:
            raise ValueError(f"units must be 'auto', one of {', '.join(UNITS)} or a number, got {units!r}")
        scale = UNITS[units]
    else:
        scale = float(units)
    return resample(joints * scale, 1.0 / bvh.frame_time, fps).astype(np.float32)


# ---- writing ----------------------------------------------------------------------------------------------------
def _best_rotation(rest: np.ndarray, current: np.ndarray) -> np.ndarray | None:
    """Per frame, the rotation [T, 3, 3] taking rest vectors [C, 3] onto current vectors [T, C, 3]: Kabsch for
    two or more children, the shortest arc for one. None where it is undefined: every vector of zero length
    (a degenerate bone keeps its parent's rotation)."""
    if rest.shape[0] == 1:
        a_len, b_len = np.linalg.norm(rest[0]), np.linalg.norm(current[:, 0], axis=-1)
        if a_len < 1e-9:
            return None
        a = rest[0] / a_len
        b = current[:, 0] / np.maximum(b_len, 1e-12)[:, None]
        R = np.empty(b.shape[:-1] + (3, 3))
        c = b @ a
        v = np.cross(a, b)
        vx = np.zeros(v.shape[:-1] + (3, 3))
        vx[..., 0, 1], vx[..., 0, 2], vx[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
        vx = vx - np.swapaxes(vx, -1, -2)
        R[:] = np.eye(3) + vx + vx @ vx / np.maximum(1 + c, 1e-12)[..., None, None]
        flip = c < -1 + 1e-9  # opposite directions: half a turn about any axis across a
        if flip.any():
            axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
            axis /= np.linalg.norm(axis)
            R[flip] = 2 * np.outer(axis, axis) - np.eye(3)
        R[b_len < 1e-9] = np.nan  # the bone vanished in these frames: marked for the caller
        return R
    H = np.einsum("ci,tcj->tij", rest, current)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(H)
    D[:, 0, 0], D[:, 1, 1], D[:, 2, 2] = 1, 1, d
    return np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)


def _rest_offsets(joints: np.ndarray) -> np.ndarray:
    """Rest offsets [22, 3] from the motion's own bones: each bone's mean length; single bones along SMPL's
    rest direction; the bones that share a parent (hips and spine at the pelvis, neck and collars at spine3) as
    they sit in the first frame, turned as near SMPL's rest as they go, so that rigid siblings are reproduced
    exactly (a fixed SMPL triangle cannot fit broader hips)."""
    parents = SMPL22.parents
    bones = joints[:, 1:] - joints[:, list(parents[1:])]
    lengths = np.linalg.norm(bones, axis=-1).mean(0)
    smpl = SMPL22_REST_OFFSETS[1:]
    directions = smpl / np.linalg.norm(smpl, axis=-1, keepdims=True)
    offsets = np.vstack([[0.0, 0.0, 0.0], directions * lengths[:, None]])
    for j in range(22):
        children = [c for c, p in enumerate(parents) if p == j]
        if len(children) < 2:
            continue
        first = joints[0, children] - joints[0, j]  # [C, 3], each at its bone's mean length
        first *= (lengths[[c - 1 for c in children]] / np.linalg.norm(first, axis=-1).clip(1e-12))[:, None]
        R = _best_rotation(offsets[children], first[None])[0]  # SMPL's siblings -> the motion's
        offsets[children] = first @ R  # the motion's siblings, turned back by R^T
    return offsets


def _zyx_degrees(R: np.ndarray) -> np.ndarray:
    """Euler angles (z, y, x) in degrees with R = Rz Ry Rx."""
    y = -np.arcsin(R[:, 2, 0].clip(-1, 1))
    z = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    x = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    return np.rad2deg(np.stack([z, y, x], -1))


def bvh_text(joints: np.ndarray, fps: float = 20.0, offsets: np.ndarray | None = None, scale: float = 1.0) -> str:
    """SMPL-22 joints [T, 22, 3] (metres) -> the text of a BVH file in metres / `scale`. Offsets: the motion's
    own bones (`_rest_offsets`), unless given [22, 3]. Each joint's rotation maps its children's rest offsets
    onto their positions in each frame; leaf joints, and joints whose only bone has zero length (a foot at its
    ankle), keep their parent's rotation.

    Raises:
        ValueError: joints not finite [T, 22, 3], or fps / scale not positive.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or not np.isfinite(joints).all():
        raise ValueError(f"write_bvh: joints must be finite [T, 22, 3], got {list(joints.shape)}")
    if not (fps > 0 and scale > 0):
        raise ValueError(f"write_bvh: fps and scale must be > 0, got {fps}, {scale}")
    parents = SMPL22.parents
    if offsets is None:
        offsets = _rest_offsets(joints)
    children = [[c for c, p in enumerate(parents) if p == j] for j in range(22)]
    T = joints.shape[0]
    world = np.zeros((T, 22, 3, 3))
    local = np.zeros((T, 22, 3, 3))
    for j in range(22):
        parent_world = world[:, parents[j]] if parents[j] >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        R = _best_rotation(offsets[children[j]], joints[:, children[j]] - joints[:, j:j + 1]) if children[j] else None
        world[:, j] = parent_world
        if R is not None:
            defined = np.isfinite(R).all((-1, -2))
            world[defined, j] = R[defined]
        local[:, j] = np.swapaxes(parent_world, -1, -2) @ world[:, j]
    lines = ["HIERARCHY"]

    def emit(j, depth):
        pad = "\t" * depth
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {SMPL22.names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {' '.join(f'{v / scale:.6f}' for v in offsets[j])}")
        chans = "6 Xposition Yposition Zposition" if parents[j] < 0 else "3"
        lines.append(f"{pad}\tCHANNELS {chans} Zrotation Yrotation Xrotation")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET 0.000000 {0.05 / scale:.6f} 0.000000",
                          f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    order = []

    def collect(j):
        order.append(j)
        for c in children[j]:
            collect(c)

    collect(0)
    columns = [joints[:, 0] / scale] + [_zyx_degrees(local[:, j]) for j in order]
    motion = np.concatenate(columns, axis=-1)
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.9f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"


def held_joints(text: str, scale: float = 1.0) -> np.ndarray:
    """The SMPL-22 joints [T, 22, 3] (metres) that BVH text written by `bvh_text` holds."""
    bvh = parse_bvh_text(text)
    return (bvh.positions()[:, bvh_joint_map(bvh.names)] * scale).astype(np.float32)


def write_bvh(path, joints: np.ndarray, fps: float = 20.0, offsets: np.ndarray | None = None,
              scale: float = 1.0) -> np.ndarray:
    """Write `bvh_text(joints, ...)` to `path` (atomically) and return the joints [T, 22, 3] (metres) the file
    holds: the given ones for a rigid skeleton (a real body); bones that change length are held at their mean.
    `read_bvh(path)` reads them back. Raises ValueError (see `bvh_text`)."""
    text = bvh_text(joints, fps, offsets, scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return held_joints(text, scale)
