"""How well a trained 2D prior tells plausible from implausible rotated views: the signal L_rec relies on.

For the clips of one split of a rendered dataset (its held-out 3D in eval3d/ is read here, for diagnosis only),
the prior's reconstruction error (standardised features, as in L_rec) of
  input   the clip's own 2D (the prior's reconstruction of real 2D),
  true    the true 3D in the camera frame, in units of the root's first-frame depth, turned about the vertical
          (the clip's camera up axis) by V random yaws and seen orthographically,
  zero    the zero-depth motion (the 2D with every joint at the root's depth) turned the same way.
The gap (zero / true) is what L_rec can teach: a prior that scores both alike cannot tell depth.

    python experiments/real_data/prior_gap.py --prior RUN/last.pt --data DIR2D [--split val] [--views 8] [--continuous]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fastmotion.losses.free3d import vertical_rotations
from fastmotion.models.mlrq import motion_features
from fastmotion.ops import project_weak_perspective
from fastmotion.data.clip_bank import ClipBank
from fastmotion.pipelines.free3d import load_prior
from fastmotion.pipelines.lifting import zero_depth


def crops(bank: ClipBank, root: Path, length: int):
    """Every clip's first `length` frames (clips shorter are skipped): 2D [N, L, 22, 2], true 3D in the camera
    frame divided by the root's first-frame depth [N, L, 22, 3], camera up axes [N, 3]."""
    k2, k3, ups = [], [], []
    for i, (name, clip, (K, R, t)) in enumerate(zip(bank.names, bank.clips, bank.cameras)):
        if len(clip) < length:
            continue
        world = torch.from_numpy(np.load(root / "eval3d" / "new_joints" / f"{name}.npy"))[:length]
        camera = world @ R.T + t
        k2.append(clip[:length])
        k3.append((camera - camera[:1, :1]) / camera[0, 0, 2])
        ups.append(bank.up(i))
    return torch.stack(k2), torch.stack(k3), torch.stack(ups)


@torch.no_grad()
def prior_error(prior, joints2d: torch.Tensor, quantise: bool = True) -> torch.Tensor:
    """Per-motion reconstruction error [N] of 2D motions [N, L, 22, 2], through the codebook or (quantise=False)
    the encoder's continuous latent, as today's L_rec scores views."""
    x = prior.stats.normalize(motion_features(joints2d))
    return ((prior.reconstruct(x, quantise) - x) ** 2).mean((1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--continuous", action="store_true",
                        help="score through the prior's continuous latent (L_rec's default) instead of its codebook")
    args = parser.parse_args()
    prior = load_prior(args.prior, "cpu")
    bank = ClipBank(args.data, args.split)
    k2, k3, up = crops(bank, args.data, args.length)
    g = torch.Generator().manual_seed(0)
    rotations = vertical_rotations(up, args.views, g)
    zero = torch.stack([zero_depth(c) for c in k2])
    seen_true = project_weak_perspective(k3, rotations).flatten(0, 1)
    seen_zero = project_weak_perspective(zero, rotations).flatten(0, 1)
    result = {"clips": len(k2), "views": args.views, "length": args.length,
              "path": "continuous latent" if args.continuous else "codebook",
              "input": float(prior_error(prior, k2 - k2[:, :1, :1], not args.continuous).mean()),
              "true_turned": float(prior_error(prior, seen_true, not args.continuous).mean()),
              "zero_turned": float(prior_error(prior, seen_zero, not args.continuous).mean())}
    result["gap"] = result["zero_turned"] / result["true_turned"]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
