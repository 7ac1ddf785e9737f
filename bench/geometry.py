"""Geometry ops benchmark at training sizes: project_weak_perspective (B=256, T=196, J=22, V=8 views),
reprojection_loss and ray_project (B=64, T=196, J=22), sampson_consistency (MVLift stage 2: B=64 windows,
T=196, J=22, V=6 ring views, its 9 view pairs, one F per window); forward and forward+backward (gradient to the
points or views), float32, every implemented backend against the torch reference.

"GB/s" is the bytes the op must move at the least (inputs read once, outputs written once) over the time;
on a GPU "% peak" relates it to the device's peak memory bandwidth (2 x memory clock x bus width).
"""
from __future__ import annotations

import torch
from fastmotion.bench.harness import Row, peak_extra_bytes, time_cases

from fastmotion.ops import (
    backends,
    project_weak_perspective,
    ray_project,
    reprojection_loss,
    sample_view_rotations,
    sampson_consistency,
)
from fastmotion.ops.geometry import IMPLEMENTED

PROJECTION = dict(B=256, T=196, J=22, V=8)
CAMERA_OPS = dict(B=64, T=196, J=22)
EPIPOLAR = dict(B=64, T=196, J=22, V=6, P=9)
OPS = ("project_weak_perspective", "reprojection_loss", "ray_project", "sampson_consistency")
MODES = ("fwd", "fwd+bwd")
META = {"dtype": "float32", "projection": PROJECTION, "loss_and_ray": CAMERA_OPS, "sampson": EPIPOLAR}


def _camera_inputs(device):
    g = torch.Generator().manual_seed(0)
    B, T, J = CAMERA_OPS["B"], CAMERA_OPS["T"], CAMERA_OPS["J"]
    points = torch.randn(B, T, J, 3, generator=g) * 0.5
    R = sample_view_rotations(1, B, generator=g)[:, 0]
    t = torch.tensor([0.0, 0.0, 5.0]).repeat(B, 1)
    K = torch.tensor([[1000.0, 0.0, 500.0], [0.0, 1000.0, 500.0], [0.0, 0.0, 1.0]]).repeat(B, 1, 1)
    cam = torch.einsum("bij,btkj->btki", R, points + 0.05 * torch.randn(points.shape, generator=g)) + t[:, None, None]
    keypoints = cam[..., :2] / cam[..., 2:] * 1000.0 + 500.0
    return [x.to(device) for x in (points, keypoints, K, R, t)]


def _epipolar_inputs(device):
    """Noisy views of random 3D points on MVLift's ring, the ring's pairs and one F per window (focal 0.5-2)."""
    from fastmotion.losses.mvlift import consistency_pairs
    from fastmotion.motion import multiview

    g = torch.Generator().manual_seed(0)
    B, T, J, V = (EPIPOLAR[k] for k in "BTJV")
    P = multiview.projection_matrices(multiview.ring_cameras(V, 3.0, dtype=torch.float64))
    views = multiview.project(torch.randn(B, T, J, 3, generator=g, dtype=torch.float64) * 0.4, P)
    pairs = consistency_pairs(V)
    focal = torch.rand(B, generator=g, dtype=torch.float64) * 1.5 + 0.5
    k = torch.diag_embed(torch.stack([1 / focal, 1 / focal, torch.ones_like(focal)], -1))
    F = multiview.fundamental_matrices(P)
    per_window = torch.stack([k @ F[i, j] @ k for i, j in pairs])  # [P, B, 3, 3]
    views = (views * focal.view(1, B, 1, 1, 1) + 0.01 * torch.randn(views.shape, generator=g, dtype=torch.float64))
    return views.float().to(device), per_window.float().to(device), pairs


