"""Which backends exist on this machine, and which one an op call uses.

Choice: the op's `backend=` argument > the FASTMOTION_BACKEND environment variable > automatic
(cuda, then triton, for CUDA tensors; cpp for CPU tensors; torch when nothing compiled is there).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch

BACKENDS = ("torch", "cpp", "triton", "cuda")


class BackendStatus(NamedTuple):
    available: bool
    reason: str  # why not, or what it runs on


_CACHE: dict = {}  # a plain dict, not lru_cache: torch.compile traces through these calls


def _compiled_module():
    """fastmotion._C, or the reason it cannot be imported."""
    if "ext" not in _CACHE:
        _CACHE["ext"] = _load_compiled_module()
    return _CACHE["ext"]


def _load_compiled_module():
    try:
        from fastmotion import _C  # noqa: F401  (loading it registers torch.ops.fastmotion.*)
    except ImportError as err:
        return None, (f"fastmotion._C is not built ({err}); installs made with FASTMOTION_NO_EXT=1 have only "
                      "the torch backend: reinstall with `pip install --no-build-isolation -e .`")
    from fastmotion.ops import _library

    _library.register_fake_kernels()
    return _C, ""


def _triton_kernels():
    """fastmotion.kernels, or the reason it cannot be imported."""
    if "triton" not in _CACHE:
        try:
            from fastmotion import kernels
        except ImportError as err:
            _CACHE["triton"] = None, f"triton cannot be imported ({err})"
        else:
            _CACHE["triton"] = kernels, ""
    return _CACHE["triton"]


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backends() -> dict[str, BackendStatus]:
    """Every backend with whether it can run here and, if not, why."""
    key = ("status", _triton_interpreted())  # the only input that may change while a process runs
    if key not in _CACHE:
        _CACHE[key] = _backend_status()
    return dict(_CACHE[key])


def _backend_status() -> dict[str, BackendStatus]:
    status = {"torch": BackendStatus(True, "pure PyTorch reference, any device")}
    ext, why = _compiled_module()
    status["cpp"] = BackendStatus(True, "C++/OpenMP kernels in fastmotion._C") if ext else BackendStatus(False, why)
    kernels, triton_why = _triton_kernels()
    if kernels is None:
        status["triton"] = BackendStatus(False, triton_why)
    elif torch.cuda.is_available():
        status["triton"] = BackendStatus(True, "Triton kernels on CUDA devices")
    elif _triton_interpreted():
        status["triton"] = BackendStatus(True, "Triton interpreter on CPU tensors (TRITON_INTERPRET=1; slow)")
    else:
        status["triton"] = BackendStatus(False, "no CUDA device (TRITON_INTERPRET=1 runs the kernels on CPU, slowly)")
    if ext is None:
        status["cuda"] = BackendStatus(False, why)
    elif not ext.with_cuda:
        status["cuda"] = BackendStatus(False, "fastmotion._C was built without CUDA kernels (no nvcc or CUDA torch at "
                                              "build time, or FASTMOTION_CUDA=0)")
    elif not torch.cuda.is_available():
        status["cuda"] = BackendStatus(False, "no CUDA device visible to torch")
    else:
        status["cuda"] = BackendStatus(True, "CUDA kernels in fastmotion._C")
    return status


def resolve_backend(requested: str | None, tensor: torch.Tensor, op: str, implemented=BACKENDS) -> str:
    """The backend `op` runs on for inputs living where `tensor` lives; raises when the choice cannot run.

    `implemented`: the backends this op has (an op gains its fused backends one by one)."""
    source = "backend="
    if requested is None and os.environ.get("FASTMOTION_BACKEND"):
        requested, source = os.environ["FASTMOTION_BACKEND"], "FASTMOTION_BACKEND"
    on_cuda = tensor.is_cuda
    if requested is None:
        order = ("cuda", "triton", "torch") if on_cuda else ("cpp", "torch")
        status = backends()
        return next(name for name in order if status[name].available and name in implemented)
    if requested not in BACKENDS:
        raise ValueError(f"{op}: {source} must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested not in implemented:
        raise NotImplementedError(f"{op}: no {requested!r} backend yet (this op has: {', '.join(implemented)})")
    state = backends()[requested]
    if not state.available:
        raise RuntimeError(f"{op}: backend {requested!r} (from {source}) is unavailable: {state.reason}")
    if requested == "cpp" and not tensor.device.type == "cpu":
        raise ValueError(f"{op}: the cpp backend takes CPU tensors, got tensors on {tensor.device}")
    if requested == "cuda" and not on_cuda:
        raise ValueError(f"{op}: the cuda backend takes CUDA tensors, got tensors on {tensor.device}")
    if requested == "triton" and not on_cuda and not _triton_interpreted():
        raise ValueError(f"{op}: the triton backend takes CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
                         f"got tensors on {tensor.device}")
    return requested
