"""What every benchmark here shares: interleaved timing, peak-extra-memory probes, the table and the JSON.

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
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Row:
    op: str
    case: str  # e.g. "N=4096" or "fwd+bwd"
    backend: str
    device: str
    median_ms: float
    speedup_vs_torch: float  # NaN when the torch reference was not timed
    peak_extra_mib: float | None
    extra: dict = field(default_factory=dict)


def time_cases(fns: dict, device: str, min_repeats: int = 5, min_seconds: float = 1.0, reduce: str = "median") -> dict:
    """Seconds per call of each closure (the median, or with reduce="mean" the mean: throughput over the same
    sequence of calls), after two warm-up calls each.

    Rounds interleave the closures (one call of each per round), so that a slow spell of a shared machine
    hits every backend alike instead of whichever ran at that moment."""
    if reduce not in ("median", "mean"):
        raise ValueError(f"reduce must be 'median' or 'mean', got {reduce!r}")
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
    summary = statistics.mean if reduce == "mean" else statistics.median
    return {name: summary(t) for name, t in times.items()}


def tensor_bytes(out) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(tensor_bytes(o) for o in out)
    return getattr(out, "nbytes", 0)


_PROBE = r"""
import importlib, json, re, sys, torch
from fastmotion.bench.harness import tensor_bytes
module, args = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
fn = importlib.import_module(module).make_case(*args, "cpu")
fn()
def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident set to the current one
before = status("VmRSS")
out = fn()
print(status("VmHWM") - before - tensor_bytes(out))
"""


def peak_extra_bytes(module: str, args: list, device: str) -> int | None:
    """Peak memory of one call of `module.make_case(*args, device)()` beyond its inputs and outputs."""
    if device == "cuda":
        import importlib

        fn = importlib.import_module(module).make_case(*args, device)
        fn()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return max(torch.cuda.max_memory_allocated() - before - tensor_bytes(out), 0)
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-c", _PROBE, module, json.dumps(args), str(torch.get_num_threads())],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {module} {args} failed:\n{done.stderr}")
    return max(int(done.stdout.strip().splitlines()[-1]), 0)


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    else:
        cpu = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
        found = re.search(r"model name\s*:\s*(.+)", cpu)
        info["cpu"] = found.group(1) if found else "unknown"
    try:
        # "-dirty" when the working tree differs from the commit (a copy sent to a GPU machine can lag its .git)
        info["commit"] = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True,
                                        text=True, cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def format_table(rows: list[Row]) -> str:
    extra_keys = sorted({k for r in rows for k in r.extra})
    head = f"{'op':>24} {'case':>10} {'backend':>8} {'median ms':>10} {'vs torch':>9} {'peak extra MiB':>15}"
    lines = [head + "".join(f" {k:>12}" for k in extra_keys)]
    for r in rows:
        mem = "n/a" if r.peak_extra_mib is None else f"{r.peak_extra_mib:.2f}"
        speedup = "-" if r.speedup_vs_torch != r.speedup_vs_torch else f"{r.speedup_vs_torch:.2f}x"  # NaN
        line = f"{r.op:>24} {r.case:>10} {r.backend:>8} {r.median_ms:>10.2f} {speedup:>9} {mem:>15}"
        lines.append(line + "".join(f" {r.extra.get(k, ''):>12}" for k in extra_keys))
    return "\n".join(lines)


def to_json(rows: list[Row], device: str, **meta) -> str:
    return json.dumps({**meta, "environment": environment(device), "rows": [asdict(r) for r in rows]}, indent=2)


def synchronized(fn, device: str):
    """`fn` followed by a device synchronisation on CUDA, so that timers see the kernels' whole duration."""
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run
