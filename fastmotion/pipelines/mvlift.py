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
from torch.profiler import record_function

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
    # the ring cameras' focal length in normalised-2D units; None: per clip, 1 / its normalisation scale, which keeps
    # the real camera's perspective (our choice; the paper's K = I exaggerates it when the subject is far)
    focal: float | None = None
    iterations: int = 5000
    lr: float = 1e-3
    epipolar_weight: float = 1e3  # divided by (views - 2), as in the paper's release
    line_source: str = "random"  # each view's line condition from a random other view per iteration, or "reference"
    refine_iterations: int = 500
    refine_lr: float = 0.01
    overlap: int = 8  # frames shared by consecutive windows of a long clip
    batch_clips: int = 16  # windows optimised together
    # "stage2" (the method); the paper's ablations: "stage1" (each view sampled on its own by DDIM from the lines
    # view 0 induces, then the same 3D recovery), "sds3d" (the 3D joints optimised directly: SDS on their projections
    # into views 1..V-1 without line conditions, the reprojection error in view 0)
    mode: str = "stage2"
    sample_steps: int = 50  # DDIM steps of mode "stage1"

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
        if self.mode not in ("stage2", "stage1", "sds3d"):
            raise ValueError(f"mode must be 'stage2', 'stage1' or 'sds3d', got {self.mode!r}")
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


def ring_fundamentals(config: Stage2Config, focal: torch.Tensor) -> torch.Tensor:
    """F [V, V, B, 1, 1, 3, 3] of the ring cameras with intrinsics diag(focal_b, focal_b, 1) per clip (in the units
    of MVLift's normalised 2D), broadcasting over [B, T, J] points."""
    P = multiview.projection_matrices(multiview.ring_cameras(config.views, config.distance, dtype=torch.float64))
    F = multiview.fundamental_matrices(P).to(focal.device)
    inverse_k = torch.diag_embed(torch.stack([1 / focal, 1 / focal, torch.ones_like(focal)], -1).double())  # [B,3,3]
    return (inverse_k @ F[:, :, None] @ inverse_k)[:, :, :, None, None]


