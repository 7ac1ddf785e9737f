"""The ops' front: one validation module (fastmotion.ops._validate) and one dispatch table (fastmotion.ops._backends).

Bad input names the op and the argument, on every public op and on every Triton entry point; the table of
implemented backends is true, and the ops dispatch to what its automatic order picks."""
import inspect
import math
import re
import types

import pytest
import torch

import fastmotion.ops as ops
from fastmotion.ops import _backends, _validate, backends, reference
from fastmotion.ops import epipolar as epipolar_module
from fastmotion.ops import geometry as geometry_module
from fastmotion.ops import rvq as rvq_module

F64 = torch.float64
B, T, J, V = 2, 3, 4, 3


def _geometry_tensors(frames=T):
    g = torch.Generator().manual_seed(0)
    points = torch.randn(B, frames, J, 3, generator=g, dtype=F64) * 0.3
    keypoints = torch.rand(B, frames, J, 2, generator=g, dtype=F64) * 100 + 400
    K = torch.tensor([[900.0, 0.5, 500.0], [0.0, 950.0, 480.0], [0.0, 0.0, 1.0]], dtype=F64).repeat(B, 1, 1)
    R = torch.eye(3, dtype=F64).repeat(B, 1, 1)
    t = torch.tensor([0.1, -0.2, 5.0], dtype=F64).repeat(B, 1)
    return points, keypoints, K, R, t


def public_inputs():
    """Tensor arguments of a valid call of each op with backends (CPU, float64), in the order the op checks them."""
    points, keypoints, K, R, t = _geometry_tensors()
    return {
        "rvq_search": dict(x=torch.randn(5, 6, dtype=F64), codebooks=torch.randn(2, 4, 6, dtype=F64)),
        "project_weak_perspective": dict(points=points, rotations=ops.sample_view_rotations(V, dtype=F64),
                                         scale=torch.ones(B, 1, dtype=F64), offset=torch.zeros(2, dtype=F64)),
        "reprojection_loss": dict(points=points, keypoints=keypoints, mask=torch.ones(B, T, J, dtype=torch.bool),
                                  K=K, R=R, t=t, weights=torch.ones(J, dtype=F64)),
        "ray_project": dict(points=points, keypoints=keypoints, K=K, R=R, t=t),
        "sampson_consistency": dict(views=torch.randn(V, B, T, J, 2, dtype=F64), F=torch.randn(2, B, 3, 3, dtype=F64),
                                    mask=torch.ones(B, T, dtype=torch.bool)),
    }


PAIRS = [(0, 1), (1, 2)]  # the non-tensor argument sampson_consistency needs
DEFAULTS = {"sampson_consistency": dict(pairs=PAIRS)}


NAN, INF = float("nan"), float("inf")
# (argument, bad value, error): the non-tensor arguments; `backend` is checked for every op below.
SCALAR_CASES = {
    "rvq_search": [("temperature", "hot", TypeError), ("temperature", -1.0, ValueError),
                   ("temperature", NAN, ValueError), ("temperature", INF, ValueError),
                   ("generator", 7, TypeError)],
    "project_weak_perspective": [("scale", "2", TypeError), ("offset", 1.0, TypeError)],
    "reprojection_loss": [("min_depth", "0.1", TypeError), ("min_depth", NAN, ValueError),
                          ("reduction", "max", ValueError), ("velocity", True, ValueError)],  # velocity: with T=1
    "ray_project": [],
    "sampson_consistency": [("pairs", torch.tensor(PAIRS), TypeError), ("pairs", [(0, 1), (1, 3)], ValueError),
                            ("pairs", [(0, 1), (1, 1)], ValueError), ("pairs", [(0, 1)], ValueError),
                            ("pairs", [(0, 1), (1, 2.0)], TypeError), ("pairs", [(0, 1), (1, -1)], ValueError),
                            ("reduction", "max", ValueError)],
    "sample_view_rotations": [("num_views", 2.5, TypeError), ("num_views", -1, ValueError), ("batch", "2", TypeError),
                              ("batch", -1, ValueError), ("max_pitch", "x", TypeError), ("max_roll", NAN, ValueError),
                              ("max_yaw", INF, ValueError), ("generator", 7, TypeError),
                              ("dtype", torch.int64, TypeError), ("dtype", "float32", TypeError)],
}
UNCHECKED = {"depth_weighted", "detach_depth", "device"}  # flags taken by truth value; a device is torch's to check
PUBLIC_OPS = sorted(SCALAR_CASES)
TENSOR_CASES = [(op, arg) for op, inputs in public_inputs().items() for arg in inputs]


