"""Training-step benchmark: one ML-RQ step (forward, the 3D-free losses, backward, AdamW) with the fused ops
(automatic backend: cpp on CPU, cuda/triton on GPU) against the same step with every op on the torch reference
(FASTMOTION_BACKEND=torch), timed interleaved in one run on a synthetic 2D dataset made on the fly."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from fastmotion.bench.harness import Row, time_cases

META = {"model": "mlrq", "views": 4}


@contextmanager
def backend_env(name: str | None):
    old = os.environ.get("FASTMOTION_BACKEND")
    if name:
        os.environ["FASTMOTION_BACKEND"] = name
    else:
        os.environ.pop("FASTMOTION_BACKEND", None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FASTMOTION_BACKEND", None)
        else:
            os.environ["FASTMOTION_BACKEND"] = old


def _training_step(data: Path, prior_path: Path, preset: str, batch: int, length: int, device: str, backend):
    from fastmotion.models.mlrq import MotionVQConfig
    from fastmotion.train.free3d import mlrq_run
    from fastmotion.train.loop import step_seed

    torch.manual_seed(0)
    run = mlrq_run(data, prior_path, MotionVQConfig.preset(preset, 6), batch, length, torch.device(device))
    optimizer = torch.optim.AdamW(run.model.parameters(), lr=1e-4)
    counter = {"step": 0}

    def step():
        with backend_env(backend):
            g = torch.Generator().manual_seed(step_seed(0, counter["step"]))
            loss = run.step_fn(run.model, counter["step"], g)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        counter["step"] += 1

    return step


def run(preset: str = "small", batch: int | None = None, length: int | None = None, device: str = "cpu",
        progress=print, min_seconds: float = 5.0) -> list[Row]:
    from fastmotion.data import build_synthetic, render_2d
    from fastmotion.models.mlrq import MotionVQConfig, Prior2D
    from fastmotion.train.loop import save_checkpoint

    batch = batch or (64 if preset == "small" else 256)
    length = length or (32 if preset == "small" else 64)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        progress("  making a 200-clip synthetic 2D dataset ...")
        build_synthetic(tmp / "synth", num=200, seed=0)
        render_2d(tmp / "synth", tmp / "d2", views=1, seed=0)
        prior = Prior2D(MotionVQConfig.preset(preset, 1))  # untrained: same cost as a trained one
        config = {"kind": "Prior2D", **MotionVQConfig.preset(preset, 1).__dict__, "length": length}
        save_checkpoint(tmp / "prior.pt", {"kind": "Prior2D", "model_config": config, "model": prior.state_dict()})
        cases = {name: _training_step(tmp / "d2", tmp / "prior.pt", preset, batch, length, device, env)
                 for name, env in (("torch", "torch"), ("fused", None))}
        progress(f"  timing ML-RQ training steps (B={batch}, T={length}, {preset}) ...")
        medians = time_cases(cases, device, min_repeats=3, min_seconds=min_seconds)
    rows = []
    for name in ("torch", "fused"):
        ms = medians[name] * 1e3
        rows.append(Row("train mlrq", f"B={batch} T={length} {preset}", name, device, ms,
                        medians["torch"] / medians[name], None, {"steps/s": f"{1e3 / ms:.2f}"}))
    return rows
