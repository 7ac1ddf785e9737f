"""Multi-view geometry for MVLift (Li et al., "Lifting Motion to the 3D World via 2D Diffusion", CVPR 2025):
the ring of virtual cameras of its multi-view optimisation, fundamental matrices and epipolar lines for its line
conditions and epipolar consistency loss, and its 3D recovery (DLT triangulation, then refinement of the
reprojection error).

Conventions: OpenCV pinhole (x_cam = R x_world + t; x right, y down, z forward), world y up. MVLift works in
normalised image coordinates, so the ring cameras have K = I and a point's image is (x_cam / z, y_cam / z).
Lines are (a, b, c) with a x + b y + c = 0, normalised so that (a, b) is a unit vector and a >= 0 (b >= 0 when
a == 0); the zero line (0, 0, 0) stands for "no line" (a point on its epipole: every line through the epipole
holds it) and is at distance 0 from every point.

HZ: Hartley & Zisserman, Multiple View Geometry in Computer Vision, 2nd ed. (2004).
"""
from __future__ import annotations

import math

import torch

from fastmotion.ops import reference

from .camera import Cameras, look_at


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_P(P: torch.Tensor, name: str = "P") -> int:
    _check(P.dim() == 3 and P.shape[1:] == (3, 4), f"{name} must be [V, 3, 4], got {tuple(P.shape)}")
    return P.shape[0]


def _broadcastable(name_a: str, shape_a, name_b: str, shape_b) -> None:
    try:
        torch.broadcast_shapes(shape_a, shape_b)
    except RuntimeError:
        raise ValueError(f"{name_a} {tuple(shape_a)} and {name_b} {tuple(shape_b)} do not broadcast") from None


def _weights(weights: torch.Tensor | None, points2d: torch.Tensor) -> torch.Tensor:
    """weights [V, ...] broadcast to points2d's [V, ...] (same number of dimensions, so that [V] is not silently
    read as a per-joint weight)."""
    if weights is None:
        return torch.ones(points2d.shape[:-1], dtype=points2d.dtype, device=points2d.device)
    _check(weights.dim() == points2d.dim() - 1,
           f"weights must be [V, ...] like points2d without its last dim {tuple(points2d.shape[:-1])}, "
           f"got {tuple(weights.shape)}")
    _broadcastable("weights", weights.shape, "points2d[..., 0]", points2d.shape[:-1])
    return weights.to(points2d.dtype).expand(points2d.shape[:-1])


def _homogeneous(points: torch.Tensor) -> torch.Tensor:
    return torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)


def _normalise_lines(lines: torch.Tensor) -> torch.Tensor:
    """(a, b, c) scaled so that (a, b) is a unit vector with a >= 0 (b >= 0 when a == 0); lines whose (a, b) is
    negligible against c (degenerate: a point on its epipole, or the line at infinity) become (0, 0, 0). No NaN,
    in values or gradients."""
    a, b = lines[..., 0], lines[..., 1]
    n2 = a * a + b * b
    eps = torch.finfo(lines.dtype).eps
    ok = n2 > eps * eps * (n2 + lines[..., 2] ** 2)  # relative test: F and points may be in any units
    sign = torch.where((a < 0) | ((a == 0) & (b < 0)), -1.0, 1.0)
    scale = torch.where(ok, sign / torch.where(ok, n2, 1.0).sqrt(), 0.0)  # inner where: no 1/0 in the backward
    return lines * scale[..., None] + 0.0  # + 0.0 turns -0.0 into 0.0


