"""Cost of one ML-RQ training step (forward, backward, AdamW) of `make demo`'s recipe at several batch sizes,
interleaved so that the machine's drift hits them alike: the median ms per step of each batch size. The timed
step leaves out the trainer's gradient clipping and logging (a small, batch-independent share).

    python experiments/mlrq_tta/step_cost.py demo/synth2d demo/prior/last.pt 64 32 [repeats=3]"""
import sys
import time

import torch
from fastmotion.train.free3d import mlrq_run

from fastmotion.models.mlrq import MotionVQConfig


def median_step_ms(data, prior, batch, steps=15, warm=3):
    torch.manual_seed(0)
    run = mlrq_run(data, prior, MotionVQConfig.preset("small", levels=6), batch, 32, torch.device("cpu"))
    optimizer = torch.optim.AdamW(run.model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    times = []
    for i in range(warm + steps):
        start = time.perf_counter()
        loss = run.step_fn(run.model, i, generator)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times[warm:])[steps // 2]


def main(data, prior, *args):
    repeats = int(next((a.split("=", 1)[1] for a in args if a.startswith("repeats=")), 3))
    batches = [a for a in args if not a.startswith("repeats=")]
    for _ in range(repeats):
        print("  ".join(f"B={b}: {median_step_ms(data, prior, int(b)):.1f} ms/step" for b in batches), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
