"""VideoMDM's trained model: loading, sampling from text, guided lifting of 2D clips (appendix G.2), and its
text-to-motion interface for `evaluate_t2m`."""
from __future__ import annotations

from pathlib import Path

import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.data.teacher_bank import TeacherBank, Window
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.models.mdm import MDMConfig, VideoMDMModel
from fastmotion.models.text import load_clip_encoder
from fastmotion.motion.body import rigid_body
from fastmotion.motion.humanml3d import FEATURE_DIM, features_to_joints, joints_to_features

from .lifting import Lifter


def load_mdm(path, device) -> tuple[VideoMDMModel, dict]:
    """The VideoMDM of `fastmotion train mdm` in eval mode, and its run's extra record (clip_weights,
    videomdm config, frame_range). Raises CheckpointError."""
    state = load_checkpoint(path, "VideoMDM")
    cfg = {k: v for k, v in state["model_config"].items() if k in MDMConfig.__dataclass_fields__}
    model = VideoMDMModel(MDMConfig(**cfg), state["model_config"]["text"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["extra"]


@torch.no_grad()
def sample_mdm(model: VideoMDMModel, texts: list[str] | None, frames: list[int], generator: torch.Generator,
               guidance: float = 2.5, sampler: str = "ddpm", steps: int | None = None, clip=None, x0_hook=None,
               diffusion_steps: int = 50) -> torch.Tensor:
    """Features [B, F, 263] (standardised) for captions (None: unconditional) and lengths in feature frames."""
    device = model.mean.device
    B, F = len(frames), max(frames)
    mask = (torch.arange(F)[None] < torch.tensor(frames)[:, None]).to(device)
    text = model.text_features(texts, clip) if texts is not None else None
    diffusion = GaussianDiffusion(diffusion_steps)

    def denoise(x, t):
        if text is None or guidance == 1.0:
            return model.mdm(x, t, text, mask)
        both = model.mdm(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, text]), torch.cat([mask, mask]),
                         torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(device))
        c, u = both.chunk(2)
        return u + guidance * (c - u)

    return diffusion.sample(denoise, (B, F, FEATURE_DIM), generator, sampler, steps, device, x0_hook,
                            dtype=model.mean.dtype)


def features_to_world(model: VideoMDMModel, x: torch.Tensor) -> torch.Tensor:
    """Standardised features [..., F, 263] -> joints [..., F, 22, 3] (canonical world frame, metres, y up)."""
    return features_to_joints(x * model.std + model.mean)


@torch.no_grad()
def guided_lift(model: VideoMDMModel, windows: list[Window], generator: torch.Generator, texts: list[str] | None = None,
                guidance: float = 2.5, clip=None, diffusion_steps: int = 50) -> list[torch.Tensor]:
    """VideoMDM's lifting (appendix G.2): DDPM sampling in which every predicted clean motion is replaced by its
    projection onto the camera rays of the observed keypoints. -> per window joints [F, 22, 3], camera frame."""
    from fastmotion.ops import ray_project

    device = model.mean.device
    frames = [len(w.features) for w in windows]
    F = max(frames)
    kp = torch.stack([torch.cat([w.keypoints, w.keypoints[-1:].expand(F - len(w.keypoints), -1, -1)])
                      for w in windows]).to(device)
    K, R, t = (torch.stack([getattr(w, k) for w in windows]).to(device) for k in ("K", "R", "t"))

    def onto_rays(x0, step):
        joints = ray_project(features_to_world(model, x0), kp, K, R, t)
        following = 2 * joints[:, -1:] - joints[:, -2:-1]  # one more frame: features need the next frame
        return (joints_to_features(torch.cat([joints, following], 1), canonical=False) - model.mean) / model.std

    x = sample_mdm(model, texts, frames, generator, guidance, "ddpm", clip=clip, x0_hook=onto_rays,
                   diffusion_steps=diffusion_steps)
    joints = features_to_world(model, x) @ R.transpose(1, 2)[:, None] + t[:, None, None]
    return [j[:n].cpu() for j, n in zip(joints, frames)]


def lift_clips(model: VideoMDMModel, bank: TeacherBank, generator: torch.Generator, guidance: float = 2.5,
               clip=None, batch: int = 64, diffusion_steps: int = 50, progress=None) -> dict[str, torch.Tensor]:
    """Guided lifting of every clip of a bank (its windows joined in order) -> {name: joints [T', 22, 3]}."""
    out: dict[str, list] = {}
    ordered = sorted(bank.windows, key=lambda w: len(w.features))  # batches of similar lengths: less padding
    for start in range(0, len(ordered), batch):
        ws = ordered[start:start + batch]
        texts = [w.captions[0] for w in ws] if all(w.captions[0] for w in ws) else None
        for w, j in zip(ws, guided_lift(model, ws, generator, texts, guidance, clip, diffusion_steps)):
            out.setdefault(w.name, []).append((w.start, j))
        if progress:
            progress(len(ws))
    return {name: torch.cat([j for _, j in sorted(parts, key=lambda p: p[0])]) for name, parts in out.items()}


