"""MVLift's stage 3 (Li et al., CVPR 2025, section "Multi-view 2D motion diffusion"): strictly consistent
multi-view 2D made from stage 2's 3D. Each window of a 2D clip is lifted by stage 2 + 3D recovery
(`fastmotion.pipelines.mvlift`), then projected into `views` cameras on a horizontal ring (90 degrees apart for 4,
`distance` from the first frame's recovered hip centre), in the observed view's normalisation: view 0 is the
recovered 3D's reprojection (the observed 2D within the threshold below), every view shares its focal length and
scale, and the first frame's hip centre images near the origin in every view (exactly where the 3D reprojects
exactly). Windows whose stage-2 result is poor (the recovered 3D's reprojection error in the observed view above
`threshold`) are left out and listed with the reason.

A folder (`fastmotion data mvlift`) holds meta.json (what made it: the stage-1 checkpoint's SHA-256, the skeleton,
the ring, the settings), one windows/NAME.npz per clip done (views [W, V, L, J, 2], joints [W, L, J, 3] in the
ring's world frame, lengths, starts, focal, error [W]) and done.jsonl (one line per clip done, with the windows left
out): a killed run resumes where it stopped, and a clip done is never redone.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastmotion.errors import DatasetError
from fastmotion.motion import multiview

FORMAT = "mvlift-multiview"


@dataclass
class RingSettings:
    """The cameras of the multi-view data (the paper's release: 4 views 90 degrees apart) and its filter."""
    views: int = 4
    distance: float = 2.8  # of the ring cameras from the first frame's hip centre
    threshold: float = 0.1  # the largest mean reprojection error in the observed view kept (normalised 2D units)

    def __post_init__(self):
        if self.views < 3:
            raise ValueError(f"views must be at least 3 (two opposite cameras triangulate nothing near the body), "
                             f"got {self.views}")
        if not self.distance > 0:
            raise ValueError(f"distance must be positive, got {self.distance}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reprojection_error(joints: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor,
                       focal: torch.Tensor) -> torch.Tensor:
    """Mean distance [B] over real frames and joints between the observed view reference [B, T, J, 2] and the
    projection of joints [B, T, J, 3] (that camera's frame, focal [B] in normalised-2D units); inf for a window with
    a joint at or behind the camera."""
    z = joints[..., 2:]
    image = joints[..., :2] / z.clamp_min(1e-6) * focal.view(-1, 1, 1, 1).to(joints.dtype)
    m = mask.to(joints.dtype)
    error = ((image - reference).norm(dim=-1).mean(-1) * m).sum(1) / m.sum(1).clamp_min(1)
    behind = ((z[..., 0] <= 1e-6) & mask[..., None]).any(-1).any(-1)
    return torch.where(behind, torch.full_like(error, float("inf")), error)


def to_ring(joints: torch.Tensor, focal: torch.Tensor, root: torch.Tensor, ring: RingSettings):
    """Stage 2's 3D joints [B, T, J, 3] in the observed camera's frame (root [B, 3]: the first frame's hip centre,
    on the optical axis) -> (views [V, B, T, J, 2] of the ring's cameras with focal [B], the joints [B, T, J, 3] in
    the ring's world frame). The motion is scaled about the observed camera's centre so that the hip sits at
    `ring.distance`, which leaves view 0's image unchanged."""
    scale = ring.distance / root[:, 2]
    cams = multiview.ring_cameras(ring.views, ring.distance, dtype=joints.dtype)
    world = (joints * scale.view(-1, 1, 1, 1) - cams.t[0]) @ cams.R[0]  # x_cam = R x_world + t
    views = multiview.project(world, multiview.projection_matrices(cams)) * focal.view(1, -1, 1, 1, 1)
    return views, world


def read_meta(root) -> dict:
    """meta.json of a `fastmotion data mvlift` folder. Raises DatasetError when `root` is not one."""
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{root} is not a folder of `fastmotion data mvlift` (no meta.json of format {FORMAT!r})")
    return meta


def done_clips(root) -> dict[str, dict]:
    """The clips done so far: name -> its line of done.jsonl (a line cut short by a crash is ignored)."""
    path, done = Path(root) / "done.jsonl", {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[entry["clip"]] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return done


def start_folder(out, meta: dict) -> None:
    """Create `out` with meta.json, or check that an existing one was made the same way (resume).

    Raises DatasetError naming what differs (another stage-1 checkpoint, skeleton, ring or settings)."""
    out = Path(out)
    if (out / "meta.json").exists():
        old = read_meta(out)
        if old["stage1"]["sha256"] != meta["stage1"]["sha256"]:
            raise DatasetError(f"{out} was made from the stage-1 checkpoint {old['stage1']['checkpoint']} (SHA-256 "
                               f"{old['stage1']['sha256'][:12]}), not {meta['stage1']['checkpoint']} "
                               f"({meta['stage1']['sha256'][:12]}): use a fresh --out")
        changed = sorted(k for k in set(meta) | set(old) if k != "stage1" and old.get(k) != meta.get(k))
        if changed:
            raise DatasetError(f"{out} was made with other settings (differs in {', '.join(changed)}: "
                               + "; ".join(f"{k} {old.get(k)!r} there, {meta.get(k)!r} now" for k in changed)
                               + "): use a fresh --out or the same settings")
        return
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not a folder of `fastmotion data mvlift`: choose a fresh --out")
    (out / "windows").mkdir(parents=True, exist_ok=True)
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / "meta.json")


def _write_clip(out: Path, name: str, windows: list[dict], left_out: list[str]) -> None:
    if windows:
        longest = max(w["length"] for w in windows)
        first = windows[0]
        views = np.zeros((len(windows), first["views"].shape[0], longest, *first["views"].shape[2:]), np.float32)
        joints = np.zeros((len(windows), longest, *first["joints"].shape[1:]), np.float32)
        for k, w in enumerate(windows):
            views[k, :, :w["length"]] = w["views"]
            joints[k, :w["length"]] = w["joints"]
        arrays = {"views": views, "joints": joints, "lengths": np.array([w["length"] for w in windows]),
                  "starts": np.array([w["start"] for w in windows]),
                  "focal": np.array([w["focal"] for w in windows], np.float32),
                  "error": np.array([w["error"] for w in windows], np.float32)}
        tmp = out / "windows" / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, out / "windows" / f"{name}.npz")
    line = json.dumps({"clip": name, "windows": len(windows), "left_out": left_out}) + "\n"
    with open(out / "done.jsonl", "a+b") as f:  # after the file: a clip listed here is complete on disk
        if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
            line = "\n" + line  # a line cut short by a crash stays apart (and is ignored)
        f.write(line.encode())


