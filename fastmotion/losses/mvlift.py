"""MVLift's losses (Li et al., CVPR 2025): stage 1's line-conditioned denoising (L1 on x0 plus the line matching
loss), with its simulated epipolar lines; stage 2's SDS from the frozen stage-1 model and its epipolar
consistency over views.

Units: 2D in MVLift's clip normalisation (`fastmotion.models.mvlift.normalise_clips`), lines (a, b, c) with
(a, b) a unit vector, so |a x + b y + c| is a distance in those units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastmotion import ops
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.motion import multiview

from .free3d import masked_mean


@dataclass
class LineSimulation:
    """Stage 1's simulated epipolar lines (no second view needed): the line through each joint and a virtual
    epipole, the same for the whole clip; with probability `p_ring` the epipole is the image, in the clip's view,
    of another camera on a horizontal ring of `ring_views` cameras at `distance` (the clip's view being one of
    them), else uniform in [-box, box]^2. The ring camera's focal length is drawn log-uniform in `focal` per clip
    (the paper: 1): the lifter's ring takes the real camera's, about 5 for a person a few metres away, which puts
    the epipoles of the nearest views beyond a focal-1 ring's."""
    p_ring: float = 0.5
    ring_views: int = 30
    distance: float = 3.0
    box: float = 3.0
    focal: tuple[float, float] = (1.0, 8.0)


def simulate_lines(x0: torch.Tensor, generator: torch.Generator, sim: LineSimulation | None = None):
    """x0 [B, T, J, 2] -> lines [B, T, J, 3] through every joint and one virtual epipole per clip (homogeneous,
    so a ring camera level with the clip's camera gives an epipole at infinity: parallel lines)."""
    sim, B = sim or LineSimulation(), x0.shape[0]
    cams = multiview.ring_cameras(sim.ring_views, sim.distance, dtype=torch.float64)
    centres = torch.cat([cams.centres(), torch.ones(sim.ring_views, 1, dtype=torch.float64)], -1)
    ring = centres[1:] @ multiview.projection_matrices(cams)[0].T  # [V-1, 3]: the others' centres seen by camera 0
    pick = torch.randint(len(ring), (B,), generator=generator)
    low, high = (math.log(f) for f in sim.focal)
    focal = torch.exp(low + (high - low) * torch.rand(B, generator=generator, dtype=torch.float64))
    ring = ring[pick] * torch.stack([focal, focal, torch.ones_like(focal)], -1)  # K = diag(f, f, 1)
    uniform = (torch.rand(B, 2, generator=generator, dtype=torch.float64) * 2 - 1) * sim.box
    use_ring = torch.rand(B, generator=generator) < sim.p_ring
    epipole = torch.where(use_ring[:, None], ring, torch.cat([uniform, torch.ones(B, 1, dtype=torch.float64)],
                                                                  -1))
    return multiview.lines_through(x0.double(), epipole[:, None, None]).to(x0.dtype)


def stage1_losses(model, diffusion: GaussianDiffusion, x0: torch.Tensor, mask: torch.Tensor,
                  generator: torch.Generator, sim: LineSimulation | None = None,
                  line_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """MVLift stage 1: t ~ U{0..steps-1}, x_t from x0 [B, T, J, 2], x0_hat = model(x_t, lines, t, mask);
    L = |x0_hat - x0|_1 + line_weight * mean |a x0_hat + b y0_hat + c| over real frames (section "Line-conditioned
    2D motion diffusion", L_line). -> {"l1", "line", "loss"}."""
    B = x0.shape[0]
    lines = simulate_lines(x0, generator, sim)
    t = torch.randint(diffusion.steps, (B,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    x0_hat = model(diffusion.q_sample(x0, t, noise), lines.to(x0.device), t, mask)
    l1 = masked_mean((x0_hat - x0).abs(), mask)
    line = masked_mean(multiview.point_line_distance(x0_hat, lines.to(x0.device)), mask)
    return {"l1": l1, "line": line, "loss": l1 + line_weight * line}


def sds_loss(x: torch.Tensor, x0_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score distillation with an x0-predicting model (MVLift stage 2, as in MAS): the gradient on x [B, T, J, 2]
    is m (x - x0_hat) / N, x0_hat the frozen model's prediction from a noised copy of x, taken as a constant:
    L = 0.5 sum m ||x - sg(x0_hat)||^2 / N, N the number of real frames."""
    m = mask.to(x.dtype)[..., None, None]
    return 0.5 * ((x - x0_hat.detach()) ** 2 * m).sum() / m.sum().clamp_min(1)


def epipolar_consistency(views: torch.Tensor, F: torch.Tensor, pairs, mask: torch.Tensor) -> torch.Tensor:
    """Mean Sampson error of views [V, B, T, J, 2] over the given (i, j) view pairs and the real frames (mask
    [B, T], bool or 0/1); F [V, V, B, 1, 1, 3, 3] (`pipelines.mvlift.ring_fundamentals`) or [V, V, 3, 3], F[i, j]
    mapping view i's points to lines in view j. MVLift stage 2's multi-view consistency term (its weight,
    1e3 / (K - 2), is the caller's), computed by the fused op `fastmotion.ops.sampson_consistency`.

    Deviation: the paper sums point-line distances both ways. Near an epipole that distance turns with the point
    (its gradient grows as 1 / distance), and on the ring the opposite camera's epipole lies on the body: from zero,
    with a denoiser that returns the true views, the optimisation stalled 0.78 units from them (0.004 with the
    Sampson error; experiments/mvlift/consistency_term.py)."""
    if not pairs:
        return views.new_zeros(())
    dtype = views.dtype if views.dtype == torch.float64 else torch.float32  # the op computes bf16 views in float32
    per_pair = torch.stack([F[i, j] for i, j in pairs]).to(dtype).reshape(len(pairs), -1, 3, 3)
    per_pair = per_pair[:, 0] if per_pair.shape[1] == 1 else per_pair  # one F per pair, shared by the batch
    return ops.sampson_consistency(views, per_pair, list(pairs), mask if mask.dtype == torch.bool else mask > 0)


def consistency_pairs(num_views: int) -> list[tuple[int, int]]:
    """MVLift's pairs for the consistency term: neighbours on the ring (k, k + 1 mod V) and each optimised view
    with the reference view 0."""
    adjacent = {tuple(sorted((k, (k + 1) % num_views))) for k in range(num_views)}
    return sorted(adjacent | {(0, k) for k in range(1, num_views)})


__all__ = [
    "LineSimulation",
    "consistency_pairs",
    "epipolar_consistency",
    "sds_loss",
    "simulate_lines",
    "stage1_losses",
]
