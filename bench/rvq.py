"""Residual-VQ search benchmark: every backend on the issue's shapes (L=6, K=512, D=512, float32), with FAISS's
exact flat L2 search doing the same six sequential levels as an outside anchor on CPU.

`fastmotion bench rvq` prints the table; bench/test_rvq_bench.py times the same closures with pytest-benchmark.
Peak extra memory is what a call needs beyond its inputs and outputs: on CUDA from torch's allocator
statistics; on CPU from the process's peak resident set, measured in a fresh subprocess with glibc's mmap
threshold fixed so that freed buffers go back to the OS.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from fastmotion.ops import backends, rvq_search

LEVELS, CODES, DIM = 6, 512, 512
SIZES = (1024, 4096, 16384)


def make_inputs(n: int, device: str = "cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    books = torch.randn(LEVELS, CODES, DIM, generator=g) / (torch.arange(LEVELS) + 1.0)[:, None, None]
    return x.to(device), books.to(device)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def make_case(backend: str, n: int, device: str):
    """A zero-argument closure running one search; shared with the pytest-benchmark suite."""
    x, books = make_inputs(n, device)
    if backend != "faiss":
        return lambda: rvq_search(x, books, backend=backend)
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(torch.get_num_threads())
    books_np = books.numpy()
    indexes = []
    for level in range(LEVELS):
        index = faiss.IndexFlatL2(DIM)
        index.add(books_np[level])
        indexes.append(index)
    x_np = x.numpy()

    def run():
        residual = x_np.copy()
        codes = np.empty((n, LEVELS), dtype=np.int64)
        for level, index in enumerate(indexes):
            _, idx = index.search(residual, 1)
            codes[:, level] = idx[:, 0]
            residual -= books_np[level][idx[:, 0]]
        return codes, x_np - residual, residual

    return run


def available_backends(device: str) -> list[str]:
    status = backends()
    names = ["torch", "cpp"] if device == "cpu" else ["torch", "cuda", "triton"]
    names = [b for b in names if status[b].available]
    if device == "cpu" and faiss_available():
        names.append("faiss")
    return names


def time_cases(fns: dict, device: str, min_repeats: int = 5, min_seconds: float = 1.0) -> dict:
    """Median seconds per call of each closure, after two warm-up calls each.

    Rounds interleave the closures (one call of each per round), so that a slow spell of a shared machine
    hits every backend alike instead of whichever ran at that moment."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()
        fn()
    sync()
    times: dict = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_repeats or time.perf_counter() - start < min_seconds * len(fns):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
        if rounds >= 200:
            break
    return {name: statistics.median(t) for name, t in times.items()}


_PROBE = r"""
import re, sys, torch
from fastmotion.bench.rvq import make_case
backend, n = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
fn = make_case(backend, n, "cpu")
fn()
def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident set to the current one
before = status("VmRSS")
out = fn()
outputs = sum(t.numel() * t.element_size() if hasattr(t, "element_size") else t.nbytes for t in out)
print(status("VmHWM") - before - outputs)
"""


def peak_extra_bytes(backend: str, n: int, device: str) -> int | None:
    if device == "cuda":
        fn = make_case(backend, n, device)
        fn()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        outputs = sum(t.numel() * t.element_size() for t in out)
        return max(torch.cuda.max_memory_allocated() - before - outputs, 0)
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-c", _PROBE, backend, str(n), str(torch.get_num_threads())],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {backend} failed:\n{done.stderr}")
    return max(int(done.stdout.strip().splitlines()[-1]), 0)


@dataclass
class Row:
    backend: str
    n: int
    device: str
    median_ms: float
    speedup_vs_torch: float
    peak_extra_mib: float | None


def run(sizes=SIZES, names=None, device: str | None = None, progress=print) -> list[Row]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = names or available_backends(device)
    rows = []
    for n in sizes:
        progress(f"  N={n}: timing {', '.join(names)} ...")
        medians = time_cases({b: make_case(b, n, device) for b in names}, device)
        reference_ms = medians["torch"] * 1e3 if "torch" in medians else None
        for backend in names:
            progress(f"  N={n}: peak memory of {backend} ...")
            ms = medians[backend] * 1e3
            mem = peak_extra_bytes(backend, n, device)
            rows.append(Row(backend, n, device, ms, reference_ms / ms if reference_ms else float("nan"),
                            None if mem is None else mem / 2**20))
    return rows


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    else:
        cpu = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
        found = re.search(r"model name\s*:\s*(.+)", cpu)
        info["cpu"] = found.group(1) if found else "unknown"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def format_table(rows: list[Row]) -> str:
    lines = [f"{'backend':>8} {'N':>6} {'median ms':>10} {'vs torch':>9} {'peak extra MiB':>15}"]
    for r in rows:
        mem = "n/a" if r.peak_extra_mib is None else f"{r.peak_extra_mib:.2f}"
        speedup = "-" if r.speedup_vs_torch != r.speedup_vs_torch else f"{r.speedup_vs_torch:.2f}x"  # NaN: no torch row
        lines.append(f"{r.backend:>8} {r.n:>6} {r.median_ms:>10.2f} {speedup:>9} {mem:>15}")
    return "\n".join(lines)


def to_json(rows: list[Row], device: str) -> str:
    return json.dumps({"op": "rvq_search", "L": LEVELS, "K": CODES, "D": DIM, "dtype": "float32",
                       "environment": environment(device), "rows": [asdict(r) for r in rows]}, indent=2)
