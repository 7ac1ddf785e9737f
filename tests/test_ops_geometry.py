"""Geometry ops (reference backend so far): independent checks of the math, gradients, edge cases, bad input."""
import math

import cv2
import numpy as np
import pytest
import torch

from fastmotion.ops import project_weak_perspective, ray_project, reprojection_loss, sample_view_rotations
from fastmotion.ops.reference import camera_frame


def camera(batch, dtype=torch.float64, seed=0, skew=0.5):
    g = torch.Generator().manual_seed(seed)
    R = sample_view_rotations(1, batch, max_pitch=0.4, max_roll=0.2, generator=g, dtype=dtype)[:, 0]
    t = torch.tensor([0.1, -0.2, 5.0], dtype=dtype).repeat(batch, 1) + 0.1 * torch.randn(batch, 3, generator=g,
                                                                                         dtype=dtype)
    K = torch.tensor([[900.0, skew, 500.0], [0.0, 950.0, 480.0], [0.0, 0.0, 1.0]], dtype=dtype).repeat(batch, 1, 1)
    return K, R, t


def motion(batch=2, frames=5, joints=22, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, joints, 3, generator=g, dtype=dtype) * 0.5


def pixels(points, K, R, t):
    c = camera_frame(points, R, t)
    uvw = torch.einsum("bij,b...j->b...i", K, c)
    return uvw[..., :2] / uvw[..., 2:]


