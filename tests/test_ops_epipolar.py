"""sampson_consistency (MVLift's epipolar consistency): the definition against OpenCV's Sampson distance, zero on
consistent views, masked joints ignored (NaN there too), every fused backend against the reference in values and
gradients, float64 gradcheck, empty inputs, and bad input."""
import cv2
import numpy as np
import pytest
import torch
from helpers import fused_backends

from fastmotion.motion import multiview
from fastmotion.ops import sampson_consistency

FUSED = fused_backends()
V = 4
PAIRS = [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)]


def ring(views=V, dtype=torch.float64):
    cams = multiview.ring_cameras(views, 3.0, dtype=torch.float64)
    P = multiview.projection_matrices(cams)
    return cams, P, multiview.fundamental_matrices(P).to(dtype)


def scene(batch=2, frames=3, joints=5, dtype=torch.float64, seed=0, noise=0.05):
    """Views [V, B, T, J, 2] of random 3D points near the ring's centre, plus noise; F per pair [P, 3, 3]."""
    g = torch.Generator().manual_seed(seed)
    _, P, F = ring(dtype=dtype)
    points = torch.randn(batch, frames, joints, 3, generator=g, dtype=torch.float64) * 0.4
    views = multiview.project(points, P) + noise * torch.randn(V, batch, frames, joints, 2, generator=g,
                                                                dtype=torch.float64)
    return views.to(dtype), torch.stack([F[i, j] for i, j in PAIRS])


def test_definition_matches_opencv_sampson_distance():
    views, F = scene()
    terms = sampson_consistency(views, F, PAIRS, reduction="none", backend="torch")
    assert terms.shape == (len(PAIRS), 2, 3, 5)
    for p, (i, j) in enumerate(PAIRS):
        a = np.concatenate([views[i].reshape(-1, 2).numpy(), np.ones((30, 1))], 1)
        b = np.concatenate([views[j].reshape(-1, 2).numpy(), np.ones((30, 1))], 1)
        expected = [cv2.sampsonDistance(a[n].reshape(3, 1).copy(), b[n].reshape(3, 1).copy(), F[p].numpy().copy())
                    for n in range(30)]
        np.testing.assert_allclose(terms[p].reshape(-1).numpy(), expected, rtol=1e-9, atol=1e-15)
    mean = sampson_consistency(views, F, PAIRS, backend="torch")
    torch.testing.assert_close(mean, terms.mean())


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch"), *FUSED])
def test_zero_on_consistent_views_and_positive_off_them(backend, device):
    views, F = (x.to(device) for x in scene(noise=0.0))
    assert float(sampson_consistency(views, F, PAIRS, backend=backend)) < 1e-20
    off = views.clone()
    off[2, 0, 1, 3] += 0.1
    terms = sampson_consistency(off, F, PAIRS, reduction="none", backend=backend)
    touched = [p for p, pair in enumerate(PAIRS) if 2 in pair]
    assert (terms[touched, 0, 1, 3] > 1e-6).all()
    assert terms.sum() == terms[touched, 0, 1, 3].sum()


