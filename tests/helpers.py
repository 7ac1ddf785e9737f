"""Shared helpers of the tests: checks for the ops, the CLI as a subprocess, stand-in release files."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastmotion.ops import backends
from fastmotion.ops.reference import gumbel_noise

CUDA = torch.cuda.is_available()


def fused_backends() -> list:
    """pytest params (backend, device) for every compiled backend; unavailable ones are skipped with the reason."""
    status = backends()
    params = []
    for name, device in (("cpp", "cpu"), ("triton", "cuda" if CUDA else "cpu"), ("cuda", "cuda")):
        marks = [] if status[name].available else [pytest.mark.skip(reason=f"{name}: {status[name].reason}")]
        if device == "cuda":
            marks.append(pytest.mark.cuda)
        params.append(pytest.param(name, device, marks=marks, id=name))
    return params


def assert_rvq_valid(x, codebooks, out, ref=None, temperature=0.0, seed=0, rel=1e-5, min_match=0.9):
    """The backend's output is a valid greedy residual quantisation of x.

    Along the backend's own codes, recomputed in float64, every level's choice must be the best code or within
    `rel` (relative) of the best score: a different code than the reference's is only accepted at a near-tie.
    quantized/residual must equal the sum of the chosen codes and x minus it. When `ref` is given, at least
    `min_match` of the codes must equal the reference's exactly (guards against a consistently-shifted answer).
    """
    codes, quantized, residual = out
    n, d = x.shape
    levels, num_codes, _ = codebooks.shape
    assert codes.shape == (n, levels) and codes.dtype == torch.int64
    assert quantized.shape == (n, d) and residual.shape == (n, d)
    assert quantized.dtype == x.dtype and residual.dtype == x.dtype
    if n == 0:
        return
    x64, books64 = x.detach().double().cpu(), codebooks.detach().double().cpu()
    codes = codes.cpu()
    assert int(codes.min()) >= 0 and int(codes.max()) < num_codes
    rows = torch.arange(n)
    r = x64.clone()
    for level in range(levels):
        pure = ((r[:, None, :] - books64[level][None]) ** 2).sum(-1)
        dist = pure
        if temperature > 0:
            dist = pure - temperature * gumbel_noise(seed, level, rows, torch.arange(num_codes)).double()
        best = dist.min(1).values
        chosen = dist[rows, codes[:, level]]
        # relative to the distance itself (with sampling, to the distance part of the perturbed score)
        scale = torch.maximum(best.abs(), pure[rows, codes[:, level]]).clamp_min(1e-12)
        gap = chosen - best
        bad = gap > rel * scale
        assert not bad.any(), (f"level {level}: {int(bad.sum())} rows chose a code worse than the best by more than "
                               f"{rel} relative (max gap {float(gap.max()):.3g})")
        r = r - books64[level][codes[:, level]]
    q64 = x64 - r
    tol = 1e-4 if x.dtype == torch.float32 else 1e-10
    torch.testing.assert_close(quantized.detach().double().cpu(), q64, atol=tol * levels, rtol=tol)
    torch.testing.assert_close(residual.detach().double().cpu(), r, atol=tol * levels, rtol=tol)
    if ref is not None:
        match = (codes == ref[0].cpu()).double().mean().item()
        assert match >= min_match, f"only {match:.1%} of codes match the reference"


def shared_dir():
    """The project's ../shared folder (papers, real mocap clips), or None. Looked for beside the checkout, then
    beside the repository this one was cloned from (CI runs on a fresh clone elsewhere), or at
    $FASTMOTION_SHARED."""
    import os
    import subprocess
    from pathlib import Path

    if os.environ.get("FASTMOTION_SHARED"):
        return Path(os.environ["FASTMOTION_SHARED"])
    here = Path(__file__).resolve().parent
    roots = list(here.parents)
    origin = subprocess.run(["git", "-C", str(here), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        roots += list(Path(origin).resolve().parents)
    return next((root / "shared" for root in roots if (root / "shared" / "data" / "cmu").is_dir()), None)


def t2m_release(tmp_path):
    """A stand-in for the T2M release's files, with random weights of small sizes and a tiny GloVe."""
    import pickle

    import numpy as np

    from fastmotion.metrics.t2m_original import MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo

    torch.manual_seed(0)
    state = {"movement_encoder": MovementConvEncoder(259, 16, 12).state_dict(),
             "motion_encoder": MotionEncoderBiGRUCo(12, 10, 8).state_dict(),
             "text_encoder": TextEncoderBiGRUCo(6, 15, 9, 8).state_dict(), "epoch": 3}
    folder, glove = tmp_path / "t2m", tmp_path / "glove"
    (folder / "text_mot_match" / "model").mkdir(parents=True)
    (folder / "meta").mkdir()
    glove.mkdir()
    torch.save(state, folder / "text_mot_match" / "model" / "finest.tar")
    np.save(folder / "meta" / "mean.npy", np.zeros(263, np.float32))
    np.save(folder / "meta" / "std.npy", np.ones(263, np.float32))
    words = ["unk", "sos", "eos", "a", "person", "walk", "left"]
    np.save(glove / "our_vab_data.npy", np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    with open(glove / "our_vab_words.pkl", "wb") as f:
        pickle.dump(words, f)
    with open(glove / "our_vab_idx.pkl", "wb") as f:
        pickle.dump({w: i for i, w in enumerate(words)}, f)
    return folder, glove, state


def fastmotion_cli(*args, env=None, check=True):
    """Run `python -m fastmotion.cli ARGS` as a real subprocess; with check, fail on a non-zero exit."""
    done = subprocess.run([sys.executable, "-m", "fastmotion.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def minimal_bvh_positions(text: str) -> tuple[list[str], np.ndarray]:
    """An independent minimal BVH reader for the tests (not fastmotion's): joint names and world positions
    [T, J, 3] in the file's units, rotations applied in the order the CHANNELS line lists them."""
    names, parents, offsets, channels, stack, pending = [], [], [], [], [], None
    lines = iter(text.splitlines())
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] in ("ROOT", "JOINT"):
            names.append(words[1])
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append([])
            pending = len(names) - 1
        elif words[0] == "End":
            pending = "end"
        elif words[0] == "{":
            stack.append(pending)
        elif words[0] == "}":
            stack.pop()
        elif words[0] == "OFFSET" and stack[-1] != "end":
            offsets[stack[-1]] = np.array([float(w) for w in words[1:4]])
        elif words[0] == "CHANNELS":
            channels[stack[-1]] = words[2:]
        elif words[0] == "MOTION":
            break
    frames = int(next(lines).split(":")[1])
    next(lines)  # Frame Time
    motion = np.array([[float(w) for w in next(lines).split()] for _ in range(frames)])

    def axis_rotation(axis, degrees):
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
                "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]

    out = np.zeros((frames, len(names), 3))
    for t in range(frames):
        column, world = 0, [None] * len(names)
        for j in range(len(names)):
            R, position = np.eye(3), offsets[j].copy()
            for name in channels[j]:
                value = motion[t, column]
                column += 1
                if name.endswith("position"):
                    position["XYZ".index(name[0])] = value
                else:
                    R = R @ axis_rotation(name[0], value)
            if parents[j] < 0:
                world[j], out[t, j] = R, position
            else:
                world[j] = world[parents[j]] @ R
                out[t, j] = out[t, parents[j]] + world[parents[j]] @ position
    return names, out


def synthetic_clip(seed=0, frames=12) -> torch.Tensor:
    """A synthetic clip's joints [frames, 22, 3] (metres, y up), float64."""
    from fastmotion.data.synth import synth_clip

    joints, _, _ = synth_clip(np.random.default_rng(seed))
    return torch.from_numpy(joints[:frames]).double()


def front_camera(distance=5.0):
    """(K, R, t): looking at the origin from +z at `distance` (a half turn about x: y down), x_cam = R x + t."""
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    t = torch.tensor([0.0, 1.0, distance], dtype=torch.float64)
    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]], dtype=torch.float64)
    return K, R, t


