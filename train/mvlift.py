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


def multiview_batch(windows, index: torch.Tensor, generator: torch.Generator):
    """Windows `index` of a `MultiViewWindows`, each seen from a random one of its ring views (the ring turned so
    that it becomes view 0, all views rescaled to its first frame's normalisation, the focal length with them):
    -> (reference [B, L, J, 2], other views [B, V-1, L, J, 2], mask [B, L], focal [B]). The first frame's hip
    centre images at the origin in every view, so only the scale changes."""
    views, mask, focal = windows.views[index], windows.mask[index], windows.focal[index]
    B, V = views.shape[:2]
    first = torch.randint(V, (B,), generator=generator)
    order = (first[:, None] + torch.arange(V)) % V
    views = views[torch.arange(B)[:, None], order]
    extent = (views[:, 0, 0].amax(1) - views[:, 0, 0].amin(1)).amax(-1) / 2
    extent = extent.clamp_min(1e-6)
    views = views / extent.view(B, 1, 1, 1, 1)
    return views[:, 0], views[:, 1:], mask, focal / extent


def multiview_losses(model, diffusion: GaussianDiffusion, reference, others, mask, focal, generator):
    """Stage 4's objective: the mean squared error of the predicted x0 of the unobserved views on real frames,
    t ~ U{0..steps-1}."""
    B = reference.shape[0]
    t = torch.randint(diffusion.steps, (B,), generator=generator).to(reference.device)
    eps = torch.randn(others.shape, generator=generator).to(reference.device)
    x0_hat = model(diffusion.q_sample(others, t, eps), reference, t, mask, focal)
    m = mask.to(others.dtype)[:, None, :, None, None]
    error = (((x0_hat - others) ** 2) * m).sum() / (m.sum() * others.shape[1] * others[0, 0, 0].numel())
    return {"loss": error}


def multiview_run(data, config, batch_size: int, device) -> Run:
    """Stage 4: the multi-view diffusion model on a `fastmotion data mvlift` folder; one motion in ten (by name, the
    views of one motion `NAME_vK` together) is held out for validation (with a warning, none when that leaves no
    train or no val window: validation is then on the training windows). Raises DatasetError for another folder,
    ValueError for windows longer than the model's max_frames."""
    import re
    import warnings
    import zlib

    from fastmotion.models.multiview import MultiViewDenoiser
    from fastmotion.pipelines.mvlift_data import MultiViewWindows

    windows = MultiViewWindows(data)
    meta = windows.meta
    config = replace(config, skeleton=meta["skeleton"], joints=int(meta["joints"]), views=int(meta["ring"]["views"]))
    if meta["window"] > config.max_frames:
        raise ValueError(f"{data}: its windows of {meta['window']} frames exceed the model's max_frames="
                         f"{config.max_frames} (--config full allows 196)")
    motions = [re.sub(r"_v\d+$", "", n) for n in windows.names]  # `data render`'s views of one motion: NAME_vK
    held = torch.tensor([zlib.crc32(m.encode()) % 10 == 0 for m in motions])
    if held.all() or not held.any():
        warnings.warn(f"{data}: too few motions ({len(set(motions))}) to hold one in ten out; validation is on "
                      "the training windows", stacklevel=2)
        held = torch.ones(len(windows), dtype=torch.bool)
        train_index = torch.arange(len(windows))
    else:
        train_index = (~held).nonzero()[:, 0]
    val_index = held.nonzero()[:, 0]
    model = MultiViewDenoiser(config).to(device)
    diffusion = GaussianDiffusion(config.diffusion_steps)

    def batch(index, generator):
        return [x.to(device) for x in multiview_batch(windows, index, generator)]

    def step(model, step, generator):
        index = train_index[torch.randint(len(train_index), (batch_size,), generator=generator)]
        return multiview_losses(model, diffusion, *batch(index, generator), generator)

    def evaluate(model):
        g = torch.Generator().manual_seed(0)
        index = val_index[:256]
        return {"val_loss": float(multiview_losses(model, diffusion, *batch(index, g), g)["loss"])}

    described = {**model.describe(), "length": int(meta["window"]), "distance": float(meta["ring"]["distance"]),
                 "stage1_sha256": meta["stage1"]["sha256"]}
    return Run("MultiViewDenoiser", model, described, step, evaluate,
               extra={"data": str(Path(data).resolve()), "stage1": meta["stage1"], "windows": len(windows),
                      "val_windows": len(val_index)}, best=("val_loss", "min"))