def _call(op, inputs, **extra):
    if op == "sample_view_rotations":
        return ops.sample_view_rotations(**{"num_views": 2, "batch": 3, **extra})
    return getattr(ops, op)(**{**DEFAULTS.get(op, {}), **inputs, **extra})


def wrong_shape(value):
    """value with an extra trailing dimension of 2: a rank, size or broadcast error for every argument here."""
    return value.unsqueeze(-1).expand(*value.shape, 2)


def raises(error, prefix, rest=""):
    return pytest.raises(error, match="^" + re.escape(prefix) + rest)


# ---- every public op and every argument --------------------------------------------------------------------------

def test_every_public_op_and_argument_is_covered():
    names = {name for name in ops.__all__ if inspect.isfunction(getattr(ops, name))} - {"backends", "set_checks"}
    assert names == set(PUBLIC_OPS)
    with_backend = {name for name in names if "backend" in inspect.signature(getattr(ops, name)).parameters}
    assert with_backend == set(_backends.OPS) == set(public_inputs())
    inputs = public_inputs()
    for op in PUBLIC_OPS:
        params = set(inspect.signature(getattr(ops, op)).parameters) - {"backend"} - UNCHECKED
        assert params == set(inputs.get(op, {})) | {arg for arg, *_ in SCALAR_CASES[op]}, op


# the backends that take CPU tensors here (triton: interpreted, as tests/conftest.py sets TRITON_INTERPRET=1)
CPU_BACKENDS = [name for name in ("torch", "cpp", "triton") if backends()[name].available]


@pytest.mark.parametrize("op,arg", TENSOR_CASES, ids=[f"{op}-{arg}" for op, arg in TENSOR_CASES])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_tensor_argument_names_op_and_argument(op, arg, backend):
    inputs = public_inputs()[op]
    value = inputs[arg]
    prefix = f"{op}: {arg} "
    for bad, error in ((value.tolist(), TypeError), (value.long() if value.is_floating_point() else value.double(),
                                                     TypeError), (wrong_shape(value), ValueError)):
        with raises(error, prefix):
            _call(op, {**inputs, arg: bad}, backend=backend)
    first = next(iter(inputs))
    if arg != first and value.is_floating_point():
        with raises(TypeError, prefix, f"has dtype torch.float32, expected torch.float64 like {first}"):
            _call(op, {**inputs, arg: value.float()}, backend=backend)
    if arg != first:
        with raises(ValueError, prefix, f"is on meta but {first} is on cpu"):
            _call(op, {**inputs, arg: value.to("meta")}, backend=backend)
    else:
        second = list(inputs)[1]
        with raises(ValueError, f"{op}: {second} is on cpu but {first} is on meta"):
            _call(op, {**inputs, arg: value.to("meta")}, backend=backend)


