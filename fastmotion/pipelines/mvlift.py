"""MVLift's lifting (Li et al., CVPR 2025): stage 2, the multi-view optimisation of the 2D of five unobserved views
under SDS from the frozen stage-1 model and epipolar consistency, then the 3D recovery (DLT triangulation and
refinement of the reprojection error), which gives global 3D with its root trajectory.

Everything runs batched over clips and views. Clips are lifted in windows of the stage-1 model's training length,
each turned so that its first frame's hip centre is on the optical axis, then in MVLift's clip normalisation;
consecutive windows overlap and are chained by the scale that fits their shared frames (our addition: the paper
lifts fixed-length windows). Random draws are made per window (seeded by the clip's name and the window's start),
so a clip lifts the same whichever clips share its batch.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.profiler import record_function

from fastmotion.checkpoint import load_checkpoint
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.losses.mvlift import consistency_pairs, epipolar_consistency, sds_loss
from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig, normalise_clips
from fastmotion.motion import multiview
from fastmotion.motion.skeleton import SKELETONS

from .lifting import Lifter


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
    # each view's line condition: from each other view in turn, one per iteration ("cycle"), or from view 0
    line_source: str = "cycle"
    refine_iterations: int = 500
    refine_lr: float = 0.01
    overlap: int = 8  # frames shared by consecutive windows of a long clip
    batch_clips: int = 16  # windows optimised together
    # "stage2" (the method); the paper's ablations: "stage1" (each view sampled on its own by DDIM from the lines
    # view 0 induces, then the same 3D recovery), "sds3d" (the 3D joints optimised directly: SDS on their projections
    # into views 1..V-1 without line conditions, the reprojection error in view 0)
    mode: str = "stage2"
    sample_steps: int = 50  # DDIM steps of mode "stage1"
    # where stage 2's views 1..V-1 start: "zero" (the paper) or "stage1" (the stage-1 samples, DDIM from the lines
    # view 0 induces: our option; SDS then refines views that already agree with view 0)
    init: str = "zero"

    @classmethod
    def preset(cls, name: str) -> Stage2Config:
        if name == "full":
            return cls()
        if name == "small":  # CPU: fewer, larger steps; lines from the observed view (docs/methods/mvlift.md:
            # 74.7 vs 81.2 mm val PA-MPJPE with "cycle", 84.1 vs 89.1 with a weaker stage 1)
            return cls(iterations=400, lr=1e-2, refine_iterations=200, line_source="reference")
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")

    def __post_init__(self):
        if self.views < 3:
            raise ValueError(f"views must be at least 3, got {self.views}")
        if self.overlap < 1:
            raise ValueError(f"overlap must be at least 1 frame (windows are chained on shared frames), got "
                             f"{self.overlap}")
        if self.mode not in ("stage2", "stage1", "sds3d"):
            raise ValueError(f"mode must be 'stage2', 'stage1' or 'sds3d', got {self.mode!r}")
        if self.init not in ("zero", "stage1"):
            raise ValueError(f"init must be 'zero' or 'stage1', got {self.init!r}")
        if self.init != "zero" and self.mode != "stage2":
            raise ValueError(f"init={self.init!r} is a setting of mode 'stage2', not of mode {self.mode!r}")
        if self.line_source not in ("cycle", "reference"):
            raise ValueError(f"line_source must be 'cycle' or 'reference', got {self.line_source!r}")
        for name in ("iterations", "batch_clips", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be >= 0, got {self.refine_iterations}")
        for name in ("lr", "refine_lr", "distance", "epipolar_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.focal is not None and not self.focal > 0:
            raise ValueError(f"focal must be positive or None (per clip), got {self.focal}")


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


class WindowNoise:
    """The random draws of a batch of windows, one generator per window (seeded by `window_seed`), so that a
    window's lift does not depend on the windows that share its batch."""

    def __init__(self, seeds: list[int], frames: int | None = None):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.frames = frames  # motion draws are made this long and cut to the batch's (a window's draws do not
        # depend on the longest window beside it)

    @classmethod
    def of(cls, noise: WindowNoise | torch.Generator, batch: int) -> WindowNoise:
        """`noise` itself, or per-window generators seeded from one generator."""
        if isinstance(noise, WindowNoise):
            if len(noise.generators) != batch:
                raise ValueError(f"noise has {len(noise.generators)} generators for {batch} windows")
            return noise
        return cls(torch.randint(2 ** 62, (batch,), generator=noise).tolist())

    def randn(self, shape, dtype, device) -> torch.Tensor:
        """[B, *shape] standard normal draws."""
        return torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in self.generators]).to(device)

    def randn_motion(self, views: int, frames: int, joints: int, dtype, device) -> torch.Tensor:
        """[B, views, frames, joints, 2] standard normal draws, made `self.frames` long (at least `frames`) and cut."""
        draws = self.randn((views, max(frames, self.frames or frames), joints, 2), dtype, device)
        return draws[:, :, :frames]

    def randint(self, low: int, high: int, shape, device) -> torch.Tensor:
        """[B, *shape] integers in [low, high)."""
        return torch.stack([torch.randint(low, high, shape, generator=g) for g in self.generators]).to(device)


