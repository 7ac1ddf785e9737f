"""`fastmotion bench lift --model mvlift`: MVLift's stage 2 (the method's cost, the paper's main limitation) batched
over clips and views against a one-clip-at-a-time loop, and a profile of one iteration by part (the denoiser, the
epipolar lines, the consistency term, the backward pass, Adam) plus the 3D recovery.

The stage-1 model is untrained (time does not depend on its weights); the windows are real 2D rendered from the
synthetic corpus.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .harness import Row

META = {"method": "mvlift", "stage": 2}
PARTS = ("mvlift.denoiser", "mvlift.lines", "mvlift.consistency", "mvlift.backward", "mvlift.adam",
         "mvlift.recovery")


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


def run(device: str = "cpu", clips: int = 16, frames: int = 32, iterations: int = 20, progress=print) -> list[Row]:
    from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig
    from fastmotion.pipelines.mvlift import Stage2Config, lift_windows

    torch.manual_seed(0)
    model = LineDenoiser(LineDenoiserConfig.preset("small")).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    config = Stage2Config(**{**Stage2Config.preset("small").__dict__, "iterations": iterations,
                             "refine_iterations": Stage2Config.preset("small").refine_iterations})
    progress(f"  {clips} windows of {frames} frames, {iterations} stage-2 iterations each ...")
    ref, mask, focal = (x.to(device) for x in _windows(clips, frames))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def batched():
        lift_windows(model, ref, mask, config, torch.Generator().manual_seed(0), focal)

    def one_at_a_time():
        for i in range(clips):
            lift_windows(model, ref[i:i + 1], mask[i:i + 1], config, torch.Generator().manual_seed(0), focal[i:i + 1])

    seconds = {}
    for name, fn in (("batched", batched), ("one clip at a time", one_at_a_time), ("batched", batched)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - t0)  # the batch's second run
    progress("  profiling one batched run by part ...")
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])) as prof:
        batched()
    totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key in PARTS}  # ms
    whole = sum(totals.values())
    shares = {k.split(".")[1]: f"{100 * totals.get(k, 0) / whole:.1f}%" for k in PARTS}  # of the profiled parts
    geometry = sum(totals.get(k, 0) for k in ("mvlift.lines", "mvlift.consistency", "mvlift.recovery")) / whole
    rows = []
    for name in ("one clip at a time", "batched"):
        per_clip = seconds[name] / clips
        rows.append(Row("mvlift stage 2 + recovery", f"{clips} x T={frames}, {iterations} it", name, device,
                        seconds[name] * 1e3, seconds["one clip at a time"] / seconds[name], None,
                        {"clips/min": f"{60 / per_clip:.1f}", "ms/iteration/clip": f"{1e3 * per_clip / iterations:.2f}",
                         **(shares | {"geometry": f"{100 * geometry:.1f}%"} if name == "batched" else {})}))
    return rows
