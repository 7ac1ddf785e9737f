"""What a call of a public op costs besides its kernel (issue 29): value checks behind `set_checks`, no host-device
sync on the CUDA path, a handful of ATen ops around the fused kernel, and `fastmotion bench overhead`."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from fastmotion.bench import overhead
from helpers import CUDA
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from fastmotion import ops
from fastmotion.ops import _backends, backends

NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def default_checks():
    previous = ops.set_checks(None)
    yield
    ops.set_checks(previous)


def _camera(B, dtype=torch.float64, device="cpu"):
    K = torch.tensor([[900.0, 0.5, 500.0], [0.0, 950.0, 480.0], [0.0, 0.0, 1.0]], dtype=dtype).repeat(B, 1, 1)
    R = torch.eye(3, dtype=dtype).repeat(B, 1, 1)
    t = torch.tensor([0.1, -0.2, 5.0], dtype=dtype).repeat(B, 1)
    return K.to(device), R.to(device), t.to(device)


def _geometry(device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    points = (torch.randn(2, 3, 4, 3, generator=g, dtype=dtype) * 0.3).to(device)
    keypoints = (torch.rand(2, 3, 4, 2, generator=g, dtype=dtype) * 100 + 400).to(device)
    return dict(points=points, keypoints=keypoints, **dict(zip("KRt", _camera(2, dtype, device))))


def _spoil(inputs, name, index, value):
    bad = inputs[name].clone()
    bad[index] = value
    return {**inputs, name: bad}


# (op, inputs -> bad inputs, message): every value check of issues 2 and 3
def _bad_value_cases():
    geometry = []
    for op in ("reprojection_loss", "ray_project"):
        geometry += [
            (op, lambda d: _spoil(d, "keypoints", (0, 1, 2, 0), NAN), f"{op}: keypoints contain NaN or inf at 1 joint"),
            (op, lambda d: _spoil(d, "keypoints", (1, 0, 0, 1), INF), f"{op}: keypoints contain NaN or inf"),
            (op, lambda d: _spoil(d, "K", (1, 0, 2), NAN), f"{op}: K contains NaN or inf"),
            (op, lambda d: _spoil(d, "R", (0, 1, 1), INF), f"{op}: R contains NaN or inf"),
            (op, lambda d: _spoil(d, "t", (1, 2), NAN), f"{op}: t contains NaN or inf"),
            (op, lambda d: _spoil(d, "K", (1, 1, 1), 0.0), f"{op}: K is degenerate (fx * fy == 0) for batch entries [1]"),
        ]
    geometry.append(("reprojection_loss",
                     lambda d: {**_spoil(d, "keypoints", (0, 2, 3, 0), NAN),
                                "mask": torch.ones(2, 3, 4, dtype=torch.bool, device=d["points"].device)},
                     "reprojection_loss: keypoints contain NaN or inf at 1 joint(s) that the mask does not mark"))
    rvq = [("rvq_search", lambda d: _spoil(d, "x", (3, 1), NAN), "rvq_search: x contains NaN or inf (1 of 30"),
           ("rvq_search", lambda d: _spoil(d, "x", (0, 0), -INF), "rvq_search: x contains NaN or inf"),
           ("rvq_search", lambda d: _spoil(d, "codebooks", (1, 2, 3), NAN), "rvq_search: codebooks contains NaN")]
    return geometry + rvq


BAD_VALUES = _bad_value_cases()
EVERY_BACKEND = [pytest.param("torch", "cpu", id="torch"), pytest.param("torch", "cuda", id="torch-cuda",
                                                                      marks=pytest.mark.cuda)]
for _name, _device in (("cpp", "cpu"), ("triton", "cuda" if CUDA else "cpu"), ("cuda", "cuda")):
    _marks = [] if backends()[_name].available else [pytest.mark.skip(reason=f"{_name}: {backends()[_name].reason}")]
    EVERY_BACKEND.append(pytest.param(_name, _device, marks=_marks + ([pytest.mark.cuda] if _device == "cuda" else []),
                                      id=_name))


def _valid(op, device, dtype=torch.float64):
    if op == "rvq_search":
        g = torch.Generator().manual_seed(1)
        return {"x": torch.randn(5, 6, generator=g, dtype=dtype).to(device),
                "codebooks": torch.randn(2, 4, 6, generator=g, dtype=dtype).to(device)}
    return _geometry(device, dtype)


@pytest.mark.parametrize("backend,device", EVERY_BACKEND)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", range(len(BAD_VALUES)), ids=[f"{op}-{i}" for i, (op, *_) in enumerate(BAD_VALUES)])
def test_every_bad_value_raises_on_every_backend(backend, device, dtype, case):
    """Issues 2 and 3's value checks, on every backend: by default on CPU tensors; on a GPU once turned on."""
    if device == "cuda" and not CUDA:
        pytest.skip("needs a CUDA device")
    op, spoil, message = BAD_VALUES[case]
    if device == "cuda":
        ops.set_checks(True)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        getattr(ops, op)(**spoil(_valid(op, device, dtype)), backend=backend)


