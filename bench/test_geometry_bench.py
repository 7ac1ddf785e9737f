"""pytest-benchmark cases for the geometry ops, on the closures `fastmotion bench geometry` times.

    pytest bench/test_geometry_bench.py --benchmark-only
"""
import pytest
import torch

from fastmotion.bench.geometry import MODES, OPS, available_backends, make_case
from fastmotion.bench.harness import synchronized

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = [(op, backend) for op in OPS for backend in available_backends(op, DEVICE)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op,backend", CASES)
def test_geometry(benchmark, op, backend, mode):
    fn = make_case(op, mode, backend, DEVICE)
    benchmark.group = f"{op} {mode}"
    benchmark.pedantic(synchronized(fn, DEVICE), rounds=5, warmup_rounds=1)