def optimise_views(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                   generator: torch.Generator, focal: torch.Tensor | None = None,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Stage 2: reference [B, T, J, 2] (view 0, normalised), mask [B, T] -> views [V, B, T, J, 2], views 1..V-1
    optimised from zero by Adam under L = L_SDS + epipolar_weight / (V - 2) * L_epi. Each iteration draws
    t ~ U{1..steps-1} per view and clip and conditions each view on the epipolar lines that another view's current
    2D induces (detached). focal [B]: the ring cameras' focal length per clip in normalised-2D units (default 1,
    the paper's; `MVLiftLifter` passes 1 / the clip's normalisation scale, the real camera's). `progress(n)` after
    every n iterations done."""
    V, (B, T, J, _) = config.views, reference.shape
    device, dtype = reference.device, reference.dtype
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    focal = torch.ones(B, device=device) if focal is None else focal.to(device)
    F = ring_fundamentals(config, focal).to(dtype)
    pairs = consistency_pairs(V)
    free = torch.zeros(V - 1, B, T, J, 2, device=device, dtype=dtype, requires_grad=True)
    opt = torch.optim.Adam([free], lr=config.lr)
    masks = mask.repeat(V - 1, 1)
    ticks = max(1, config.iterations // 100)
    for it in range(config.iterations):
        views = torch.cat([reference[None], free])
        with torch.no_grad():
            with record_function("mvlift.lines"):
                if config.line_source == "reference":
                    source = torch.zeros(V - 1, dtype=torch.long)
                else:  # a random other view for each optimised view k (never k itself)
                    source = (torch.arange(1, V) + torch.randint(1, V, (V - 1,), generator=generator)) % V
                lines = torch.stack([multiview.epipolar_lines(views[j], F[j, k]) for k, j in
                                     zip(range(1, V), source.tolist())])
            with record_function("mvlift.denoiser"):
                x = free.reshape((V - 1) * B, T, J, 2)
                t = torch.randint(1, diffusion.steps, ((V - 1) * B,), generator=generator).to(device)
                noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(device)
                x0_hat = model(diffusion.q_sample(x, t, noise), lines.reshape(*x.shape[:-1], 3), t, masks)
        with record_function("mvlift.consistency"):
            consistency = epipolar_consistency(views, F, pairs, mask)
        with record_function("mvlift.backward"):
            loss = sds_loss(free.reshape_as(x0_hat), x0_hat, masks) + config.epipolar_weight / (V - 2) * consistency
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("mvlift.adam"):
            opt.step()
        if progress and (it + 1) % ticks == 0:
            progress(ticks)
    return torch.cat([reference[None], free.detach()])


def recover_3d(views: torch.Tensor, config: Stage2Config, focal: torch.Tensor | None = None) -> torch.Tensor:
    """The 3D recovery: views [V, B, T, J, 2] (focal [B] as in `optimise_views`) -> joints [B, T, J, 3] in the
    reference (view 0) camera's frame, ring distance units: DLT triangulation over the ring cameras, then
    `refine_iterations` of Adam on the reprojection error."""
    cams = multiview.ring_cameras(config.views, config.distance, dtype=torch.float64)
    P = multiview.projection_matrices(cams).to(views.device)
    v = views.double()
    if focal is not None:  # to the K = I cameras' image units
        v = v / focal.double().to(v.device).view(1, -1, *([1] * (v.dim() - 2)))
    with record_function("mvlift.recovery"):
        world = multiview.refine_points(multiview.triangulate_dlt(v, P), v, P, iterations=config.refine_iterations,
                                        lr=config.refine_lr)
    R0, t0 = cams.R[0].to(views.device), cams.t[0].to(views.device)
    return (world @ R0.T + t0).to(views.dtype)


def sample_views(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                 generator: torch.Generator, focal: torch.Tensor | None = None) -> torch.Tensor:
    """The "stage 1 alone" ablation: views 1..V-1 [V, B, T, J, 2] each sampled on its own (DDIM, `sample_steps`)
    from the frozen stage-1 model, conditioned on the epipolar lines of the reference view 0; no joint
    optimisation."""
    V, (B, T, J, _) = config.views, reference.shape
    focal = torch.ones(B, device=reference.device) if focal is None else focal.to(reference.device)
    F = ring_fundamentals(config, focal).to(reference.dtype)
    lines = torch.cat([multiview.epipolar_lines(reference, F[0, k]) for k in range(1, V)])  # [(V-1) B, T, J, 3]
    masks = mask.repeat(V - 1, 1)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    x = diffusion.sample(lambda x_t, t: model(x_t, lines, t, masks), ((V - 1) * B, T, J, 2), generator, "ddim",
                         config.sample_steps, reference.device, dtype=reference.dtype)
    return torch.cat([reference[None], x.reshape(V - 1, B, T, J, 2)])


def sds_3d(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
           generator: torch.Generator, focal: torch.Tensor | None = None) -> torch.Tensor:
    """The "SDS for 3D without epipolar lines" ablation: joints [B, T, J, 3] (in view 0's camera frame as
    `recover_3d` returns them) and their views [V, B, T, J, 2], the joints optimised directly from view 0's rays at the ring distance, under SDS on their
    projections into views 1..V-1 (zero line conditions) plus epipolar_weight x the squared reprojection error in
    view 0."""
    V, (B, T, J, _) = config.views, reference.shape
    device, dtype = reference.device, reference.dtype
    focal = torch.ones(B, device=device) if focal is None else focal.to(device)
    cams = multiview.ring_cameras(V, config.distance, dtype=torch.float64)
    P = multiview.projection_matrices(cams).to(device, dtype)
    f = focal.to(dtype).view(1, B, 1, 1, 1)
    rays = torch.cat([reference / f[0], torch.ones_like(reference[..., :1])], -1) * config.distance  # camera 0
    world = ((rays - cams.t[0].to(device, dtype)) @ cams.R[0].to(device, dtype)).detach().requires_grad_(True)
    opt = torch.optim.Adam([world], lr=config.lr)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    masks, m = mask.repeat(V - 1, 1), mask.to(dtype)[..., None, None]
    no_lines = torch.zeros((V - 1) * B, T, J, 3, device=device, dtype=dtype)
    for _ in range(config.iterations):
        views = multiview.project(world, P) * f  # [V, B, T, J, 2]
        x = views[1:].reshape((V - 1) * B, T, J, 2)
        with torch.no_grad():
            t = torch.randint(1, diffusion.steps, ((V - 1) * B,), generator=generator).to(device)
            noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(device)
            x0_hat = model(diffusion.q_sample(x, t, noise), no_lines, t, masks)
        reprojection = (((views[0] - reference) ** 2).sum(-1, keepdim=True) * m).sum() / (m.sum() * J)
        loss = sds_loss(x, x0_hat, masks) + config.epipolar_weight / (V - 2) * reprojection
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    views = (multiview.project(world, P) * f).detach()
    return world.detach() @ cams.R[0].to(device, dtype).T + cams.t[0].to(device, dtype), views


def lift_windows(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                 generator: torch.Generator, focal: torch.Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Normalised windows reference [B, T, J, 2] -> (joints [B, T, J, 3] in view 0's camera frame, the V views
    [V, B, T, J, 2] behind them) by `config.mode`: stage 2 + 3D recovery, or one of the paper's ablations."""
    if config.mode == "sds3d":
        return sds_3d(model, reference, mask, config, generator, focal)
    views = (optimise_views(model, reference, mask, config, generator, focal, progress) if config.mode == "stage2"
             else sample_views(model, reference, mask, config, generator, focal))
    return recover_3d(views, config, focal), views


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


def toward(centre: torch.Tensor) -> torch.Tensor:
    """The smallest rotations [B, 3, 3] taking the optical axis (0, 0, 1) onto the camera rays through centre
    [B, 2] (normalised image coordinates). The ring's view 0 looks at the first frame's hip centre; turned by this,
    its 3D is in the real camera's frame, its projection matching the input up to second order in the centre's
    offset (MVLift's normalisation drops that offset)."""
    d = torch.nn.functional.normalize(torch.cat([centre, torch.ones_like(centre[:, :1])], -1).double(), dim=-1)
    v = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=d.dtype).expand_as(d), d, dim=-1)
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    skew = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).unflatten(-1, (3, 3))
    return (torch.eye(3, dtype=d.dtype) + skew + skew @ skew / (1 + d[:, 2])[:, None, None]).to(centre.dtype)


