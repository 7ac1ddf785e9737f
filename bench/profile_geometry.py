"""Where a camera op's time goes: torch.profiler over reprojection_loss and ray_project, forward+backward, at
the bench's training size (B=64, T=196, J=22), for the cuda and torch backends.

    python -m fastmotion.bench.profile_geometry > profile.txt    # needs a GPU

Prints, per op and backend, the wall time per call (200 calls) and the profiler's tables by self CPU time
(launches, host syncs, Python-side work) and by self CUDA time (the kernels)."""
from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from fastmotion.bench.geometry import make_case


def main(calls: int = 200, profiled: int = 50):
    if not torch.cuda.is_available():
        raise SystemExit("profile_geometry: needs a CUDA device")
    for op in ("reprojection_loss", "ray_project"):
        for backend in ("cuda", "torch"):
            case = make_case(op, "fwd+bwd", backend, "cuda")
            for _ in range(20):
                case()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                case()
            torch.cuda.synchronize()
            print(f"== {op} {backend}: {(time.perf_counter() - start) / calls * 1e3:.3f} ms per call "
                  f"(wall, {calls} calls)")
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(profiled):
                    case()
                torch.cuda.synchronize()
            table = prof.key_averages()
            print(table.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=60))
            print(table.table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=60))


if __name__ == "__main__":
    main()