class MDMTextToMotion:
    """`TextToMotion`'s interface over a VideoMDM checkpoint, for `evaluate_t2m`: lengths are feature frames,
    motions come out turned y-down like the camera-frame motions the evaluator compares."""

    frames_per_token = 1

    def __init__(self, path, clip_weights=None, device="cpu", guidance: float = 2.5, batch: int = 64,
                 rigid: bool = True):
        self.device = torch.device(device)
        self.rigid = rigid  # each motion's bones held at one skeleton (`fastmotion.motion.body.rigid_body`)
        self.model, extra = load_mdm(path, self.device)
        self.token_range = extra["frame_range"]
        self.diffusion_steps = extra["videomdm"]["diffusion_steps"]
        self.clip = (load_clip_encoder(clip_weights or extra.get("clip_weights"), self.device)
                     if self.model.text is None else None)
        self.guidance, self.batch = guidance, batch

    @torch.no_grad()
    def generate(self, texts, tokens, sampling, generator, batch: int | None = None) -> list[torch.Tensor]:
        if tokens is None:
            raise ValueError("an MDM needs the motion lengths")
        batch = batch or self.batch
        order = sorted(range(len(tokens)), key=lambda i: tokens[i])  # batches of similar lengths: less padding
        out = [None] * len(tokens)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            lengths = [tokens[i] for i in idx]
            chunk = [texts[i] for i in idx] if texts is not None else None
            x = sample_mdm(self.model, chunk, lengths, generator, self.guidance, clip=self.clip,
                           diffusion_steps=self.diffusion_steps)
            joints = features_to_world(self.model, x).cpu() * torch.tensor([1.0, -1.0, -1.0])
            for i, j, n in zip(idx, joints, lengths):
                out[i] = rigid_body(j[:n]) if self.rigid else j[:n]
        return out


class MDMLifter(Lifter):
    """VideoMDM's guided lifting of the clips of a 2D dataset split: each clip's windows need its camera in the
    model's canonical frame, which the dataset's teacher folder gives (`fastmotion data teacher`); clips
    without a teacher are left out."""

    name = "VideoMDM (guided lifting)"
    metric_scale = True  # the teacher's metric frame

    def __init__(self, model: VideoMDMModel, extra: dict, data, split: str, teacher=None, seed: int = 0,
                 guidance: float = 2.5):
        self.model, self.extra = model, extra
        self.data, self.split = Path(data), split
        self.teacher = Path(teacher) if teacher else self.data / "teacher"
        self.seed, self.guidance = seed, guidance
        self.clip = load_clip_encoder(extra.get("clip_weights"), model.mean.device) if model.text is None else None

    @classmethod
    def from_checkpoint(cls, path, device="cpu", *, data=None, split: str = "test", teacher=None, **options):
        if data is None:
            raise ValueError("VideoMDM lifts the clips of a dataset (data=...): it needs their cameras and teacher")
        model, extra = load_mdm(path, device)
        return cls(model, extra, data, split, teacher, **options)

    def lift(self, clips, progress=None):
        """Clips of this lifter's dataset split (by name; the keypoints come from the teacher's windows)."""
        bank = TeacherBank(self.data, self.teacher, self.split, self.model.mdm.config.max_frames)
        wanted = {c.name for c in clips}
        bank.windows = [w for w in bank.windows if w.name in wanted]
        return lift_clips(self.model, bank, torch.Generator().manual_seed(self.seed), self.guidance, self.clip,
                          diffusion_steps=self.extra["videomdm"]["diffusion_steps"], progress=progress)


def sample_motions(model: VideoMDMModel, extra: dict, prompts: list[str], frames: int | None,
                   generator: torch.Generator, clip=None) -> list[torch.Tensor]:
    """Motions [frames, 22, 3] (metres, y up, canonical frame) for each prompt, bones held at one skeleton per
    motion (`fastmotion.motion.body.rigid_body`). frames: feature frames at 20 fps (default: the middle of the
    trained range).

    Raises:
        ValueError: `frames` is outside the range the model was trained on; a motion holds NaN or inf.
    """
    lo, hi = extra["frame_range"]
    length = frames if frames is not None else (lo + hi) // 2
    if not lo <= length <= hi:
        raise ValueError(f"length {length} frames ({length / 20:.2f} s) is outside the trained range {lo}..{hi} "
                         "frames")
    x = sample_mdm(model, prompts, [length] * len(prompts), generator, clip=clip,
                   diffusion_steps=extra["videomdm"]["diffusion_steps"])
    return [rigid_body(m) for m in features_to_world(model, x).cpu()]