class MVLiftLifter(Lifter):
    """MVLift's optimisation-based lifting (stage 2 + 3D recovery) with a frozen stage-1 model; clips are cut into
    windows of its training length, optimised `config.batch_clips` windows at a time."""

    name = "MVLift (stage 2)"

    def __init__(self, model: LineDenoiser, length: int, config: Stage2Config, seed: int = 0):
        self.model, self.length, self.config, self.seed = model, length, config, seed
        self.iteration_progress: Callable[[int], None] | None = None
        self.views: dict[str, torch.Tensor] = {}  # name -> the first window's V views [V, T, J, 2] (normalised 2D)

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
            ref, centre, scale = normalise_clips(x, ROOT)
            focal = 1 / scale if self.config.focal is None else torch.full_like(scale, self.config.focal)
            joints, views = lift_windows(self.model, ref.to(device), mask.to(device), self.config, g, focal,
                                         self.iteration_progress)
            joints = joints.cpu() @ toward(centre).transpose(-1, -2)[:, None]
            for k, (i, (s, e)) in enumerate(batch):
                lifted.setdefault(i, []).append(((s, e), joints[k, :e - s]))
                if s == 0:
                    self.views[clips[i].name] = views[:, k, :e - s].cpu()
        out = {}
        for i, parts in lifted.items():
            out[clips[i].name] = chain_windows([p for _, p in parts], [span for span, _ in parts],
                                               len(clips[i].keypoints))
            if progress:
                progress(1)
        return out
