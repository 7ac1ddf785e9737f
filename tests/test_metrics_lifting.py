"""Lifting metrics against hand-computed cases: Procrustes, PA-MPJPE, N-MPJPE, MPJPE of metric lifters, root."""

import pytest
import torch

from fastmotion.metrics.lifting import lifting_metrics, procrustes
from fastmotion.motion import SMPL22


def test_metrics_against_hand_computed_cases():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(2, 5, 22, 3, generator=g, dtype=torch.float64)
    angle = torch.tensor(0.7)
    R = torch.tensor([[torch.cos(angle), 0, torch.sin(angle)], [0, 1, 0], [-torch.sin(angle), 0, torch.cos(angle)]],
                     dtype=torch.float64)
    moved = 2.5 * true @ R.T + 1.0
    torch.testing.assert_close(procrustes(moved, true), true)
    m = lifting_metrics(moved, true)
    assert m["PA-MPJPE"] < 1e-3 and m["PCK@50"] == 100.0  # millimetres
    m = lifting_metrics(true * 3.0, true)  # a pure scale: N-MPJPE forgives it
    assert m["N-MPJPE"] < 1e-3 and m["root"] < 1e-3 and m["accel"] < 1e-3 and "MPJPE" not in m
    rel = (true - true[:, :, :1]).norm(dim=-1).mean() * 1000  # a metric lifter is not forgiven the scale
    assert lifting_metrics(true * 3.0, true, metric=True)["MPJPE"] == pytest.approx(2 * float(rel))
    shifted = true.clone()
    shifted[..., 1:, :] += torch.tensor([0.01, 0, 0], dtype=torch.float64)
    assert abs(lifting_metrics(shifted, true)["N-MPJPE"] - 10.0 * 21 / 22) < 1.0


def test_pa_mpjpe_12_counts_only_the_limb_joints_a_detector_gives():
    true = torch.randn(2, 5, 22, 3, dtype=torch.float64)
    moved = true.clone()
    moved[..., SMPL22.index("head"), :] += 0.1  # 10 cm off at a joint COCO-17 does not give exactly
    m = lifting_metrics(moved, true)
    assert m["PA-MPJPE-12"] < 1e-6 < m["PA-MPJPE"]
    moved[..., SMPL22.index("left_wrist"), 0] += 0.12
    assert lifting_metrics(moved, true)["PA-MPJPE-12"] > 1.0  # millimetres
