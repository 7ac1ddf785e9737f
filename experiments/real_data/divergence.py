"""Does the ML-RQ's training stay stable on a dataset? Train a 2D prior (one thread, seed --prior-seed, std floor
--floor x the median channel's std), then the first --steps steps of the ML-RQ (small config, the schedule of a
2500-step run), and report the loss every 100 steps or the step where it blew up (over 1e4).

    python experiments/real_data/divergence.py --data DIR2D --prior-seed 0 --floor 0      # the old standardisation
    python experiments/real_data/divergence.py --data DIR2D --prior-seed 0 --floor 0.25   # the default
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile

import torch

from fastmotion.models import mlrq as M
from fastmotion.train.free3d import mlrq_run, prior_run
from fastmotion.train.loop import TrainConfig, Trainer, step_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--prior-seed", type=int, default=0)
    parser.add_argument("--floor", type=float, default=M.RELATIVE_STD_FLOOR)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the reported blow-up came from one-thread runs: floating-point order matters
    fit = M._Standardise.fit
    M._Standardise.fit = lambda self, f, m=None, min_std=1e-4: fit(self, f, m, min_std, relative_floor=args.floor)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(args.prior_seed)
        prior = prior_run(args.data, M.MotionVQConfig.preset("small", levels=1), 64, 32, torch.device("cpu"))
        config = TrainConfig(steps=800, lr=1e-3, warmup=50, seed=args.prior_seed, eval_every=800)
        Trainer(prior, config, f"{tmp}/prior", progress=False).fit()
        torch.manual_seed(0)
        run = mlrq_run(args.data, f"{tmp}/prior/last.pt", M.MotionVQConfig.preset("small", levels=6), 64, 32,
                       torch.device("cpu"), rec_quantised=True)  # L_rec as measured then: through the codebook
        config = TrainConfig(steps=2500, lr=args.lr, warmup=50)
        optimizer = torch.optim.AdamW(run.model.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
        result = {"prior_seed": args.prior_seed, "floor": args.floor, "min_std": float(prior.model.stats.std.min()),
                  "losses": {}, "diverged_at": None}
        history = []
        for step in range(args.steps):  # the Trainer's step, without its guard: we want to see the blow-up
            seed = step_seed(0, step)
            torch.manual_seed(seed)
            loss = run.step_fn(run.model, step, torch.Generator().manual_seed(seed))["loss"]
            history.append(float(loss.detach()))
            if not math.isfinite(history[-1]) or history[-1] > 1e4:
                result["diverged_at"] = step
                break
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if (step + 1) % 100 == 0:
                result["losses"][step + 1] = sum(history[-25:]) / 25
    print(json.dumps(result))


if __name__ == "__main__":
    main()