CPU_BACKENDS = [name for name in ("torch", "cpp") if backends()[name].available]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_value_checks_on_strided_empty_and_masked_inputs(backend):
    """The C++ scan reads any strides (an expanded K), passes an empty batch, and checks the camera when a mask
    is given (the mask spares keypoints only)."""
    inputs = _geometry()
    K = inputs["K"][:1].clone()
    K[0, 1, 1] = 0.0
    with pytest.raises(ValueError, match="K is degenerate"):
        ops.ray_project(**{**inputs, "K": K.expand(2, 3, 3)}, backend=backend)
    K[0, 1, 1] = NAN
    with pytest.raises(ValueError, match="K contains NaN or inf"):
        ops.reprojection_loss(**{**inputs, "K": K.expand(2, 3, 3)}, backend=backend)
    ops.ray_project(**{name: value[:0] for name, value in inputs.items()}, backend=backend)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="R contains NaN or inf"):
        ops.reprojection_loss(**_spoil(inputs, "R", (1, 2, 2), NAN), mask=mask, backend=backend)
    x = torch.randn(40, 9).t()  # [9, 40], not contiguous
    x[3, 7] = INF
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        ops.rvq_search(x, torch.randn(2, 3, 40), backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_gradient_asked_of_the_kernel_for_the_camera(backend, recwarn):
    """Only the points get a gradient; a camera or keypoints that require grad still go through the op's autograd
    Function (the bare kernel has no autograd formula: torch would warn and may give wrong gradients)."""
    inputs = _geometry()
    for name in ("keypoints", "K", "t"):
        leaf = inputs[name].clone().requires_grad_(True)
        points = inputs["points"].clone().requires_grad_(True)
        for op in (ops.reprojection_loss, ops.ray_project):
            op(**{**inputs, "points": points, name: leaf}, backend=backend).sum().backward()
        assert points.grad is not None
    assert not [w for w in recwarn if "autograd kernel was not registered" in str(w.message)]


def test_torch_func_transforms_see_the_value_checks():
    """Wrapped tensors (torch.func) hold no storage the C++ scan could read: the reductions check them instead."""
    x, books = torch.randn(6, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    grad = torch.func.grad(lambda v: ops.rvq_search(v, books, backend="torch")[2].sum())(x)
    assert torch.equal(grad, torch.ones_like(x))
    x[2, 1] = NAN
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        torch.func.grad(lambda v: ops.rvq_search(v, books, backend="torch")[2].sum())(x)


def test_traced_ops_keep_dynamic_sizes():
    """The shape checks' cache is off while torch.compile traces: a dynamic batch stays dynamic (no
    specialisation, which mark_dynamic turns into an error)."""
    inputs = _geometry()
    fn = torch.compile(lambda p, k, K, R, t: ops.ray_project(p, k, K, R, t), backend="eager", fullgraph=True)
    for value in inputs.values():
        torch._dynamo.mark_dynamic(value, 0)
    fn(*inputs.values())
    fn(*(value[:1] for value in inputs.values()))


def test_masked_nan_keypoints_are_input_not_an_error():
    inputs = _spoil(_geometry(), "keypoints", (0, 2, 3, 0), NAN)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 2, 3] = False
    for backend in ("torch", "cpp") if backends()["cpp"].available else ("torch",):
        assert torch.isfinite(ops.reprojection_loss(**inputs, mask=mask, backend=backend))


def test_set_checks_turns_the_value_checks_off_and_on():
    bad = _spoil(_geometry(), "keypoints", (0, 0, 0, 0), NAN)
    names = ("torch", "cpp") if backends()["cpp"].available else ("torch",)
    assert ops.set_checks(False) is None  # returns the previous setting: the default
    for backend in names:
        assert torch.isnan(ops.reprojection_loss(**bad, backend=backend))  # unchecked: NaN in, NaN out
        assert torch.isnan(ops.ray_project(**bad, backend=backend)).any()
        x = _spoil(_valid("rvq_search", "cpu"), "x", (0, 0), NAN)
        ops.rvq_search(**x, backend=backend)
    assert ops.set_checks(True) is False
    for backend in names:
        with pytest.raises(ValueError, match="keypoints contain NaN"):
            ops.reprojection_loss(**bad, backend=backend)
    with pytest.raises(TypeError, match="set_checks: values must be None, True or False, got 'on'"):
        ops.set_checks("on")


@pytest.mark.parametrize("setting,raises", [("0", False), ("off", False), ("auto", True), ("1", True)])
def test_environment_sets_the_value_checks(setting, raises):
    code = ("import torch, fastmotion.ops as ops\n"
            "x = torch.randn(4, 3); x[0, 0] = float('nan')\n"
            "try:\n    ops.rvq_search(x, torch.randn(2, 5, 3)); print('passed')\n"
            "except ValueError as e:\n    print('raised', e)\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          env={**os.environ, "FASTMOTION_VALUE_CHECKS": setting})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("raised rvq_search: x contains NaN" if raises else "passed")


def test_a_bad_environment_setting_is_named():
    done = subprocess.run([sys.executable, "-c", "import fastmotion.ops"], check=False, capture_output=True, text=True,
                          env={**os.environ, "FASTMOTION_VALUE_CHECKS": "maybe"})
    assert done.returncode != 0
    assert "FASTMOTION_VALUE_CHECKS must be auto, 1/on or 0/off, got 'maybe'" in done.stderr


# ---- no host-device sync on the CUDA path -------------------------------------------------------------------------

def _fake_cuda_forward(op, backend, grad=True):
    """The op's forward on fake CUDA tensors (no data: any read of a value to the host raises)."""
    with FakeTensorMode():
        args, kwargs, _ = overhead.inputs(op, "cuda", grad=grad)
        out = getattr(ops, op)(*args, **kwargs, backend=backend)
        return (out[1] if isinstance(out, tuple) else out).shape


@pytest.fixture
def cuda_available(monkeypatch):
    """backends() says cuda runs here; the fake tensors need no device."""
    if not backends()["cpp"].available:
        pytest.skip("fastmotion._C not built: no fake kernels for the cuda entry points")
    status = dict(backends())
    status["cuda"] = _backends.BackendStatus(True, "test: fake CUDA tensors")
    monkeypatch.setattr(_backends, "backends", lambda: dict(status))
    monkeypatch.setattr(_backends, "_RESOLVED", {})
    monkeypatch.delenv("FASTMOTION_BACKEND", raising=False)


@pytest.mark.parametrize("op", overhead.OPS)
def test_no_host_sync_on_the_cuda_path(op, cuda_available):
    """A sync (item, bool, a value read back) on a fake tensor raises; the cuda forward of every op reads none with
    the default checks. Value checks turned on read one flag back: the test sees it. (The autograd engine cannot
    run on fake CUDA tensors without a device: the backward is the next test's.)"""
    _fake_cuda_forward(op, "cuda")
    _fake_cuda_forward(op, "cuda", grad=False)  # the bare kernel, without the autograd Function
    if op in ("rvq_search", "reprojection_loss", "ray_project"):
        ops.set_checks(True)
        with pytest.raises(DataDependentOutputException):
            _fake_cuda_forward(op, "cuda")


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


READ_BACK = ("aten._local_scalar_dense",)  # what item(), bool(), int() and float() of a tensor dispatch to


@pytest.mark.skipif(not backends()["cpp"].available, reason="fastmotion._C not built")
@pytest.mark.parametrize("op", overhead.OPS)
@pytest.mark.parametrize("checks", [None, False], ids=["cpu-default", "off"])
def test_the_fused_call_is_its_kernel_and_a_few_views(op, checks):
    """The cpp forward dispatches its one kernel and at most 6 small ATen ops (views, the mean's sum and division):
    no reduction over the inputs for a check, and nothing that reads a value back."""
    ops.set_checks(checks)
    args, kwargs, _ = overhead.inputs(op, "cpu", grad=False)
    with _CountOps() as counted:
        getattr(ops, op)(*args, **kwargs, backend="cpp")
    kernels = [name for name in counted.ops if name.startswith("fastmotion.")]
    assert len(kernels) == 1, counted.ops
    assert len(counted.ops) <= 7, counted.ops
    assert not any(name.startswith(READ_BACK + ("aten.isfinite", "aten.all", "aten.any")) for name in counted.ops)


@pytest.mark.skipif(not backends()["cpp"].available, reason="fastmotion._C not built")
@pytest.mark.parametrize("op", overhead.OPS)
def test_no_value_read_back_in_forward_or_backward(op):
    """The Python around the fused kernels is the same for cpp and cuda: with the value checks off (a GPU's default),
    forward and backward never read a value back to the host. The counter does see one (checked first)."""
    ops.set_checks(False)
    with _CountOps() as counted:
        bool(torch.ones(()) > 0)
    assert any(name.startswith(READ_BACK) for name in counted.ops)
    args, kwargs, leaf = overhead.inputs(op, "cpu", grad=True)
    with _CountOps() as counted:
        out = getattr(ops, op)(*args, **kwargs, backend="cpp")
        (out[-1] if isinstance(out, tuple) else out).sum().backward()
    assert leaf.grad is not None and any(name.startswith("fastmotion.") for name in counted.ops)
    assert not any(name.startswith(READ_BACK) for name in counted.ops), counted.ops


def test_bench_overhead_cli(tmp_path):
    out = tmp_path / "overhead.json"
    done = subprocess.run([sys.executable, "-m", "fastmotion.cli", "bench", "overhead", "--op", "ray_project",
                           "--calls", "3", "--json", str(out)], check=False, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and report["shapes"]["J"] == 22
    cases = {(row["case"], row["backend"]) for row in report["rows"]}
    expected = {"torch", "aten add"} | ({"cpp"} if backends()["cpp"].available else set())
    assert cases == {(case, name) for case in ("fwd", "fwd+bwd") for name in expected}
    assert all(row["extra"]["us_per_call"] > 0 for row in report["rows"])
    assert "us/call" in done.stdout and "ray_project" in done.stdout
