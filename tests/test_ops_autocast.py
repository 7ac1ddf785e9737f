"""The fused ops under torch.autocast (bf16 training): they compute in float32, whatever autocast would do."""
import pytest
import torch

from fastmotion.ops import project_weak_perspective, ray_project, reprojection_loss, rvq_search, sample_view_rotations
from helpers import fused_backends
from test_ops_geometry import camera, motion, pixels

BACKENDS = [pytest.param("torch", "cpu", id="torch")] + fused_backends()


def bf16_autocast(device):
    return torch.autocast(device, dtype=torch.bfloat16)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_rvq_search_under_autocast_matches_float32(backend, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g).to(device)
    books = torch.randn(3, 32, 16, generator=g).to(device)
    expected = rvq_search(x, books, backend=backend)
    # float32 inputs: the search's own matmuls (code norms, distances) must not drop to bf16
    with bf16_autocast(device):
        codes, quantized, residual = rvq_search(x, books, backend=backend)
    assert quantized.dtype == torch.float32
    torch.testing.assert_close(codes, expected[0])
    torch.testing.assert_close(quantized, expected[1])
    # bf16 input, as an encoder under autocast gives: searched as float32, the gradient reaches it in bf16
    low = x.bfloat16().requires_grad_()
    with bf16_autocast(device):
        codes, _, residual = rvq_search(low, books, backend=backend)
    torch.testing.assert_close(codes, rvq_search(low.detach().float(), books, backend=backend)[0])
    residual.sum().backward()
    assert low.grad.dtype == torch.bfloat16 and torch.equal(low.grad, torch.ones_like(low.grad))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_geometry_ops_under_autocast_take_bf16_points_as_float32(backend, device):
    K, R, t = (c.float().to(device) for c in camera(2))
    points = motion(2, 4).float().to(device)
    keypoints = pixels(points.double().cpu(), *(c.double().cpu() for c in (K, R, t))).float().to(device)
    keypoints = keypoints + 3.0  # a few pixels off, so the losses are not zero
    views = sample_view_rotations(3, generator=torch.Generator().manual_seed(1)).to(device)
    low = points.bfloat16().requires_grad_()
    ops = {
        "project_weak_perspective": lambda p: project_weak_perspective(p, views, 2.0, backend=backend),
        "reprojection_loss": lambda p: reprojection_loss(p, keypoints, K, R, t, backend=backend),
        "ray_project": lambda p: ray_project(p, keypoints, K, R, t, backend=backend),
    }
    for name, op in ops.items():
        expected = op(low.detach().float())
        with bf16_autocast(device):
            out = op(low)
        assert out.dtype == torch.float32, name
        torch.testing.assert_close(out, expected, msg=name)
        low.grad = None
        out.sum().backward()
        assert low.grad is not None and low.grad.dtype == torch.bfloat16, name
        assert torch.isfinite(low.grad.float()).all() and low.grad.abs().sum() > 0, name


def test_low_precision_outside_autocast_is_still_refused():
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        rvq_search(torch.zeros(4, 8, dtype=torch.bfloat16), torch.zeros(1, 2, 8, dtype=torch.bfloat16))
    K, R, t = camera(1, torch.float32)
    with pytest.raises(TypeError, match="points must be float32 or float64"):
        ray_project(torch.zeros(1, 2, 3, dtype=torch.float16), torch.zeros(1, 2, 2), K, R, t)
