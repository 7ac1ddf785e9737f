"""MVLift's evaluation protocol (`mvlift_metrics`) against hand-built cases: T_root, MPJPE, PA-MPJPE-seq, J_2D."""
import math

import pytest
import torch

from fastmotion.metrics.lifting import mvlift_metrics
from fastmotion.motion.camera import Cameras, intrinsics, look_at, project

f64 = torch.float64


def motion(N=2, T=6, seed=0):
    """Random clips [N, T, 22, 3] in metres: a wandering root and a body spread around it."""
    g = torch.Generator().manual_seed(seed)
    root = torch.cumsum(0.05 * torch.randn(N, T, 1, 3, generator=g, dtype=f64), dim=1)
    return root + 0.4 * torch.randn(N, T, 22, 3, generator=g, dtype=f64)


def rotation(axis, angle):
    axis = torch.tensor(axis, dtype=f64) / torch.tensor(axis, dtype=f64).norm()
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=f64)
    return torch.eye(3, dtype=f64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


@pytest.mark.parametrize("yaw", [0.0, 0.8, -2.5])
def test_a_yawed_and_moved_truth_has_no_root_error(yaw):
    true = motion()
    pred = true @ rotation([0, 1, 0], yaw).T + torch.tensor([1.0, 0.2, -3.0], dtype=f64)
    m = mvlift_metrics(pred, true)
    assert m["T_root"] < 1e-6 and m["PA-MPJPE-seq"] < 1e-6 and "J_2D" not in m
    assert (m["MPJPE"] < 1e-6) == (yaw == 0.0)  # MPJPE does not forgive the heading
    if yaw:
        assert m["MPJPE"] > 100
    # a tilt is not a yaw: T_root sees it
    tilted = true @ rotation([1, 0, 0], 0.3).T
    assert mvlift_metrics(tilted, true)["T_root"] > 1


def test_a_similarity_is_forgiven_by_pa_mpjpe_seq_only():
    true = motion(seed=1)
    pred = 1.3 * true @ rotation([0.3, 1.0, -0.5], 1.1).T + torch.tensor([0.5, -0.1, 2.0], dtype=f64)
    m = mvlift_metrics(pred, true)
    assert m["PA-MPJPE-seq"] < 1e-6 and m["MPJPE"] > 100
    # one similarity per sequence: a rotation that changes from frame to frame is not forgiven
    drift = torch.stack([true[:, k] @ rotation([0, 0, 1], 0.1 * k).T for k in range(true.shape[1])], dim=1)
    assert mvlift_metrics(drift, true)["PA-MPJPE-seq"] > 10


def test_a_root_offset_after_the_first_frame_is_the_root_error():
    true = motion(T=5, seed=2)
    pred = true.clone()
    pred[:, 1:] += torch.tensor([0.0, 0.0, 0.1], dtype=f64)  # 10 cm, whole body, from frame 1 on
    m = mvlift_metrics(pred, true)
    assert m["T_root"] == pytest.approx(100.0 * 4 / 5)  # the first frame counts, with 0
    assert m["MPJPE"] < 1e-9 and m["PA-MPJPE-seq"] > 1
    pred[..., 5, :] += torch.tensor([0.0, 0.022, 0.0], dtype=f64)  # one joint of 22 off by 22 mm: 1 mm on average
    assert mvlift_metrics(pred, true)["MPJPE"] == pytest.approx(1.0)
    only_later = torch.tensor([[False, True, True, True, True]] * 2)
    # reference frame masked: frame 1 becomes the reference, and then pred and truth agree up to translation
    assert mvlift_metrics(pred, true, only_later)["T_root"] < 1e-9


def test_masked_frames_with_garbage_do_not_count():
    true = motion(N=2, T=8, seed=3)
    pred = true + 0.05 * torch.randn(true.shape, generator=torch.Generator().manual_seed(4), dtype=f64)
    pred = pred @ rotation([0, 1, 0], 0.4).T
    keep = torch.tensor([False, True, True, True, True, False, True, True])
    mask = keep.expand(2, 8).clone()
    g_pred, g_true = pred.clone(), true.clone()
    g_pred[:, ~keep] = 1e6
    g_true[:, ~keep] = float("nan")
    cams = look_at(torch.tensor([[0.0, 1.0, 5.0], [4.0, 1.0, 3.0]], dtype=f64), torch.zeros(2, 3, dtype=f64))
    K = intrinsics(1000.0, 1000, 1000, batch=2, dtype=f64)
    kp = project(true, Cameras(K, *cams)) + 3.0
    g_kp = kp.clone()
    g_kp[:, ~keep] = float("nan")
    garbage = mvlift_metrics(g_pred, g_true, mask, g_kp, K, *cams)
    clean = mvlift_metrics(pred[:, keep], true[:, keep], None, kp[:, keep], K, *cams)
    assert garbage.keys() == clean.keys() == {"T_root", "MPJPE", "PA-MPJPE-seq", "J_2D"}
    for k in clean:
        assert garbage[k] == pytest.approx(clean[k], rel=1e-9), k
        assert clean[k] > 1  # every metric sees the noise or the yaw


def test_j2d_is_the_mean_pixel_distance_to_the_keypoints():
    true = motion(N=2, T=3, seed=5)
    R, t = look_at(torch.tensor([[1.0, 2.0, 6.0], [-5.0, 0.5, 1.0]], dtype=f64), torch.zeros(2, 3, dtype=f64))
    K = intrinsics(800.0, 640, 480, batch=2, dtype=f64)
    kp = project(true, Cameras(K, R, t))
    assert mvlift_metrics(true, true, keypoints=kp, K=K, R=R, t=t)["J_2D"] < 1e-9
    shift = torch.tensor([0.6, -0.8], dtype=f64)  # one pixel
    assert mvlift_metrics(true, true, keypoints=kp + shift, K=K, R=R, t=t)["J_2D"] == pytest.approx(1.0)


def test_invalid_arguments_are_named():
    true = motion(N=2, T=3)
    with pytest.raises(ValueError, match="pred must be"):
        mvlift_metrics(true[0], true[0])
    with pytest.raises(ValueError, match="true must"):
        mvlift_metrics(true, true[:, :2])
    with pytest.raises(ValueError, match="mask must be"):
        mvlift_metrics(true, true, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid frame"):
        mvlift_metrics(true, true, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="missing R, t"):
        mvlift_metrics(true, true, keypoints=true[..., :2], K=torch.eye(3).expand(2, 3, 3))
    eye = torch.eye(3, dtype=f64).expand(2, 3, 3)
    with pytest.raises(ValueError, match="keypoints must be"):
        mvlift_metrics(true, true, keypoints=true, K=eye, R=eye, t=torch.zeros(2, 3))
