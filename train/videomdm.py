"""VideoMDM's training run: an MDM trained from 2D keypoints with a noisy 3D teacher (paper in
../shared/papers/videomdm.txt), on the windows of `fastmotion.data.teacher_bank`.

Modes: "videomdm" (warm-up on the teacher's 3D with the plain MDM loss, then the 2D objective with LIS-style
multistep training at low noise) and "plain-mdm" (the paper's baseline: plain MDM on the teacher's 3D as if it
were ground truth, same model, same steps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fastmotion.data.teacher_bank import TeacherBank
from fastmotion.diffusion import GaussianDiffusion, MultistepConfig, draw_timesteps
from fastmotion.losses.videomdm import VideoMDMLossConfig, masked_mse, videomdm_losses
from fastmotion.models.mdm import MDMConfig, VideoMDMModel
from fastmotion.models.text import caption_words, check_captions, load_clip_encoder

from .loop import Run


@dataclass
class VideoMDMConfig:
    mode: str = "videomdm"  # "videomdm" | "plain-mdm" (the baseline: plain MDM on the teacher's 3D)
    warmup_steps: int = 500  # plain MDM loss on the teacher before the 2D objective
    diffusion_steps: int = 50
    multistep: bool = True
    threshold: int = 12
    buckets: int = 4
    multistep_start: str = "inside"  # "inside" | "above" (fastmotion.diffusion.multistep)
    high_noise: str = "2d"  # "2d" (paper) | "plain-mdm": batches above t* take the plain MDM loss on the teacher
    # weight of the whole 2D objective against the plain MDM loss. It matters where the two alternate (high_noise
    # "plain-mdm"): Adam's second moments are shared, so the batches with the larger gradients set every step's size
    lambda_2d: float = 1.0
    losses: VideoMDMLossConfig = field(default_factory=VideoMDMLossConfig)

    def __post_init__(self):
        if self.mode not in ("videomdm", "plain-mdm"):
            raise ValueError(f"mode must be 'videomdm' or 'plain-mdm', got {self.mode!r}")
        if self.high_noise not in ("2d", "plain-mdm"):
            raise ValueError(f"high_noise must be '2d' or 'plain-mdm', got {self.high_noise!r}")
        if not self.lambda_2d > 0:
            raise ValueError(f"lambda_2d must be > 0, got {self.lambda_2d}")
        if self.high_noise == "plain-mdm" and self.mode == "videomdm" and not (self.multistep and self.threshold):
            raise ValueError("high_noise 'plain-mdm' leaves the 2D objective only the multistep chains below t*: "
                             "it needs multistep on and a threshold above 0")

    def multistep_config(self) -> MultistepConfig:
        return MultistepConfig(self.diffusion_steps, self.threshold if self.multistep else 0, self.buckets,
                              self.multistep_start)


def mdm_run(data, teacher, model_config: MDMConfig, config: VideoMDMConfig, batch_size: int, device,
            clip_weights=None) -> Run:
    train = TeacherBank(data, teacher, "train", model_config.max_frames)
    val = TeacherBank(data, teacher, "val", model_config.max_frames)
    check_captions({Path(data) / "texts" / f"{w.name}.txt": [c for c in w.captions if c]
                    for w in train.windows + val.windows})
    clip = load_clip_encoder(clip_weights, device)
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
        times = None if config.mode == "plain-mdm" or step < config.warmup_steps else \
            [tt.to(device) for tt in draw_timesteps(multistep, len(texts), generator)]
        if times is None or (len(times) == 1 and config.high_noise == "plain-mdm"):
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
             "clip_weights": clip.path if clip else None, "videomdm": asdict(config),
             "frame_range": [min(len(w.features) for w in train.windows), max(len(w.features) for w in train.windows)],
             "caption_words": caption_words(c for w in train.windows for c in w.captions if c)}
    def regime(losses) -> str:
        """The plain MDM loss (warm-up, high-noise teacher batches), the 2D objective in one step, or its multistep
        chains: three objectives of other scales, each with its own running level for the blow-up guard."""
        if "mdm" in losses:
            return "mdm"
        return "2d-multistep" if float(losses.get("multistep", 0.0)) else "2d"

    return Run("VideoMDM", model, model.describe(), step, evaluate, extra=extra, best=("val_pos", "min"),
               regime=regime)
