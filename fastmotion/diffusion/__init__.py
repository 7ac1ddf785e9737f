"""Gaussian diffusion for x0-predicting motion models (MDM): schedules, DDPM and DDIM steps and samplers, and
the LIS-style multistep training schedule VideoMDM uses at low noise."""
from .gaussian import GaussianDiffusion, cosine_alpha_bar
from .multistep import MultistepConfig, draw_timesteps

__all__ = ["GaussianDiffusion", "cosine_alpha_bar", "MultistepConfig", "draw_timesteps"]