def clip_batches(lifter, clips) -> list[list[tuple[int, tuple[int, int]]]]:
    """The batches in which `build_multiview_data` lifts `clips`: the windows of `lifter.plan` packed by whole
    clips, at most the lifter's `batch_clips` windows (a clip with more windows is a batch of its own)."""
    by_clip: dict[int, list] = {}
    for i, span in lifter.plan(clips, record=False):
        by_clip.setdefault(i, []).append(span)
    order, batches = list(by_clip), []
    while order:
        members = [order.pop(0)]
        while order and sum(len(by_clip[i]) for i in members + order[:1]) <= lifter.config.batch_clips:
            members.append(order.pop(0))
        batches.append([(i, span) for i in members for span in by_clip[i]])
    return batches


def build_multiview_data(lifter, clips, out, meta: dict, ring: RingSettings,
                         clip_done: Callable[[int], None] | None = None) -> dict:
    """Stage 3 over `clips` (`fastmotion.pipelines.lifting.Clip2D`) with an `MVLiftLifter` in mode stage2 (its
    `iteration_progress` ticks per stage-2 iteration: `lifter.config.iterations` per batch of `clip_batches`), into
    `out` (`start_folder` with `meta` first): clips listed in done.jsonl are skipped, the others lifted batch by
    batch, each clip written when its batch ends. `clip_done(n)` as n more clips are done (or found done).

    Returns {"clips", "windows", "left_out": [reasons], "skipped": [reasons]} over the whole folder, and
    "this_run": the reasons written by this call.

    Raises:
        DatasetError: `out` was made from another checkpoint, skeleton or settings (`start_folder`).
        ValueError: the lifter is not in mode stage2.
    """
    if lifter.config.mode != "stage2":
        raise ValueError(f"the multi-view data comes from stage 2, not mode {lifter.config.mode!r}")
    out = Path(out)
    start_folder(out, meta)
    done = done_clips(out)
    todo = [c for c in clips if c.name not in done]
    if clip_done and len(clips) > len(todo):
        clip_done(len(clips) - len(todo))
    this_run = []
    for clip in todo:
        reason = lifter._check(clip)
        if reason:  # never liftable: listed as done, with the reason
            this_run.append(f"{clip.name}: skipped ({reason})")
            _write_clip(out, clip.name, [], this_run[-1:])
            if clip_done:
                clip_done(1)
    device = next(lifter.model.parameters()).device
    for batch in clip_batches(lifter, todo):
        reference, mask, focal, _, noise = lifter.prepare(todo, batch)
        joints, _ = lifter.lift_batch(reference.to(device), mask.to(device), noise, focal)
        joints = joints.cpu().double()
        error = reprojection_error(joints, reference.double(), mask, focal)
        root = lifter.tree.root_position(joints[:, 0])
        views, world = to_ring(joints, focal.double(), root, ring)
        per_clip: dict[int, tuple[list, list]] = {i: ([], []) for i, _ in batch}
        for k, (i, (s, e)) in enumerate(batch):
            kept, left = per_clip[i]
            if not float(error[k]) <= ring.threshold:
                left.append(f"{todo[i].name} frames {s}-{e}: reprojection error in the observed view "
                            f"{float(error[k]):.3g} > {ring.threshold:g}")
                continue
            kept.append({"start": s, "length": e - s, "views": views[:, k, :e - s].float().numpy(),
                         "joints": world[k, :e - s].float().numpy(), "focal": float(focal[k]),
                         "error": float(error[k])})
        for i, (kept, left) in per_clip.items():
            _write_clip(out, todo[i].name, kept, left)
            this_run += left
            if clip_done:
                clip_done(1)
    return {**summary(out), "this_run": this_run}


