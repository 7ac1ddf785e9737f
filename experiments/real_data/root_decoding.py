"""Which global motion (root trajectory) to decode from an ML-RQ's lift: the rows of docs/real-data.md's table.

Each variant turns the ML-RQ's per-frame poses (units of each frame's depth) and the 2D into a camera-frame
motion, scored by `evaluate_lifting` (root: mean root distance after the clip's scale, mm):
  own            the ML-RQ's own root channels (fastmotion before the change)
  own-z0         the same with the root's depth set to 0
  lift3d-sum     depth from the lift's summed 3D limb lengths (window 1 / 9)
  lift3d-median  depth from the lift's 3D limb lengths, per-limb median (window 9)
  teacher        VideoMDM's teacher placement (fastmotion.pipelines.teacher.metric_camera_frame)
  adopted        `fastmotion.pipelines.free3d.lift`: depth from the 2D size, per-limb median, 5-frame average
  zero           the zero-depth baseline, and zero-w1/5/9/15/25: it placed by the 2D-size depth

    python experiments/real_data/root_decoding.py --checkpoint real/mlrq/last.pt --data real/real2d [--split val]
"""
from __future__ import annotations

import argparse

import torch

from fastmotion.models.mlrq import features_to_joints, motion_features
from fastmotion.motion.camera import place_on_rays, relative_depth
from fastmotion.motion.skeleton import SMPL22
from fastmotion.pipelines.free3d import lift, load_mlrq
from fastmotion.pipelines.lifting import Lifter, evaluate_lifting, zero_depth
from fastmotion.pipelines.teacher import metric_camera_frame


class PerClip(Lifter):
    """A function of one clip's keypoints [T, 22, 2] as a Lifter."""

    def __init__(self, fn):
        self.fn = fn

    def lift(self, clips, progress=None):
        return {c.name: self.fn(c.keypoints) for c in clips}


PARENTS = list(SMPL22.parents[1:])


def smooth(depth: torch.Tensor, window: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(depth[None, None], (window // 2, (window - 1) // 2), mode="replicate")
    return torch.nn.functional.avg_pool1d(padded, window, stride=1)[0, 0]


def depth_from_3d(pose: torch.Tensor, statistic: str, window: int) -> torch.Tensor:
    lengths = (pose[:, 1:] - pose[:, PARENTS]).norm(dim=-1).clamp_min(1e-9)  # [T, 21]
    if statistic == "sum":
        depth = 1.0 / lengths.sum(-1)
    else:
        depth = (lengths.median(0).values / lengths).median(-1).values
    depth = smooth(depth, window)
    return depth / depth[0]


def variants(model):
    @torch.no_grad()
    def own(clip):
        T, m = clip.shape[0], model.frame_multiple
        k = torch.cat([clip, clip[-1:].expand(-(-T // m) * m - T, -1, -1)])
        f3d, _, _ = model.lift(model.stats.normalize(motion_features(k[None])))
        return features_to_joints(f3d, 3)[0, :T].double()

    def own_z0(clip):
        pose = own(clip)
        root = pose[:, :1].clone()
        root[..., 2] = 0
        return pose - pose[:, :1] + root

    def from_3d(statistic, window):
        return lambda clip: place_on_rays(own(clip), clip[:, 0].double(), depth_from_3d(own(clip), statistic, window))

    def zero_placed(window):
        return lambda clip: place_on_rays(zero_depth(clip).double(), clip[:, 0].double(),
                                          relative_depth(clip.double(), window=window))

    out = {"own": own, "own-z0": own_z0, "lift3d-sum-w1": from_3d("sum", 1), "lift3d-sum-w9": from_3d("sum", 9),
           "lift3d-median-w9": from_3d("median", 9),
           "teacher": lambda clip: metric_camera_frame(own(clip), clip, torch.eye(3)),
           "adopted": lambda clip: lift(model, clip), "zero": lambda clip: zero_depth(clip)}
    out.update({f"zero-w{w}": zero_placed(w) for w in (1, 5, 9, 15, 25)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (default: all)")
    args = parser.parse_args()
    model = load_mlrq(args.checkpoint, "cpu")
    print("| variant | N-MPJPE | PA-MPJPE | root |\n| --- | ---: | ---: | ---: |")
    for name, fn in variants(model).items():
        if args.only and name not in args.only:
            continue
        m = evaluate_lifting(PerClip(fn), args.data, args.split)["model"]
        print(f"| {name} | {m['N-MPJPE']:.1f} | {m['PA-MPJPE']:.1f} | {m['root']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
