"""Gaussian diffusion (cosine schedule, DDPM/DDIM steps and samplers) and the multistep training schedule."""
import math

import pytest
import torch

from fastmotion.diffusion import GaussianDiffusion, MultistepConfig, cosine_alpha_bar, draw_timesteps


def test_cosine_schedule_decreases_from_one_to_zero():
    abar = cosine_alpha_bar(50)
    assert abar.shape == (50,) and (abar[1:] < abar[:-1]).all()
    assert 0.99 < abar[0] < 1 and abar[-1] < 1e-3
    # abar_t follows cos^2 of the schedule's angle
    expected = math.cos((10 / 50 + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert float(abar[9]) == pytest.approx(expected, rel=1e-9)


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                   reason="no CUDA device")])]


@pytest.mark.parametrize("device", DEVICES)
def test_q_sample_and_the_steps_recover_x0_from_its_own_prediction(device):
    d = GaussianDiffusion(50)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 6, 3, generator=g, dtype=torch.float64).to(device)
    noise = torch.randn(4, 6, 3, generator=g, dtype=torch.float64).to(device)
    t = torch.tensor([0, 10, 30, 49], device=device)
    xt = d.q_sample(x0, t, noise)
    assert torch.allclose(d.eps_from_x0(xt, t, x0), noise)
    # DDIM with the true x0 lands on the same noise direction at t_prev, and on x0 at the end
    prev = torch.tensor([-1, 5, 20, 40], device=device)
    want = d.q_sample(x0, prev.clamp_min(0), noise)
    want[0] = x0[0]
    assert torch.allclose(d.ddim_step(xt, t, prev, x0), want)
    # DDPM's posterior mean with the true x0, no noise at t = 0
    step = d.ddpm_step(xt, t, x0, torch.zeros_like(x0))
    assert torch.allclose(step[0], x0[0])
    c0, ct = d.post_c0[10], d.post_ct[10]
    assert torch.allclose(step[1], c0 * x0[1] + ct * xt[1])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_reach_the_data_of_a_perfect_denoiser(sampler):
    """A denoiser that always answers the same x0 makes both samplers end exactly there."""
    d = GaussianDiffusion(20)
    target = torch.arange(6.0).view(1, 2, 3)
    out = d.sample(lambda x, t: target.expand_as(x), (2, 2, 3), torch.Generator().manual_seed(0), sampler=sampler,
                   steps=5)
    assert torch.allclose(out, target.expand(2, 2, 3), atol=1e-5)
    seen = []
    d.sample(lambda x, t: torch.zeros_like(x), (1, 2), torch.Generator().manual_seed(0), sampler=sampler, steps=5,
             x0_hook=lambda x0, t: seen.append(t) or x0)
    assert seen == (list(range(19, -1, -1)) if sampler == "ddpm" else [19, 14, 10, 5, 0])


def test_multistep_schedule_matches_the_config():
    cfg = MultistepConfig(steps=50, threshold=12, buckets=4)
    g = torch.Generator().manual_seed(0)
    draws = [draw_timesteps(cfg, 8, g) for _ in range(4000)]
    multi = [d for d in draws if len(d) > 1]
    single = [d for d in draws if len(d) == 1]
    assert abs(len(multi) / len(draws) - 12 / 50) < 0.03  # probability t*/T
    for d in multi:
        assert len(d) == 4 and all(len(set(x.tolist())) == 1 for x in d)
        buckets = [int(x[0]) // 3 for x in d]
        assert buckets == [3, 2, 1, 0]  # one step in every bucket, highest first
    lows = torch.stack([d[-1][0] for d in multi])
    assert set(lows.tolist()) == {0, 1, 2}
    singles = torch.cat([d[0] for d in single])
    assert singles.min() >= 12 and singles.max() <= 49 and len(set(singles.tolist())) == 38
    assert all(len(draw_timesteps(MultistepConfig(threshold=0), 2, g)) == 1 for _ in range(50))
    with pytest.raises(ValueError, match="equal buckets"):
        MultistepConfig(threshold=10, buckets=4)


def test_multistep_start_above_threshold_adds_one_unscored_level():
    cfg = MultistepConfig(steps=50, threshold=24, buckets=4, start="above")
    g = torch.Generator().manual_seed(0)
    multi = [d for d in (draw_timesteps(cfg, 4, g) for _ in range(2000)) if len(d) > 1]
    assert abs(len(multi) / 2000 - 24 / 50) < 0.04
    for d in multi:
        assert [int(x[0]) // 6 for x in d] == [4, 3, 2, 1, 0]  # the start in [24, 30), then every bucket
    assert {int(d[0][0]) for d in multi} == set(range(24, 30))
    with pytest.raises(ValueError, match="start 'above'"):
        MultistepConfig(steps=50, threshold=45, buckets=3, start="above")  # 45 + 15 > 50
    with pytest.raises(ValueError, match="'inside' or 'above'"):
        MultistepConfig(start="below")
