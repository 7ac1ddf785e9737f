"""Test configuration: Triton kernels run through the interpreter when there is no GPU (set before any
triton import), and shared helpers for comparing fused backends with the reference."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