# ---- project_weak_perspective -------------------------------------------------------------------------------
def test_weak_perspective_definition_shared_and_per_batch():
    p = motion()
    R = sample_view_rotations(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shared = project_weak_perspective(p, R, scale=2.0, offset=torch.tensor([0.5, -1.0], dtype=torch.float64))
    per_batch = project_weak_perspective(p, R.expand(2, 3, 3, 3), 2.0, torch.tensor([0.5, -1.0], dtype=p.dtype))
    assert shared.shape == (2, 3, 5, 22, 2)
    torch.testing.assert_close(shared, per_batch)
    b, v, f, j = 1, 2, 3, 4
    expected = 2.0 * (R[v] @ p[b, f, j])[:2] + torch.tensor([0.5, -1.0], dtype=p.dtype)
    torch.testing.assert_close(shared[b, v, f, j], expected)
    identity = project_weak_perspective(p, torch.eye(3, dtype=p.dtype)[None])
    torch.testing.assert_close(identity[:, 0], p[..., :2])


def test_weak_perspective_gradcheck():
    p = motion(1, 3, 4).requires_grad_()
    R = sample_view_rotations(2, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_()
    scale = torch.tensor([[1.5, 0.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, R, s: project_weak_perspective(p, R, s), (p, R, scale))


def test_view_rotations_are_rotations_and_seeded():
    R = sample_view_rotations(64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64, dtype=torch.float64))
    again = sample_view_rotations(64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(R, again)
    up = R[:, :, 1]  # image of the world up axis: tilted by at most the pitch and roll bounds
    assert (up[:, 1] >= math.cos(0.35 + 0.15) - 1e-9).all()


def test_weak_perspective_bad_input():
    p = motion()
    R = torch.eye(3).expand(2, 3, 3, 3)
    with pytest.raises(ValueError, match="points must be"):
        project_weak_perspective(p[0], R.double())
    with pytest.raises(TypeError, match="rotations has dtype torch.float32"):
        project_weak_perspective(p, R)
    with pytest.raises(ValueError, match="rotations has B=3 but points has B=2"):
        project_weak_perspective(p, torch.eye(3, dtype=p.dtype).expand(3, 2, 3, 3))
    with pytest.raises(ValueError, match="offset of shape"):
        project_weak_perspective(p, R.double(), offset=torch.zeros(3, dtype=p.dtype))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda backend takes CUDA tensors"):
            project_weak_perspective(p, R.double(), backend="cuda")
    elif not backends()["cuda"].available:
        with pytest.raises(RuntimeError, match="backend 'cuda' .* is unavailable"):
            project_weak_perspective(p, R.double(), backend="cuda")
    assert project_weak_perspective(p[:0], R.double()[:0]).shape == (0, 3, 5, 22, 2)


# ---- reprojection_loss -------------------------------------------------------------------------------------
def test_perspective_projection_agrees_with_opencv():
    p = motion(3)
    K, R, t = camera(3, skew=0.0)  # OpenCV's pinhole model has no skew
    ours = pixels(p, K, R, t)
    for b in range(3):
        rvec, _ = cv2.Rodrigues(R[b].numpy())
        cv, _ = cv2.projectPoints(p[b].reshape(-1, 3).numpy(), rvec, t[b].numpy(), K[b].numpy(), None)
        np.testing.assert_allclose(ours[b].reshape(-1, 2).numpy(), cv.reshape(-1, 2), rtol=1e-9, atol=1e-6)


def test_loss_is_zero_on_exact_keypoints_and_depth_weighted_otherwise():
    p = motion()
    K, R, t = camera(2)
    k = pixels(p, K, R, t)
    assert reprojection_loss(p, k, K, R, t).item() < 1e-20
    shift = torch.zeros_like(k)
    shift[..., 0] = K[:, 0, 0].view(2, 1, 1) * 0.01  # 0.01 in normalised coordinates along x
    per_joint = reprojection_loss(p, k + shift, K, R, t, reduction="none")
    z = camera_frame(p, R, t)[..., 2]
    torch.testing.assert_close(per_joint, (0.01 * z) ** 2)  # ||z e||^2: 1 cm at 1 m depth per 0.01
    plain = reprojection_loss(p, k + shift, K, R, t, depth_weighted=False, reduction="none")
    torch.testing.assert_close(plain, torch.full_like(plain, 1e-4))


def test_depth_weighted_loss_is_3d_error_orthogonal_to_the_ray():
    # z * e is the offset, in the camera plane at depth z, between the point and the ray of its keypoint.
    p = motion()
    K, R, t = camera(2)
    k = pixels(p + 0.05 * torch.randn_like(p), K, R, t)
    c = camera_frame(p, R, t)
    n = torch.linalg.solve(K[:, None, None], torch.cat([k, torch.ones_like(k[..., :1])], -1).unsqueeze(-1))[..., 0]
    expected = ((c[..., :2] - c[..., 2:] * n[..., :2] / n[..., 2:]) ** 2).sum(-1)
    torch.testing.assert_close(reprojection_loss(p, k, K, R, t, reduction="none"), expected)


def test_min_depth_mask_weights_and_velocity():
    p = motion()
    K, R, t = camera(2)
    k = pixels(p, K, R, t) + 3.0
    z = camera_frame(p, R, t)[..., 2]
    min_depth = float(z[0, 0, 0])  # this joint sits exactly at min_depth: it counts
    terms = reprojection_loss(p, k, K, R, t, min_depth=min_depth, reduction="none")
    assert terms[0, 0, 0] > 0
    assert (terms[z < min_depth] == 0).all() and (terms[z >= min_depth] > 0).all()
    mask = torch.ones(p.shape[:-1], dtype=torch.bool)
    mask[1, 2] = False
    k_nan = k.clone()
    k_nan[1, 2] = float("nan")
    masked = reprojection_loss(p, k_nan, K, R, t, mask=mask, reduction="none")
    assert torch.isfinite(masked).all() and (masked[1, 2] == 0).all()
    full = reprojection_loss(p, k, K, R, t, reduction="none")
    torch.testing.assert_close(masked[mask], full[mask])
    w = torch.rand(22, dtype=p.dtype)
    torch.testing.assert_close(reprojection_loss(p, k, K, R, t, weights=w, reduction="none"), full * w)
    assert reprojection_loss(p, k, K, R, t, reduction="sum").item() == pytest.approx(full.sum().item())
    # velocity: a constant pixel offset has zero velocity error
    vel = reprojection_loss(p, k, K, R, t, velocity=True, reduction="none")
    assert vel.shape == (2, 4, 22) and vel.abs().max().item() < 1e-20


def test_joints_behind_min_depth_get_no_gradient():
    p = motion()
    K, R, t = camera(2)
    k = pixels(p, K, R, t) + 5.0
    p = p.clone()
    p[0, 1, 3] = -t[0] @ R[0]  # at the camera centre: depth 0
    p.requires_grad_()
    reprojection_loss(p, k, K, R, t).backward()
    assert torch.isfinite(p.grad).all()
    assert (p.grad[0, 1, 3] == 0).all() and (p.grad[0, 1, 4] != 0).any()


def test_detached_depth_weight_carries_no_gradient():
    p = motion(2, 3, 4, seed=6)
    K, R, t = camera(2, seed=6)
    k = pixels(p + 0.1, K, R, t)
    z0 = camera_frame(p, R, t)[..., 2]
    p.requires_grad_()
    (grad,) = torch.autograd.grad(reprojection_loss(p, k, K, R, t, reduction="sum"), p)
    plain = reprojection_loss(p, k, K, R, t, depth_weighted=False, reduction="none")
    (expected,) = torch.autograd.grad((plain * z0 * z0).sum(), p)  # z as a constant weight
    torch.testing.assert_close(grad, expected)


def test_reprojection_edge_cases_and_bad_input():
    p = motion()
    K, R, t = camera(2)
    k = pixels(p, K, R, t)
    empty = reprojection_loss(p[:0], k[:0], K[:0], R[:0], t[:0])
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="velocity=True needs T >= 2"):
        reprojection_loss(p[:, :1], k[:, :1], K, R, t, velocity=True)
    K_bad = K.clone()
    K_bad[1, 0, 0] = 0
    with pytest.raises(ValueError, match="K is degenerate"):
        reprojection_loss(p, k, K_bad, R, t)
    k_nan = k.clone()
    k_nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="keypoints contain NaN"):
        reprojection_loss(p, k_nan, K, R, t)
    with pytest.raises(ValueError, match="keypoints has J=5 but points has J=22"):
        reprojection_loss(p, k[:, :, :5], K, R, t)
    with pytest.raises(TypeError, match="K has dtype torch.float32"):
        reprojection_loss(p, k, K.float(), R, t)
    with pytest.raises(ValueError, match="t has B=1 but points has B=2"):
        reprojection_loss(p, k, K, R, t[:1])
    with pytest.raises(TypeError, match="mask must be bool, got torch.float32"):
        reprojection_loss(p, k, K, R, t, mask=torch.ones(2, 5, 22))
    with pytest.raises(ValueError, match="reduction must be"):
        reprojection_loss(p, k, K, R, t, reduction="max")


# ---- ray_project ---------------------------------------------------------------------------------------------
def test_ray_projection_lies_on_the_ray_and_is_closest():
    p = motion(2, 4, 6)
    K, R, t = camera(2)
    k = pixels(p + 0.2 * torch.randn_like(p), K, R, t)
    out = ray_project(p, k, K, R, t)
    torch.testing.assert_close(pixels(out, K, R, t), k)  # on the ray: reprojects onto its keypoint
    centre = -torch.einsum("bji,bj->bi", R, t).view(2, 1, 1, 3)
    direction = out - centre
    for step in (-0.3, -0.01, 0.01, 0.3):  # any other point of the ray is farther from p
        other = centre + (1 + step) * direction
        assert ((other - p).norm(dim=-1) > (out - p).norm(dim=-1)).all()
    assert ((out - p) * direction).sum(-1).abs().max() < 1e-9  # the offset is orthogonal to the ray
    on_ray = ray_project(out, k, K, R, t)
    torch.testing.assert_close(on_ray, out)  # idempotent


def test_ray_projection_gradcheck_and_leading_dims():
    p = motion(2, 3, 4).requires_grad_()
    K, R, t = camera(2)
    k = pixels(p.detach() + 0.1, K, R, t)
    assert torch.autograd.gradcheck(lambda p: ray_project(p, k, K, R, t), (p,))
    flat = ray_project(p.detach().reshape(2, 12, 3), k.reshape(2, 12, 2), K, R, t)
    torch.testing.assert_close(flat.reshape(2, 3, 4, 3), ray_project(p.detach(), k, K, R, t))


# ---- fused backends against the reference ---------------------------------------------------------------------
from fastmotion.ops import backends  # noqa: E402
from fastmotion.ops.geometry import IMPLEMENTED  # noqa: E402
from helpers import fused_backends  # noqa: E402

FUSED = fused_backends()  # (backend, device): cpp on CPU; triton on CUDA (or interpreted on CPU); cuda


def _grads(fn, inputs, device="cpu"):
    """Output and input gradients of fn at inputs moved to device, all returned on the CPU."""
    inputs = [x.detach().to(device).requires_grad_() for x in inputs]
    out = fn(*inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype).to(device)
    (out * weights).sum().backward()
    return out.detach().cpu(), [x.grad.cpu() for x in inputs]


def _on(device, *tensors):
    return [None if x is None else x.to(device) for x in tensors]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-batch"])
def test_fused_projection_matches_reference(backend, device, dtype, shared):
    assert backend in IMPLEMENTED["project_weak_perspective"]
    p = motion(3, 7, 5, dtype=dtype)
    R = sample_view_rotations(4, None if shared else 3, generator=torch.Generator().manual_seed(4), dtype=dtype)
    scale = torch.tensor([[0.5], [1.0], [2.0]], dtype=dtype)  # per motion, broadcast over views
    offset = torch.tensor([0.3, -0.2], dtype=dtype)
    got = _grads(lambda p, R, s, o: project_weak_perspective(p, R, s, o, backend=backend), [p, R, scale, offset],
                 device)
    ref = _grads(lambda p, R, s, o: project_weak_perspective(p, R, s, o, backend="torch"), [p, R, scale, offset])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(got[0], ref[0], **tol)
    for g, r in zip(got[1], ref[1]):
        torch.testing.assert_close(g, r, **tol)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-batch"])
def test_fused_projection_gradcheck_and_empty(backend, device, shared):
    p = motion(2, 3, 4).to(device).requires_grad_()
    R = sample_view_rotations(3, None if shared else 2, generator=torch.Generator().manual_seed(5),
                              dtype=torch.float64, device=device).requires_grad_()
    s = torch.rand(2, 3, dtype=torch.float64).to(device).requires_grad_()
    o = torch.randn(2, 3, 2, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: project_weak_perspective(*a, backend=backend), (p, R, s, o))
    assert project_weak_perspective(p[:0], R if shared else R[:0], backend=backend).shape == (0, 3, 3, 4, 2)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fused_ray_projection_matches_reference(backend, device, dtype):
    assert backend in IMPLEMENTED["ray_project"]
    p = motion(2, 4, 6, dtype=dtype)
    K, R, t = camera(2, dtype=dtype)
    k = pixels(p + 0.2, K, R, t)
    k_d, K_d, R_d, t_d = _on(device, k, K, R, t)
    got = _grads(lambda p: ray_project(p, k_d, K_d, R_d, t_d, backend=backend), [p], device)
    ref = _grads(lambda p: ray_project(p, k, K, R, t, backend="torch"), [p])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(got[0], ref[0], **tol)
    torch.testing.assert_close(got[1][0], ref[1][0], **tol)
    p64 = motion(2, 2, 3)
    K, R, t = camera(2)
    k, K, R, t = _on(device, pixels(p64 + 0.1, K, R, t), K, R, t)
    p64 = p64.to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: ray_project(p, k, K, R, t, backend=backend), (p64,))


def test_geometry_ops_trace_with_torch_compile():
    if not backends()["cpp"].available:
        pytest.skip("fastmotion._C not built")
    p = motion(2, 3, 4, dtype=torch.float32)
    R = sample_view_rotations(3, generator=torch.Generator().manual_seed(6))

    def f(p, R):
        return project_weak_perspective(p, R, backend="cpp").square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(p, R), f(p, R))

    p64 = motion(2, 3, 4)
    K, R, t = camera(2)
    k = pixels(p64 + 0.1, K, R, t)

    def camera_ops(p):
        loss = reprojection_loss(p, k, K, R, t, velocity=True, backend="cpp")
        return loss + ray_project(p, k, K, R, t, backend="cpp").square().mean()

    p64.requires_grad_()
    compiled = torch.compile(camera_ops, fullgraph=True, backend="aot_eager")
    (grad,) = torch.autograd.grad(compiled(p64), p64)
    (expected,) = torch.autograd.grad(camera_ops(p64), p64)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("backend", ["cpp"])