def _grads(views, F, mask, backend, reduction, device):
    v = views.detach().to(device).requires_grad_()
    out = sampson_consistency(v, F.to(device), PAIRS, None if mask is None else mask.to(device), reduction=reduction,
                              backend=backend)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype).to(device)
    (out * weights).sum().backward()
    return out.detach().cpu(), v.grad.cpu()


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mask_kind", [None, "frames", "joints"])
@pytest.mark.parametrize("per_batch", [False, True], ids=["shared-F", "per-batch-F"])
def test_fused_matches_reference(backend, device, dtype, mask_kind, per_batch):
    views, F = scene(batch=3, frames=4, joints=6, dtype=dtype, noise=0.2)
    if per_batch:  # a different focal length per motion, as MVLift's lifter uses them
        k = torch.diag_embed(torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 1.0], [0.25, 0.25, 1.0]], dtype=dtype))
        F = k[None] @ F[:, None] @ k[None]
    g = torch.Generator().manual_seed(2)
    mask = None if mask_kind is None else torch.rand(3, 4, *([6] if mask_kind == "joints" else []), generator=g) > 0.3
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else {}
    for reduction in ("none", "sum", "mean"):
        got = _grads(views, F, mask, backend, reduction, device)
        ref = _grads(views, F, mask, "torch", reduction, "cpu")
        torch.testing.assert_close(got[0], ref[0], **tol)
        torch.testing.assert_close(got[1], ref[1], **tol)


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch"), *FUSED])
def test_gradcheck_masked_nan_and_empty(backend, device):
    views, F = scene(batch=1, frames=2, joints=3, noise=0.3)
    views, F = views.to(device), F.to(device)
    mask = torch.tensor([[True, False]], device=device)
    v = views.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: sampson_consistency(v, F, PAIRS, mask, reduction="none",
                                                                  backend=backend), (v,))
    holed = views.clone()
    holed[:, :, 1] = float("nan")  # the masked frame: a tracker's gap
    holed.requires_grad_()
    loss = sampson_consistency(holed, F, PAIRS, mask, backend=backend)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(holed.grad).all() and (holed.grad[:, :, 1] == 0).all()
    empty = sampson_consistency(views[:, :, :0], F, PAIRS, mask[:, :0], backend=backend)
    assert float(empty) == 0.0
    no_pairs = sampson_consistency(v, F[:0], [], mask, backend=backend)  # P = 0: zero, and still differentiable
    no_pairs.backward()
    assert float(no_pairs.detach()) == 0.0 and (v.grad == 0).all()
    joint_mask = torch.ones(1, 2, 3, dtype=torch.bool, device=device)
    joint_mask[0, 0, 1] = False  # one joint a detector missed: NaN there, ignored
    holed = views.clone()
    holed[:, 0, 0, 1] = float("nan")
    holed.requires_grad_()
    sampson_consistency(holed, F, PAIRS, joint_mask, backend=backend).backward()
    assert torch.isfinite(holed.grad).all() and (holed.grad[:, 0, 0, 1] == 0).all()
    assert (holed.grad[:, 0, 0, 0] != 0).any()


def test_bad_pairs_name_the_argument():
    views, F = scene()
    with pytest.raises(TypeError, match="^sampson_consistency: pairs must be a list"):
        sampson_consistency(views, F, torch.tensor(PAIRS))
    with pytest.raises(ValueError, match="^sampson_consistency: pairs names view 4 but views has V=4"):
        sampson_consistency(views, F, PAIRS[:-1] + [(0, 4)])
    with pytest.raises(ValueError, match=r"^sampson_consistency: pairs must join two different views, got \(2, 2\)"):
        sampson_consistency(views, F, PAIRS[:-1] + [(2, 2)])
    with pytest.raises(ValueError, match="^sampson_consistency: pairs has 4 pairs but F has P=5"):
        sampson_consistency(views, F, PAIRS[:-1])
    with pytest.raises(ValueError, match="^sampson_consistency: reduction must be"):
        sampson_consistency(views, F, PAIRS, reduction="max")
    with pytest.raises(TypeError, match="^sampson_consistency: pairs must hold Python ints, got bool"):
        sampson_consistency(views, F, PAIRS[:-1] + [(True, 2)])
    with pytest.raises(ValueError, match="^sampson_consistency: F must not require grad"):
        sampson_consistency(views, F.clone().requires_grad_(), PAIRS)
    many = [(0, 1)] * 129
    with pytest.raises(ValueError, match="^sampson_consistency: at most 128 pairs per call, got 129"):
        sampson_consistency(views, F[:1].expand(129, 3, 3), many)


@pytest.mark.parametrize("backend,device", FUSED)
def test_pair_of_one_view_twice_and_clamped_norm_match_reference(backend, device):
    """The kernels' edge cases: a view in many pairs on both sides (its gradient sums them), and an F so small
    that the norm is clamped (the gradient then flows through the epipolar residual only, as the reference)."""
    views, F = scene(batch=1, frames=2, joints=3, noise=0.3)
    tiny = F * 1e-160
    for F_case in (F, tiny):
        got = _grads(views, F_case, None, backend, "none", device)
        ref = _grads(views, F_case, None, "torch", "none", "cpu")
        torch.testing.assert_close(got[0], ref[0])
        torch.testing.assert_close(got[1], ref[1])
