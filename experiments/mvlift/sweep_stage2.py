"""Stage-2 settings of MVLift side by side on the same clips (val split by default): each variant is the small
preset with some Stage2Config fields changed; PA-MPJPE (ours and MVLift's per-sequence), T_root and the time per
clip go to one JSON. Tuning runs only (docs/methods/mvlift.md has the figures); the defaults live in the preset.

    python experiments/mvlift/sweep_stage2.py --checkpoint RUN/last.pt --data DIR2D --limit 20 --json sweep.json \
        --variant base --variant "init=stage1" --variant "lr=3e-3,iterations=800"
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fastmotion.pipelines.lifting import dataset_clips, evaluate_lifting
from fastmotion.pipelines.mvlift import MVLiftLifter


def parse(variant: str) -> dict:
    if variant == "base":
        return {}
    out = {}
    for item in variant.split(","):
        key, value = item.split("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    clips = dataset_clips(args.data, args.split, args.limit)
    rows = []
    for variant in args.variant or ["base"]:
        lifter = MVLiftLifter.from_checkpoint(args.checkpoint, args.device, "small", **parse(variant))
        start = time.perf_counter()
        result = evaluate_lifting(lifter, args.data, args.split, clips=clips)
        seconds = time.perf_counter() - start
        row = {"variant": variant, "seconds_per_clip": seconds / len(clips), "model": result["model"],
               "zero_depth": result["zero_depth"], "mvlift_protocol": result["mvlift_protocol"]}
        rows.append(row)
        m, z, mv = result["model"], result["zero_depth"], result["mvlift_protocol"]
        print(f"{variant:>40}: PA-MPJPE {m['PA-MPJPE']:.1f} (zero depth {z['PA-MPJPE']:.1f}), "
              f"T_root {mv['model']['T_root']:.0f} (zero depth {mv['zero_depth']['T_root']:.0f}), "
              f"{seconds / len(clips):.2f} s/clip", flush=True)
        with open(args.json, "w") as f:
            json.dump({"clips": len(clips), "split": args.split, "device": args.device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
