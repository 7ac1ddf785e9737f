"""Generation metrics against closed forms: Frechet distance, FID, R-precision, MM-Dist, Diversity,
MultiModality, confidence intervals."""
import math

import pytest
import torch

from fastmotion.metrics import generation as gm


# ---- metrics -------------------------------------------------------------------------------------------------


# ---- metrics -------------------------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    eye = torch.eye(3)
    assert gm.frechet_distance(torch.zeros(3), eye, torch.zeros(3), eye) == pytest.approx(0, abs=1e-9)
    shift = torch.tensor([1.0, -2.0, 0.5])
    assert gm.frechet_distance(torch.zeros(3), eye, shift, eye) == pytest.approx(float(shift @ shift))
    # diagonal covariances: sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([4.0, 1.0, 9.0]), torch.tensor([1.0, 1.0, 1.0])
    expected = float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert gm.frechet_distance(torch.zeros(3), a.diag(), torch.zeros(3), b.diag()) == pytest.approx(expected)


def test_fid_on_samples():
    x = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    assert gm.fid(x, x) == pytest.approx(0, abs=1e-6)
    shift = torch.tensor([3.0, 0.0, -1.0, 0.0])
    assert gm.fid(x, x + shift) == pytest.approx(10.0, rel=1e-6)  # same covariance: the squared shift
    assert gm.fid(x, 2 * x) == pytest.approx(float(gm._moments(x)[1].trace()) + float(gm._moments(x)[0].pow(2).sum()),
                                             rel=1e-6)  # (2 - 1)^2 tr(S) + |mu|^2


def test_r_precision_mm_dist_diversity_multimodality():
    text = torch.eye(32) * 10
    assert gm.r_precision(text, text) == [1.0, 1.0, 1.0]
    assert gm.r_precision(text, -text)[0] < 0.1
    # 1-D case by hand: text 0's own motion is 2nd nearest, text 1's 2nd (a tie does not count), text 2's 1st
    texts, motions = torch.tensor([[0.0], [10.0], [20.0]]), torch.tensor([[9.0], [1.0], [19.0]])
    assert gm.r_precision(texts, motions, batch=3) == pytest.approx([1 / 3, 1.0, 1.0])
    assert gm.mm_dist(torch.zeros(5, 2), torch.tensor([[3.0, 4.0]]).expand(5, 2)) == pytest.approx(5.0)
    assert gm.diversity(torch.ones(10, 3)) == 0
    # two independent N(0, I_64) draws lie sqrt(2) * E[chi_64] = 11.27 apart on average
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2000, 64, generator=g, dtype=torch.float64)
    div = gm.diversity(points, pairs=300, generator=torch.Generator().manual_seed(1))
    assert 10.8 < div < 11.7, div
    assert gm.diversity(3 * points, 300, torch.Generator().manual_seed(1)) == pytest.approx(3 * div)
    same = torch.ones(4, 5, 3)
    assert gm.multimodality(same) == 0
    # samples of each prompt ~ N(100 p, I_16): pairs within a prompt only, so the prompts' spread does not count;
    # sqrt(2) E[chi_16] = 5.57, less 1/30 of pairs that draw one sample twice
    spread = 100 * torch.arange(50.0)[:, None, None] + torch.randn(50, 30, 16, generator=g)
    mm = gm.multimodality(spread, pairs=10, generator=torch.Generator().manual_seed(1))
    assert 5.0 < mm < 5.8, mm
    assert gm.qm_score(4.0, 1.0) == 2.0
    mean, half = gm.confidence_interval([1.0, 1.0, 1.0])
    assert (mean, half) == (1.0, 0.0)
    mean, half = gm.confidence_interval([0.0, 2.0])
    assert mean == 1.0 and half == pytest.approx(1.96 * 1.0 / math.sqrt(2))
    with pytest.raises(ValueError, match="at least 2"):
        gm.diversity(torch.ones(1, 3))