def _skew(v: torch.Tensor) -> torch.Tensor:
    """[v]_x [..., 3, 3], the matrix with [v]_x w = v x w (HZ appendix 4.3)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).unflatten(-1, (3, 3))


def ring_cameras(num_views: int = 6, distance: float = 3.0, elevation_deg: float = 0.0,
                 first_azimuth_deg: float = 0.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Cameras:
    """MVLift's virtual cameras (section "Multi-view optimisation": 6 views on a horizontal ring, 60 degrees
    apart; its 3D recovery reprojects to 4 views 90 degrees apart): `num_views` cameras at `distance` (metres)
    from the world origin, looking at it, no roll, K = I (normalised image coordinates).

    Azimuth convention (the one `camera.sample_cameras` uses): camera k sits at
        distance * (cos(e) sin(a_k), sin(e), cos(e) cos(a_k)),  a_k = first_azimuth_deg + k * 360 / num_views,
    so azimuth 0 is on the +z axis, 90 degrees on +x; positive elevation e puts the cameras above the origin,
    looking down. View 0 (azimuth `first_azimuth_deg`) is the observed view.

    Returns Cameras with K [V, 3, 3] (identity), R [V, 3, 3], t [V, 3], in `dtype` on `device`.

    Raises:
        ValueError: num_views < 1, distance <= 0, or |elevation_deg| >= 90 (looking straight up or down leaves
            the roll undefined).
    """
    _check(num_views >= 1, f"num_views must be at least 1, got {num_views}")
    _check(distance > 0, f"distance must be positive, got {distance}")
    _check(-90 < elevation_deg < 90, f"elevation_deg must be in (-90, 90), got {elevation_deg}")
    azimuth = torch.deg2rad(first_azimuth_deg + torch.arange(num_views, dtype=torch.float64) * (360.0 / num_views))
    e = math.radians(elevation_deg)
    eye = distance * torch.stack([math.cos(e) * azimuth.sin(), torch.full_like(azimuth, math.sin(e)),
                                  math.cos(e) * azimuth.cos()], dim=-1)
    R, t = look_at(eye, torch.zeros_like(eye))
    K = torch.eye(3, dtype=torch.float64).expand(num_views, 3, 3)
    return Cameras(*(x.to(dtype=dtype, device=device).contiguous() for x in (K, R, t)))


def projection_matrices(cams: Cameras) -> torch.Tensor:
    """P = K [R | t] of each camera (HZ section 6.1): cams with K [V, 3, 3], R [V, 3, 3], t [V, 3] -> [V, 3, 4].

    Raises:
        ValueError: cams.K, cams.R or cams.t of the wrong shape, or a different number of views.
    """
    K, R, t = cams.K, cams.R, cams.t
    _check(K.dim() == 3 and K.shape[1:] == (3, 3), f"cams.K must be [V, 3, 3], got {tuple(K.shape)}")
    V = K.shape[0]
    _check(R.shape == (V, 3, 3), f"cams.R must be [{V}, 3, 3] like cams.K, got {tuple(R.shape)}")
    _check(t.shape == (V, 3), f"cams.t must be [{V}, 3] like cams.K, got {tuple(t.shape)}")
    return K @ torch.cat([R, t[..., None]], dim=-1)


def fundamental_matrix(P_a: torch.Tensor, P_b: torch.Tensor) -> torch.Tensor:
    """The fundamental matrix F [..., 3, 3] from view a to view b: x_b^T F x_a = 0 for the images x_a, x_b
    (homogeneous) of any 3D point, and F x_a is x_a's epipolar line in view b.

    F = [e_b]_x P_b P_a^+ with e_b = P_b C_a the epipole (view a's centre C_a = (-M^-1 p_4, 1) for P_a = [M | p_4])
    and P_a^+ the pseudo-inverse (HZ section 9.2.2, eq. 9.1; the centre: section 6.2.4). Differentiable.

    P_a, P_b: [..., 3, 4] finite projective cameras (M invertible), leading dimensions broadcast against each
    other. F's scale is the one P gives (F is defined up to scale; `epipolar_lines` normalises the lines); it is
    ~0 when the two centres coincide.

    Raises:
        ValueError: P_a or P_b not [..., 3, 4], or their leading dimensions do not broadcast.
        torch.linalg.LinAlgError: P_a's left 3x3 block is singular (a camera at infinity).
    """
    for name, P in (("P_a", P_a), ("P_b", P_b)):
        _check(P.dim() >= 2 and P.shape[-2:] == (3, 4), f"{name} must be [..., 3, 4], got {tuple(P.shape)}")
    _broadcastable("P_a", P_a.shape[:-2], "P_b", P_b.shape[:-2])
    M, p4 = P_a[..., :3], P_a[..., 3:]
    centre = torch.cat([-torch.linalg.solve(M, p4), torch.ones_like(p4[..., :1, :])], dim=-2)  # [..., 4, 1]
    epipole = (P_b @ centre)[..., 0]
    return _skew(epipole) @ P_b @ torch.linalg.pinv(P_a)


def fundamental_matrices(P: torch.Tensor) -> torch.Tensor:
    """All ordered pairs: P [V, 3, 4] -> F [V, V, 3, 3], F[i, j] = fundamental_matrix(P[i], P[j]) maps a point
    in view i to its epipolar line in view j (x_j^T F[i, j] x_i = 0); exact zeros on the diagonal (a view has no
    epipolar geometry with itself, and the zero line constrains nothing). MVLift's multi-view consistency loss
    runs over these pairs (section "Multi-view optimisation"). Differentiable.

    Raises:
        ValueError: P not [V, 3, 4].
    """
    V = _check_P(P)
    F = fundamental_matrix(P[:, None], P[None, :])
    return F.masked_fill(torch.eye(V, dtype=torch.bool, device=P.device)[..., None, None], 0.0)


def epipolar_lines(points: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """Epipolar lines l = F (x, y, 1) in the other view of points [..., 2] (image coordinates of the view F maps
    from; normalised coordinates for the ring cameras), F [..., 3, 3] broadcast against points' leading
    dimensions (e.g. points [T, J, 2] with one F [3, 3], or points [V, 1, T, J, 2] with F [V, V, 1, 1, 3, 3]).

    Returns lines [..., 3] normalised as in the module docstring (a x + b y + c is then a distance in the other
    view's image units); (0, 0, 0) where the line is undefined (the point is the epipole, or F is zero).
    Differentiable, no NaN. Source: HZ section 9.2 (l' = F x); MVLift uses these lines as its line condition.

    Raises:
        ValueError: points not [..., 2], F not [..., 3, 3], or their leading dimensions do not broadcast.
    """
    _check(points.shape[-1:] == (2,), f"points must be [..., 2], got {tuple(points.shape)}")
    _check(F.dim() >= 2 and F.shape[-2:] == (3, 3), f"F must be [..., 3, 3], got {tuple(F.shape)}")
    _broadcastable("points[..., 0]", points.shape[:-1], "F[..., 0, 0]", F.shape[:-2])
    return _normalise_lines((F @ _homogeneous(points)[..., None])[..., 0])


def lines_through(points: torch.Tensor, epipole: torch.Tensor) -> torch.Tensor:
    """The line through each point [..., 2] and an epipole: [..., 2] (a point of the image plane) or [..., 3]
    (homogeneous, so that w = 0 gives an epipole at infinity, i.e. parallel lines), broadcast against points.
    MVLift's stage 1 simulates epipolar lines this way from a random virtual epipole, without a second view
    (section "Line-conditioned 2D motion diffusion"). l = x x e (HZ section 2.2.1, result 2.4).

    Returns lines [..., 3] normalised as in the module docstring; (0, 0, 0) where the point is the epipole.
    Differentiable, no NaN.

    Raises:
        ValueError: points not [..., 2], epipole not [..., 2] or [..., 3], or the shapes do not broadcast.
    """
    _check(points.shape[-1:] == (2,), f"points must be [..., 2], got {tuple(points.shape)}")
    _check(epipole.dim() >= 1 and epipole.shape[-1] in (2, 3),
           f"epipole must be [..., 2] or homogeneous [..., 3], got {tuple(epipole.shape)}")
    _broadcastable("points[..., 0]", points.shape[:-1], "epipole[..., 0]", epipole.shape[:-1])
    e = _homogeneous(epipole) if epipole.shape[-1] == 2 else epipole
    x = _homogeneous(points)
    return _normalise_lines(torch.linalg.cross(*torch.broadcast_tensors(x, e.to(x.dtype)), dim=-1))


def point_line_distance(points: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """|a x + b y + c| [...] for points [...., 2] and normalised lines [..., 3] (unit (a, b): the Euclidean
    distance in image units; 0 for the zero line), broadcast. MVLift's line matching loss (stage 1) and its
    epipolar consistency loss (stage 2) are sums of these. Differentiable (not at distance 0, like abs).

    Raises:
        ValueError: points not [..., 2], lines not [..., 3], or the shapes do not broadcast.
    """
    _check(points.shape[-1:] == (2,), f"points must be [..., 2], got {tuple(points.shape)}")
    _check(lines.shape[-1:] == (3,), f"lines must be [..., 3], got {tuple(lines.shape)}")
    _broadcastable("points[..., 0]", points.shape[:-1], "lines[..., 0]", lines.shape[:-1])
    return ((lines[..., :2] * points).sum(-1) + lines[..., 2]).abs()


def sampson_error(points_a: torch.Tensor, points_b: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """The Sampson error (HZ section 11.4.3, eq. 11.9), the first-order squared geometric distance of a pair of
    matched points from satisfying the epipolar constraint x_b^T F x_a = 0:
    (x_b^T F x_a)^2 / ((F x_a)_1^2 + (F x_a)_2^2 + (F^T x_b)_1^2 + (F^T x_b)_2^2).

    points_a, points_b: [..., 2] (image units of views a and b), F [..., 3, 3] mapping view a's points to view
    b's lines, broadcast. Returns [...] in squared image units. Symmetric in the two views, smooth, and finite at
    the epipoles (where one point's epipolar line is undefined): MVLift's stage 2 scores multi-view consistency
    with it (fastmotion.losses.mvlift.epipolar_consistency). 0 where both points sit on their epipoles.

    Raises:
        ValueError: points not [..., 2], F not [..., 3, 3], or the shapes do not broadcast.
    """
    _check(points_a.shape[-1:] == (2,) and points_b.shape[-1:] == (2,),
           f"points_a and points_b must be [..., 2], got {tuple(points_a.shape)} and {tuple(points_b.shape)}")
    _check(F.dim() >= 2 and F.shape[-2:] == (3, 3), f"F must be [..., 3, 3], got {tuple(F.shape)}")
    _broadcastable("points_a[..., 0]", points_a.shape[:-1], "points_b[..., 0]", points_b.shape[:-1])
    _broadcastable("points[..., 0]", torch.broadcast_shapes(points_a.shape[:-1], points_b.shape[:-1]),
                   "F[..., 0, 0]", F.shape[:-2])
    return reference.sampson_error(points_a, points_b, F)  # the definition the fused op is tested against


def project(points3d: torch.Tensor, P: torch.Tensor, min_depth: float = 1e-3) -> torch.Tensor:
    """Perspective projection of points3d [..., 3] (world) into every view of P [V, 3, 4] -> [V, ..., 2]
    (pixels, or normalised coordinates for K = I). The third homogeneous coordinate (the depth in front of the
    camera for P = K [R | t] with K's last row (0, 0, 1)) is clamped to at least `min_depth` (world units,
    default 1 mm): points behind or at the camera project as if at min_depth, finite, with no gradient through
    their depth. Differentiable in points3d and P.

    Raises:
        ValueError: points3d not [..., 3], P not [V, 3, 4], or min_depth <= 0.
    """
    _check(points3d.shape[-1:] == (3,), f"points3d must be [..., 3], got {tuple(points3d.shape)}")
    V = _check_P(P)
    _check(min_depth > 0, f"min_depth must be positive, got {min_depth}")
    offset = P[:, :, 3].reshape(V, *(1,) * (points3d.dim() - 1), 3)
    uvw = torch.einsum("vij,...j->v...i", P[:, :, :3], points3d) + offset
    return uvw[..., :2] / uvw[..., 2:].clamp_min(min_depth)


def _check_views(points2d: torch.Tensor, P: torch.Tensor) -> int:
    V = _check_P(P)
    _check(points2d.dim() >= 2 and points2d.shape[0] == V and points2d.shape[-1] == 2,
           f"points2d must be [V={V}, ..., 2] (one set per view of P), got {tuple(points2d.shape)}")
    return V


def triangulate_dlt(points2d: torch.Tensor, P: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted linear (DLT) triangulation (HZ section 12.2; the DLT: section 4.1): for each point, the unit
    X minimising ||A X|| over homogeneous X, where each view v adds the rows w_v (x P_v^3 - P_v^1) and
    w_v (y P_v^3 - P_v^2); X is the last right singular vector of A [2V, 4]. MVLift's 3D recovery starts here.

    points2d: [V, ..., 2] the images of each point in each view (any batch shape, e.g. [V, T, J, 2]);
    P: [V, 3, 4], V >= 2; weights: [V, ...] (e.g. detector confidences; broadcast to points2d's [V, ...]),
    >= 0, 0 ignores that observation. The error minimised is algebraic (about depth x reprojection error per
    view), so weight views of very different depth with care; refine with `refine_points`.
    Returns [..., 3] in P's world units. A point needs two views of non-zero weight; points found at infinity
    (w ~ 0) come out huge but finite. Differentiable where the smallest singular value is simple.

    Raises:
        ValueError: P not [V, 3, 4] or V < 2, points2d not [V, ..., 2], weights not [V, ...] broadcastable.
    """
    V = _check_views(points2d, P)
    _check(V >= 2, f"P must hold at least 2 views to triangulate, got {V}")
    w = _weights(weights, points2d)
    Pb = P.to(points2d.dtype).reshape(V, *(1,) * (points2d.dim() - 2), 3, 4)  # broadcast over the batch
    rows = torch.stack([points2d[..., 0:1] * Pb[..., 2, :] - Pb[..., 0, :],
                        points2d[..., 1:2] * Pb[..., 2, :] - Pb[..., 1, :]], dim=-2)  # [V, ..., 2, 4]
    A = (rows * w[..., None, None]).movedim(0, -3).flatten(-3, -2)  # [..., 2V, 4]
    X = torch.linalg.svd(A, full_matrices=False).Vh[..., -1, :]
    w4 = X[..., 3:]
    return X[..., :3] / torch.copysign(w4.abs().clamp_min(torch.finfo(X.dtype).tiny), w4)


def refine_points(points3d_init: torch.Tensor, points2d: torch.Tensor, P: torch.Tensor,
                  weights: torch.Tensor | None = None, iterations: int = 500, lr: float = 0.01,
                  min_depth: float = 1e-3) -> torch.Tensor:
    """MVLift's 3D recovery after the DLT (section "3D recovery": minimise the reprojection error): Adam with
    learning rate `lr` (world units per step, roughly) for `iterations` steps on each point's weighted mean over
    views of the squared reprojection error ||project(X, P) - x||^2 (`project`, depth clamped at min_depth).
    The points are independent, so the loss sums the per-point means: each point's steps do not depend on how
    many points share the batch (a mean over points would shrink gradients towards Adam's epsilon).

    points3d_init: [..., 3] (e.g. `triangulate_dlt`'s output); points2d: [V, ..., 2] with the same batch shape;
    P: [V, 3, 4]; weights: [V, ...] as in `triangulate_dlt`, a point's weights should not all be 0.
    Returns each point's iterate of the lowest error (the start included), detached, in points3d_init's dtype:
    the refinement never makes a point's reprojection error worse. Runs under torch.no_grad() too (the
    optimisation enables grad inside); nothing flows back into the inputs.

    Raises:
        ValueError: shapes as above (points2d's batch shape must equal points3d_init's), iterations < 0, lr <= 0.
    """
    _check_views(points2d, P)
    _check(points3d_init.shape[-1:] == (3,) and points3d_init.shape[:-1] == points2d.shape[1:-1],
           f"points3d_init must be [..., 3] with points2d's batch shape {tuple(points2d.shape[1:-1])}, "
           f"got {tuple(points3d_init.shape)}")
    _check(iterations >= 0, f"iterations must be >= 0, got {iterations}")
    _check(lr > 0, f"lr must be positive, got {lr}")
    w = _weights(weights, points2d).detach()
    target, P = points2d.detach(), P.detach()
    total = w.sum(0).clamp_min(torch.finfo(w.dtype).tiny)
    best = points3d_init.detach().clone()
    best_error = torch.full(best.shape[:-1], float("inf"), dtype=best.dtype, device=best.device)
    with torch.enable_grad():
        X = points3d_init.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([X], lr=lr)
        for it in range(iterations + 1):
            opt.zero_grad(set_to_none=True)
            err = (w * ((project(X, P, min_depth) - target) ** 2).sum(-1)).sum(0) / total  # [...] per point
            better = err.detach() < best_error  # each point keeps its best iterate: Adam's steps of about lr
            best_error = torch.where(better, err.detach(), best_error)  # do not settle at a minimum (an exact
            best = torch.where(better[..., None], X.detach(), best)  # DLT start would otherwise get worse)
            if it == iterations:
                break
            err.sum().backward()
            opt.step()
    return best
