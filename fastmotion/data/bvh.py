"""BVH motion files: read (forward kinematics to joint positions, mapped to SMPL-22 by joint name, resampled to
20 fps, scaled to metres) and write (SMPL-22 joint positions -> a BVH with offsets from the rest skeleton and
per-bone rotations solved from the positions), Y up, channels Zrotation Yrotation Xrotation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS, bvh_joint_map

CMU_TO_METRES = 0.056444  # 2.54 / 100 / 0.45: the CMU FAQ's factor for its BVH units
_AXES = {"X": 0, "Y": 1, "Z": 2}


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
    """Parse a BVH file; errors name the file and the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such BVH file")
    lines = path.read_text(errors="replace").splitlines()
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
            channels[stack[-1]] = words[2:2 + int(words[1])]
        elif key == "MOTION":
            break
    if not names:
        raise ValueError(f"{path}: no HIERARCHY with a ROOT joint")
    header = {}
    while i < len(lines) and len(header) < 2:
        text = lines[i].strip()
        i += 1
        if text.lower().startswith("frames:"):
            header["frames"] = int(text.split(":")[1])
        elif text.lower().startswith("frame time:"):
            header["frame_time"] = float(text.split(":")[1])
    if len(header) < 2:
        raise ValueError(f"{path}: the MOTION section lacks 'Frames:' or 'Frame Time:' (truncated file?)")
    width = sum(len(c) for c in channels)
    rows = [line.split() for line in lines[i:] if line.strip()]
    if len(rows) < header["frames"]:
        raise ValueError(f"{path}: truncated: the header promises {header['frames']} frames, the file has "
                         f"{len(rows)}")
    motion = np.array([_floats(path, i + k + 1, r, width) for k, r in enumerate(rows[:header["frames"]])])
    return BVH(names, parents, np.array(offsets), channels, header["frame_time"], motion.reshape(-1, width))


def _floats(path, line, words, count):
    if len(words) != count:
        raise ValueError(f"{path}:{line}: expected {count} numbers, got {len(words)} (truncated line?)")
    try:
        return np.array([float(w) for w in words])
    except ValueError:
        raise ValueError(f"{path}:{line}: not a number in {' '.join(words[:8])}") from None


def resample(positions: np.ndarray, source_fps: float, target_fps: float = 20.0) -> np.ndarray:
    """Linear resampling along time of [T, ...] arrays."""
    T = positions.shape[0]
    if T < 2 or abs(source_fps - target_fps) < 1e-9:
        return positions
    duration = (T - 1) / source_fps
    times = np.arange(0, duration + 1e-9, 1 / target_fps) * source_fps
    lo = np.floor(times).astype(int).clip(0, T - 1)
    hi = (lo + 1).clip(0, T - 1)
    w = (times - lo).reshape(-1, *([1] * (positions.ndim - 1)))
    return positions[lo] * (1 - w) + positions[hi] * w


def read_bvh(path, scale: float = CMU_TO_METRES, fps: float = 20.0, table: dict | None = None) -> np.ndarray:
    """A BVH file -> SMPL-22 joints [T, 22, 3] in metres at `fps` (joints matched by name, see
    fastmotion.motion.BVH_TO_SMPL22). `scale` converts the file's units to metres (default: CMU's)."""
    bvh = parse_bvh(path)
    positions = bvh.positions()[:, bvh_joint_map(bvh.names, table)] * scale
    return resample(positions, 1.0 / bvh.frame_time, fps).astype(np.float32)


# ---- writing ----------------------------------------------------------------------------------------------------
def _best_rotation(rest: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Per frame, the rotation [T, 3, 3] taking rest vectors [C, 3] onto current vectors [T, C, 3]: Kabsch for
    two or more children, the shortest arc for one."""
    if rest.shape[0] == 1:
        a = rest[0] / np.linalg.norm(rest[0])
        b = current[:, 0] / np.linalg.norm(current[:, 0], axis=-1, keepdims=True)
        v, c = np.cross(a, b), (b @ a)
        vx = np.zeros(v.shape[:-1] + (3, 3))
        vx[..., 0, 1], vx[..., 0, 2], vx[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
        vx = vx - np.swapaxes(vx, -1, -2)
        return np.eye(3) + vx + vx @ vx / (1 + c).clip(1e-9)[..., None, None]
    H = np.einsum("ci,tcj->tij", rest, current)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(H)
    D[:, 0, 0], D[:, 1, 1], D[:, 2, 2] = 1, 1, d
    return np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)


def _zyx_degrees(R: np.ndarray) -> np.ndarray:
    """Euler angles (z, y, x) in degrees with R = Rz Ry Rx."""
    y = -np.arcsin(R[:, 2, 0].clip(-1, 1))
    z = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    x = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    return np.rad2deg(np.stack([z, y, x], -1))


def write_bvh(path, joints: np.ndarray, fps: float = 20.0, offsets: np.ndarray | None = None,
              scale: float = 1.0) -> None:
    """SMPL-22 joints [T, 22, 3] (metres) -> a BVH file (in metres / `scale`). Offsets: the SMPL rest pose's
    directions with the clip's mean bone lengths, unless given [22, 3]. Each joint's rotation maps its
    children's rest offsets onto their positions in each frame; leaf joints keep their parent's rotation."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or not np.isfinite(joints).all():
        raise ValueError(f"write_bvh: joints must be finite [T, 22, 3], got {list(joints.shape)}")
    parents = SMPL22.parents
    if offsets is None:
        lengths = np.linalg.norm(joints[:, 1:] - joints[:, list(parents[1:])], axis=-1).mean(0)
        directions = SMPL22_REST_OFFSETS[1:] / np.linalg.norm(SMPL22_REST_OFFSETS[1:], axis=-1, keepdims=True)
        offsets = np.vstack([[0.0, 0.0, 0.0], directions * lengths[:, None]])
    children = [[c for c, p in enumerate(parents) if p == j] for j in range(22)]
    T = joints.shape[0]
    world = np.zeros((T, 22, 3, 3))
    local = np.zeros((T, 22, 3, 3))
    for j in range(22):
        parent_world = world[:, parents[j]] if parents[j] >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        if children[j]:
            current = joints[:, children[j]] - joints[:, j:j + 1]
            world[:, j] = _best_rotation(offsets[children[j]], current)
        else:
            world[:, j] = parent_world
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
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.6f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
