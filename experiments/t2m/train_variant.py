"""Train one variant of the demo's masked (or residual) transformer for the text-to-motion tuning runs
(docs/t2m-tuning.md), into OUT/mask (OUT/res), with OUT/evaluator, OUT/res (OUT/mask) and OUT/mlrq
linked from MODELS so that experiments/t2m/sweep.py OUT ... scores it.

Usage: .venv/bin/python experiments/t2m/train_variant.py MODELS DATA2D OUT [kind=mask] [steps=1500] [lr=1e-3]
       [batch=64] [seed=0] [any T2MConfig field of the small preset=value ...]
e.g. cond_every_token=0: the masked transformer before the sentence feature was added to every token."""
import sys
from dataclasses import replace
from pathlib import Path

import torch

from fastmotion.models.t2m import T2MConfig
from fastmotion.train.loop import TrainConfig, Trainer
from fastmotion.train.t2m import t2m_run

models, data, out = Path(sys.argv[1]).resolve(), sys.argv[2], Path(sys.argv[3])
args = dict(a.split("=") for a in sys.argv[4:])
kind = args.pop("kind", "mask")
seed = int(args.pop("seed", 0))
train = TrainConfig(steps=int(args.pop("steps", 1500)), lr=float(args.pop("lr", 1e-3)),
                    batch_size=int(args.pop("batch", 64)), warmup=50, seed=seed)
small = T2MConfig.preset("small")
config = replace(small, **{k: v.lower() in ("1", "true") if isinstance(getattr(small, k), bool)
                            else type(getattr(small, k))(v) for k, v in args.items()})
out.mkdir(parents=True, exist_ok=True)
for part in ("evaluator", "mlrq", "res", "mask"):
    if part != kind and not (out / part).exists():
        (out / part).symlink_to(models / part)
torch.manual_seed(seed)
run = t2m_run(kind, data, models / "mlrq" / "last.pt", config, train.batch_size, torch.device("cpu"))
print(Trainer(run, train, out / kind).fit())
