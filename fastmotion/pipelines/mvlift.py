"""MVLift's lifting (Li et al., CVPR 2025): stage 2, the multi-view optimisation of the 2D of five unobserved views
under SDS from the frozen stage-1 model and epipolar consistency, then the 3D recovery (DLT triangulation and
refinement of the reprojection error), which gives global 3D with its root trajectory.

Everything runs batched over clips and views. Clips are lifted in windows of the stage-1 model's training length,
each in MVLift's clip normalisation; consecutive windows overlap and are chained by a similarity fit on their
shared frames (our addition: the paper lifts fixed-length windows).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.losses.mvlift import consistency_pairs, epipolar_consistency, sds_loss
from fastmotion.metrics.lifting import umeyama
from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig, normalise_clips
from fastmotion.motion import multiview
from fastmotion.motion.skeleton import SMPL22

from .lifting import Lifter

ROOT = SMPL22.index("pelvis")


@dataclass
class Stage2Config:
    """Stage 2 and the 3D recovery; the paper's values are the 'full' preset."""
    views: int = 6  # on a horizontal ring, 360 / views degrees apart; view 0 is the observed one
    distance: float = 3.0  # of the ring cameras from the first frame's hip centre (normalised units)
    iterations: int = 5000
    lr: float = 1e-3
    epipolar_weight: float = 1e3  # divided by (views - 2), as in the paper's release
    line_source: str = "random"  # each view's line condition from a random other view per iteration, or "reference"
    refine_iterations: int = 500
    refine_lr: float = 0.01
    overlap: int = 8  # frames shared by consecutive windows of a long clip
    batch_clips: int = 16  # windows optimised together

    @classmethod
    def preset(cls, name: str) -> Stage2Config:
        if name == "full":
            return cls()
        if name == "small":  # CPU: fewer, larger steps
            return cls(iterations=400, lr=1e-2, refine_iterations=200)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")

    def __post_init__(self):
        if self.views < 3:
            raise ValueError(f"views must be at least 3, got {self.views}")
        if self.overlap < 1:
            raise ValueError(f"overlap must be at least 1 frame (windows are chained on shared frames), got "
                             f"{self.overlap}")
        if self.line_source not in ("random", "reference"):
            raise ValueError(f"line_source must be 'random' or 'reference', got {self.line_source!r}")


