"""MVLift's feed-forward lifting (Li et al., CVPR 2025, section "Multi-view 2D motion diffusion"): the stage-4
multi-view diffusion model (`fastmotion train mvlift-mv`) samples the unobserved views of its camera ring from the
observed one in one sampling pass, and the same 3D recovery as stage 2 (DLT triangulation, then the reprojection
refinement) gives global 3D. Clips are cut into windows and chained exactly as stage 2 does (`MVLiftLifter`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.errors import CheckpointError
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.models.multiview import MultiViewDenoiser, MultiViewDenoiserConfig

from .mvlift import MVLiftLifter, WindowNoise, recover_3d


@dataclass
class FeedForwardConfig:
    """Sampling and 3D recovery; `views` and `distance` are the ring the model was trained on (its checkpoint)."""
    views: int = 4
    distance: float = 2.8
    sampler: str = "ddim"  # "ddpm": every diffusion step (the paper: 1000); "ddim": `sample_steps` of them
    sample_steps: int = 20
    refine_iterations: int = 200
    refine_lr: float = 0.01
    overlap: int = 8
    batch_clips: int = 16
    focal: float | None = None  # as Stage2Config.focal: None keeps the real camera's perspective per window
    mode: str = "feedforward"

    @classmethod
    def preset(cls, name: str, **ring) -> FeedForwardConfig:
        if name == "full":  # the paper: DDPM over all 1000 steps
            return cls(sampler="ddpm", refine_iterations=500, **ring)
        if name == "small":
            return cls(**ring)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")

    def __post_init__(self):
        if self.sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {self.sampler!r}")
        for name in ("sample_steps", "batch_clips", "overlap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be >= 0, got {self.refine_iterations}")
        if self.views < 3:
            raise ValueError(f"views must be at least 3 (two opposite cameras triangulate nothing near the body), "
                             f"got {self.views}")
        for name in ("distance", "refine_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.focal is not None and not self.focal > 0:
            raise ValueError(f"focal must be positive or None (per window), got {self.focal}")
        if self.mode != "feedforward":
            raise ValueError(f"a multi-view diffusion checkpoint lifts in one mode (feed-forward), not {self.mode!r}; "
                             "--mvlift-mode applies to stage-1 checkpoints")


def load_multiview(path, device) -> tuple[MultiViewDenoiser, int, dict]:
    """The stage-4 model of `fastmotion train mvlift-mv`, its window length and its ring {"views", "distance"}.
    Raises CheckpointError."""
    state = load_checkpoint(path, "MultiViewDenoiser")
    missing = {"length", "distance"} - set(state["model_config"])
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(sorted(missing))} in its model_config (not written by "
                              "`fastmotion train mvlift-mv`?)")
    fields = set(MultiViewDenoiserConfig.__dataclass_fields__)
    model = MultiViewDenoiser(MultiViewDenoiserConfig(**{k: v for k, v in state["model_config"].items()
                                                         if k in fields}))
    model.load_state_dict(state["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    ring = {"views": model.config.views, "distance": float(state["model_config"]["distance"])}
    return model.to(device).eval(), int(state["model_config"]["length"]), ring


def sample_other_views(model: MultiViewDenoiser, reference: torch.Tensor, mask: torch.Tensor, focal: torch.Tensor,
                       noise: WindowNoise | torch.Generator, sampler: str = "ddim", steps: int = 20,
                       progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """reference [B, T, J, 2] (view 0, normalised), mask [B, T], focal [B] (normalised-2D units) -> views
    [V, B, T, J, 2], views 1..V-1 sampled together by the x0-predicting model: DDPM over every diffusion step (the
    paper), or deterministic DDIM over `steps` evenly spaced ones. Every draw is per window (`WindowNoise`), so a
    window's views do not depend on the windows beside it. `progress(1)` per step.

    Raises:
        ValueError: sampler neither "ddim" nor "ddpm", steps < 1, or inputs of the wrong shape (the model's checks).
    """
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    B, T, J, _ = reference.shape
    V = model.config.views
    noise = WindowNoise.of(noise, B)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    device, dtype = reference.device, reference.dtype
    x = noise.randn_motion(V - 1, T, J, dtype, device)
    if sampler == "ddpm":
        times = list(range(diffusion.steps - 1, -1, -1))
    else:
        count = min(steps, diffusion.steps)
        times = sorted({round(v) for v in torch.linspace(diffusion.steps - 1, 0, count).tolist()}, reverse=True)
    with torch.no_grad():
        for i, step in enumerate(times):
            t = torch.full((B,), step, dtype=torch.long, device=device)
            x0 = model(x, reference, t, mask, focal)
            if sampler == "ddpm":
                x = diffusion.ddpm_step(x, t, x0, noise.randn_motion(V - 1, T, J, dtype, device))
            else:
                x = diffusion.ddim_step(x, t, torch.full_like(t, times[i + 1] if i + 1 < len(times) else -1), x0)
            if progress:
                progress(1)
    return torch.cat([reference[None], x.transpose(0, 1)])


class MultiViewLifter(MVLiftLifter):
    """MVLift's feed-forward lifting with a frozen stage-4 model (same windows, chaining and outputs as
    `MVLiftLifter`; `views` keeps each clip's first window's sampled views)."""

    @classmethod
    def from_checkpoint(cls, path, device="cpu", preset: str = "small", seed: int = 0,
                        **overrides) -> MultiViewLifter:
        model, length, ring = load_multiview(path, device)
        if "iterations" in overrides:  # `--iterations`: DDIM's sampling steps here (also with preset full)
            overrides["sample_steps"], overrides["sampler"] = overrides.pop("iterations"), "ddim"
        config = FeedForwardConfig(**{**asdict(FeedForwardConfig.preset(preset, **ring)), **overrides})
        return cls(model, length, config, seed)

    def iterations(self, clips) -> int:
        batches = -(-len(self.plan(clips, record=False)) // self.config.batch_clips)
        steps = self.model.config.diffusion_steps if self.config.sampler == "ddpm" else min(
            self.config.sample_steps, self.model.config.diffusion_steps)
        return batches * steps

    def lift_batch(self, reference, mask, noise, focal):
        focal = focal.to(reference.device, reference.dtype)
        views = sample_other_views(self.model, reference, mask, focal, noise, self.config.sampler,
                                   self.config.sample_steps, self.iteration_progress)
        return recover_3d(views, self.config, focal), views