def window_seed(seed: int, name: str, start: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{name}:{start}".encode())) % 2 ** 62


def _view_major(x: torch.Tensor) -> torch.Tensor:
    """[B, V-1, ...] per-window draws -> [(V-1) B, ...], the order of views.reshape((V-1) * B, ...)."""
    return x.transpose(0, 1).reshape(-1, *x.shape[2:])


def optimise_views(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                   noise: WindowNoise | torch.Generator, focal: torch.Tensor | None = None,
                   progress: Callable[[int], None] | None = None, start: torch.Tensor | None = None) -> torch.Tensor:
    """Stage 2: reference [B, T, J, 2] (view 0, normalised), mask [B, T] -> views [V, B, T, J, 2], views 1..V-1
    optimised from zero (or from `start` [V - 1, B, T, J, 2]) by Adam under L = L_SDS + epipolar_weight / (V - 2) *
    L_epi. Each iteration draws t ~ U{1..steps-1} per view and window and conditions each view on the epipolar lines
    that another view's current 2D induces (detached; `config.line_source`). focal [B]: the ring cameras' focal length
    per window in normalised-2D units (default 1, the paper's; `MVLiftLifter` passes the real camera's). `progress(1)`
    per iteration."""
    V, (B, T, J, _) = config.views, reference.shape
    device, dtype = reference.device, reference.dtype
    noise = WindowNoise.of(noise, B)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    focal = torch.ones(B, device=device) if focal is None else focal.to(device)
    F = ring_fundamentals(config, focal).to(dtype)
    pairs = consistency_pairs(V)
    if start is not None and tuple(start.shape) != (V - 1, B, T, J, 2):
        raise ValueError(f"start must be [V - 1, B, T, J, 2] = {[V - 1, B, T, J, 2]}, got {list(start.shape)}")
    free = (torch.zeros(V - 1, B, T, J, 2, device=device, dtype=dtype) if start is None else
            start.detach().to(device, dtype).clone()).requires_grad_(True)
    opt = torch.optim.Adam([free], lr=config.lr)
    masks = mask.repeat(V - 1, 1)
    for it in range(config.iterations):
        views = torch.cat([reference[None], free])
        with torch.no_grad():
            with record_function("mvlift.lines"):
                shift = 1 + it % (V - 1)  # view k reads view (k + shift) mod V: each other view in turn
                source = [0 if config.line_source == "reference" else (k + shift) % V for k in range(1, V)]
                lines = multiview.epipolar_lines(views[source], F[source, list(range(1, V))])  # one batched call
            with record_function("mvlift.denoiser"):
                x = free.reshape((V - 1) * B, T, J, 2)
                t = _view_major(noise.randint(1, diffusion.steps, (V - 1,), device))
                eps = _view_major(noise.randn_motion(V - 1, T, J, dtype, device))
                x0_hat = model(diffusion.q_sample(x, t, eps), lines.reshape(*x.shape[:-1], 3), t, masks)
        with record_function("mvlift.consistency"):
            consistency = epipolar_consistency(views, F, pairs, mask)
        with record_function("mvlift.backward"):
            loss = sds_loss(free.reshape_as(x0_hat), x0_hat, masks) + config.epipolar_weight / (V - 2) * consistency
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("mvlift.adam"):
            opt.step()
        if progress:
            progress(1)
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
                 noise: WindowNoise | torch.Generator, focal: torch.Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """The "stage 1 alone" ablation: views 1..V-1 [V, B, T, J, 2] each sampled on its own (DDIM, `sample_steps`)
    from the frozen stage-1 model, conditioned on the epipolar lines of the reference view 0; no joint
    optimisation. `progress(1)` per sampling step."""
    V, (B, T, J, _) = config.views, reference.shape
    noise = WindowNoise.of(noise, B)
    focal = torch.ones(B, device=reference.device) if focal is None else focal.to(reference.device)
    F = ring_fundamentals(config, focal).to(reference.dtype)
    lines = torch.cat([multiview.epipolar_lines(reference, F[0, k]) for k in range(1, V)])  # [(V-1) B, T, J, 3]
    masks = mask.repeat(V - 1, 1)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    start = _view_major(noise.randn_motion(V - 1, T, J, reference.dtype, reference.device))

    def tick(x0, step):
        if progress:
            progress(1)
        return x0

    x = diffusion.sample(lambda x_t, t: model(x_t, lines, t, masks), ((V - 1) * B, T, J, 2), None, "ddim",
                         config.sample_steps, reference.device, tick, reference.dtype, start)
    return torch.cat([reference[None], x.reshape(V - 1, B, T, J, 2)])


def sds_3d(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
           noise: WindowNoise | torch.Generator, focal: torch.Tensor | None = None,
           progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The "SDS for 3D without epipolar lines" ablation: joints [B, T, J, 3] (in view 0's camera frame as
    `recover_3d` returns them) and their views [V, B, T, J, 2], the joints optimised directly from view 0's rays at
    the ring distance, under SDS on their projections into views 1..V-1 (zero line conditions, which stage 1 meets
    only where a joint sits on its epipole) plus epipolar_weight x the squared reprojection error in view 0."""
    V, (B, T, J, _) = config.views, reference.shape
    device, dtype = reference.device, reference.dtype
    noise = WindowNoise.of(noise, B)
    focal = torch.ones(B, device=device) if focal is None else focal.to(device)
    cams = multiview.ring_cameras(V, config.distance, dtype=torch.float64)
    P = multiview.projection_matrices(cams).to(device, dtype)
    R0, t0 = cams.R[0].to(device, dtype), cams.t[0].to(device, dtype)
    f = focal.to(dtype).view(1, B, 1, 1, 1)
    rays = torch.cat([reference / f[0], torch.ones_like(reference[..., :1])], -1) * config.distance  # camera 0
    world = ((rays - t0) @ R0).detach().requires_grad_(True)
    opt = torch.optim.Adam([world], lr=config.lr)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)
    masks, m = mask.repeat(V - 1, 1), mask.to(dtype)[..., None, None]
    no_lines = torch.zeros((V - 1) * B, T, J, 3, device=device, dtype=dtype)
    for _ in range(config.iterations):
        views = multiview.project(world, P) * f  # [V, B, T, J, 2]
        x = views[1:].reshape((V - 1) * B, T, J, 2)
        with torch.no_grad():
            t = _view_major(noise.randint(1, diffusion.steps, (V - 1,), device))
            eps = _view_major(noise.randn_motion(V - 1, T, J, dtype, device))
            x0_hat = model(diffusion.q_sample(x, t, eps), no_lines, t, masks)
        reprojection = (((views[0] - reference) ** 2).sum(-1, keepdim=True) * m).sum() / (m.sum() * J)
        loss = sds_loss(x, x0_hat, masks) + config.epipolar_weight / (V - 2) * reprojection
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress:
            progress(1)
    views = (multiview.project(world, P) * f).detach()
    return world.detach() @ R0.T + t0, views


def lift_windows(model: LineDenoiser, reference: torch.Tensor, mask: torch.Tensor, config: Stage2Config,
                 noise: WindowNoise | torch.Generator, focal: torch.Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised windows reference [B, T, J, 2] -> (joints [B, T, J, 3] in view 0's camera frame, the V views
    [V, B, T, J, 2] behind them) by `config.mode`: stage 2 + 3D recovery, or one of the paper's ablations."""
    if config.mode == "sds3d":
        return sds_3d(model, reference, mask, config, noise, focal, progress)
    if config.mode == "stage2":
        start = sample_views(model, reference, mask, config, noise, focal)[1:] if config.init == "stage1" else None
        views = optimise_views(model, reference, mask, config, noise, focal, progress, start)
    else:
        views = sample_views(model, reference, mask, config, noise, focal, progress)
    return recover_3d(views, config, focal), views


def windows(frames: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `length` frames covering `frames`, consecutive ones sharing at least
    `overlap` frames (1 <= overlap < length); the last one ends at `frames`. Raises ValueError otherwise."""
    if not 1 <= overlap < length:
        raise ValueError(f"overlap must be in [1, length={length}), got {overlap}")
    if frames <= length:
        return [(0, frames)]
    starts = list(range(0, frames - length + 1, length - overlap))
    if starts[-1] + length < frames:
        starts.append(frames - length)
    return [(s, s + length) for s in starts]


def chain_windows(pieces: list[torch.Tensor], spans: list[tuple[int, int]], frames: int) -> torch.Tensor:
    """Window lifts [L_i, J, 3], each in the camera frame up to its own scale (about the camera centre), in the order
    of `windows` -> one clip [frames, J, 3] at the first window's scale: each next window is scaled by the factor
    that best fits its frames shared with the previous window onto them (least squares). A scale about the camera
    centre keeps every window on its camera rays."""
    out = torch.zeros(frames, pieces[0].shape[1], 3, dtype=pieces[0].dtype)
    out[:spans[0][1]] = pieces[0]
    for piece, (start, end), (_, previous_end) in zip(pieces[1:], spans[1:], spans[:-1]):
        shared = previous_end - start
        p, q = piece[:shared], out[start:previous_end]
        out[previous_end:end] = piece[shared:] * (p * q).sum() / (p * p).sum().clamp_min(1e-12)
    return out


def toward(centre: torch.Tensor) -> torch.Tensor:
    """The smallest rotations [B, 3, 3] taking the optical axis (0, 0, 1) onto the camera rays through centre
    [B, 2] (normalised image coordinates)."""
    d = torch.nn.functional.normalize(torch.cat([centre, torch.ones_like(centre[:, :1])], -1).double(), dim=-1)
    v = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=d.dtype).expand_as(d), d, dim=-1)
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    skew = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).unflatten(-1, (3, 3))
    return (torch.eye(3, dtype=d.dtype) + skew + skew @ skew / (1 + d[:, 2])[:, None, None]).to(centre.dtype)


def on_axis(keypoints: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """keypoints [B, T, J, 2] (normalised image coordinates) as a camera turned by `toward(centre)` sees them: the
    point `centre` [B, 2] lands on the optical axis. MVLift's ring looks at the first frame's hip; turning the
    camera there first (instead of shifting the image) keeps the lift exact for an off-centre subject."""
    rays = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], -1) @ toward(centre)[:, None]  # R^T x
    return rays[..., :2] / rays[..., 2:]


MIN_FRAMES = 4  # a window shorter than this is no motion to optimise


class MVLiftLifter(Lifter):
    """MVLift's optimisation-based lifting (stage 2 + 3D recovery, or an ablation by `config.mode`) with a frozen
    stage-1 model; clips are cut into windows of its training length, lifted `config.batch_clips` windows at a time.
    Clips it cannot lift are listed with the reason in `skipped`; `views` keeps each clip's first window's views."""

    NAMES = {"stage2": "MVLift (stage 2)", "stage1": "MVLift (stage 1 alone)",
             "sds3d": "MVLift (SDS for 3D, no lines)", "feedforward": "MVLift (feed-forward)"}

    def __init__(self, model: LineDenoiser, length: int, config: Stage2Config, seed: int = 0):
        self.model, self.length, self.config, self.seed = model, length, config, seed
        self.skeleton = model.config.skeleton  # the keypoint layout it lifts (Lifter.skeleton)
        self.tree = SKELETONS[self.skeleton]
        self.name = self.NAMES[config.mode]
        self.overlap = min(config.overlap, max(1, length // 4))
        self.iteration_progress: Callable[[int], None] | None = None
        self.views: dict[str, torch.Tensor] = {}  # name -> the first window's V views [V, T, J, 2] (normalised 2D)
        self.skipped: list[str] = []

    @classmethod
    def from_checkpoint(cls, path, device="cpu", preset: str = "small", seed: int = 0, **overrides) -> MVLiftLifter:
        """The lifter of an MVLift checkpoint: stage 2 for a stage-1 model (`train mvlift`), the feed-forward
        `MultiViewLifter` for a stage-4 model (`train mvlift-mv`). Raises CheckpointError, ValueError."""
        if load_checkpoint(path)["kind"] == "MultiViewDenoiser":
            from .mvlift_feedforward import MultiViewLifter

            return MultiViewLifter.from_checkpoint(path, device, preset, seed, **overrides)
        model, length = load_stage1(path, device)
        return cls(model, length, Stage2Config(**{**asdict(Stage2Config.preset(preset)), **overrides}), seed)

    def settings(self) -> dict:
        """What a lift depends on besides the checkpoint (for result files)."""
        return {**asdict(self.config), "seed": self.seed, "window": self.length, "overlap": self.overlap}

    def _check(self, clip) -> str | None:
        k = clip.keypoints
        if k.shape[1] != self.model.config.joints:
            return (f"{k.shape[1]} joints, the checkpoint's model has {self.model.config.joints} "
                    f"({self.model.config.skeleton})")
        if len(k) < MIN_FRAMES:
            return f"{len(k)} frames; MVLift needs at least {MIN_FRAMES}"
        bad = (~torch.isfinite(k).all(-1).all(-1)).nonzero()[:, 0].tolist()
        if bad:
            return f"NaN or inf keypoints in frame(s) {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''}"
        if float((k[0].amax(0) - k[0].amin(0)).max()) <= 0:
            return "its first frame has all joints at one point"
        return None

    def plan(self, clips, record: bool = True) -> list[tuple[int, tuple[int, int]]]:
        """The windows to lift, (clip index, (start, end)), clip by clip; with `record`, the clips that cannot be
        lifted are listed in `skipped`."""
        jobs = []
        for i, clip in enumerate(clips):
            reason = self._check(clip)
            if reason:
                if record:
                    self.skipped.append(f"{clip.name}: skipped ({reason})")
                continue
            jobs += [(i, span) for span in windows(len(clip.keypoints), self.length, self.overlap)]
        return jobs

    def iterations(self, clips) -> int:
        """How many times `lift` will call `iteration_progress(1)` for these clips."""
        batches = -(-len(self.plan(clips, record=False)) // self.config.batch_clips)
        return batches * (self.config.sample_steps if self.config.mode == "stage1" else self.config.iterations)

    def prepare(self, clips, batch: list[tuple[int, tuple[int, int]]]):
        """The windows `batch` of `plan` as the ring sees them: (reference [B, L, J, 2] in MVLift's normalisation
        of the camera turned onto the first frame's hip, mask [B, L], the ring's focal length [B], that hip [B, 2]
        in the real image, the windows' `WindowNoise`)."""
        longest = max(e - s for _, (s, e) in batch)
        x = torch.zeros(len(batch), longest, self.model.config.joints, 2)
        mask = torch.zeros(len(batch), longest, dtype=torch.bool)
        for k, (i, (s, e)) in enumerate(batch):
            x[k, :e - s] = clips[i].keypoints[s:e]
            x[k, e - s:] = clips[i].keypoints[e - 1]
            mask[k, :e - s] = True
        hip = self.tree.root_position(x[:, 0]).clone()
        turned = on_axis(x, hip)
        ref, _, scale = normalise_clips(turned, self.tree.root_position(turned))
        focal = 1 / scale if self.config.focal is None else torch.full_like(scale, self.config.focal)
        noise = WindowNoise([window_seed(self.seed, clips[i].name, s) for i, (s, _) in batch], self.length)
        return ref, mask, focal, hip, noise

    def lift_batch(self, reference, mask, noise, focal) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of `prepare`d windows -> (joints [B, L, J, 3] in the turned camera's frame, views
        [V, B, L, J, 2])."""
        return lift_windows(self.model, reference, mask, self.config, noise, focal, self.iteration_progress)

    def lift(self, clips, progress=None):
        device = next(self.model.parameters()).device
        jobs = self.plan(clips)
        lifted: dict[int, list] = {}
        remaining = {}
        for i, _ in jobs:
            remaining[i] = remaining.get(i, 0) + 1
        out = {}
        for b in range(0, len(jobs), self.config.batch_clips):
            batch = jobs[b:b + self.config.batch_clips]
            ref, mask, focal, hip, noise = self.prepare(clips, batch)
            joints, views = self.lift_batch(ref.to(device), mask.to(device), noise, focal)
            joints = joints.cpu() @ toward(hip).transpose(-1, -2)[:, None]  # back to the real camera's frame
            for k, (i, (s, e)) in enumerate(batch):
                lifted.setdefault(i, []).append(((s, e), joints[k, :e - s]))
                if s == 0:
                    self.views[clips[i].name] = views[:, k, :e - s].cpu()
                remaining[i] -= 1
                if not remaining[i]:  # the clip's last window: chain and report it
                    parts = lifted.pop(i)
                    out[clips[i].name] = chain_windows([p for _, p in parts], [span for span, _ in parts],
                                                       len(clips[i].keypoints))
                    if progress:
                        progress(1)
        if progress and len(clips) > len(out):
            progress(len(clips) - len(out))  # the skipped clips
        return out