def load_stage1(path, device) -> tuple[LineDenoiser, int]:
    """The frozen stage-1 model of `fastmotion train mvlift` and its training crop length. Raises CheckpointError."""
    state = load_checkpoint(path, "LineDenoiser")
    cfg = {k: v for k, v in state["model_config"].items() if k not in ("kind", "length")}
    model = LineDenoiser(LineDenoiserConfig(**cfg))
    model.load_state_dict(state["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval(), int(state["model_config"]["length"])


def optimise_views(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                   generator: torch.Generator, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Stage 2: reference [B, T, J, 2] (view 0, normalised), mask [B, T] -> views [V, B, T, J, 2], views 1..V-1
    optimised from zero by Adam under L = L_SDS + epipolar_weight / (V - 2) * L_epi. Each iteration draws
    t ~ U{1..steps-1} per view and clip and conditions each view on the epipolar lines that another view's current
    2D induces (detached). `progress(n)` after every n iterations done."""
    V, (B, T, J, _) = config.views, reference.shape
    device, dtype = reference.device, reference.dtype
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    P = multiview.projection_matrices(multiview.ring_cameras(V, config.distance, dtype=torch.float64))
    F = multiview.fundamental_matrices(P).to(device, dtype)
    pairs = consistency_pairs(V)
    free = torch.zeros(V - 1, B, T, J, 2, device=device, dtype=dtype, requires_grad=True)
    opt = torch.optim.Adam([free], lr=config.lr)
    masks = mask.repeat(V - 1, 1)
    ticks = max(1, config.iterations // 100)
    for it in range(config.iterations):
        views = torch.cat([reference[None], free])
        with torch.no_grad():
            if config.line_source == "reference":
                source = torch.zeros(V - 1, dtype=torch.long)
            else:  # a random other view for each optimised view k (never k itself)
                source = (torch.arange(1, V) + torch.randint(1, V, (V - 1,), generator=generator)) % V
            lines = torch.stack([multiview.epipolar_lines(views[j], F[j, k]) for k, j in
                                 zip(range(1, V), source.tolist())])
            x = free.reshape((V - 1) * B, T, J, 2)
            t = torch.randint(1, diffusion.steps, ((V - 1) * B,), generator=generator).to(device)
            noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(device)
            x0_hat = model(diffusion.q_sample(x, t, noise), lines.reshape(*x.shape[:-1], 3), t, masks)
        loss = sds_loss(free.reshape_as(x0_hat), x0_hat, masks) \
            + config.epipolar_weight / (V - 2) * epipolar_consistency(views, F, pairs, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (it + 1) % ticks == 0:
            progress(ticks)
    return torch.cat([reference[None], free.detach()])


def recover_3d(views: torch.Tensor, config: Stage2Config) -> torch.Tensor:
    """The 3D recovery: views [V, B, T, J, 2] -> joints [B, T, J, 3] in the reference (view 0) camera's frame:
    DLT triangulation over the ring cameras, then `refine_iterations` of Adam on the reprojection error."""
    cams = multiview.ring_cameras(config.views, config.distance, dtype=torch.float64)
    P = multiview.projection_matrices(cams).to(views.device)
    v = views.double()
    world = multiview.refine_points(multiview.triangulate_dlt(v, P), v, P, iterations=config.refine_iterations,
                                    lr=config.refine_lr)
    R0, t0 = cams.R[0].to(views.device), cams.t[0].to(views.device)
    return (world @ R0.T + t0).to(views.dtype)


def windows(frames: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `length` frames covering `frames`, consecutive ones sharing `overlap`
    frames; the last one ends at `frames` (starting earlier when it would be short)."""
    if frames <= length:
        return [(0, frames)]
    stride = max(1, length - overlap)
    starts = list(range(0, frames - length + 1, stride))
    if starts[-1] + length < frames:
        starts.append(frames - length)
    return [(s, s + length) for s in starts]


def chain_windows(pieces: list[torch.Tensor], spans: list[tuple[int, int]], frames: int) -> torch.Tensor:
    """Window lifts [L_i, J, 3] (each in its own scale and frame), in the order of `windows` -> one clip
    [frames, J, 3] in the first window's frame: each next window is mapped by the similarity (Umeyama) that best
    fits its frames shared with the previous window onto them."""
    out = torch.zeros(frames, pieces[0].shape[1], 3, dtype=pieces[0].dtype)
    out[:spans[0][1]] = pieces[0]
    for piece, (start, end), (_, previous_end) in zip(pieces[1:], spans[1:], spans[:-1]):
        shared = previous_end - start
        scale, R, shift = umeyama(piece[:shared].reshape(-1, 3), out[start:previous_end].reshape(-1, 3))
        out[previous_end:end] = scale * piece[shared:] @ R.T + shift
    return out


class MVLiftLifter(Lifter):
    """MVLift's optimisation-based lifting (stage 2 + 3D recovery) with a frozen stage-1 model; clips are cut into
    windows of its training length, optimised `config.batch_clips` windows at a time."""

    name = "MVLift (stage 2)"

    def __init__(self, model: LineDenoiser, length: int, config: Stage2Config, seed: int = 0):
        self.model, self.length, self.config, self.seed = model, length, config, seed
        self.iteration_progress: Callable[[int], None] | None = None

    @classmethod
    def from_checkpoint(cls, path, device="cpu", preset: str = "small", seed: int = 0, **overrides) -> MVLiftLifter:
        model, length = load_stage1(path, device)
        return cls(model, length, Stage2Config(**{**asdict(Stage2Config.preset(preset)), **overrides}), seed)

    def lift(self, clips, progress=None):
        device = next(self.model.parameters()).device
        jobs = []  # (clip index, span)
        for i, clip in enumerate(clips):
            if len(clip.keypoints) < 2:
                continue  # nothing to normalise a motion by; left out (the caller reports missing clips)
            jobs += [(i, span) for span in windows(len(clip.keypoints), self.length, self.config.overlap)]
        lifted: dict[int, list] = {}
        g = torch.Generator().manual_seed(self.seed)
        for b in range(0, len(jobs), self.config.batch_clips):
            batch = jobs[b:b + self.config.batch_clips]
            longest = max(e - s for _, (s, e) in batch)
            x = torch.zeros(len(batch), longest, clips[0].keypoints.shape[1], 2)
            mask = torch.zeros(len(batch), longest, dtype=torch.bool)
            for k, (i, (s, e)) in enumerate(batch):
                x[k, :e - s] = clips[i].keypoints[s:e]
                x[k, e - s:] = clips[i].keypoints[e - 1]
                mask[k, :e - s] = True
            ref, _, _ = normalise_clips(x, ROOT)
            views = optimise_views(self.model, ref.to(device), mask.to(device), self.config, g,
                                   self.iteration_progress)
            joints = recover_3d(views, self.config).cpu()
            for k, (i, (s, e)) in enumerate(batch):
                lifted.setdefault(i, []).append(((s, e), joints[k, :e - s]))
        out = {}
        for i, parts in lifted.items():
            out[clips[i].name] = chain_windows([p for _, p in parts], [span for span, _ in parts],
                                               len(clips[i].keypoints))
            if progress:
                progress(1)
        return out
