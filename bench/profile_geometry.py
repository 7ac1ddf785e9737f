"""Where a camera or epipolar op's time goes: torch.profiler over reprojection_loss, ray_project and
sampson_consistency, forward+backward, at the bench's training sizes (bench/geometry.py), for the cuda, triton and
torch backends.

    python -m fastmotion.bench.profile_geometry > profile.txt    # needs a GPU

Prints, per op and backend: the wall time per call (200 calls), the GPU's kernel time per call (the profiler's
CUDA events) and their ratio, the host syncs one call makes (torch.cuda.set_sync_debug_mode's warnings), then the
profiler's tables by self CPU time (launches, host syncs, Python-side work) and by self CUDA time (the kernels)."""
from __future__ import annotations

import time
import warnings

import torch
from fastmotion.bench.geometry import make_case
from torch.profiler import ProfilerActivity, profile

OPS = ("reprojection_loss", "ray_project", "sampson_consistency")


def _syncs(case) -> int:
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            case()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main(calls: int = 200, profiled: int = 50, tables: bool = True):
    if not torch.cuda.is_available():
        raise SystemExit("profile_geometry: needs a CUDA device")
    for op in OPS:
        for backend in ("cuda", "triton", "torch"):
            case = make_case(op, "fwd+bwd", backend, "cuda")
            for _ in range(20):
                case()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                case()
            torch.cuda.synchronize()
            wall = (time.perf_counter() - start) / calls * 1e3
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(profiled):
                    case()
                torch.cuda.synchronize()
            table = prof.key_averages()
            gpu = sum(e.self_device_time_total for e in table) / profiled / 1e3
            print(f"== {op} {backend}: {wall:.3f} ms per call (wall, {calls} calls), GPU kernels {gpu:.3f} ms per "
                  f"call, wall/GPU {wall / max(gpu, 1e-9):.2f}, host syncs per call {_syncs(case)}", flush=True)
            if tables:
                print(table.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
                print(table.table(sort_by="self_cuda_time_total", row_limit=6, max_name_column_width=60))


if __name__ == "__main__":
    main()
