"""fastmotion.motion.multiview: MVLift's ring cameras, epipolar geometry and 3D recovery, on hand-built cases."""
import math

import pytest
import torch

from fastmotion.motion.camera import Cameras, intrinsics, look_at
from fastmotion.motion.multiview import (
    epipolar_lines,
    fundamental_matrices,
    fundamental_matrix,
    lines_through,
    point_line_distance,
    project,
    projection_matrices,
    refine_points,
    ring_cameras,
    triangulate_dlt,
)

f64 = torch.float64


def points(n, seed=0, dtype=f64):
    """Random points within half a metre of the origin (a body inside the ring)."""
    return 0.5 * torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_ring_cameras_look_at_the_origin_from_equal_steps(dtype):
    cams = ring_cameras(6, distance=3.0, first_azimuth_deg=30.0, dtype=dtype)
    assert cams.R.dtype == dtype and cams.K.shape == (6, 3, 3) and torch.equal(cams.K[2], torch.eye(3, dtype=dtype))
    P = projection_matrices(cams)
    origin = project(torch.zeros(3, dtype=dtype), P)
    torch.testing.assert_close(origin, torch.zeros(6, 2, dtype=dtype), atol=1e-6, rtol=0)
    c = cams.centres().double()
    torch.testing.assert_close(c.norm(dim=-1), torch.full((6,), 3.0, dtype=f64))
    azimuth = torch.rad2deg(torch.atan2(c[:, 0], c[:, 2]))  # the documented convention: 0 on +z, 90 on +x
    torch.testing.assert_close(azimuth, torch.tensor([30.0, 90, 150, -150, -90, -30], dtype=f64), atol=1e-4, rtol=0)
    assert cams.R[:, 0, 1].abs().max() < 1e-6  # no roll: the image's x axis is horizontal
    assert (cams.R[:, 1, 1] < 0).all()  # world up is image up (y down)
    above = ring_cameras(4, distance=2.0, elevation_deg=30.0, dtype=f64)
    torch.testing.assert_close(above.centres()[:, 1], torch.full((4,), 1.0, dtype=f64))  # 2 sin 30
    assert (project(torch.zeros(3, dtype=f64), projection_matrices(above)).abs() < 1e-12).all()


def test_projection_matrices_match_the_camera_transform():
    cams = ring_cameras(3, dtype=f64)
    cams = Cameras(intrinsics(500.0, 640, 480, batch=3, dtype=f64), cams.R, cams.t)
    X = points(4)
    uvw = (cams.K[:, None] @ (cams.R[:, None] @ X[None, :, :, None] + cams.t[:, None, :, None]))[..., 0]
    torch.testing.assert_close(project(X, projection_matrices(cams)), uvw[..., :2] / uvw[..., 2:])


def test_images_of_a_point_lie_on_each_others_epipolar_lines():
    cams = ring_cameras(6, distance=3.0, elevation_deg=10.0, first_azimuth_deg=15.0, dtype=f64)
    P = projection_matrices(cams)
    F = fundamental_matrices(P)
    assert F.shape == (6, 6, 3, 3) and torch.equal(F[range(6), range(6)], torch.zeros(6, 3, 3, dtype=f64))
    x = project(points(20).reshape(4, 5, 3), P)  # [V, 4, 5, 2]
    lines = epipolar_lines(x[:, None], F[..., None, None, :, :])  # [V_from, V_to, 4, 5, 3]
    d = point_line_distance(x[None], lines)
    assert d.max() < 1e-6
    torch.testing.assert_close(fundamental_matrix(P[1], P[4]), F[1, 4])
    # a point off the true match is off the line, by its perpendicular distance
    n = lines[0, 3, ..., :2]
    moved = x[3] + 0.01 * n
    torch.testing.assert_close(point_line_distance(moved, lines[0, 3]), torch.full((4, 5), 0.01, dtype=f64))
    # F[j, i] is F[i, j] transposed, up to scale
    a, b = F[2, 5] / F[2, 5].norm(), F[5, 2].T / F[5, 2].norm()
    assert min((a - b).abs().max(), (a + b).abs().max()) < 1e-9


