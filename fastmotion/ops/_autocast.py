"""The fused ops compute in float32 or float64, also inside a `torch.autocast` region (bf16 training on a GPU).

Like torch's own precision-sensitive ops (its autocast "fp32" list), a public op called under autocast takes
float16/bfloat16 tensors as float32 and runs with autocast off, so that no matmul inside a backend or the
reference drops to low precision: a residual-VQ argmin or a reprojection depth in bf16 is wrong, not just
rougher. Gradients flow back through the cast. Outside autocast a low-precision tensor is still refused."""
from __future__ import annotations

import functools

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _autocast_device(args, kwargs) -> str | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            device = value.device.type  # autocast-less devices (meta) would raise: leave them to the op's checks
            # cpu and cuda always have autocast: asking would break torch.compile's graph on torch 2.11 (Dynamo
            # cannot trace torch._C._is_autocast_available; seen on the H200, 2026-11-30)
            available = device in ("cpu", "cuda") or torch.amp.is_autocast_available(device)
            return device if available and torch.is_autocast_enabled(device) else None
    return None


def _to_float32(value):
    if isinstance(value, torch.Tensor) and value.dtype in _LOW_PRECISION:
        return value.float()
    return value


def float32_under_autocast(op):
    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        device = _autocast_device(args, kwargs)
        if device is None:
            return op(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return op(*map(_to_float32, args), **{k: _to_float32(v) for k, v in kwargs.items()})
    return wrapper
