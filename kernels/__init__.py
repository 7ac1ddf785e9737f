"""Triton kernels behind fastmotion.ops (installed as fastmotion.kernels).

Importing this package needs triton; fastmotion.ops imports it lazily and reports why when it cannot.
Run on CPU tensors with TRITON_INTERPRET=1 (slow: tests use small shapes).
"""
from . import geometry
from .rvq import rvq_search_triton

__all__ = ["geometry", "rvq_search_triton"]