def summary(root) -> dict:
    """{"clips", "windows", "left_out", "skipped"} of a `fastmotion data mvlift` folder so far."""
    done = done_clips(root).values()
    left = [r for d in done for r in d["left_out"]]
    return {"clips": len(done), "windows": sum(d["windows"] for d in done),
            "left_out": [r for r in left if ": skipped (" not in r], "skipped": [r for r in left if ": skipped (" in r]}


class MultiViewWindows:
    """Every window of a `fastmotion data mvlift` folder in memory (float32: about 1 MB per 100 SMPL-22 windows of
    32 frames): views [N, V, L, J, 2] (zero-padded to L frames), mask [N, L], focal [N], clip names [N]; `meta` its
    meta.json.

    Raises:
        DatasetError: not such a folder, or it holds no window yet.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        views, masks, focal, names = [], [], [], []
        length = int(self.meta["window"])
        for name, entry in done_clips(self.root).items():
            if not entry["windows"]:
                continue
            path = self.root / "windows" / f"{name}.npz"
            try:
                with np.load(path) as f:
                    v, n, fl = f["views"], f["lengths"], f["focal"]
            except (OSError, KeyError, ValueError) as err:
                raise DatasetError(f"{path} cannot be read ({err}); remove its line from done.jsonl to redo it") \
                    from None
            padded = np.zeros((len(v), v.shape[1], length, *v.shape[3:]), np.float32)
            padded[:, :, :v.shape[2]] = v
            views.append(padded)
            masks.append(np.arange(length)[None] < n[:, None])
            focal.append(fl)
            names += [name] * len(v)
        if not views:
            raise DatasetError(f"{self.root} holds no window yet (is `fastmotion data mvlift` still running, or were "
                               "all windows left out? see done.jsonl)")
        self.views = torch.from_numpy(np.concatenate(views))
        self.mask = torch.from_numpy(np.concatenate(masks))
        self.focal = torch.from_numpy(np.concatenate(focal))
        self.names = names

    def __len__(self) -> int:
        return len(self.views)
