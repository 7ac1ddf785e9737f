"""MVLift's stage-1 training run (Li et al., CVPR 2025): the line-conditioned 2D motion diffusion model on a 2D-only
dataset folder's train split (`fastmotion data render` or `data import`), with simulated epipolar lines. best.pt is
chosen by the stage-1 objective on fixed val crops (no 3D is read)."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from fastmotion.data.clip_bank import ClipBank
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.losses.mvlift import LineSimulation, stage1_losses
from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig, normalise_clips

from .loop import Run


def crops(bank: ClipBank, size: int, length: int, generator: torch.Generator, device):
    """size random crops of `length` frames in MVLift's clip normalisation (about the hip centre of the bank's
    skeleton) -> (x0 [B, L, J, 2], mask [B, L])."""
    keypoints, mask, _, _ = bank.batch(size, length, generator)
    x0, _, _ = normalise_clips(keypoints, bank.skeleton.root_position(keypoints))
    return x0.to(device), mask.to(device)


def stage1_run(data, config: LineDenoiserConfig, batch_size: int, length: int, device,
               sim: LineSimulation | None = None, line_weight: float = 1.0) -> Run:
    sim = sim or LineSimulation()
    bank, val = ClipBank(data, "train", skeletons=None), ClipBank(data, "val", skeletons=None)  # any skeleton
    config = replace(config, skeleton=bank.skeleton_name, joints=bank.skeleton.num_joints)
    if length > config.max_frames:
        raise ValueError(f"length {length} exceeds the model's max_frames={config.max_frames}")
    model = LineDenoiser(config).to(device)
    diffusion = GaussianDiffusion(config.diffusion_steps)

    def step(model, step, generator):
        x0, mask = crops(bank, batch_size, length, generator, device)
        return stage1_losses(model, diffusion, x0, mask, generator, sim, line_weight)

    def evaluate(model):
        g = torch.Generator().manual_seed(0)
        x0, mask = crops(val, min(256, 4 * batch_size), length, g, device)
        terms = stage1_losses(model, diffusion, x0, mask, g, sim, line_weight)
        return {"val_loss": float(terms["loss"]), "val_l1": float(terms["l1"]), "val_line": float(terms["line"])}

    return Run("LineDenoiser", model, {**model.describe(), "length": length}, step, evaluate,
               extra={"data": str(Path(data).resolve()), "simulation": asdict(sim), "line_weight": line_weight},
               best=("val_loss", "min"))