def pinhole(joints, K, R, t):
    """Pixels [..., 2] of world points [..., 3] through an OpenCV pinhole camera."""
    c = joints @ R.T + t
    uv = c @ K.T
    return uv[..., :2] / uv[..., 2:]


def assert_valid_body(joints, name, floor: bool = True):
    """No NaN; every bone within 5% of one length over the clip; the long bones of arms and legs at an adult's
    proportions within +-25% of one size (max/min <= 1.7), the others within 0.2-5x of that size; with `floor`, nothing under the floor (y up) and a
    foot on it in every second (20 frames). Issue 28's "valid bodies", checked on what fastmotion writes."""
    from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS

    assert np.isfinite(joints).all(), name
    bones = np.linalg.norm(joints[:, 1:] - joints[:, list(SMPL22.parents[1:])], axis=-1)
    median = np.median(bones, axis=0)
    assert np.abs(bones / median - 1).max() <= 0.05, name
    long = [SMPL22.index(f"{side}_{end}") - 1 for end in ("knee", "ankle", "elbow", "wrist") for side in ("left", "right")]
    ratio = median / np.linalg.norm(SMPL22_REST_OFFSETS[1:], axis=-1)
    ratio /= np.median(ratio[long])
    assert ratio[long].max() / ratio[long].min() <= 1.7, (name, ratio.round(2))  # within +-25% of one size
    assert 0.2 <= ratio.min() and ratio.max() <= 5, (name, ratio.round(2))
    if not floor:
        return
    assert joints[..., 1].min() > -1e-3, name
    lowest = joints[:, list(SMPL22.feet), 1].min(-1)
    for start in range(len(lowest) - 19):
        assert lowest[start:start + 20].min() < 0.03, (name, start, lowest.round(3))
