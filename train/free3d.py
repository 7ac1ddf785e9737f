"""Free3D training runs (the 2D prior and the ML-RQ) and lifting, on a 2D-only dataset folder written by
`fastmotion data render` (keypoints/, cameras/, split files; eval3d/ is read only by `evaluate_lifting`)."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fastmotion.data import humanml3d as hml
from fastmotion.losses.free3d import mlrq_losses, prior_losses
from fastmotion.metrics.lifting import lifting_metrics
from fastmotion.motion.camera import place_on_rays, relative_depth
from fastmotion.models.mlrq import MLRQ, MotionVQConfig, Prior2D, features_to_joints, motion_features
from fastmotion.ops.reference import normalized_keypoints

from .loop import Run, TrainingError, load_checkpoint


class ClipBank:
    """Every clip of one split in memory as keypoints in normalised image coordinates [T, 22, 2]."""

    def __init__(self, root, split: str):
        self.root = Path(root)
        try:
            self.names = hml.read_split(self.root, split)
        except (FileNotFoundError, ValueError) as err:
            raise TrainingError(str(err)) from None
        self.clips, self.cameras = [], []
        for name in self.names:
            path = self.root / "keypoints" / f"{name}.npy"
            if not path.exists():
                raise TrainingError(f"{path} is missing (is {self.root} a folder from `fastmotion data render`?)")
            k = np.load(path)
            if k.ndim != 3 or k.shape[1:] != (22, 2):
                raise TrainingError(f"{path}: expected SMPL-22 keypoints [T, 22, 2], got {list(k.shape)} "
                                    "(wrong joint count?)")
            with np.load(self.root / "cameras" / f"{name}.npz") as cam:
                K, R, t = (torch.from_numpy(np.asarray(cam[key], np.float32)) for key in ("K", "R", "t"))
            n = normalized_keypoints(torch.from_numpy(k.astype(np.float32))[None], K[None])[0]
            if not torch.isfinite(n).all():
                raise TrainingError(f"{path}: keypoints contain NaN or inf")
            self.clips.append(n)
            self.cameras.append((K, R, t))
        if not self.clips:
            raise TrainingError(f"{self.root}: the {split} split has no clips")

    def __len__(self) -> int:
        return len(self.clips)

    def up(self, index: int) -> torch.Tensor:
        """The world's up axis in clip `index`'s camera frame (R's second column): [3]."""
        return self.cameras[index][1][:, 1]

    def batch(self, size: int, length: int, generator: torch.Generator):
        """size random crops of `length` frames (padded, with a frame mask), and each clip's up axis in its
        camera -> ([B, L, 22, 2], [B, L], [B, 3])."""
        picks = torch.randint(len(self.clips), (size,), generator=generator).tolist()
        out = torch.zeros(size, length, 22, 2)
        mask = torch.zeros(size, length, dtype=torch.bool)
        for i, c in enumerate(picks):
            clip = self.clips[c]
            start = int(torch.randint(max(1, len(clip) - length + 1), (), generator=generator))
            piece = clip[start:start + length]
            out[i, :len(piece)] = piece
            out[i, len(piece):] = piece[-1]  # hold the last pose: no jump to zero for the convolutions
            mask[i, :len(piece)] = True
        return out, mask, torch.stack([self.up(c) for c in picks])

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips' 2D features, padded [N, T_max, 44], and their frame mask."""
        longest = max(len(c) for c in self.clips)
        feats = torch.zeros(len(self.clips), longest, 44)
        mask = torch.zeros(len(self.clips), longest, dtype=torch.bool)
        for i, c in enumerate(self.clips):
            feats[i, :len(c)] = motion_features(c[None])[0]
            mask[i, :len(c)] = True
        return feats, mask


def _crop_length(length: int, multiple: int) -> int:
    return max(multiple, length // multiple * multiple)


def prior_run(data, config: MotionVQConfig, batch_size: int, length: int, device) -> Run:
    bank = ClipBank(data, "train")
    model = Prior2D(config)
    model.stats.fit(*bank.features())
    model.to(device)
    length = _crop_length(length, model.frame_multiple)

    def step(model, step, generator):
        keypoints, mask, _ = bank.batch(batch_size, length, generator)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        return prior_losses(model, x, mask.to(device))

    val = ClipBank(data, "val")

    def evaluate(model):
        keypoints, mask, _ = val.batch(min(256, 4 * batch_size), length, torch.Generator().manual_seed(0))
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        out = prior_losses(model, x, mask.to(device))
        return {"val_recon": float(out["recon"])}

    return Run("Prior2D", model, {"kind": "Prior2D", **asdict(config), "length": length}, step, evaluate,
               extra={"data": str(Path(data).resolve())}, best=("val_recon", "min"))


def _load(path, cls, device):
    """A trained model of class `cls` from its checkpoint, in eval mode on `device`."""
    state = load_checkpoint(path, cls.__name__)
    cfg = {k: v for k, v in state["model_config"].items() if k not in ("kind", "length")}
    model = cls(MotionVQConfig(**cfg))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_prior(path, device) -> Prior2D:
    """The frozen 2D prior: eval mode, no gradients to its weights (they still flow through it)."""
    prior = _load(path, Prior2D, device)
    for p in prior.parameters():
        p.requires_grad_(False)
    return prior


def mlrq_run(data, prior_path, config: MotionVQConfig, batch_size: int, length: int, device, *, views: int = 4,
             use_rec=True, use_ori=True, use_feat=True, beta: float = 2.0, weights=(1.0, 1.0, 1.0),
             max_yaw: float = math.pi, rec_quantised: bool = False) -> Run:
    bank = ClipBank(data, "train")
    prior = load_prior(prior_path, device)
    model = MLRQ(config)
    model.stats.load_state_dict(prior.stats.state_dict())  # same data, same representation
    model.to(device)
    length = _crop_length(length, model.frame_multiple)
    switches = {"views": views, "use_rec": use_rec, "use_ori": use_ori, "use_feat": use_feat, "beta": beta,
                "weights": tuple(weights), "max_yaw": max_yaw, "rec_quantised": rec_quantised}

    def step(model, step, generator):
        keypoints, mask, up = bank.batch(batch_size, length, generator)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        return mlrq_losses(model, prior, x, mask.to(device), up.to(device), generator=generator, **switches)

    val = ClipBank(data, "val")
    has_3d = (Path(data) / "eval3d").is_dir()

    def evaluate(model):
        """The 3D-free objective on fixed val crops (it picks best.pt: no 3D is needed to choose), and the
        lifting figures on up to 200 val clips where the dataset holds their 3D."""
        g = torch.Generator().manual_seed(0)
        keypoints, mask, up = val.batch(min(256, 4 * batch_size), length, g)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        terms = mlrq_losses(model, prior, x, mask.to(device), up.to(device), generator=g, **switches)
        out = {"val_loss": float(terms["loss"])}
        if has_3d:
            out.update(evaluate_lifting(model, data, "val", limit=200)["model"])
        return out

    model_config = {"kind": "MLRQ", **asdict(config), "length": length}
    return Run("MLRQ", model, model_config, step, evaluate,
               extra={"data": str(Path(data).resolve()), "prior": str(Path(prior_path).resolve()), **switches},
               best=("val_loss", "min"))


def load_mlrq(path, device) -> MLRQ:
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


def zero_depth(keypoints_normalised: torch.Tensor) -> torch.Tensor:
    """The 3D-free baseline: every joint at the root's depth (z = 0 relative), root at the origin."""
    k = keypoints_normalised - keypoints_normalised[:1, :1]
    return torch.cat([k, torch.zeros_like(k[..., :1])], -1)


def evaluate_lifting(lifter, data, split: str = "test", limit: int | None = None) -> dict:
    """Metrics of a lifter and of the zero-depth baseline on held-out clips (3D from eval3d/). lifter: an ML-RQ,
    or a function (name, keypoints_normalised [T, 22, 2]) -> camera-frame joints [T', 22, 3] (T' <= T; any
    scale), or None for a clip it cannot lift (left out of both rows)."""
    bank = ClipBank(data, split)
    root = Path(data)
    lift_fn = (lambda name, clip: lift(lifter, clip)) if isinstance(lifter, MLRQ) else lifter
    preds, bases, trues = [], [], []
    for i, (name, clip, (K, R, t)) in enumerate(zip(bank.names, bank.clips, bank.cameras)):
        if limit is not None and i >= limit:
            break
        pred = lift_fn(name, clip)
        if pred is None:
            continue
        path = root / "eval3d" / "new_joints" / f"{name}.npy"
        if not path.exists():
            raise TrainingError(f"{path} is missing: evaluation needs the held-out 3D that `fastmotion data "
                                "render` writes to eval3d/")
        world = torch.from_numpy(np.load(path))
        camera = world @ R.T + t  # the truth in the camera frame, metres
        preds.append(pred)
        bases.append(zero_depth(clip)[:len(pred)])
        trues.append(camera[:len(pred)])
    if not preds:
        raise TrainingError(f"{data}: no clip of the {split} split could be lifted")
    longest = max(len(p) for p in preds)

    def stack(xs):
        out = torch.zeros(len(xs), longest, 22, 3, dtype=torch.float64)
        for i, x in enumerate(xs):
            out[i, :len(x)] = x
            out[i, len(x):] = x[-1]
        return out

    mask = torch.zeros(len(preds), longest, dtype=torch.bool)
    for i, p in enumerate(preds):
        mask[i, :len(p)] = True
    true = stack(trues)
    return {"model": lifting_metrics(stack(preds), true, mask), "zero_depth": lifting_metrics(stack(bases), true, mask),
            "clips": len(preds)}
