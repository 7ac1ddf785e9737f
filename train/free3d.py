"""Free3D's training runs, the 2D prior and the ML-RQ (Free3D section 4), on a 2D-only dataset folder written
by `fastmotion data render` (keypoints/, cameras/, split files). Validation reads eval3d/ only to report lifting
figures; best.pt is chosen by the 3D-free objective."""
from __future__ import annotations

import math
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from fastmotion.data.clip_bank import ClipBank
from fastmotion.losses.free3d import feature_weights, mlrq_losses, prior_losses
from fastmotion.models.mlrq import MLRQ, MotionVQConfig, Prior2D, motion_features
from fastmotion.pipelines.free3d import MLRQLifter, load_prior
from fastmotion.pipelines.lifting import evaluate_lifting

from .loop import Run


def _padded_features(bank: ClipBank) -> tuple[torch.Tensor, torch.Tensor]:
    """All clips' 2D features, padded [N, T_max, 44], and their frame mask [N, T_max]."""
    longest = max(len(c) for c in bank.clips)
    feats = torch.zeros(len(bank.clips), longest, 44)
    mask = torch.zeros(len(bank.clips), longest, dtype=torch.bool)
    for i, c in enumerate(bank.clips):
        feats[i, :len(c)] = motion_features(c[None])[0]
        mask[i, :len(c)] = True
    return feats, mask


def _weights(bank: ClipBank, confidence: torch.Tensor, device) -> torch.Tensor | None:
    """The 2D losses' feature weights for a batch of imported keypoints (None for rendered 2D, all seen: the
    unweighted mean, bit for bit as before)."""
    return feature_weights(confidence.to(device)) if bank.weighted else None


def _crop_length(length: int, multiple: int) -> int:
    return max(multiple, length // multiple * multiple)


def prior_run(data, config: MotionVQConfig, batch_size: int, length: int, device) -> Run:
    bank = ClipBank(data, "train", pitch=0.0)  # the prior scores 2D alone: no camera pitch needed
    model = Prior2D(config)
    model.stats.fit(*_padded_features(bank))
    model.to(device)
    length = _crop_length(length, model.frame_multiple)

    def step(model, step, generator):
        keypoints, mask, _, confidence = bank.batch(batch_size, length, generator)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        return prior_losses(model, x, mask.to(device), feature_weight=_weights(bank, confidence, device))

    val = ClipBank(data, "val", pitch=0.0)

    def evaluate(model):
        keypoints, mask, _, confidence = val.batch(min(256, 4 * batch_size), length, torch.Generator().manual_seed(0))
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        out = prior_losses(model, x, mask.to(device), feature_weight=_weights(val, confidence, device))
        return {"val_recon": float(out["recon"])}

    return Run("Prior2D", model, {"kind": "Prior2D", **asdict(config), "length": length}, step, evaluate,
               extra={"data": str(Path(data).resolve())}, best=("val_recon", "min"))


def mlrq_run(data, prior_path, config: MotionVQConfig, batch_size: int, length: int, device, *, views: int = 4,
             use_rec=True, use_ori=True, use_feat=True, beta: float = 2.0, weights=(1.0, 1.0, 1.0),
             max_yaw: float = math.pi, rec_quantised: bool = False, up_from: str = "dataset",
             pitch: float | str = "horizon") -> Run:
    bank = ClipBank(data, "train", pitch=pitch)
    if bank.pitch_note:  # 2D without camera poses: say what vertical L_rec assumes
        print(bank.pitch_note, file=sys.stderr)
    prior = load_prior(prior_path, device)
    model = MLRQ(config)
    model.stats.load_state_dict(prior.stats.state_dict())  # same data, same representation
    model.to(device)
    length = _crop_length(length, model.frame_multiple)
    switches = {"views": views, "use_rec": use_rec, "use_ori": use_ori, "use_feat": use_feat, "beta": beta,
                "weights": tuple(weights), "max_yaw": max_yaw, "rec_quantised": rec_quantised, "up_from": up_from}

    def step(model, step, generator):
        keypoints, mask, up, confidence = bank.batch(batch_size, length, generator)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        return mlrq_losses(model, prior, x, mask.to(device), up.to(device), generator=generator,
                           feature_weight=_weights(bank, confidence, device), **switches)

    val = ClipBank(data, "val", pitch=pitch)
    has_3d = all((Path(data) / "eval3d" / "new_joints" / f"{n}.npy").exists() for n in val.names)

    def evaluate(model):
        """The 3D-free objective on fixed val crops (it picks best.pt: no 3D is needed to choose), and the
        lifting figures on up to 200 val clips where the dataset holds their 3D."""
        g = torch.Generator().manual_seed(0)
        keypoints, mask, up, confidence = val.batch(min(256, 4 * batch_size), length, g)
        x = model.stats.normalize(motion_features(keypoints.to(device)))
        terms = mlrq_losses(model, prior, x, mask.to(device), up.to(device), generator=g,
                            feature_weight=_weights(val, confidence, device), **switches)
        out = {"val_loss": float(terms["loss"])}
        if has_3d:
            out.update(evaluate_lifting(MLRQLifter(model), data, "val", limit=200)["model"])
        return out

    model_config = {"kind": "MLRQ", **asdict(config), "length": length}
    return Run("MLRQ", model, model_config, step, evaluate,
               extra={"data": str(Path(data).resolve()), "prior": str(Path(prior_path).resolve()), **switches,
                      **({"pitch": pitch} if bank.pitch_note else {})},  # rendered 2D: its cameras
               best=("val_loss", "min"))
