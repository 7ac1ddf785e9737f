"""Which backends exist on this machine, which ones each op has, and which one an op call uses.

Choice: the op's `backend=` argument > the FASTMOTION_BACKEND environment variable > automatic: for CUDA tensors
the op's order in OPS (fastest measured first), for CPU tensors cpp then torch, torch on any other device; the
first one that is available here.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch

BACKENDS = ("torch", "cpp", "triton", "cuda")


class OpBackends(NamedTuple):
    implemented: tuple  # the backends with this op's entry points
    cuda_order: tuple  # the automatic choice for CUDA tensors, fastest first
    entry_points: tuple  # forward (and backward) names: torch.ops.fastmotion.<name> for cpp and cuda (dispatched
    #                      on the tensors' device), fastmotion.kernels.<name> for triton; same signatures


# Every op has all four backends today (tests/test_ops_validate.py checks that each listed entry point exists).
# CUDA orders from bench/RESULTS.md, H100 80GB, torch 2.11, triton 3.6, median ms per call of the public op:
# - rvq_search (L=6, K=512, D=512), N=16384: triton 1.28, cuda 2.12, torch 2.91 (commit c202b1f); triton 1.46,
#   cuda 2.27 (361bf9a); GPU time triton 0.92, cuda 1.83 (profile). At N=1024-4096 the two runs disagree (triton
#   0.64-0.70 vs cuda 0.75-0.80, then 1.04-1.20 vs 0.89-0.96): launch-bound, within run-to-run noise.
# - project_weak_perspective (B=256, T=196, J=22, V=8), fwd+bwd: cuda 0.76, triton 0.94, torch 0.89; fwd 0.19,
#   0.23, 0.35. Triton stays before torch: 6% slower fwd+bwd but faster forward and 0 vs 69 MiB extra memory.
# - reprojection_loss (B=64, T=196, J=22), fwd+bwd: cuda 1.25, triton 1.44, torch 2.40.
# - ray_project (B=64, T=196, J=22), fwd+bwd: cuda 0.89, triton 0.96, torch 1.43.
# - sampson_consistency (B=64, T=196, J=22, V=6, 9 pairs), fwd+bwd, H200 (torch 2.11, 2026-11-30): cuda 1.01,
#   triton 1.09, torch 15.58.
# CPU_ORDER: cpp is 1.3-2.9x the reference for rvq_search, 3.6-7.8x for the geometry ops (2-core EPYC tables);
# triton on CPU tensors only runs interpreted (slow), so only when asked for.
OPS = {
    "rvq_search": OpBackends(BACKENDS, ("triton", "cuda", "torch"), ("rvq_search",)),
    "project_weak_perspective": OpBackends(BACKENDS, ("cuda", "triton", "torch"),
                                           ("project_weak_perspective", "project_weak_perspective_backward")),
    "reprojection_loss": OpBackends(BACKENDS, ("cuda", "triton", "torch"),
                                    ("reprojection_terms", "reprojection_terms_backward")),
    "ray_project": OpBackends(BACKENDS, ("cuda", "triton", "torch"), ("ray_project", "ray_project_backward")),
    "sampson_consistency": OpBackends(BACKENDS, ("cuda", "triton", "torch"),
                                      ("sampson_terms", "sampson_terms_backward")),
}
CPU_ORDER = ("cpp", "torch")
IMPLEMENTED = {op: spec.implemented for op, spec in OPS.items()}


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


def kernels(backend: str):
    """Where `backend`'s entry points (OpBackends.entry_points) live: fastmotion.kernels for triton,
    torch.ops.fastmotion for cpp and cuda. Call after resolve_backend, which loads them."""
    return _triton_kernels()[0] if backend == "triton" else torch.ops.fastmotion


def needs_autograd(*tensors) -> bool:
    """Whether a call must go through its autograd Function: grad mode on and some input (None allowed) requiring
    grad. Otherwise the ops call the entry point directly, saving the Function's few microseconds per call."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def resolve_backend(op: str, requested: str | None, tensor: torch.Tensor) -> str:
    """The backend `op` (a key of OPS) runs on for inputs on `tensor`'s device.

    requested: a name from BACKENDS, or None for FASTMOTION_BACKEND, else the automatic choice (module docstring).
    Raises ValueError for an unknown name or a device the backend cannot take, NotImplementedError when the op
    has no such backend, RuntimeError when the backend cannot run here (with the reason)."""
    # Every call of every op comes here: answers are kept per (op, request, device type, environment), which is
    # all they depend on (backends() is fixed per TRITON_INTERPRET); errors are not kept. Not while torch.compile
    # traces (it reads the environment its own way) nor for a request that is not a name (the error says so).
    if torch.compiler.is_compiling() or not (requested is None or isinstance(requested, str)):
        return _resolve(op, requested, tensor)
    key = (op, requested, tensor.device.type, _getenv(b"FASTMOTION_BACKEND"), _getenv(b"TRITON_INTERPRET"))
    chosen = _RESOLVED.get(key)
    if chosen is None:
        chosen = _RESOLVED[key] = _resolve(op, requested, tensor)
    return chosen


_RESOLVED: dict = {}
# os.environ.get encodes the key and decodes the value (0.7 us, twice per op call); its bytes dict, which putenv
# through os.environ keeps current, answers the same in a twentieth of that. Elsewhere: the public way.
_ENV_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _getenv(key: bytes):
    if _ENV_BYTES is not None:
        return _ENV_BYTES.get(key)
    return os.environ.get(key.decode())


def _resolve(op: str, requested: str | None, tensor) -> str:
    spec = OPS[op]
    source = "backend="
    if requested is None and os.environ.get("FASTMOTION_BACKEND"):
        requested, source = os.environ["FASTMOTION_BACKEND"], "FASTMOTION_BACKEND"
    device = tensor.device.type
    if requested is None:
        order = spec.cuda_order if device == "cuda" else CPU_ORDER if device == "cpu" else ("torch",)
        status = backends()
        return next(name for name in order if name in spec.implemented and status[name].available)
    if requested not in BACKENDS:
        raise ValueError(f"{op}: {source} must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested not in spec.implemented:
        raise NotImplementedError(f"{op}: no {requested!r} backend yet (this op has: {', '.join(spec.implemented)})")
    state = backends()[requested]
    if not state.available:
        raise RuntimeError(f"{op}: backend {requested!r} (from {source}) is unavailable: {state.reason}")
    if requested == "cpp" and device != "cpu":
        raise ValueError(f"{op}: the cpp backend takes CPU tensors, got tensors on {tensor.device}")
    if requested == "cuda" and device != "cuda":
        raise ValueError(f"{op}: the cuda backend takes CUDA tensors, got tensors on {tensor.device}")
    if requested == "triton" and device != "cuda" and not (device == "cpu" and _triton_interpreted()):
        raise ValueError(f"{op}: the triton backend takes CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
                         f"got tensors on {tensor.device}")
    return requested