def test_fundamental_matrix_with_pixel_intrinsics():
    eye = torch.tensor([[0.0, 1.0, 4.0], [3.0, 1.5, 2.0]], dtype=f64)
    R, t = look_at(eye, torch.zeros_like(eye))
    P = projection_matrices(Cameras(intrinsics(1000.0, 1000, 800, batch=2, dtype=f64), R, t))
    x = project(points(10, seed=1), P)  # pixels
    d = point_line_distance(x[1], epipolar_lines(x[0], fundamental_matrix(P[0], P[1])))
    assert d.max() < 1e-6  # pixels


def test_lines_are_normalised_and_degenerate_ones_are_zero():
    lines = epipolar_lines(torch.tensor([[0.3, -0.2], [1.0, 2.0], [0.0, 0.0]], dtype=f64),
                           torch.tensor([[0.0, -1.0, 0.5], [2.0, 0.0, -3.0], [1.0, 1.0, 1.0]], dtype=f64))
    torch.testing.assert_close(lines[..., :2].norm(dim=-1), torch.ones(3, dtype=f64))
    assert (lines[:, 0] >= 0).all()
    # a == 0: b >= 0 decides the sign; -0.0 does not survive
    horizontal = lines_through(torch.tensor([[1.0, 2.0]]), torch.tensor([[5.0, 2.0]]))
    torch.testing.assert_close(horizontal, torch.tensor([[0.0, 1.0, -2.0]]))
    assert not torch.signbit(horizontal[0, 0])
    flipped = lines_through(torch.tensor([[5.0, 2.0]]), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(flipped, horizontal)
    assert not torch.signbit(flipped[0, 0])  # its a was -0.0 before the sign flip
    # the point on its epipole, or a zero F: the zero line, no NaN in values or gradients
    p = torch.tensor([[0.4, 0.4], [0.1, 0.2]], dtype=f64, requires_grad=True)
    zero = lines_through(p, torch.tensor([0.4, 0.4], dtype=f64))
    assert torch.equal(zero[0], torch.zeros(3, dtype=f64))
    z2 = epipolar_lines(p, torch.zeros(3, 3, dtype=f64))
    (zero.sum() + z2.sum() + point_line_distance(p, zero).sum()).backward()
    assert torch.isfinite(p.grad).all() and torch.equal(z2, torch.zeros(2, 3, dtype=f64))


def test_lines_through_hold_the_point_and_the_epipole():
    g = torch.Generator().manual_seed(3)
    x, e = torch.randn(7, 2, generator=g), torch.randn(7, 2, generator=g) * 5
    lines = lines_through(x, e)
    assert point_line_distance(x, lines).max() < 1e-5 and point_line_distance(e, lines).max() < 1e-4
    torch.testing.assert_close(lines[..., :2].norm(dim=-1), torch.ones(7))
    # an epipole at infinity (homogeneous, w = 0): lines parallel to its direction
    par = lines_through(x, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(par[:, :2], torch.full((7, 2), 0.5 ** 0.5).mul(torch.tensor([1.0, -1.0])))
    # the ring's true epipoles give the true epipolar lines
    P = projection_matrices(ring_cameras(6, dtype=f64))
    X = project(points(6, seed=4), P)
    epipole = project(ring_cameras(6, dtype=f64).centres()[0], P[2:3])[0]  # view 0's centre seen from view 2
    torch.testing.assert_close(lines_through(X[2], epipole), epipolar_lines(X[0], fundamental_matrices(P)[0, 2]))


def test_dlt_recovers_points_exactly_and_zero_weights_ignore_a_view():
    P = projection_matrices(ring_cameras(6, elevation_deg=5.0, dtype=f64))
    X = points(12, seed=5).reshape(3, 4, 3)  # [T, J, 3]
    x = project(X, P)  # [V, T, J, 2]
    torch.testing.assert_close(triangulate_dlt(x, P), X, atol=1e-8, rtol=0)
    bad = x.clone()
    bad[3] += 0.3  # one corrupted view
    assert (triangulate_dlt(bad, P) - X).abs().max() > 1e-2
    w = torch.ones(6, 1, 1, dtype=f64)  # per view, broadcast over [T, J]
    w[3] = 0
    torch.testing.assert_close(triangulate_dlt(bad, P, w), X, atol=1e-8, rtol=0)
    two = triangulate_dlt(x[[0, 2]], P[[0, 2]])  # two views suffice
    torch.testing.assert_close(two, X, atol=1e-8, rtol=0)
    assert triangulate_dlt(x.float(), P.float()).dtype == torch.float32


def test_refine_points_reduces_the_reprojection_error_under_no_grad():
    P = projection_matrices(ring_cameras(6, dtype=f64))
    X = points(8, seed=6)
    x = project(X, P) + 0.002 * torch.randn(6, 8, 2, generator=torch.Generator().manual_seed(7), dtype=f64)
    init = X + 0.05 * torch.randn(8, 3, generator=torch.Generator().manual_seed(8), dtype=f64)

    def reprojection(Y):
        return ((project(Y, P) - x) ** 2).sum(-1).mean()

    with torch.no_grad():
        refined = refine_points(init, x, P, iterations=150, lr=0.005)
    assert not refined.requires_grad and refined.shape == X.shape
    assert reprojection(refined) < 0.05 * reprojection(init)
    assert (refined - X).norm(dim=-1).max() < 0.01
    assert torch.equal(refine_points(init, x, P, iterations=0), init)


def test_invalid_shapes_name_the_argument():
    P = projection_matrices(ring_cameras(3, dtype=f64))
    x = torch.zeros(3, 5, 2, dtype=f64)
    cases = [
        (lambda: triangulate_dlt(x, P[:, :2]), "P must be"),
        (lambda: triangulate_dlt(x[:2], P), "points2d must be"),
        (lambda: triangulate_dlt(x[:1], P[:1]), "at least 2 views"),
        (lambda: triangulate_dlt(x, P, torch.ones(3)), "weights must be"),
        (lambda: triangulate_dlt(x, P, torch.ones(3, 4)), "weights"),
        (lambda: refine_points(torch.zeros(4, 3), x, P), "points3d_init must be"),
        (lambda: project(torch.zeros(5, 2), P), "points3d must be"),
        (lambda: epipolar_lines(torch.zeros(5, 3), torch.eye(3)), "points must be"),
        (lambda: epipolar_lines(torch.zeros(5, 2), torch.eye(4)), "F must be"),
        (lambda: epipolar_lines(torch.zeros(5, 2), torch.zeros(4, 3, 3)), "do not broadcast"),
        (lambda: lines_through(torch.zeros(5, 2), torch.zeros(5, 4)), "epipole must be"),
        (lambda: point_line_distance(torch.zeros(5, 2), torch.zeros(5, 2)), "lines must be"),
        (lambda: fundamental_matrix(P[0], P[1, :2]), "P_b must be"),
        (lambda: fundamental_matrices(P[0]), "P must be"),
        (lambda: projection_matrices(Cameras(torch.eye(3)[None], torch.eye(3)[None], torch.zeros(2, 3))), "cams.t"),
        (lambda: ring_cameras(0), "num_views"),
        (lambda: ring_cameras(4, elevation_deg=90.0), "elevation_deg"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert math.isfinite(float(project(torch.tensor([0.0, 0.0, 3.0], dtype=f64), P).abs().max()))  # at a centre


def test_the_epipolar_loss_is_differentiable_in_cameras_and_points():
    P = projection_matrices(ring_cameras(3, elevation_deg=10.0, dtype=f64)).requires_grad_(True)
    x = project(points(2, seed=9), P.detach()).add(0.01).requires_grad_(True)  # off their lines: abs is smooth

    def loss(P, x):
        return point_line_distance(x[None], epipolar_lines(x[:, None], fundamental_matrices(P)[..., None, :, :]))

    assert torch.autograd.gradcheck(loss, (P, x))
