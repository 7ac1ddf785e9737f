"""`fastmotion bench lift --model mvlift`: MVLift's stage 2 (the method's cost, the paper's main limitation) batched
over windows and views against one window at a time, and the parts of one iteration timed on their own: the
denoiser's forward pass, the epipolar lines, the consistency term (forward and backward), beside the 3D recovery.

The stage-1 model is untrained (time does not depend on its weights); the windows are real 2D rendered from the
synthetic corpus. Windows per minute are extrapolated to the small preset (its iterations, then the recovery).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .harness import Row, time_cases

META = {"method": "mvlift", "stage": 2}


def _windows(clips: int, frames: int):
    from fastmotion.data import build_synthetic, render_2d
    from fastmotion.data.clip_bank import ClipBank
    from fastmotion.models.mvlift import normalise_clips

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_synthetic(tmp / "synth", num=max(20, clips * 2), seed=0)
        render_2d(tmp / "synth", tmp / "d2", views=1, seed=0)
        bank = ClipBank(tmp / "d2", "train")
        keypoints, mask, _, _ = bank.batch(clips, frames, torch.Generator().manual_seed(0))
    ref, _, scale = normalise_clips(keypoints, 0)
    return ref, mask, 1 / scale


def run(device: str = "cpu", clips: int = 16, frames: int = 32, iterations: int = 20, progress=print,
        min_seconds: float = 2.0) -> list[Row]:
    from dataclasses import replace

    from fastmotion.diffusion import GaussianDiffusion
    from fastmotion.losses.mvlift import consistency_pairs, epipolar_consistency
    from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig
    from fastmotion.motion import multiview
    from fastmotion.pipelines.mvlift import Stage2Config, optimise_views, recover_3d, ring_fundamentals

    torch.manual_seed(0)
    model = LineDenoiser(LineDenoiserConfig.preset("small")).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    preset = Stage2Config.preset("small")
    config = replace(preset, iterations=iterations)
    progress(f"  {clips} windows of {frames} frames; stage 2 timed over {iterations} iterations ...")
    ref, mask, focal = (x.to(device) for x in _windows(clips, frames))
    V, (B, T, J, _) = config.views, ref.shape
    g = torch.Generator().manual_seed(0)
    views = optimise_views(model, ref, mask, replace(config, iterations=2), g, focal)  # realistic views
    F = ring_fundamentals(config, focal).to(ref.dtype)
    masks = mask.repeat(V - 1, 1)
    x = views[1:].reshape((V - 1) * B, T, J, 2)
    t = torch.randint(1, model.config.diffusion_steps, ((V - 1) * B,), generator=g).to(device)
    diffusion = GaussianDiffusion(model.config.diffusion_steps)

    def lines():
        source = [(k + 1) % V for k in range(1, V)]
        return multiview.epipolar_lines(views[source], F[source, list(range(1, V))])

    lines_now = lines().reshape(*x.shape[:-1], 3)

    def denoiser():
        with torch.no_grad():
            model(diffusion.q_sample(x, t, torch.randn_like(x)), lines_now, t, masks)

    def consistency():
        v = views.detach().requires_grad_(True)
        epipolar_consistency(v, F, consistency_pairs(V), mask).backward()

    cases = {
        "batched": lambda: optimise_views(model, ref, mask, config, g, focal),
        "one window at a time": lambda: [optimise_views(model, ref[i:i + 1], mask[i:i + 1], config, g, focal[i:i + 1])
                                         for i in range(B)],
        "denoiser": denoiser, "lines": lines, "consistency": consistency,
        "recovery": lambda: recover_3d(views, preset, focal),
    }
    progress("  timing (interleaved rounds) ...")
    seconds = time_cases(cases, device, min_repeats=2, min_seconds=min_seconds)
    per_iteration = {name: seconds[name] / iterations for name in ("batched", "one window at a time")}
    share = {part: f"{100 * seconds[part] / per_iteration['batched']:.1f}%"
             for part in ("denoiser", "lines", "consistency")}
    geometry = (seconds["lines"] + seconds["consistency"]) / per_iteration["batched"]
    rows = []
    for name in ("one window at a time", "batched"):
        window_seconds = (per_iteration[name] * preset.iterations + seconds["recovery"]) / B
        rows.append(Row("mvlift stage 2 iteration", f"{B} x T={T}, V={V}", name, device, per_iteration[name] * 1e3,
                        per_iteration["one window at a time"] / per_iteration[name], None,
                        {"windows/min (small preset)": f"{60 / window_seconds:.1f}",
                         **(share | {"geometry": f"{100 * geometry:.1f}%"} if name == "batched" else {})}))
    whole = per_iteration["batched"] * preset.iterations + seconds["recovery"]
    rows.append(Row("mvlift 3D recovery", f"{B} x T={T}, {preset.refine_iterations} it", "batched", device,
                    seconds["recovery"] * 1e3, float("nan"), None,
                    {"share of a window (small preset)": f"{100 * seconds['recovery'] / whole:.1f}%"}))
    return rows
