"""Per-call overhead of the public ops: every op on tiny inputs with each backend available on the device, forward
and forward+backward, beside one ATen op on a tensor of the same size.

Training calls the ops many times per step on small batches (Free3D scores V views; VideoMDM reprojects at every
multistep DDIM step; MVLift's stage 2 calls them thousands of times per clip), so what a call costs besides its
kernel (checks, dispatch, autograd) is what users pay. Each figure is the best, over rounds, of the mean time of
`calls` back-to-back calls (CUDA: synchronised once per round); the rounds interleave the cases so that a slow
spell of a shared machine hits every backend alike.
"""
from __future__ import annotations

import time

import torch
from fastmotion.bench.harness import Row

# The sizes of issue 29: one motion of 8 frames and 22 joints; RVQ: 64 vectors of 32 against 2 levels of 16 codes.
SHAPES = {"B": 1, "T": 8, "J": 22, "V": 4, "N": 64, "D": 32, "L": 2, "K": 16, "views": 3}
META = {"shapes": SHAPES}
OPS = ("rvq_search", "project_weak_perspective", "reprojection_loss", "ray_project", "sampson_consistency")


def inputs(op: str, device: str, grad: bool) -> tuple:
    """(arguments, keyword arguments, the tensor the gradient flows to) of a valid call of `op`, float32."""
    from fastmotion import ops

    B, T, J, V = SHAPES["B"], SHAPES["T"], SHAPES["J"], SHAPES["V"]
    g = torch.Generator().manual_seed(0)
    points = torch.randn(B, T, J, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 4.0])
    K = torch.tensor([[[1000.0, 0.0, 500.0], [0.0, 1000.0, 500.0], [0.0, 0.0, 1.0]]]).expand(B, 3, 3)
    R, t = torch.eye(3).expand(B, 3, 3), torch.zeros(B, 3)
    keypoints = torch.rand(B, T, J, 2, generator=g) * 200 + 400
    if op == "rvq_search":
        main = torch.randn(SHAPES["N"], SHAPES["D"], generator=g)
        args, kwargs = [main, torch.randn(SHAPES["L"], SHAPES["K"], SHAPES["D"], generator=g)], {}
    elif op == "project_weak_perspective":
        main = points
        args, kwargs = [main, ops.sample_view_rotations(V, generator=g)], {}
    elif op == "sampson_consistency":
        main = torch.rand(SHAPES["views"], B, T, J, 2, generator=g)
        args = [main, torch.randn(2, 3, 3, generator=g)]
        kwargs = {"pairs": [(0, 1), (1, 2)]}
    else:
        main = points
        args, kwargs = [main, keypoints, K.contiguous(), R.contiguous(), t], {}
    args = [a.to(device) for a in args]
    if grad:
        args[0].requires_grad_(True)
    return args, kwargs, args[0]


def _call(op: str, backend: str, device: str, grad: bool):
    from fastmotion import ops

    args, kwargs, leaf = inputs(op, device, grad)
    fn = getattr(ops, op)
    if not grad:
        return lambda: fn(*args, **kwargs, backend=backend)

    def forward_backward():
        out = fn(*args, **kwargs, backend=backend)
        (out[-1] if isinstance(out, tuple) else out).sum().backward()
        leaf.grad = None

    return forward_backward


def _aten(op: str, device: str, grad: bool):
    """One ATen add on a tensor of the op's main input's size (+ sum and backward for fwd+bwd)."""
    _, _, main = inputs(op, device, grad)
    if not grad:
        return lambda: torch.add(main, main)

    def forward_backward():
        torch.add(main, main).sum().backward()
        main.grad = None

    return forward_backward


def time_calls(fns: dict, device: str, calls: int, rounds: int) -> dict:
    """Seconds per call of each closure: the best over `rounds` of the mean of `calls` calls, rounds interleaved."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        for _ in range(10):
            fn()
    sync()
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return best


def available_backends(op: str, device: str) -> list[str]:
    """The backends of `op` that run on `device` here; the Triton interpreter (CPU) is left out: it times Python."""
    from fastmotion.ops import _backends

    status = _backends.backends()
    takes = {"torch": True, "cpp": device == "cpu", "triton": device == "cuda", "cuda": device == "cuda"}
    return [b for b in _backends.OPS[op].implemented if status[b].available and takes[b]]


def run(ops: tuple, device: str, calls: int = 500, rounds: int = 7, progress=None) -> list[Row]:
    """Rows per op, case (fwd, fwd+bwd) and backend, plus an "aten add" row: `median_ms` holds the best mean time
    per call (ms), extra: us_per_call and the multiple of the ATen add's time."""
    rows = []
    for op in ops:
        for case, grad in (("fwd", False), ("fwd+bwd", True)):
            names = available_backends(op, device)
            fns = {name: _call(op, name, device, grad) for name in names}
            fns["aten add"] = _aten(op, device, grad)
            if progress:
                progress(f"{op} {case}: {', '.join(fns)}")
            seconds = time_calls(fns, device, calls, rounds)
            for name, sec in seconds.items():
                rows.append(Row(op, case, name, device, sec * 1e3,
                                seconds["torch"] / sec if "torch" in seconds else float("nan"), None,
                                {"us_per_call": round(sec * 1e6, 1),
                                 "vs_aten_add": round(sec / seconds["aten add"], 1)}))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'op':>24} {'case':>8} {'backend':>9} {'us/call':>9} {'vs torch':>9} {'x ATen add':>11}"]
    for r in rows:
        speedup = "-" if r.speedup_vs_torch != r.speedup_vs_torch else f"{r.speedup_vs_torch:.2f}x"
        lines.append(f"{r.op:>24} {r.case:>8} {r.backend:>9} {r.extra['us_per_call']:>9.1f} {speedup:>9} "
                     f"{r.extra['vs_aten_add']:>11.1f}")
    return "\n".join(lines)
