"""Free3D's trained models: loading the 2D prior and the ML-RQ, and lifting 2D clips to 3D with the ML-RQ."""
from __future__ import annotations

import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.models.mlrq import MLRQ, MotionVQConfig, Prior2D, features_to_joints, motion_features
from fastmotion.motion.camera import place_on_rays, relative_depth

from .lifting import Lifter


def _load(path, cls, device):
    """A trained model of class `cls` from its checkpoint, in eval mode on `device` (CheckpointError if not)."""
    state = load_checkpoint(path, cls.__name__)
    cfg = {k: v for k, v in state["model_config"].items() if k not in ("kind", "length")}
    model = cls(MotionVQConfig(**cfg))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_prior(path, device) -> Prior2D:
    """The frozen 2D prior of `fastmotion train prior`: eval mode, no gradients to its weights (they still flow
    through it). Raises CheckpointError."""
    prior = _load(path, Prior2D, device)
    for p in prior.parameters():
        p.requires_grad_(False)
    return prior


def load_mlrq(path, device) -> MLRQ:
    """The ML-RQ of `fastmotion train mlrq`, in eval mode. Raises CheckpointError."""
    return _load(path, MLRQ, device)


@torch.no_grad()
def lift(model: MLRQ, keypoints_normalised: torch.Tensor) -> torch.Tensor:
    """One clip [T, 22, 2] in normalised image coordinates -> 3D joints [T, 22, 3] in the camera frame, in
    units of the subject's first-frame depth, root at the origin on the first frame.

    The ML-RQ gives each frame's pose in units of that frame's depth; the global motion puts it on the root's
    camera ray at the depth the skeleton's apparent 2D size gives (`relative_depth`, `place_on_rays`). On
    Bandai-2's val split this took the root trajectory error from 1021 mm (the ML-RQ's own root channels) to
    about 70 (docs/real-data.md): a deviation from Free3D, whose root comes from the network."""
    T = keypoints_normalised.shape[0]
    m = model.frame_multiple
    padded_len = -(-T // m) * m
    k = torch.cat([keypoints_normalised, keypoints_normalised[-1:].expand(padded_len - T, -1, -1)])
    device = model.stats.mean.device
    x = model.stats.normalize(motion_features(k[None].to(device)))
    f3d, _, _ = model.lift(x)
    pose = features_to_joints(f3d, 3)[0, :T].cpu()
    keypoints_normalised = keypoints_normalised.to(pose.dtype)
    return place_on_rays(pose, keypoints_normalised[:, 0], relative_depth(keypoints_normalised))


@torch.no_grad()
def prior_error(prior: Prior2D, keypoints_normalised: torch.Tensor) -> float:
    """The 2D prior's reconstruction error (standardised units, mean over frames and channels) of one clip
    [T, 22, 2]: how unlike the prior's training 2D the clip is."""
    T = keypoints_normalised.shape[0]
    m = prior.frame_multiple
    k = torch.cat([keypoints_normalised, keypoints_normalised[-1:].expand(-(-T // m) * m - T, -1, -1)])
    x = prior.stats.normalize(motion_features(k[None].to(prior.stats.mean.device)))
    return float(((prior.reconstruct(x, quantise=False) - x) ** 2)[:, :T].mean())


class OutOfDistribution:
    """Flags input 2D far from what a model learned from: the 2D prior's reconstruction error of a clip above
    the 99th percentile of its training clips' (the percentile is computed once and cached beside the prior,
    PRIOR_DIR/input_check.json, keyed by the training data)."""

    PERCENTILE = 99.0

    def __init__(self, prior: Prior2D, threshold: float):
        self.prior, self.threshold = prior, threshold

    @classmethod
    def for_mlrq(cls, path, device="cpu") -> "OutOfDistribution | None":
        """The check for an ML-RQ checkpoint, from the prior and data it names; None when either is gone."""
        import json
        from pathlib import Path

        from fastmotion.data.clip_bank import ClipBank

        extra = load_checkpoint(path, "MLRQ").get("extra", {})
        prior_path, data = Path(extra.get("prior", "")), Path(extra.get("data", ""))
        if not prior_path.is_file() or not (data / "train.txt").is_file():
            return None
        prior = load_prior(prior_path, device)
        cache = prior_path.parent / "input_check.json"
        cached = json.loads(cache.read_text()) if cache.exists() else {}
        # the threshold changes with the prior, the training clips and the percentile
        key = f"{data}|{prior_path.stat().st_mtime_ns}|{(data / 'train.txt').stat().st_mtime_ns}|{cls.PERCENTILE}"
        if cached.get("key") != key:
            errors = [prior_error(prior, clip) for clip in ClipBank(data, "train", pitch=0.0).clips]  # no camera
            cached = {"key": key, "percentile": cls.PERCENTILE,
                      "threshold": float(torch.tensor(errors).quantile(cls.PERCENTILE / 100))}
            try:
                cache.write_text(json.dumps(cached) + "\n")
            except OSError:
                pass  # a read-only run folder: computed again next time
        return cls(prior, cached["threshold"])

    def check(self, keypoints_normalised: torch.Tensor) -> float | None:
        """The clip's prior error when it is above the threshold, else None."""
        error = prior_error(self.prior, keypoints_normalised)
        return error if error > self.threshold else None


class MLRQLifter(Lifter):
    """Free3D's lifting: each clip through the ML-RQ (`lift`), one at a time. With `input_check`, clips whose 2D
    is far from the training 2D are listed in `unlike_training` (their lifts are still returned)."""

    name = "ML-RQ"

    def __init__(self, model: MLRQ, input_check: OutOfDistribution | None = None):
        self.model, self.input_check = model, input_check
        self.unlike_training: list[str] = []  # one line per flagged clip

    @classmethod
    def from_checkpoint(cls, path, device="cpu", input_check: bool = False) -> "MLRQLifter":
        return cls(load_mlrq(path, device), OutOfDistribution.for_mlrq(path, device) if input_check else None)

    def lift(self, clips, progress=None):
        out = {}
        for clip in clips:
            out[clip.name] = lift(self.model, clip.keypoints)
            error = self.input_check.check(clip.keypoints) if self.input_check is not None else None
            if error is not None:
                self.unlike_training.append(
                    f"{clip.name}: its 2D is unlike the model's training 2D (2D prior error {error:.3g}, above the "
                    f"training clips' {OutOfDistribution.PERCENTILE:g}th percentile {self.input_check.threshold:.3g})"
                    ": the lift may be implausible")
            if progress:
                progress(1)
        return out
