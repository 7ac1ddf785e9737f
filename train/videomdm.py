"""VideoMDM: an MDM trained from 2D keypoints with a noisy 3D teacher (paper in ../shared/papers/videomdm.txt).

Each training window is the teacher's motion canonicalised as HumanML3D does (floor, origin, facing +z), its
263-d features, the 2D keypoints of the same frames, and the clip's camera carried into the canonical frame
(R' = R R_c^T, t' = R offset + t), so that predicted joints project straight onto the observed keypoints.

Modes: "videomdm" (warm-up on the teacher's 3D with the plain MDM loss, then the 2D objective with LIS-style
multistep training at low noise) and "teacher" (the paper's baseline: plain MDM on the teacher's 3D as if it
were ground truth, same model, same steps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastmotion.data import humanml3d as hml
from fastmotion.diffusion import GaussianDiffusion, MultistepConfig, draw_timesteps
from fastmotion.losses.videomdm import VideoMDMLossConfig, masked_mse, videomdm_losses
from fastmotion.models.mdm import MDM, MDMConfig
from fastmotion.models.text import TextConditioned
from fastmotion.motion.humanml3d import FEATURE_DIM, canonical_transform, features_to_joints, joints_to_features

from .loop import Run, TrainingError, load_checkpoint
from .t2m import _clip, captions_of


@dataclass
class VideoMDMConfig:
    mode: str = "videomdm"  # "videomdm" | "teacher" (the baseline)
    warmup_steps: int = 500  # plain MDM loss on the teacher before the 2D objective
    diffusion_steps: int = 50
    multistep: bool = True
    threshold: int = 12
    buckets: int = 4
    multistep_start: str = "inside"  # "inside" | "above" (fastmotion.diffusion.multistep)
    high_noise: str = "2d"  # "2d" (paper) | "teacher": batches above t* take the plain MDM loss on the teacher
    # weight of the whole 2D objective against the plain MDM loss. It matters where the two alternate (high_noise
    # "teacher"): Adam's second moments are shared, so the batches with the larger gradients set every step's size
    lambda_2d: float = 1.0
    losses: VideoMDMLossConfig = field(default_factory=VideoMDMLossConfig)

    def __post_init__(self):
        if self.high_noise not in ("2d", "teacher"):
            raise ValueError(f"high_noise must be '2d' or 'teacher', got {self.high_noise!r}")
        if not self.lambda_2d > 0:
            raise ValueError(f"lambda_2d must be > 0, got {self.lambda_2d}")
        if self.high_noise == "teacher" and self.mode == "videomdm" and not (self.multistep and self.threshold):
            raise ValueError("high_noise 'teacher' leaves the 2D objective only the multistep chains below t*: "
                             "it needs multistep on and a threshold above 0")

    def multistep_config(self) -> MultistepConfig:
        return MultistepConfig(self.diffusion_steps, self.threshold if self.multistep else 0, self.buckets,
                              self.multistep_start)


class VideoMDMModel(TextConditioned):
    """MDM + its own small text encoder (None with CLIP features) + the feature statistics (buffers)."""

    def __init__(self, config: MDMConfig, text: str = "small"):
        super().__init__()
        self.mdm = MDM(config, self.init_text(text))
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))

    def describe(self) -> dict:
        return {**self.mdm.describe(), "text": self.text_kind}


@dataclass
class Window:
    features: torch.Tensor  # [F, 263]
    keypoints: torch.Tensor  # [F, 22, 2] pixels
    K: torch.Tensor
    R: torch.Tensor  # canonical world -> camera
    t: torch.Tensor
    captions: list[str]
    name: str
    start: int  # first frame in the clip


def canonical_window(joints: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
    """Teacher joints [L, 22, 3] (world) -> (features [L-1, 263], R', t') of the canonicalised window."""
    Rc, offset = canonical_transform(joints)
    return joints_to_features(joints), R @ Rc.T, R @ offset + t


class TeacherBank:
    """Windows of at most `max_frames` feature frames from every clip of a split that has a teacher.

    Training batches come from length buckets (equal counts of windows sorted by length; a bucket drawn
    uniformly, then windows uniformly in it): every window keeps the same chance, but a batch is padded to
    the longest of similar lengths, not of the whole corpus (measured: 2x fewer frames per step on the demo)."""

    def __init__(self, data, teacher, split: str, max_frames: int, buckets: int = 8):
        data, teacher = Path(data), Path(teacher)
        if not teacher.is_dir():
            raise TrainingError(f"{teacher}: no teacher folder (build one with `fastmotion data teacher`)")
        try:
            names = hml.read_split(data, split)
        except (FileNotFoundError, ValueError) as err:
            raise TrainingError(str(err)) from None
        self.windows: list[Window] = []
        self.skipped = 0
        for name in names:
            path = teacher / f"{name}.npy"
            if not path.exists():
                self.skipped += 1
                continue
            joints = torch.from_numpy(np.load(path)).double()
            keypoints = torch.from_numpy(np.load(data / "keypoints" / f"{name}.npy")).double()
            if len(joints) != len(keypoints):
                raise TrainingError(f"{path}: {len(joints)} frames, the 2D {len(keypoints)} (rebuild the teacher)")
            with np.load(teacher / "cameras" / f"{name}.npz") as c:
                K, R, t = (torch.from_numpy(c[k].astype(np.float64)) for k in ("K", "R", "t"))
            captions = captions_of(data, name) or [""]
            for start in range(0, max(1, len(joints) - 1), max_frames):
                piece = joints[start:start + max_frames + 1]
                if len(piece) < 3:
                    continue
                features, Rw, tw = canonical_window(piece, R, t)
                self.windows.append(Window(features.float(), keypoints[start:start + len(features)].float(),
                                           K.float(), Rw.float(), tw.float(), captions, name, start))
        if not self.windows:
            raise TrainingError(f"{data}: no clip of the {split} split has a teacher in {teacher}")
        by_length = sorted(range(len(self.windows)), key=lambda i: len(self.windows[i].features))
        self.buckets = [b.tolist() for b in torch.tensor(by_length).tensor_split(min(buckets, len(by_length)))]

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.cat([w.features for w in self.windows])
        return flat.mean(0), flat.std(0).clamp_min(1e-3)

    def batch(self, size: int, generator: torch.Generator, picks=None):
        if picks is None:
            bucket = self.buckets[int(torch.randint(len(self.buckets), (), generator=generator))]
            picks = [bucket[i] for i in torch.randint(len(bucket), (size,), generator=generator).tolist()]
        ws = [self.windows[i] for i in picks]
        F = max(len(w.features) for w in ws)
        feats = torch.zeros(len(ws), F, FEATURE_DIM)
        kps = torch.zeros(len(ws), F, 22, 2)
        mask = torch.zeros(len(ws), F, dtype=torch.bool)
        for i, w in enumerate(ws):
            n = len(w.features)
            feats[i, :n], kps[i, :n], mask[i, :n] = w.features, w.keypoints, True
            feats[i, n:] = w.features[-1]
            kps[i, n:] = w.keypoints[-1]
        texts = [w.captions[int(torch.randint(len(w.captions), (), generator=generator))] for w in ws]
        cams = [torch.stack([getattr(w, k) for w in ws]) for k in ("K", "R", "t")]
        return feats, kps, mask, texts, cams


def mdm_run(data, teacher, model_config: MDMConfig, config: VideoMDMConfig, batch_size: int, device,
            clip_weights=None) -> Run:
    train = TeacherBank(data, teacher, "train", model_config.max_frames)
    val = TeacherBank(data, teacher, "val", model_config.max_frames)
    clip = _clip(clip_weights, device)
    model = VideoMDMModel(model_config, "clip" if clip else "small")
    mean, std = train.stats()
    model.mean.copy_(mean)
    model.std.copy_(std)
    model.to(device)
    diffusion = GaussianDiffusion(config.diffusion_steps)
    multistep = config.multistep_config()

    def step(model, step, generator, bank=train, size=batch_size):
        feats, kps, mask, texts, (K, R, t) = bank.batch(size, generator)
        feats, kps, mask, K, R, t = (x.to(device) for x in (feats, kps, mask, K, R, t))
        x0 = (feats - model.mean) / model.std
        text = model.text_features(texts, clip)
        drop = (torch.rand(len(texts), generator=generator) < model.mdm.config.cond_drop).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        times = None if config.mode == "teacher" or step < config.warmup_steps else \
            [tt.to(device) for tt in draw_timesteps(multistep, len(texts), generator)]
        if times is None or (len(times) == 1 and config.high_noise == "teacher"):
            tt = torch.randint(config.diffusion_steps, (len(texts),), generator=generator).to(device) \
                if times is None else times[0]
            pred = model.mdm(diffusion.q_sample(x0, tt, noise), tt, text, mask, drop)
            loss = masked_mse(pred, x0, mask)
            return {"loss": loss, "mdm": loss.detach(), **({} if times is None else {"multistep": torch.tensor(0.0)})}
        x = diffusion.q_sample(x0, times[0], noise)
        out = {}
        unscored = int(len(times) > 1 and multistep.start == "above")  # the start above t*: stepped from only
        for i, tt in enumerate(times):
            if i < unscored:
                with torch.no_grad():
                    pred = model.mdm(x, tt, text, mask, drop)
            else:
                pred = model.mdm(x, tt, text, mask, drop)
                terms = videomdm_losses(pred, (model.mean, model.std), kps, K, R, t, mask, config.losses, x0)
                for k, v in terms.items():
                    out[k] = out.get(k, 0) + v / (len(times) - unscored)
            if i + 1 < len(times):  # deterministic DDIM down to the next bucket, no gradient through it
                x = diffusion.ddim_step(x.detach(), tt, times[i + 1], pred.detach())
        out["loss"] = out["loss"] * config.lambda_2d
        out["multistep"] = torch.tensor(float(len(times) > 1))
        return out

    def evaluate(model):
        """2D reprojection of the denoised val windows at a mid noise level, in metres^2 (depth-weighted)."""
        g = torch.Generator().manual_seed(0)
        picks = list(range(min(128, len(val.windows))))
        feats, kps, mask, texts, (K, R, t) = val.batch(len(picks), g, picks)
        feats, kps, mask, K, R, t = (x.to(device) for x in (feats, kps, mask, K, R, t))
        x0 = (feats - model.mean) / model.std
        tt = torch.full((len(picks),), config.diffusion_steps // 4, device=device)
        pred = model.mdm(diffusion.q_sample(x0, tt, torch.randn(x0.shape, generator=g).to(device)), tt,
                         model.text_features(texts, clip), mask)
        terms = videomdm_losses(pred, (model.mean, model.std), kps, K, R, t, mask, VideoMDMLossConfig())
        return {"val_pos": float(terms["pos"]), "val_mdm": float(masked_mse(pred, x0, mask))}

    extra = {"data": str(Path(data).resolve()), "teacher": str(Path(teacher).resolve()),
             "clip_weights": clip.path if clip else None, "videomdm": _plain(asdict(config)),
             "frame_range": [min(len(w.features) for w in train.windows), max(len(w.features) for w in train.windows)]}
    def regime(losses) -> str:
        """The plain MDM loss (warm-up, high-noise teacher batches), the 2D objective in one step, or its multistep
        chains: three objectives of other scales, each with its own running level for the blow-up guard."""
        if "mdm" in losses:
            return "mdm"
        return "2d-multistep" if float(losses.get("multistep", 0.0)) else "2d"

    return Run("VideoMDM", model, model.describe(), step, evaluate, extra=extra, best=("val_pos", "min"),
               regime=regime)


def _plain(d: dict) -> dict:
    return {k: (_plain(v) if isinstance(v, dict) else v) for k, v in d.items()}


def load_mdm(path, device) -> tuple[VideoMDMModel, dict]:
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

    def __init__(self, path, clip_weights=None, device="cpu", guidance: float = 2.5, batch: int = 64):
        self.device = torch.device(device)
        self.model, extra = load_mdm(path, self.device)
        self.token_range = extra["frame_range"]
        self.diffusion_steps = extra["videomdm"]["diffusion_steps"]
        self.clip = _clip(clip_weights or extra.get("clip_weights"), self.device) if self.model.text is None else None
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
                out[i] = j[:n]
        return out
