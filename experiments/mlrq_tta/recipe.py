"""Time to accuracy of `make demo`'s ML-RQ under another training recipe (issue 29 line 3): the fused arm of
`fastmotion bench train --to PA-MPJPE` with TrainConfig fields overridden.

    python experiments/mlrq_tta/recipe.py demo/synth2d demo/prior/last.pt OUT.json steps=2500 lr=2e-3 \
        milestones=0.6,0.85 batch_size=32 views=4 target=35.1

Prints val PA-MPJPE every 250 steps and writes the report (bench/train.py's time_to_accuracy) to OUT.json."""
import dataclasses
import json
import sys

from fastmotion.bench import train as train_bench
from fastmotion.bench.harness import environment
from fastmotion.train.loop import TrainConfig

from fastmotion.cli._common import DEFAULTS
from fastmotion.cli.train import MLRQ_STEPS


def main(data, prior, out, *overrides):
    d = DEFAULTS["small"]
    fields = {"steps": MLRQ_STEPS["small"], "batch_size": d["batch_size"], "lr": d["lr"], "seed": 0, "warmup": 50,
              "eval_every": 250}
    views, target = 4, 35.1  # the default recipe's final val PA-MPJPE since aa40911 (bench/RESULTS.md)
    settable = {f.name: f.type for f in dataclasses.fields(TrainConfig)} | {"views": "int", "target": "float"}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in settable or key == "ckpt_every":
            raise SystemExit(f"{item!r}: KEY=VALUE with KEY one of {', '.join(sorted(set(settable) - {'ckpt_every'}))}")
        if key == "views":
            views = int(value)
        elif key == "target":
            target = float(value)
        elif key == "milestones":
            fields[key] = tuple(float(v) for v in value.split(",") if v)
        elif isinstance(getattr(TrainConfig, key), bool):
            fields[key] = value.lower() in ("1", "true", "yes")
        else:
            fields[key] = type(getattr(TrainConfig, key))(value)
    config = TrainConfig(**fields, ckpt_every=fields["steps"])
    report = train_bench.time_to_accuracy(data, prior, config, d["length"], "small", target, ("fused",), "cpu",
                                          views=views, progress=lambda msg: print(msg, flush=True))
    with open(out, "w") as f:
        json.dump({**report, "overrides": list(overrides), "environment": environment("cpu")}, f, indent=1)
    arm = report["arms"]["fused"]
    print(f"final {arm['final']:.2f} mm, reached {arm['reached']}, {arm['steps_per_s']:.2f} steps/s")


if __name__ == "__main__":
    main(*sys.argv[1:])