def test_fused_projection_large_output_on_huge_pages(backend, tmp_path):
    if not backends()["cpp"].available:
        pytest.skip(backends()["cpp"].reason)
    # Outputs over 4 MiB come from the huge-page allocator (csrc/common/alloc.h): same values, ordinary tensors.
    p = motion(64, 64, 22, dtype=torch.float32)
    R = sample_view_rotations(8, 64, generator=torch.Generator().manual_seed(7))
    out = project_weak_perspective(p, R, backend=backend)
    assert out.numel() * out.element_size() > 4 * 2**20
    torch.testing.assert_close(out, project_weak_perspective(p, R, backend="torch"), rtol=1e-5, atol=1e-5)
    torch.save(out, tmp_path / "views.pt")
    assert torch.equal(torch.load(tmp_path / "views.pt", weights_only=True), out)
    p.requires_grad_()
    (grad,) = torch.autograd.grad(project_weak_perspective(p, R, backend=backend).sum(), p)
    p_ref = p.detach().clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(project_weak_perspective(p_ref, R, backend="torch").sum(), p_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("velocity", [False, True], ids=["pos", "vel"])
@pytest.mark.parametrize("depth_weighted,detach_depth", [(True, True), (True, False), (False, True)],
                         ids=["depth-detached", "depth-grad", "plain"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_reprojection_matches_reference(backend, device, dtype, velocity, depth_weighted, detach_depth,
                                              reduction):
    assert backend in IMPLEMENTED["reprojection_loss"]
    p = motion(3, 6, 5, dtype=dtype, seed=8)
    K, R, t = camera(3, dtype=dtype, seed=8)
    k = pixels(p + 0.05, K, R, t)
    p[2, 3, 1] = -t[2] @ R[2] - 0.5 * R[2][2]  # behind the camera
    mask = torch.ones(p.shape[:-1], dtype=torch.bool)
    mask[0, 2, 4] = False
    k[0, 2, 4] = float("nan")  # missing, and masked
    weights = torch.rand(5, dtype=dtype) + 0.5  # per joint, broadcast

    def loss(b, device):
        k_, K_, R_, t_, w_, m_ = _on(device, k, K, R, t, weights, mask)
        return lambda p: reprojection_loss(p, k_, K_, R_, t_, weights=w_, mask=m_, velocity=velocity,
                                           depth_weighted=depth_weighted, detach_depth=detach_depth,
                                           reduction=reduction, backend=b)

    got, ref = _grads(loss(backend, device), [p], device), _grads(loss("torch", "cpu"), [p])
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(got[0], ref[0], **tol)
    torch.testing.assert_close(got[1][0], ref[1][0], **tol)


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch")] + FUSED)
@pytest.mark.parametrize("velocity", [False, True], ids=["pos", "vel"])
@pytest.mark.parametrize("depth_weighted", [True, False], ids=["depth", "plain"])
def test_reprojection_gradcheck(backend, device, velocity, depth_weighted):
    """float64 gradcheck with per-joint weights, a masked NaN keypoint and a joint behind the camera; then a joint
    exactly at min_depth counts, as in the reference (not under gradcheck: its steps cross the threshold).
    Exact gradients need detach_depth=False; the detached weight is compared with the
    reference in test_fused_reprojection_matches_reference."""
    detach_depth = False
    p = motion(2, 3, 4, seed=5)
    K, R, t = camera(2, seed=5)
    k = pixels(p + 0.1, K, R, t)
    mask = torch.ones(p.shape[:-1], dtype=torch.bool)
    mask[0, 1, 2] = False
    k[0, 1, 2] = float("nan")
    w = torch.rand(2, 3, 4, dtype=p.dtype) + 0.5
    p[1, 2, 1] = -t[1] @ R[1] - 1.0 * R[1][2]  # behind the camera
    at_threshold = float(camera_frame(p, R, t)[0, 2, 3, 2])
    k, K, R, t, w, mask, p = _on(device, k, K, R, t, w, mask, p)
    p.requires_grad_()

    def fn(p, min_depth=0.1, backend=backend, reduction="mean"):
        return reprojection_loss(p, k, K, R, t, weights=w, mask=mask, velocity=velocity, min_depth=min_depth,
                                 depth_weighted=depth_weighted, detach_depth=detach_depth, backend=backend,
                                 reduction=reduction)

    assert torch.autograd.gradcheck(fn, (p,))
    terms = fn(p, at_threshold, reduction="none")
    torch.testing.assert_close(terms, fn(p, at_threshold, "torch", "none"))
    if not velocity:
        assert terms[0, 2, 3] > 0
    empty = reprojection_loss(p[:0], k[:0], K[:0], R[:0], t[:0], velocity=velocity, backend=backend)
    assert empty.item() == 0.0
