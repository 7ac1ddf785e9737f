"""Residual-VQ search benchmark: every backend on the issue's shapes (L=6, K=512, D=512, float32), with FAISS's
exact flat L2 search doing the same six sequential levels as an outside anchor on CPU.

`fastmotion bench rvq` prints the table; bench/test_rvq_bench.py times the same closures with pytest-benchmark.
"""
from __future__ import annotations

import torch

from fastmotion.bench.harness import Row, peak_extra_bytes, time_cases
from fastmotion.ops import backends, rvq_search

LEVELS, CODES, DIM = 6, 512, 512
SIZES = (1024, 4096, 16384)
META = {"op": "rvq_search", "L": LEVELS, "K": CODES, "D": DIM, "dtype": "float32"}


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
            mem = peak_extra_bytes(__name__, [backend, n], device)
            rows.append(Row("rvq_search", f"N={n}", backend, device, ms,
                            reference_ms / ms if reference_ms else float("nan"), None if mem is None else mem / 2**20))
    return rows
