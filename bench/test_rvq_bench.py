"""pytest-benchmark cases for rvq_search, on the closures `fastmotion bench rvq` times.

    pytest bench/ --benchmark-only      (add --benchmark-json out.json to keep the figures)
"""
import pytest
import torch

from fastmotion.bench.rvq import SIZES, available_backends, make_case
from fastmotion.bench.harness import synchronized

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", available_backends(DEVICE))
def test_rvq_search(benchmark, backend, n):
    fn = make_case(backend, n, DEVICE)
    benchmark.group = f"rvq_search N={n}"
    benchmark.pedantic(synchronized(fn, DEVICE), rounds=5, warmup_rounds=1)