@pytest.mark.parametrize("op,arg,bad,error", [(op, *case) for op in PUBLIC_OPS for case in SCALAR_CASES[op]],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_bad_scalar_argument_names_op_and_argument(op, arg, bad, error):
    inputs = public_inputs().get(op, {})
    if op == "reprojection_loss" and arg == "velocity":
        inputs = {name: value[:, :1] if name in ("points", "keypoints", "mask") else value
                  for name, value in inputs.items()}
    with raises(error, f"{op}: {arg}", r"\b"):
        _call(op, inputs, **{arg: bad})


@pytest.mark.parametrize("op", sorted(_backends.OPS))
def test_unknown_backend_names_op_and_backend(op):
    with raises(ValueError, f"{op}: backend= must be one of", ".*got 'numba'"):
        _call(op, public_inputs()[op], backend="numba")


def test_valid_inputs_pass_and_values_are_still_checked():
    inputs = public_inputs()
    for op in _backends.OPS:
        _call(op, inputs[op])
    bad = {**inputs["reprojection_loss"], "K": inputs["reprojection_loss"]["K"].clone()}
    bad["K"][1, 1, 1] = 0.0
    with raises(ValueError, "reprojection_loss: K is degenerate"):
        _call("reprojection_loss", bad)
    bad = {**inputs["ray_project"], "keypoints": inputs["ray_project"]["keypoints"].clone()}
    bad["keypoints"][0, 0, 0, 0] = NAN
    with raises(ValueError, "ray_project: keypoints contain NaN or inf at 1 joint(s)", "$"):
        _call("ray_project", bad)


def test_metadata_checks_read_no_data():
    """The checks besides the NaN/camera ones are metadata only: they pass on meta tensors, which hold no data."""
    meta = {op: {name: value.to("meta") for name, value in inputs.items()} for op, inputs in public_inputs().items()}
    _validate.rvq_search(**meta["rvq_search"], temperature=0.5)
    _validate.project_weak_perspective(**meta["project_weak_perspective"])
    _validate.reprojection_loss(**meta["reprojection_loss"], velocity=True, min_depth=0.1, reduction="mean")
    _validate.ray_project(**meta["ray_project"])
    _validate.sampson_consistency(**meta["sampson_consistency"], pairs=PAIRS, reduction="mean")


# ---- the Triton entry points --------------------------------------------------------------------------------------

def kernel_inputs(kernels, device):
    """entry point -> (function, tensor arguments in the order it checks them, other arguments), canonical layouts."""
    points, keypoints, K, R, t = (x.to(device) for x in _geometry_tensors())
    camera = dict(K=K, R=R, t=t)
    rotations = ops.sample_view_rotations(V, B, dtype=F64, device=device)
    scale, offset = torch.ones(B, V, dtype=F64, device=device), torch.zeros(B, V, 2, dtype=F64, device=device)
    extra = dict(weights=torch.ones(B, T, J, dtype=F64, device=device),
                 mask=torch.ones(B, T, J, dtype=torch.bool, device=device))
    flags = dict(depth_weighted=True, min_depth=0.1, velocity=False)
    flat = dict(points=points.reshape(B, -1, 3), keypoints=keypoints.reshape(B, -1, 2))
    epipolar = dict(views=torch.randn(V, B, T * J, 2, dtype=F64, device=device),
                    F=torch.randn(2, B, 3, 3, dtype=F64, device=device),
                    mask=torch.ones(B, T * J, dtype=torch.bool, device=device))
    return {
        "rvq_search": (kernels.rvq_search, dict(x=torch.randn(5, 6, dtype=F64, device=device),
                                                codebooks=torch.randn(2, 4, 6, dtype=F64, device=device)),
                       dict(temperature=0.0, seed=0)),
        "project_weak_perspective": (kernels.project_weak_perspective, dict(points=points, rotations=rotations,
                                                                            scale=scale, offset=offset), {}),
        "project_weak_perspective_backward": (
            kernels.project_weak_perspective_backward,
            dict(points=points, grad_out=torch.ones(B, V, T, J, 2, dtype=F64, device=device), rotations=rotations,
                 scale=scale), {}),
        "reprojection_terms": (kernels.reprojection_terms, dict(points=points, keypoints=keypoints, **camera, **extra),
                               flags),
        "reprojection_terms_backward": (
            kernels.reprojection_terms_backward,
            dict(points=points, keypoints=keypoints, **camera, **extra,
                 grad_terms=torch.ones(B, T, J, dtype=F64, device=device)), dict(flags, detach_depth=True)),
        "ray_project": (kernels.ray_project, dict(flat, **camera), {}),
        "ray_project_backward": (kernels.ray_project_backward,
                                 dict(grad_out=torch.ones(B, T * J, 3, dtype=F64, device=device),
                                      keypoints=flat["keypoints"], K=K, R=R), {}),
        "sampson_terms": (kernels.sampson_terms, epipolar, dict(pairs=[0, 1, 1, 2])),
        "sampson_terms_backward": (kernels.sampson_terms_backward,
                                   dict(epipolar, grad_terms=torch.ones(2, B, T * J, dtype=F64, device=device)),
                                   dict(pairs=[0, 1, 1, 2])),
    }


@pytest.fixture(scope="module")
def triton_kernels():
    kernels = pytest.importorskip("fastmotion.kernels", reason="triton cannot be imported")
    if not backends()["triton"].available:
        pytest.skip(backends()["triton"].reason)
    return kernels


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ENTRY_POINTS = sorted({name for spec in _backends.OPS.values() for name in spec.entry_points})


def test_kernel_entry_points_are_the_tables(triton_kernels):
    assert sorted(kernel_inputs(triton_kernels, DEVICE)) == ENTRY_POINTS


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_triton_entry_point_rejects_bad_tensors(triton_kernels, entry):
    fn, tensors, other = kernel_inputs(triton_kernels, DEVICE)[entry]
    first = next(iter(tensors))
    for arg, value in tensors.items():
        prefix = f"{entry} (triton): {arg} "
        cases = [(value.tolist(), TypeError, "must be a torch.Tensor"),
                 (value.long() if value.is_floating_point() else value.double(), TypeError, "must be"),
                 (wrong_shape(value), ValueError, "must be|has "),
                 (torch.stack([value, value], -1)[..., 0], ValueError, "must be contiguous"),
                 (value.to("meta"), ValueError, "is on meta")]
        if arg != first and value.is_floating_point():
            cases.append((value.float(), TypeError, f"has dtype torch.float32, expected torch.float64 like {first}"))
        for bad, error, rest in cases:
            with raises(error, prefix, f"({rest})"):
                fn(**{**tensors, arg: bad}, **other)


def test_triton_entry_points_check_their_numbers(triton_kernels):
    inputs = kernel_inputs(triton_kernels, DEVICE)
    fn, tensors, other = inputs["rvq_search"]
    for arg, bad, error in (("temperature", -1.0, ValueError), ("temperature", "0", TypeError),
                            ("seed", 1.5, TypeError)):
        with raises(error, f"rvq_search (triton): {arg} "):
            fn(**tensors, **{**other, arg: bad})
    with raises(ValueError, "rvq_search (triton): codebooks need L >= 1"):
        fn(tensors["x"], tensors["codebooks"][:, :0], **other)
    fn, tensors, other = inputs["reprojection_terms"]
    with raises(TypeError, "reprojection_terms (triton): min_depth "):
        fn(**tensors, **{**other, "min_depth": "0.1"})
    short = {name: value[:, :1].contiguous() if value.dim() == 4 or name in ("weights", "mask") else value
             for name, value in tensors.items()}
    with raises(ValueError, "reprojection_terms (triton): velocity=True needs T >= 2"):
        fn(**short, **{**other, "velocity": True})
    fn, tensors, other = inputs["reprojection_terms_backward"]
    with raises(ValueError, "reprojection_terms_backward (triton): grad_terms must have T - 1 frames"):
        fn(**tensors, **{**other, "velocity": True})


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_triton_entry_point_takes_valid_inputs(triton_kernels, entry):
    fn, tensors, other = kernel_inputs(triton_kernels, DEVICE)[entry]
    out = fn(**tensors, **other)
    assert out is not None
    optional = {name: None for name in ("weights", "mask") if name in tensors}
    if optional:
        fn(**{**tensors, **optional}, **other)


# ---- the backend table and the dispatch -------------------------------------------------------------------------

def _entry_point_exists(backend, name):
    """Whether `backend` has the entry point `name` here; None when this machine cannot tell."""
    if backend == "triton":
        kernels, _ = _backends._triton_kernels()
        return None if kernels is None else callable(getattr(kernels, name, None))
    ext, _ = _backends._compiled_module()
    if ext is None or (backend == "cuda" and not ext.with_cuda):
        return None
    key = {"cpp": "CPU", "cuda": "CUDA"}[backend]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmotion::{name}", key)


def test_implemented_table_is_true():
    checked = 0
    for op, spec in _backends.OPS.items():
        assert hasattr(reference, op) and "torch" in spec.implemented
        assert set(spec.implemented) <= set(_backends.BACKENDS)
        assert _backends.IMPLEMENTED[op] == spec.implemented
        for backend in ("cpp", "triton", "cuda"):
            exists = [_entry_point_exists(backend, name) for name in spec.entry_points]
            if None in exists:
                continue
            assert (backend in spec.implemented) == all(exists), (op, backend, spec.entry_points)
            checked += 1
    if backends()["cpp"].available:
        assert checked >= len(_backends.OPS)


def test_cuda_order_comes_from_the_measurements():
    for op, spec in _backends.OPS.items():
        assert set(spec.cuda_order) == set(spec.implemented) - {"cpp"} and spec.cuda_order[-1] == "torch", op
    # bench/RESULTS.md, H100: rvq_search triton 1.28 vs cuda 2.12 ms at N=16384; geometry fwd+bwd cuda fastest
    assert _backends.OPS["rvq_search"].cuda_order[:2] == ("triton", "cuda")
    for op in ("project_weak_perspective", "reprojection_loss", "ray_project"):
        assert _backends.OPS[op].cuda_order[:2] == ("cuda", "triton"), op


def _fake_status(monkeypatch, unavailable=()):
    status = {name: _backends.BackendStatus(name not in unavailable, f"test: {name} is off")
              for name in _backends.BACKENDS}
    monkeypatch.setattr(_backends, "backends", lambda: dict(status))
    monkeypatch.setattr(_backends, "_RESOLVED", {})  # resolve_backend's answers came from the real status
    monkeypatch.delenv("FASTMOTION_BACKEND", raising=False)


CUDA_TENSOR = types.SimpleNamespace(device=torch.device("cuda"))  # resolve_backend reads only the device


@pytest.mark.parametrize("op", sorted(_backends.OPS))
def test_automatic_choice_follows_the_table(op, monkeypatch):
    spec = _backends.OPS[op]
    cpu = torch.zeros(1)
    _fake_status(monkeypatch)
    assert _backends.resolve_backend(op, None, CUDA_TENSOR) == spec.cuda_order[0]
    assert _backends.resolve_backend(op, None, cpu) == "cpp"
    assert _backends.resolve_backend(op, None, torch.zeros(1, device="meta")) == "torch"
    _fake_status(monkeypatch, unavailable=(spec.cuda_order[0], "cpp"))
    assert _backends.resolve_backend(op, None, CUDA_TENSOR) == spec.cuda_order[1]
    assert _backends.resolve_backend(op, None, cpu) == "torch"
    # a backend the table does not list is never chosen, however available
    _fake_status(monkeypatch)
    monkeypatch.setitem(_backends.OPS, op, spec._replace(implemented=tuple(b for b in spec.implemented
                                                                            if b != spec.cuda_order[0])))
    monkeypatch.setattr(_backends, "_RESOLVED", {})
    assert _backends.resolve_backend(op, None, CUDA_TENSOR) == spec.cuda_order[1]


@pytest.mark.parametrize("op", sorted(_backends.OPS))
def test_explicit_requests_are_checked(op, monkeypatch):
    spec = _backends.OPS[op]
    inputs = public_inputs()[op]
    _fake_status(monkeypatch, unavailable=("cuda",))
    with raises(RuntimeError, f"{op}: backend 'cuda' (from backend=) is unavailable: test: cuda is off"):
        _call(op, inputs, backend="cuda")
    monkeypatch.setenv("FASTMOTION_BACKEND", "cuda")
    with raises(RuntimeError, f"{op}: backend 'cuda' (from FASTMOTION_BACKEND) is unavailable"):
        _call(op, inputs)
    _fake_status(monkeypatch)
    with raises(ValueError, f"{op}: the cuda backend takes CUDA tensors, got tensors on cpu"):
        _call(op, inputs, backend="cuda")
    with raises(ValueError, f"{op}: the cpp backend takes CPU tensors, got tensors on cuda"):
        _backends.resolve_backend(op, "cpp", CUDA_TENSOR)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with raises(ValueError, f"{op}: the triton backend takes CUDA tensors"):
        _call(op, inputs, backend="triton")
    monkeypatch.setitem(_backends.OPS, op, spec._replace(implemented=("torch", "cpp", "cuda")))
    monkeypatch.setattr(_backends, "_RESOLVED", {})
    with raises(NotImplementedError, f"{op}: no 'triton' backend yet (this op has: torch, cpp, cuda)"):
        _call(op, inputs, backend="triton")


@pytest.mark.parametrize("op", sorted(_backends.OPS))
def test_ops_run_the_backend_resolve_picks(op, monkeypatch):
    """On CPU tensors the automatic choice is cpp (when built), and the op calls cpp's entry points."""
    inputs = public_inputs()[op]
    monkeypatch.delenv("FASTMOTION_BACKEND", raising=False)
    expected = "cpp" if backends()["cpp"].available else "torch"
    assert _backends.resolve_backend(op, None, next(iter(inputs.values()))) == expected
    used = []

    def spy(backend):
        used.append(backend)
        return _backends.kernels(backend)

    for module in (rvq_module, geometry_module, epipolar_module):
        monkeypatch.setattr(module, "kernels", spy)
    _call(op, inputs)
    assert set(used) == ({"cpp"} if expected == "cpp" else set())
    used.clear()
    monkeypatch.setenv("FASTMOTION_BACKEND", "torch")
    _call(op, inputs)
    assert used == []


def test_backend_status_is_built_once(monkeypatch):
    backends()  # fills the cache for this TRITON_INTERPRET setting

    def rebuild():
        raise AssertionError("backends() rebuilt its table")

    monkeypatch.setattr(_backends, "_backend_status", rebuild)
    monkeypatch.delenv("FASTMOTION_BACKEND", raising=False)
    first = backends()
    first["cpp"] = None  # a copy: callers cannot corrupt the cache
    assert backends()["cpp"] is not None
    for op in _backends.OPS:
        _call(op, public_inputs()[op])
    assert math.isfinite(float(ops.reprojection_loss(**public_inputs()["reprojection_loss"])))