def min_bytes(op: str, mode: str) -> int:
    """Bytes that must move: inputs read once and outputs written once (backward: grad in, grad out)."""
    if op == "sampson_consistency":  # views and one F per window and pair in; backward: views' gradient out
        views = EPIPOLAR["V"] * EPIPOLAR["B"] * EPIPOLAR["T"] * EPIPOLAR["J"] * 2
        fwd = (views + EPIPOLAR["P"] * EPIPOLAR["B"] * 9) * 4
        return fwd if mode == "fwd" else fwd * 2 + views * 4
    if op == "project_weak_perspective":
        points = PROJECTION["B"] * PROJECTION["T"] * PROJECTION["J"] * 3
        out = points // 3 * 2 * PROJECTION["V"]
        fwd = (points + out) * 4
        return fwd if mode == "fwd" else fwd + (out + points + points) * 4
    points = CAMERA_OPS["B"] * CAMERA_OPS["T"] * CAMERA_OPS["J"] * 3
    keypoints = points // 3 * 2
    fwd = (points + keypoints + (points if op == "ray_project" else 0)) * 4
    bwd = (points + keypoints + points + (points if op == "ray_project" else 0)) * 4
    return fwd if mode == "fwd" else fwd + bwd


def make_case(op: str, mode: str, backend: str, device: str):
    """A zero-argument closure: one forward (or forward and backward to the points) of `op` on `backend`."""
    if op == "project_weak_perspective":
        g = torch.Generator().manual_seed(0)
        B, T, J, V = (PROJECTION[k] for k in "BTJV")
        points = (torch.randn(B, T, J, 3, generator=g) * 0.5).to(device)
        rotations = sample_view_rotations(V, B, generator=g).to(device)

        def forward(p):
            return project_weak_perspective(p, rotations, backend=backend)
    elif op == "sampson_consistency":
        points, F, pairs = _epipolar_inputs(device)

        def forward(views):
            return sampson_consistency(views, F, pairs, backend=backend)
    else:
        points, keypoints, K, R, t = _camera_inputs(device)
        fn = reprojection_loss if op == "reprojection_loss" else ray_project

        def forward(p):
            return fn(p, keypoints, K, R, t, backend=backend)

    if mode == "fwd":
        return lambda: forward(points)
    leaf = points.clone().requires_grad_()
    upstream = torch.ones_like(forward(points))

    def forward_backward():
        out = forward(leaf)
        (grad,) = torch.autograd.grad(out, leaf, upstream)
        return out.detach(), grad  # both are outputs: neither counts as extra memory

    return forward_backward


def peak_bandwidth(device: str) -> float | None:
    """The GPU's peak DRAM bandwidth in bytes/s (double data rate), or None on CPU or when torch cannot say."""
    if device != "cuda":
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else None


def available_backends(op: str, device: str) -> list[str]:
    status = backends()
    order = ("torch", "cpp") if device == "cpu" else ("torch", "cuda", "triton")
    return [b for b in order if b in IMPLEMENTED[op] and status[b].available]


def run(ops=OPS, names=None, device: str | None = None, progress=print) -> list[Row]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    peak = peak_bandwidth(device)
    for op in ops:
        chosen = [b for b in available_backends(op, device) if not names or b in names or b == "torch"]
        for mode in MODES:
            progress(f"  {op} {mode}: timing {', '.join(chosen)} ...")
            medians = time_cases({b: make_case(op, mode, b, device) for b in chosen}, device)
            for backend in chosen:
                progress(f"  {op} {mode}: peak memory of {backend} ...")
                ms = medians[backend] * 1e3
                mem = peak_extra_bytes(__name__, [op, mode, backend], device)
                bytes_per_s = min_bytes(op, mode) / (ms * 1e-3)
                extra = {"GB/s": f"{bytes_per_s / 1e9:.1f}"}
                if peak:
                    extra["% peak"] = f"{100 * bytes_per_s / peak:.0f}"
                rows.append(Row(op, mode, backend, device, ms, medians["torch"] * 1e3 / ms,
                                None if mem is None else mem / 2**20, extra))
    return rows
