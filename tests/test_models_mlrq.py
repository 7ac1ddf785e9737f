"""The ML-RQ's and the 2D prior's feature standardisation."""
import torch

from fastmotion.models.mlrq import DIM_2D, RELATIVE_STD_FLOOR, Prior2D, MotionVQConfig


def test_standardisation_floors_near_constant_channels_at_a_fraction_of_the_median():
    # channel 7 barely varies, like the horizontal 2D component of a rigid spine segment in real mocap
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.005, 0.03, DIM_2D)
    scales[7] = 1e-4
    features = torch.randn(50, 40, DIM_2D, generator=g) * scales
    mask = torch.ones(50, 40, dtype=torch.bool)
    stats = Prior2D(MotionVQConfig(width=8, latent_dim=8, num_levels=1, num_codes=4)).stats
    stats.fit(features, mask)
    raw = features.reshape(-1, DIM_2D).std(0)
    floor = RELATIVE_STD_FLOOR * raw.median()
    torch.testing.assert_close(stats.std[7], floor)
    others = raw > floor
    torch.testing.assert_close(stats.std[others], raw[others])
    torch.testing.assert_close(stats.mean, features.reshape(-1, DIM_2D).mean(0))
    stats.fit(features, mask, relative_floor=0.0)  # without the floor: the raw std (above min_std)
    torch.testing.assert_close(stats.std[7], raw[7])


def test_prior_reconstructs_through_its_codebook_or_its_continuous_latent():
    torch.manual_seed(0)
    prior = Prior2D(MotionVQConfig.preset("small", levels=1)).eval()
    x = torch.randn(2, 16, DIM_2D)
    with torch.no_grad():
        torch.testing.assert_close(prior.reconstruct(x), prior(x)[0])
        continuous = prior.reconstruct(x, quantise=False)
        torch.testing.assert_close(continuous, prior.decoder(prior.encoder(x)))
        assert (continuous - prior(x)[0]).abs().max() > 1e-3  # the codebook changes the latent
