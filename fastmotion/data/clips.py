"""Split long sequences into clips at calm frames (VideoMDM appendix C.4): cut points are chosen by dynamic
programming so that every clip's length is within [min_len, max_len] frames and the summed cost of the cut
frames is least, a frame's cost being its joint speed plus its distance from the rest pose (both low where a
person stands still, so clips start and end near rest)."""
from __future__ import annotations

import numpy as np


def cut_costs(joints: np.ndarray, rest: np.ndarray | None = None, pose_weight: float = 1.0) -> np.ndarray:
    """Per frame [T]: mean joint speed (metres per frame) + pose_weight x mean distance to the rest pose, both
    with the root's position removed."""
    local = joints - joints[:, :1]
    speed = np.zeros(len(joints))
    speed[1:] = np.linalg.norm(np.diff(local, axis=0), axis=-1).mean(-1)
    speed[0] = speed[1] if len(joints) > 1 else 0.0
    if rest is None:
        return speed
    rest_local = rest - rest[:1]
    return speed + pose_weight * np.linalg.norm(local - rest_local, axis=-1).mean(-1)


def split_clips(joints: np.ndarray, min_len: int, max_len: int, rest: np.ndarray | None = None,
                pose_weight: float = 1.0) -> list[tuple[int, int]]:
    """(start, end) frame ranges (end exclusive) covering [0, T) with lengths in [min_len, max_len] whose
    boundaries have the lowest total cost. A sequence shorter than min_len gives no clip; when no exact cover
    exists the tail that cannot fit is dropped."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    T = len(joints)
    if T < min_len:
        return []
    cost = cut_costs(joints, rest, pose_weight)
    best = np.full(T + 1, np.inf)  # best[t]: cheapest way to cover frames [0, t) exactly
    back = np.full(T + 1, -1)
    best[0] = 0.0
    for end in range(min_len, T + 1):
        starts = np.arange(max(0, end - max_len), end - min_len + 1)
        if len(starts) == 0:
            continue
        totals = best[starts] + cost[np.minimum(end, T - 1)] * (end < T)
        k = int(np.argmin(totals))
        if np.isfinite(totals[k]):
            best[end], back[end] = totals[k], starts[k]
    end = int(np.max(np.nonzero(np.isfinite(best))[0]))  # the longest exactly coverable prefix
    clips = []
    while end > 0:
        start = int(back[end])
        clips.append((start, end))
        end = start
    return clips[::-1]
